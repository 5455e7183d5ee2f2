"""The ``tokenworks`` command: a thin shim over the registry and the public API.

Family commands live in their own modules of this package and attach to ``app`` here.
"""

from tokenworks.cli.main import app

__all__ = ["app"]
