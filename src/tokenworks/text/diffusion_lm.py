"""A small masked diffusion LM (MDLM / LLaDA-style) with per-position key-value control, and the
recipe of the checkpoint the ``lm-tokens`` suite samples from (P61 FreeCache, ``freecache.py``).

The network is a Llama (RMSNorm, rotary attention, SwiGLU) with **bidirectional** attention, one
extra input token ``[MASK]`` (id ``vocab_size``) and a tied output head over the real vocabulary.
It is hand-written rather than a ``transformers`` Llama because the samplers need what the HF
forward does not expose cleanly: recompute the hidden states of *some* positions only, while
attending to key/value projections of the other positions cached at an earlier denoising step
(:meth:`DiffusionLM.partial_forward`). Its parameter names and maths follow ``LlamaModel``,
so it starts from the committed reference LM's weights (:func:`from_causal_lm`; checked against
``LlamaForCausalLM`` in the tests, with a causal mask).

Training is the masked-diffusion objective (Sahoo et al. 2024; Nie et al. 2025): per sequence a
masking rate ``t ~ U(eps, 1)``, each token (except the first) replaced by ``[MASK]`` with
probability ``t``, cross-entropy on the masked tokens weighted ``1 / t`` (the ELBO), averaged
over all tokens. Like Dream (Ye et al. 2025), which adapts an AR model into a DLM, the logits
are *shifted*: the token at position ``i`` is read from the hidden state at ``i - 1``, so the
AR head's meaning is kept and adaptation takes few steps.

Reproduce the committed checkpoint (``assets/lm-tokens/p61-mdlm``)::

    tokenworks train diffusion-lm --out assets/lm-tokens/p61-mdlm
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_float, check_int, check_tensor

__all__ = ["DLMConfig", "DLMTrainConfig", "DiffusionLM", "diffusion_lm", "from_causal_lm", "masked_diffusion_loss", "train_diffusion_lm"]


@dataclass(kw_only=True)
class DLMConfig:
    """Shape of a :class:`DiffusionLM` (the reference LM's shape by default)."""

    vocab_size: int = 4096
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 384
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, min=2)
        check_int("hidden_size", self.hidden_size, min=2)
        check_int("layers", self.layers, min=1)
        check_int("heads", self.heads, min=1)
        if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 2:
            raise ValueError(f"hidden_size ({self.hidden_size}) must divide by heads ({self.heads}) into an even head size")
        check_int("intermediate_size", self.intermediate_size, min=1)
        check_float("rope_theta", self.rope_theta, min=0.0, min_open=True)
        check_float("rms_norm_eps", self.rms_norm_eps, min=0.0, min_open=True)


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class _Attention(nn.Module):
    def __init__(self, c: DLMConfig) -> None:
        super().__init__()
        D = c.hidden_size
        self.heads, self.head_dim = c.heads, D // c.heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(D, D, bias=False) for _ in range(4))


