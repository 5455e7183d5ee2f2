"""tokenworks: how data becomes tokens, how models use fewer of them, how they decode faster.

    >>> import tokenworks as tw
    >>> q = tw.create("fsq", dim=64, levels=[8, 5, 5, 5])
    >>> quantized, indices, aux_loss = q(x)              # x: (B, N, 64)

Every method is in one registry (``tw.methods()``, ``tokenworks list``), named by the paper
that introduced it (P01..P69, see ``tw.papers()``) or marked as a baseline.
"""

from tokenworks.registry import FAMILIES, MethodInfo, UnknownMethodError, create, get, methods, papers, register

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "MethodInfo",
    "UnknownMethodError",
    "__version__",
    "create",
    "get",
    "methods",
    "papers",
    "register",
]
