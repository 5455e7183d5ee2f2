"""The reference language model: a small Hugging Face ``LlamaForCausalLM`` on English prose.

Trained here on CPU (a few million parameters, minutes), saved with ``save_pretrained``
(safetensors) together with its tokenizer and its held-out perplexity / bits per byte. Every
family that needs a causal LM (text tokenizer transfer, KV-cache policies, decoding) starts
from it; all of them also accept any Hugging Face causal LM a user has locally.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch

from tokenworks.checks import check_int, check_float
from tokenworks.metrics.text import bits_per_byte

__all__ = ["LMTrainConfig", "evaluate_lm", "reference_lm", "token_byte_lengths", "token_stream", "train_reference_lm"]


@dataclass(kw_only=True)
class LMTrainConfig:
    """Size and training recipe of the reference LM (the defaults make the committed one)."""

    vocab_size: int = 4096
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 4
    intermediate_size: int = 384
    max_position_embeddings: int = 8192
    seq_len: int = 256
    batch_size: int = 16
    steps: int = 1500
    lr: float = 2e-3
    warmup: int = 100
    seed: int = 0
    train_bytes: int | None = None  # use only the first documents up to this many bytes (tiny configs)
    eval_windows: int | None = None  # evaluate on at most this many held-out windows (None: all)

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, min=260)
        check_int("hidden_size", self.hidden_size, min=8)
        check_int("layers", self.layers, min=1)
        check_int("heads", self.heads, min=1)
        check_int("kv_heads", self.kv_heads, min=1, max=self.heads)
        if self.hidden_size % self.heads or self.heads % self.kv_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must divide by heads ({self.heads}) and heads by kv_heads ({self.kv_heads})"
            )
        check_int("intermediate_size", self.intermediate_size, min=1)
        check_int("seq_len", self.seq_len, min=2, max=self.max_position_embeddings)
        check_int("batch_size", self.batch_size, min=1)
        check_int("steps", self.steps, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("warmup", self.warmup, min=0, max=self.steps)
        if self.train_bytes is not None:
            check_int("train_bytes", self.train_bytes, min=1)
        if self.eval_windows is not None:
            check_int("eval_windows", self.eval_windows, min=1)

    def llama_config(self, tokenizer):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=True,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
        )


def token_stream(documents, tokenizer) -> torch.Tensor:
    """All documents tokenized and joined by the end-of-text token: a 1-D LongTensor."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer(list(documents), add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def token_byte_lengths(tokenizer) -> torch.Tensor:
    """UTF-8 bytes each token id stands for (0 for special tokens).

    For byte-level BPE every character of a token string stands for exactly one byte; for
    other tokenizers the token is decoded on its own.
    """
    vocab = tokenizer.get_vocab()
    out = torch.zeros(max(len(tokenizer), max(vocab.values()) + 1), dtype=torch.long)
    special = set(tokenizer.all_special_ids)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    byte_level = backend is not None and "ByteLevel" in str(backend.pre_tokenizer)
    for tok, i in vocab.items():
        if i in special:
            continue
        out[i] = len(tok) if byte_level else len(tokenizer.decode([i]).encode("utf-8"))
    return out


@torch.no_grad()
def evaluate_lm(model, tokenizer, documents, *, seq_len: int = 256, max_windows: int | None = None, batch_size: int = 8) -> dict[str, float]:
    """Held-out perplexity (per token) and bits per byte over non-overlapping windows."""
    stream = token_stream(documents, tokenizer)
    n = (stream.numel() - 1) // seq_len
    if n < 1:
        raise ValueError(f"documents too short for one window of {seq_len} tokens")
    if max_windows is not None:
        n = min(n, max_windows)
    windows = stream[: n * seq_len + 1]
    nbytes = token_byte_lengths(tokenizer)
    device = next(model.parameters()).device
    total_nll, total_tokens, total_bytes = 0.0, 0, 0
    model.eval()
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        x = torch.stack([windows[i * seq_len : (i + 1) * seq_len] for i in idx]).to(device)
        y = torch.stack([windows[i * seq_len + 1 : (i + 1) * seq_len + 1] for i in idx])
        logits = model(input_ids=x).logits.float().cpu()
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        total_nll += nll.item()
        total_tokens += y.numel()
        total_bytes += int(nbytes[y].sum())
    return {
        "ppl": math.exp(total_nll / total_tokens),
        "bits_per_byte": bits_per_byte(total_nll, max(total_bytes, 1)),
        "tokens": total_tokens,
        "bytes": total_bytes,
    }