class _MLP(nn.Module):
    def __init__(self, c: DLMConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _Layer(nn.Module):
    def __init__(self, c: DLMConfig) -> None:
        super().__init__()
        self.self_attn = _Attention(c)
        self.mlp = _MLP(c)
        self.input_layernorm = _RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = _RMSNorm(c.hidden_size, c.rms_norm_eps)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class DiffusionLM(nn.Module):
    """Bidirectional Llama with a ``[MASK]`` token (see the module docstring)."""

    def __init__(self, config: DLMConfig) -> None:
        super().__init__()
        self.config = config
        self.mask_id = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size + 1, config.hidden_size)
        self.layers = nn.ModuleList(_Layer(config) for _ in range(config.layers))
        self.norm = _RMSNorm(config.hidden_size, config.rms_norm_eps)
        hd = config.hidden_size // config.heads
        self.register_buffer("inv_freq", 1.0 / config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd), persistent=False)

    def _rope(self, pos: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        f = pos.float()[:, None] * self.inv_freq[None]  # (Q, hd/2)
        emb = torch.cat((f, f), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def partial_forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: list[list[torch.Tensor]] | None = None, *, causal: bool = False,
                        key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:  # fmt: skip
        """Logits (B, Q, V) of the hidden states at ``positions`` (Q,) of ``ids`` (B, N).

        Only the positions listed are recomputed: at every layer their keys and values are
        written into ``cache`` (per layer ``[K, V]``, each (B, H, N, hd)) and their queries
        attend to the whole cache, where every other position keeps what an earlier call
        wrote. ``cache=None`` starts an empty cache and then requires all N positions.
        ``key_mask`` (N,) bool drops keys from attention (True = keep). Returns the logits and
        the (updated in place) cache. The logits at position ``i`` predict token ``i + 1``.
        """
        check_tensor("ids", ids, ndim=2, floating=False)
        B, N = ids.shape
        c = self.config
        H, hd = c.heads, c.hidden_size // c.heads
        if cache is None:
            if positions.numel() != N:
                raise ValueError(f"positions must list all {N} positions when there is no cache, got {positions.numel()}")
            dtype = self.embed_tokens.weight.dtype
            cache = [[ids.new_zeros((B, H, N, hd), dtype=dtype), ids.new_zeros((B, H, N, hd), dtype=dtype)] for _ in self.layers]
        h = self.embed_tokens(ids[:, positions])  # (B, Q, D)
        cos, sin = self._rope(positions, h.dtype)
        mask = None
        if causal:
            mask = positions[:, None] >= torch.arange(N, device=ids.device)[None]  # (Q, N)
        if key_mask is not None:
            km = key_mask[None].expand(len(positions), N)
            mask = km if mask is None else mask & km
        Q = len(positions)
        for layer, kv in zip(self.layers, cache):
            a = layer.self_attn
            x = layer.input_layernorm(h)
            q = a.q_proj(x).view(B, Q, H, hd).transpose(1, 2)
            k = a.k_proj(x).view(B, Q, H, hd).transpose(1, 2)
            v = a.v_proj(x).view(B, Q, H, hd).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            kv[0][:, :, positions] = k
            kv[1][:, :, positions] = v
            o = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)  # (B, H, Q, hd)
            h = h + a.o_proj(o.transpose(1, 2).reshape(B, Q, H * hd))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        h = self.norm(h)
        return F.linear(h, self.embed_tokens.weight[: c.vocab_size]), cache

    def forward(self, ids: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
        """Logits (B, N, V) of every position (logits at ``i`` predict token ``i + 1``)."""
        check_tensor("ids", ids, ndim=2, floating=False)
        return self.partial_forward(ids, torch.arange(ids.shape[1], device=ids.device), None, causal=causal)[0]


def from_causal_lm(lm) -> DiffusionLM:
    """A :class:`DiffusionLM` holding the weights of a ``LlamaForCausalLM`` (tied embeddings,
    no biases, as many KV heads as heads); the ``[MASK]`` row is the mean input embedding."""
    cfg = lm.config
    if getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) != cfg.num_attention_heads:
        raise ValueError("lm must have as many key-value heads as attention heads (no grouped-query attention)")
    theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    dlm = DiffusionLM(DLMConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, layers=cfg.num_hidden_layers, heads=cfg.num_attention_heads,
                                intermediate_size=cfg.intermediate_size, rope_theta=float(theta), rms_norm_eps=cfg.rms_norm_eps))  # fmt: skip
    sd = {k.removeprefix("model."): v.float() for k, v in lm.state_dict().items() if k.startswith("model.")}
    emb = sd.pop("embed_tokens.weight")
    sd["embed_tokens.weight"] = torch.cat([emb, emb.mean(0, keepdim=True)])
    dlm.load_state_dict(sd, strict=True)
    return dlm


