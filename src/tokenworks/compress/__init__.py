"""CMP: fewer tokens inside the model: pruning, merging and pooling of visual tokens.

One line on an unchanged ViT (timm layout), then the unchanged forward::

    >>> import tokenworks as tw
    >>> with tw.compress.attach_vit(model, tw.create("todre", budget=0.11), layer=2):
    ...     logits = model(images)

or on any tokens: ``out = tw.create("tome", budget=0.25)(tokens)`` -> ``out.tokens`` (B, M, D),
``out.mask``, ``out.sizes``, ``out.source`` (the merge map). ``budget`` is a fraction of the
tokens (0 < budget <= 1) or a count (an int). Reducers: ``random_prune``, ``spatial_pool``,
``cls_attention``, ``tome``, ``divprune`` (baselines), ``todre`` (P63) and
``token_correlation`` (P54); see :mod:`tokenworks.compress.base` for the mechanics and
:mod:`tokenworks.compress.vit_hook` for the ViT attachment.
"""

from tokenworks.compress.base import Reducer, Reduction, TokenView, budget_count
from tokenworks.compress.cls_attention import CLSAttention
from tokenworks.compress.correlation import CorrelationGuided, information_density
from tokenworks.compress.divprune import DivPrune
from tokenworks.compress.mqt import MQT
from tokenworks.compress.pooling import SpatialPool
from tokenworks.compress.random import RandomPrune
from tokenworks.compress.todre import ToDRE
from tokenworks.compress.tome import ToMe
from tokenworks.compress.vit_hook import ViTCompression, attach_vit

__all__ = [
    "CLSAttention",
    "CorrelationGuided",
    "DivPrune",
    "MQT",
    "RandomPrune",
    "Reducer",
    "Reduction",
    "SpatialPool",
    "ToDRE",
    "ToMe",
    "TokenView",
    "ViTCompression",
    "attach_vit",
    "budget_count",
    "information_density",
]