def prose_batches(tokenizer, *, train_bytes: int | None, seq_len: int, batch_size: int):
    """A ``batch_fn(step, generator)`` for :func:`tokenworks.train.train`: ``batch_size`` random
    windows of ``seq_len + 1`` tokens from the prose train split (its first ``train_bytes`` bytes,
    whole documents; all of it when None), tokenized once."""
    from tokenworks.data import load_prose

    docs, size = [], 0
    for d in load_prose("train").documents:
        if train_bytes is not None and size >= train_bytes:
            break
        docs.append(d)
        size += len(d.encode("utf-8"))
    stream = token_stream(docs, tokenizer)
    L = seq_len
    if stream.numel() < L + 2:
        raise ValueError(f"the training text has {stream.numel()} tokens, fewer than seq_len + 2 = {L + 2}")

    def batch_fn(step: int, g: torch.Generator) -> torch.Tensor:
        starts = torch.randint(0, stream.numel() - L - 1, (batch_size,), generator=g)
        return torch.stack([stream[s : s + L + 1] for s in starts.tolist()])  # (B, L + 1)

    return batch_fn


def train_reference_lm(out: str | Path, config: LMTrainConfig | None = None, *, ckpt_dir=None, device: str = "cpu", tokenizer=None, fp16: bool = False) -> dict:
    """Train the reference LM and save it (model + tokenizer + ``tokenworks.json``) in ``out``."""
    from transformers import LlamaForCausalLM

    from tokenworks.data import load_prose
    from tokenworks.models.bpe import reference_tokenizer
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    config = config or LMTrainConfig()
    tokenizer = tokenizer if tokenizer is not None else reference_tokenizer(config.vocab_size)
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(config.llama_config(tokenizer))
    batch_fn = prose_batches(tokenizer, train_bytes=config.train_bytes, seq_len=config.seq_len, batch_size=config.batch_size)
    L = config.seq_len
    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=0.1, seed=config.seed, device=device, desc="reference LM", checkpoint_every=250)
    result = train(model, _next_token_loss, batch_fn, tc, ckpt_dir=ckpt_dir)
    model.to("cpu")
    held_out = evaluate_lm(model, tokenizer, load_prose("test").documents, seq_len=L, max_windows=config.eval_windows)
    out = Path(out)
    (model.half() if fp16 else model).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {"held_out": held_out, "train_loss": result.final_loss, "train_seconds": result.seconds, "params": sum(p.numel() for p in model.parameters())}
    write_model_info(out, asdict(config), **info)
    return info


def _next_token_loss(model, batch: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=batch[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


@contextmanager
def quiet_loading():
    """Hide transformers' per-tensor "Loading weights" bar (noise for a model of a few tensors)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    if shown:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


@lru_cache(maxsize=2)
def _load(path: str):
    from transformers import AutoTokenizer, LlamaForCausalLM

    with quiet_loading():
        model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def reference_lm(device: str = "cpu", *, config: LMTrainConfig | None = None, train_if_missing: bool = True):
    """``(model, tokenizer)``: the reference LM (float32, eval mode) and its BPE tokenizer.

    Loaded from the cache or the committed assets; trained (minutes, resumable) if neither
    matches ``config``. Each call returns a fresh copy of the weights, so callers may modify it.
    """
    import copy

    from tokenworks.models.store import load_or_train

    config = config or LMTrainConfig()

    def _train(out: Path, run: Path) -> None:
        train_reference_lm(out, config, ckpt_dir=run, device=device)

    path = load_or_train("reference-lm", asdict(config), _train, train_if_missing=train_if_missing, command="tokenworks train reference-lm")
    model, tok = _load(str(path))
    return copy.deepcopy(model).to(device), tok
