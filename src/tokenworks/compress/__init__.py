"""CMP: fewer tokens inside the model: pruning, merging and pooling of visual tokens.

One line on an unchanged ViT (timm layout), then the unchanged forward::

    >>> import tokenworks as tw
    >>> with tw.compress.attach_vit(model, tw.create("todre", budget=0.11), layer=2):
    ...     logits = model(images)

or on a Hugging Face ``LlavaForConditionalGeneration`` (:mod:`tokenworks.compress.llava_hook`;
``layer=0`` prunes the projected visual tokens before the LM, ``layer=K`` inside the LM)::

    >>> with tw.compress.attach(model, "todre", keep=0.25):
    ...     out = model.generate(input_ids=ids, pixel_values=px, max_new_tokens=8)

or on any tokens: ``out = tw.create("tome", budget=0.25)(tokens)`` -> ``out.tokens`` (B, M, D),
``out.mask``, ``out.sizes``, ``out.source`` (the merge map). ``budget`` is a fraction of the
tokens (0 < budget <= 1) or a count (an int). Reducers: ``random_prune``, ``spatial_pool``,
``cls_attention``, ``tome``, ``divprune`` (baselines), ``todre`` (P63) and
``token_correlation`` (P54), ``fastv`` (LLaVA only) and ``ima_ffn_skip`` (P59, LLaVA only); text tokens of caption-conditioned generators:
``follow-the-flow`` (P27: keep a share of the encoded caption tokens; the leakage fix); see :mod:`tokenworks.compress.base` for the mechanics and
:mod:`tokenworks.compress.vit_hook` for the ViT attachment.
"""

from tokenworks.compress.base import Reducer, Reduction, TokenView, budget_count
from tokenworks.compress.cls_attention import CLSAttention
from tokenworks.compress.correlation import CorrelationGuided, information_density
from tokenworks.compress.divprune import DivPrune
from tokenworks.compress.fastv import FastV
from tokenworks.compress.follow_flow import FollowTheFlow, plain_states, uncontextualize
from tokenworks.compress.ima import IMAFFNSkip, alignment_scores
from tokenworks.compress.llava_hook import LlavaCompression, attach
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
    "FastV",
    "FollowTheFlow",
    "IMAFFNSkip",
    "LlavaCompression",
    "MQT",
    "RandomPrune",
    "Reducer",
    "Reduction",
    "SpatialPool",
    "ToDRE",
    "ToMe",
    "TokenView",
    "ViTCompression",
    "alignment_scores",
    "attach",
    "attach_vit",
    "budget_count",
    "information_density",
    "plain_states",
    "uncontextualize",
]
