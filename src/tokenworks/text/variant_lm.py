"""Small causal LMs trained with an LM variant (P28, P69, ...) and their baselines, and the
named recipes (presets) that make the committed checkpoints of the ``lm-tokens`` suite.

A recipe (:class:`VariantLMConfig`) names the variant and its options, the data (``prose`` or
``legal``, train split, reference tokenizer), where the weights start (``scratch``: a Llama of
the given size, seeded; ``reference``: the committed reference LM) and the training budget.
Everything else is shared, so a pair of recipes that differ in ``variant`` only is a control
that changes one thing. Only the causal LM is saved (``save_pretrained``, safetensors, with
``tokenworks.json``: fingerprint, loss history, seconds; the tokenizer is the reference LM's,
``reference_lm()[1]``, not copied into every folder); parts a variant adds
for training only (CAFT's auxiliary heads) are dropped, as in the papers.

Reproduce a committed checkpoint (trained into the cache, then copied as float16)::

    tokenworks train lm-variant --preset p28-lexinvariant-s0
    tokenworks publish lm-tokens/p28-lexinvariant-s0

(or ``tokenworks train lm-variant --preset NAME --out assets/lm-tokens/NAME``, float16 by default).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenworks.checks import check_choice, check_float, check_int

__all__ = ["PRESETS", "VariantLMConfig", "preset", "train_variant_lm", "variant_lm"]


@dataclass(kw_only=True)
class VariantLMConfig:
    """One training recipe (see the module docstring)."""

    variant: str = "standard_lm"
    options: dict[str, Any] = field(default_factory=dict)
    data: str = "prose"
    init: str = "scratch"
    hidden_size: int = 64
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 192
    seq_len: int = 256
    batch_size: int = 16
    steps: int = 300
    lr: float = 2e-3
    warmup: int = 30
    seed: int = 0
    train_bytes: int | None = None
    pcfg: dict[str, Any] = field(default_factory=dict)  # PCFGFamily options (data="pcfg")

    def __post_init__(self) -> None:
        import tokenworks as tw

        tw.get(self.variant)  # an unknown name raises naming close matches
        if not isinstance(self.options, dict):
            raise TypeError(f"options must be a dict, got {self.options!r}")
        check_choice("data", self.data, ("prose", "legal", "pcfg"))
        if self.data == "pcfg" and self.init != "scratch":
            raise ValueError("init must be 'scratch' for data='pcfg' (the reference LM has another vocabulary)")
        check_choice("init", self.init, ("scratch", "reference"))
        check_int("hidden_size", self.hidden_size, min=8)
        check_int("layers", self.layers, min=1)
        check_int("heads", self.heads, min=1)
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must divide by heads ({self.heads})")
        check_int("intermediate_size", self.intermediate_size, min=1)
        check_int("seq_len", self.seq_len, min=2, max=8192)
        check_int("batch_size", self.batch_size, min=1)
        check_int("steps", self.steps, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("warmup", self.warmup, min=0, max=self.steps)
        check_int("seed", self.seed, min=0)
        if self.train_bytes is not None:
            check_int("train_bytes", self.train_bytes, min=1)

    def build(self):
        import tokenworks as tw

        return tw.create(self.variant, **self.options)


def _batches(config: VariantLMConfig, tokenizer, variant):
    from tokenworks.data import PCFGFamily, load_legal, load_prose
    from tokenworks.models.lm import prose_batches, token_stream

    if config.data == "pcfg":
        family = PCFGFamily(**config.pcfg)

        def pcfg_batch(step: int, g: torch.Generator) -> torch.Tensor:
            docs, ks = family.batch(config.batch_size, config.seq_len + 1, g)  # (B, L + 1)
            if hasattr(variant, "add_prefix"):
                meta = torch.tensor([[family.meta_token(int(k))] * variant.prefix_len for k in ks])
                docs = variant.add_prefix(docs, meta)
            return docs

        return pcfg_batch
    if config.data == "prose":
        return prose_batches(tokenizer, train_bytes=config.train_bytes, seq_len=config.seq_len, batch_size=config.batch_size)
    docs, size = [], 0
    for d in load_legal("train").documents:
        if config.train_bytes is not None and size >= config.train_bytes:
            break
        docs.append(d)
        size += len(d.encode("utf-8"))
    stream, L = token_stream(docs, tokenizer), config.seq_len

    def batch_fn(step: int, g: torch.Generator) -> torch.Tensor:
        starts = torch.randint(0, stream.numel() - L - 1, (config.batch_size,), generator=g)
        return torch.stack([stream[s : s + L + 1] for s in starts.tolist()])  # (B, L + 1)

    return batch_fn


def _initial_lm(config: VariantLMConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tokenworks.models import reference_lm

    if config.data == "pcfg":
        from tokenworks.data import PCFGFamily

        tok, vocab, eos = None, PCFGFamily(**config.pcfg).vocab_size, None
    else:
        ref, tok = reference_lm()
        if config.init == "reference":
            return ref, tok
        vocab, eos = len(tok), tok.eos_token_id
    torch.manual_seed(config.seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=max(config.seq_len, 1024), tie_word_embeddings=True,
        eos_token_id=eos, pad_token_id=eos, bos_token_id=None,
    )  # fmt: skip
    return LlamaForCausalLM(cfg), tok


def train_variant_lm(out: str | Path, config: VariantLMConfig, *, ckpt_dir=None, device: str = "cpu", fp16: bool = False) -> dict:
    """Train ``config`` and save the causal LM and ``tokenworks.json`` in ``out``."""
    from tokenworks.models.store import write_model_info
    from tokenworks.text.lm_variant import train_variant
    from tokenworks.train import TrainConfig

    variant = config.build()
    lm, tok = _initial_lm(config)
    torch.manual_seed(config.seed)
    model = variant.prepare(lm)
    batch_fn = _batches(config, tok, variant)
    info: dict[str, Any] = {}
    pre = getattr(variant, "pretrain_parts", None)
    if pre is not None:  # CAFT: train the auxiliary heads on the frozen LM first
        info["pretrain"] = pre(model, batch_fn, seed=config.seed, device=device, ckpt_dir=None if ckpt_dir is None else Path(ckpt_dir) / "pretrain")
    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=0.1, seed=config.seed, device=device,
                     desc=f"{config.variant} LM", checkpoint_every=100)  # fmt: skip
    trainable = variant.trainable(model) if hasattr(variant, "trainable") else None
    result = train_variant(variant, model, batch_fn, tc, ckpt_dir=ckpt_dir, params=trainable)
    lm = variant.base_lm(model).to("cpu").eval()
    out = Path(out)
    (lm.half() if fp16 else lm).save_pretrained(out, safe_serialization=True)
    info.update(train_loss=result.final_loss, train_seconds=round(result.seconds, 1), history=[[s, round(v, 4)] for s, v in result.history],
                params=sum(p.numel() for p in lm.parameters()))  # fmt: skip
    write_model_info(out, asdict(config), **info)
    return info


# ------------------------------------------------------------------ the committed recipes
_P28 = dict(data="prose", init="scratch", hidden_size=64, layers=4, heads=4, intermediate_size=192, seq_len=256, batch_size=16, steps=400, lr=3e-3, warmup=40)
_P69 = dict(data="legal", init="reference", seq_len=128, batch_size=8, steps=80, lr=3e-4, warmup=8, train_bytes=3_000_000)

PRESETS: dict[str, VariantLMConfig] = {}
for _s in (0, 1, 2):
    PRESETS[f"p28-lexinvariant-s{_s}"] = VariantLMConfig(variant="lexinvariant", seed=_s, **_P28)
    PRESETS[f"p28-standard-s{_s}"] = VariantLMConfig(variant="standard_lm", seed=_s, **_P28)


_P47 = dict(data="pcfg", init="scratch", hidden_size=64, layers=3, heads=4, intermediate_size=192, seq_len=128, batch_size=16, steps=300, lr=3e-3, warmup=30)
for _s in (0, 1, 2):
    PRESETS[f"p47-metadata-s{_s}"] = VariantLMConfig(variant="metadata_prefix", seed=_s, **_P47)
    PRESETS[f"p47-plain-s{_s}"] = VariantLMConfig(variant="standard_lm", seed=_s, **_P47)


for _s in (0, 1, 2):
    PRESETS[f"p69-caft-s{_s}"] = VariantLMConfig(variant="caft", options={"head_pretrain_steps": 40}, seed=_s, **_P69)
    PRESETS[f"p69-plain-s{_s}"] = VariantLMConfig(variant="standard_lm", seed=_s, **_P69)
    # ablation: the auxiliary loss 100x stronger than the official default (0.01), all else equal
    PRESETS[f"p69-caft1-s{_s}"] = VariantLMConfig(variant="caft", options={"head_pretrain_steps": 40, "heads_coefficient": 1.0}, seed=_s, **_P69)


def preset(name: str) -> VariantLMConfig:
    check_choice("preset", name, tuple(PRESETS))
    return PRESETS[name]


def variant_lm(name: str, *, train_if_missing: bool = False, device: str = "cpu"):
    """``(lm, tokenizer, info)`` of preset ``name``: cached, committed (assets/lm-tokens/NAME) or
    trained now when ``train_if_missing``."""
    from transformers import LlamaForCausalLM

    from tokenworks.io import load_json
    from tokenworks.models.lm import quiet_loading
    from tokenworks.models.store import load_or_train

    config = preset(name)

    def _train(out: Path, run: Path) -> None:
        train_variant_lm(out, config, ckpt_dir=run, device=device)

    path = load_or_train(f"lm-tokens/{name}", asdict(config), _train, train_if_missing=train_if_missing,
                         command=f"tokenworks train lm-variant --preset {name}")  # fmt: skip
    with quiet_loading():
        lm = LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    tok = None
    if config.data != "pcfg":
        from tokenworks.models import reference_lm

        tok = reference_lm()[1]  # the committed reference LM's own copy of the tokenizer
    return lm.to(device), tok, load_json(path / "tokenworks.json", kind=dict)