def masked_diffusion_loss(model: DiffusionLM, batch: torch.Tensor, g: torch.Generator | None = None, *, eps: float = 1e-3) -> torch.Tensor:
    """The masked-diffusion ELBO on ``batch`` (B, N): rate ``t ~ U(eps, 1)`` per row, tokens 1..N-1
    masked with probability ``t``, cross-entropy of the masked tokens weighted ``1 / t``, mean over
    the (B, N - 1) maskable tokens. Shifted: token ``i`` is predicted at position ``i - 1``."""
    check_tensor("batch", batch, ndim=2, floating=False)
    B, N = batch.shape
    if N < 2:
        raise ValueError(f"batch must hold at least 2 tokens per row, got shape {tuple(batch.shape)}")
    dev = batch.device
    t = eps + (1 - eps) * torch.rand(B, 1, generator=g).to(dev)
    masked = torch.rand(B, N - 1, generator=g).to(dev) < t  # over tokens 1..N-1
    x = batch.clone()
    x[:, 1:][masked] = model.mask_id
    logits = model(x)[:, :-1]  # (B, N - 1, V): predictions of tokens 1..N-1
    ce = F.cross_entropy(logits[masked].float(), batch[:, 1:][masked], reduction="none")
    w = (1.0 / t).expand(B, N - 1)[masked]
    return (ce * w).sum() / (B * (N - 1))


@dataclass(kw_only=True)
class DLMTrainConfig:
    """Recipe of the committed diffusion LM: adapted from the reference LM on prose windows."""

    seq_len: int = 128
    batch_size: int = 16
    steps: int = 600
    lr: float = 1e-3
    warmup: int = 30
    seed: int = 0
    train_bytes: int | None = 4_000_000

    def __post_init__(self) -> None:
        check_int("seq_len", self.seq_len, min=2, max=8192)
        check_int("batch_size", self.batch_size, min=1)
        check_int("steps", self.steps, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("warmup", self.warmup, min=0, max=self.steps)
        check_int("seed", self.seed, min=0)
        if self.train_bytes is not None:
            check_int("train_bytes", self.train_bytes, min=1)


def train_diffusion_lm(out: str | Path, config: DLMTrainConfig | None = None, *, ckpt_dir=None, device: str = "cpu", fp16: bool = True) -> dict[str, Any]:
    """Adapt the reference LM into a :class:`DiffusionLM` and save it to ``out`` (safetensors +
    ``tokenworks.json`` with the loss history)."""
    from tokenworks.io import save_tensors
    from tokenworks.models import reference_lm
    from tokenworks.models.lm import prose_batches
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    config = config or DLMTrainConfig()
    lm, tok = reference_lm(train_if_missing=False)
    model = from_causal_lm(lm)
    base = prose_batches(tok, train_bytes=config.train_bytes, seq_len=config.seq_len - 1, batch_size=config.batch_size)

    def batches(step, g):
        return {"batch": base(step, g), "seed": int(torch.randint(0, 2**31, (1,), generator=g))}

    def loss_fn(m, b):
        return masked_diffusion_loss(m, b["batch"].to(device), torch.Generator().manual_seed(b["seed"]))

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=0.1, seed=config.seed, device=device, desc="diffusion LM", checkpoint_every=100)
    result = train(model, loss_fn, batches, tc, ckpt_dir=ckpt_dir)
    model = model.to("cpu").eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.half() if fp16 else v).contiguous() for k, v in model.state_dict().items()}
    save_tensors(out / "model.safetensors", sd)
    info = {"model": asdict(model.config), "train_loss": result.final_loss, "train_seconds": round(result.seconds, 1),
            "history": [[s, round(v, 4)] for s, v in result.history], "params": sum(p.numel() for p in model.parameters())}  # fmt: skip
    write_model_info(out, asdict(config), **info)
    return info


def diffusion_lm(*, config: DLMTrainConfig | None = None, device: str = "cpu", train_if_missing: bool = False) -> tuple[DiffusionLM, dict]:
    """``(model, info)``: the committed (or cached) diffusion LM, float32, eval mode."""
    from tokenworks.io import load_json, load_tensors
    from tokenworks.models.store import load_or_train

    config = config or DLMTrainConfig()

    def _train(out: Path, run: Path) -> None:
        train_diffusion_lm(out, config, ckpt_dir=run, device=device)

    path = load_or_train("lm-tokens/p61-mdlm", asdict(config), _train, train_if_missing=train_if_missing, command="tokenworks train diffusion-lm")
    info = load_json(path / "tokenworks.json", kind=dict)
    model = DiffusionLM(DLMConfig(**info["model"]))
    model.load_state_dict({k: v.float() for k, v in load_tensors(path / "model.safetensors").items()})
    return model.to(device).eval(), info


def ppl(nll: float) -> float:
    return math.exp(nll)
