"""KV: key-value cache eviction and sparse-attention policies for any Hugging Face decoder.

One line on an unchanged model, then the unchanged ``generate``::

    >>> import tokenworks as tw
    >>> policy = tw.create("lazy_eviction", budget=0.5).attach(model)   # Llama, Qwen2, Mistral, ...
    >>> out = model.generate(**tok(prompts, return_tensors="pt", padding=True), max_new_tokens=64)
    >>> policy.detach()                     # or: with tw.create("h2o", budget=256)(model): ...

``budget`` is a fraction of the context (0 < budget <= 1) or a token count (an int). Batches
with left padding behave row by row as if each row ran alone. Policies: ``full`` (reference),
``random``, ``streaming_llm``, ``h2o``, ``tova``, ``snapkv`` (baselines), ``lazy_eviction``
(P12) and ``tidal_decode`` (P45); see :mod:`tokenworks.kvcache.base` for the mechanics and
:func:`tokenworks.kvcache.task_model` for the small model the benchmark trains.

Not a cache policy but a model change, same family: ``memory_reweaving`` (P42, layered latent
states re-woven into a later layer, :mod:`tokenworks.kvcache.reweave`) and its control
``reweave_control``.
"""

from tokenworks.kvcache.base import ATTN_IMPLEMENTATION, KVPolicy, LayerView, kv_bytes
from tokenworks.kvcache.full import FullCache
from tokenworks.kvcache.h2o import H2O
from tokenworks.kvcache.lazy_eviction import LazyEviction
from tokenworks.kvcache.random import RandomEviction
from tokenworks.kvcache.reweave import MemoryReweaving, SameLayerReweaving
from tokenworks.kvcache.snapkv import SnapKV
from tokenworks.kvcache.streaming_llm import StreamingLLM
from tokenworks.kvcache.tidal_decode import TidalDecode
from tokenworks.kvcache.tova import TOVA

__all__ = [
    "ATTN_IMPLEMENTATION",
    "H2O",
    "TOVA",
    "FullCache",
    "KVPolicy",
    "LayerView",
    "LazyEviction",
    "MemoryReweaving",
    "SameLayerReweaving",
    "RandomEviction",
    "SnapKV",
    "StreamingLLM",
    "TidalDecode",
    "kv_bytes",
]
