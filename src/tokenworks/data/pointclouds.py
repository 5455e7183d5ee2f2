"""Point clouds sampled from real meshes: CGAL's OFF meshes (Debian ``libcgal-demo``) and the OFF
models of ``assimp-testmodels``.

Files: ``$TOKENWORKS_DATA/cgal-meshes`` (else ``/usr/share/datasets/cgal-meshes``, where
``scripts/install-system-data.sh`` unpacks ``libcgal-demo``'s ``data/meshes/*.off``) and
``$TOKENWORKS_DATA/assimp-off`` (else ``/usr/share/assimp/models/OFF``). Every file is parsed
and validated (header ``OFF``/``COFF``, vertex and face counts, finite coordinates, face indices
in range, positive surface area); files that fail are skipped and listed in
:func:`load_meshes`'s ``rejected``. Measured on Debian bookworm (CGAL 5.5.1, assimp 5.2.5):
138 CGAL files and 3 assimp files; 140 valid meshes (138 CGAL, assimp's ``Cube`` and
``Wuson``), 1 rejected (assimp's deliberately broken ``invalid.off``); 112 train and 28 test
meshes. Parsing all of them takes about 2 s.

Clouds: each mesh is centred on its bounding-box centre and scaled so its farthest vertex is at
distance 1, then ``points`` points are drawn uniformly on its surface (a triangle with
probability proportional to its area, a uniform point in it), with a seed derived from the
mesh's name and ``seed``. Split: meshes sorted by name, every fifth one (0, 5, 10, ...) is test.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from tokenworks.checks import check_choice, check_int
from tokenworks.data.errors import DataNotFoundError

__all__ = ["Mesh", "PointCloudSet", "load_meshes", "load_pointclouds", "read_off", "sample_surface"]

SPLITS = ("train", "test")


def _sources() -> dict[str, Path]:
    env = os.environ.get("TOKENWORKS_DATA")
    if env:
        root = Path(env).expanduser()
        return {"cgal": root / "cgal-meshes", "assimp": root / "assimp-off"}
    return {"cgal": Path("/usr/share/datasets/cgal-meshes"), "assimp": Path("/usr/share/assimp/models/OFF")}


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an OFF/COFF mesh: (vertices (V, 3) float64, triangles (F, 3) int64; polygons are
    fan-triangulated). Raises ValueError naming the file and what is wrong."""
    path = Path(path)
    fast = _read_plain_triangle_off(path)
    if fast is not None:
        return fast
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line.split())
    if not lines or lines[0][0] not in ("OFF", "COFF"):
        raise ValueError(f"{path}: not an OFF file (first token must be OFF or COFF)")
    head = lines[0][1:] or (lines[1] if len(lines) > 1 else [])
    body = lines[1:] if lines[0][1:] else lines[2:]
    try:
        nv, nf = int(head[0]), int(head[1])
    except (IndexError, ValueError):
        raise ValueError(f"{path}: the header must give the vertex and face counts, got {head}") from None
    if nv < 3 or nf < 1 or len(body) < nv + nf:
        raise ValueError(f"{path}: header says {nv} vertices and {nf} faces, file has {len(body)} data lines")
    try:
        verts = np.array([[float(t) for t in row[:3]] for row in body[:nv]], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: a vertex line does not hold 3 numbers") from None
    if verts.shape != (nv, 3) or not np.isfinite(verts).all():
        raise ValueError(f"{path}: vertices must be {nv} rows of 3 finite numbers")
    tris = []
    for row in body[nv : nv + nf]:
        k = int(row[0])
        ids = [int(t) for t in row[1 : 1 + k]]
        if k < 3 or len(ids) != k:
            raise ValueError(f"{path}: a face must list k >= 3 vertex indices, got {row[:8]}")
        tris.extend((ids[0], ids[i], ids[i + 1]) for i in range(1, k - 1))
    faces = np.array(tris, dtype=np.int64)
    if faces.min() < 0 or faces.max() >= nv:
        raise ValueError(f"{path}: face indices must be in [0, {nv}), got [{faces.min()}, {faces.max()}]")
    if _areas(verts, faces).sum() <= 0:
        raise ValueError(f"{path}: the surface has zero area")
    return verts, faces


def _read_plain_triangle_off(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path for the common case (``OFF``, triangles only, no colours); None otherwise."""
    text = re.sub(rb"#[^\n]*", b"", path.read_bytes()).lstrip()
    if not text.startswith(b"OFF"):
        return None
    tokens = text.split()
    try:
        nv, nf = int(tokens[1]), int(tokens[2])
        data = np.array(tokens[4:], dtype=np.float64)
    except (IndexError, ValueError):
        return None
    if nv < 3 or nf < 1 or data.size != nv * 3 + nf * 4:
        return None
    verts = data[: nv * 3].reshape(nv, 3)
    faces = data[nv * 3 :].reshape(nf, 4)
    if not (faces[:, 0] == 3).all() or not np.isfinite(verts).all():
        return None
    faces = faces[:, 1:].astype(np.int64)
    if faces.min() < 0 or faces.max() >= nv or _areas(verts, faces).sum() <= 0:
        return None  # the careful parser says what is wrong
    return verts, faces


def _areas(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def sample_surface(verts: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) points uniform on the surface: area-weighted triangle, then uniform barycentric point."""
    areas = _areas(verts, faces)
    tri = rng.choice(len(faces), size=n, p=areas / areas.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = verts[faces[tri, 0]], verts[faces[tri, 1]], verts[faces[tri, 2]]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


@dataclass(frozen=True)
class Mesh:
    name: str  # "<source>/<file stem>"
    vertices: np.ndarray  # (V, 3), centred, farthest vertex at distance 1
    faces: np.ndarray  # (F, 3) triangles


@lru_cache(maxsize=1)
def load_meshes() -> tuple[tuple[Mesh, ...], tuple[tuple[str, str], ...]]:
    """All valid meshes, sorted by name, and the rejected files as (path, reason)."""
    found, rejected, missing = [], [], []
    for source, folder in _sources().items():
        files = sorted(folder.glob("*.off")) if folder.is_dir() else []
        if not files:
            missing.append(f"{folder} ({source})")
        for f in files:
            try:
                verts, faces = read_off(f)
            except ValueError as e:
                rejected.append((str(f), str(e)))
                continue
            used = np.unique(faces)
            lo, hi = verts[used].min(0), verts[used].max(0)
            verts = verts - (lo + hi) / 2
            verts = verts / np.linalg.norm(verts[used], axis=1).max()
            found.append(Mesh(f"{source}/{f.stem}", verts, faces))
    if not found:
        raise DataNotFoundError(
            f"no OFF meshes found in {', '.join(missing)}: run scripts/install-system-data.sh (as root: installs "
            f"assimp-testmodels and unpacks libcgal-demo's meshes), or set TOKENWORKS_DATA to a folder holding "
            f"cgal-meshes/ and assimp-off/"
        )
    return tuple(sorted(found, key=lambda m: m.name)), tuple(rejected)


@dataclass
class PointCloudSet:
    split: str
    points: torch.Tensor  # (M, P, 3) float32
    names: list[str]

    def __len__(self) -> int:
        return self.points.shape[0]


def load_pointclouds(split: str = "train", points: int = 2048, seed: int = 0) -> PointCloudSet:
    """One cloud of ``points`` surface points per mesh of ``split`` (every fifth mesh by name is test)."""
    check_choice("split", split, SPLITS)
    check_int("points", points, min=1)
    check_int("seed", seed, min=0)
    meshes, _ = load_meshes()
    chosen = [m for i, m in enumerate(meshes) if (i % 5 == 0) == (split == "test")]
    clouds = []
    for m in chosen:
        rng = np.random.default_rng([zlib.crc32(m.name.encode()), seed])
        clouds.append(sample_surface(m.vertices, m.faces, points, rng))
    return PointCloudSet(split, torch.from_numpy(np.stack(clouds)).float(), [m.name for m in chosen])
