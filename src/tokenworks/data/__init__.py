"""Offline data: real image sets, text corpora, point clouds from meshes and motion capture that install from PyPI or Debian.

Nothing here downloads: each loader reads files that a package put on disk, validates what it
read, and raises :class:`DataNotFoundError` naming the package to install and the path it
looked in when they are missing. ``$TOKENWORKS_DATA`` overrides the system data directories.
"""

from tokenworks.data.errors import DataNotFoundError
from tokenworks.data.images import ImageSet, load_fashion_mnist, load_images, load_mnist5k
from tokenworks.data.motion import MotionClip, MotionSet, load_clips, load_motion
from tokenworks.data.pcfg import PCFGFamily
from tokenworks.data.pointclouds import PointCloudSet, load_meshes, load_pointclouds
from tokenworks.data.text import TextCorpus, load_corpus, load_legal, load_prose

__all__ = [
    "DataNotFoundError",
    "ImageSet",
    "MotionClip",
    "MotionSet",
    "PCFGFamily",
    "PointCloudSet",
    "TextCorpus",
    "load_corpus",
    "load_clips",
    "load_fashion_mnist",
    "load_images",
    "load_legal",
    "load_meshes",
    "load_mnist5k",
    "load_motion",
    "load_pointclouds",
    "load_prose",
]
