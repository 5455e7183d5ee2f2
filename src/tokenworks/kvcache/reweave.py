"""P42 Contextual Memory Reweaving (layered latent state reconstruction) on a Hugging Face Llama.

    rw = tw.create("memory_reweaving", capture_layers=(1, 3, 4), target_layer=5)
    model = rw.attach(lm)             # lm + the reweaving module; lm's weights are not touched
    logits = model(input_ids).logits  # the same call as the LM's

Mechanism (the paper gives no code; every choice below is ours, written down as the issue asks):

- *Capture.* The output hidden states of the decoder layers ``capture_layers`` (0-based) are
  kept for every position of the sequence: the layered latent memory.
- *Reconstruction.* Each captured layer ``c`` has its own RMSNorm and key / value projections
  (``d -> dim``); the memory is the union over layers and positions, so one token can draw
  on several depths of the same earlier token.
- *Reweaving.* At the input of decoder layer ``target_layer`` (which must come after every
  capture layer) each position queries the memory with multi-head attention (``heads``, no
  positional encoding: a content match, so distance costs nothing), causally (position ``t``
  sees memory of positions ``<= t``), and the result, projected back to ``d`` by a
  zero-initialised linear map, is added to the residual stream. A zero output map makes the
  freshly attached model *exactly* the base model, so training starts from it.
- Trained: only the reweaving parameters; the LM is frozen (the paper adds the mechanism to a
  pre-trained LLM). Recipe: :func:`train_reweaving` on the KV task model's own mixture.
- The memory lives for one forward call (no state across calls): evaluation re-runs the whole
  prefix, as the KV-cache suite's retrieval probe does. ``enabled=False`` removes the hooks'
  effect, giving the base model exactly (tested).

Measured here (``lm-tokens --quick``): trained modules lower the task loss only slightly (5.15 ->
5.07 nats over 150 steps, the same for the control) and change no retrieval answer: recall 0.94
overall, 0.67 beyond 1024 tokens, 0.91 on rare values for the base, the control and reweaving
alike (3 seeds); overhead 1.6-2.1x wall time per token on CPU, 33k added parameters.

Reproduce the committed modules (``assets/lm-tokens/p42-*``, 3 seeds per arm)::

    tokenworks train reweaving --method memory_reweaving --seed 0 --out assets/lm-tokens/p42-memory-reweaving-s0

Baseline ``reweave_control``: the same block reading only the states right before the
target layer (one captured layer, the width doubled to hold the parameter count): an extra
attention block without the *layered* memory, trained by the same recipe: the control that
changes one thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.registry import register

__all__ = ["MemoryReweaving", "ReweaveConfig", "ReweaveModel", "SameLayerReweaving", "preset_name", "reweave_model", "train_reweaving"]


class _RMS(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


class Reweaver(nn.Module):
    """The reweaving parameters: per captured layer a norm + key/value maps; a query map and a
    zero-initialised output map at the target layer."""

    def __init__(self, d: int, n_capture: int, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.mem_norm = nn.ModuleList(_RMS(d) for _ in range(n_capture))
        self.k = nn.ModuleList(nn.Linear(d, dim, bias=False) for _ in range(n_capture))
        self.v = nn.ModuleList(nn.Linear(d, dim, bias=False) for _ in range(n_capture))
        self.q_norm = _RMS(d)
        self.q = nn.Linear(d, dim, bias=False)
        self.out = nn.Linear(dim, d, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, h: torch.Tensor, memory: list[torch.Tensor]) -> torch.Tensor:
        """``h`` (B, T, d) plus what it reads from ``memory`` (C tensors (B, T, d))."""
        B, T, _ = h.shape
        H, hd = self.heads, self.dim // self.heads
        q = self.q(self.q_norm(h)).view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        ks = torch.cat([k(n(m)) for k, n, m in zip(self.k, self.mem_norm, memory)], 1)  # (B, C*T, dim)
        vs = torch.cat([v(n(m)) for v, n, m in zip(self.v, self.mem_norm, memory)], 1)
        ks = ks.view(B, -1, H, hd).transpose(1, 2)
        vs = vs.view(B, -1, H, hd).transpose(1, 2)
        causal = torch.arange(T, device=h.device)[:, None] >= torch.arange(T, device=h.device)[None]  # (T, T)
        mask = causal.repeat(1, len(memory))  # (T, C*T): memory column j*T + s is position s
        o = F.scaled_dot_product_attention(q, ks, vs, attn_mask=mask)  # (B, H, T, hd)
        return h + self.out(o.transpose(1, 2).reshape(B, T, self.dim))


class ReweaveModel(nn.Module):
    """A causal LM with a :class:`Reweaver` hooked into its decoder layers; called like the LM."""

    def __init__(self, lm: nn.Module, method: MemoryReweaving) -> None:
        super().__init__()
        self.lm = lm
        self.method = method
        d = lm.config.hidden_size
        self.reweaver = Reweaver(d, len(method.capture_layers), method.dim, method.heads)
        self._memory: dict[int, torch.Tensor] = {}
        layers = lm.model.layers
        for i in method.capture_layers:
            layers[i].register_forward_hook(self._capture_hook(i))
        layers[method.target_layer].register_forward_pre_hook(self._reweave_hook)

    @property
    def config(self):
        return self.lm.config

    def _capture_hook(self, i: int):
        def hook(module, args, output):
            if self.method.enabled:
                self._memory[i] = output[0] if isinstance(output, tuple) else output

        return hook

    def _reweave_hook(self, module, args):
        if not self.method.enabled:
            return None
        memory = [self._memory.pop(i) for i in self.method.capture_layers]
        return (self.reweaver(args[0], memory), *args[1:])

    def forward(self, input_ids: torch.Tensor, **kw: Any):
        if kw.get("past_key_values") is not None or kw.get("use_cache"):
            raise ValueError("use_cache must be False: the reweaving memory lives for one forward call (re-run the prefix)")
        self._memory.clear()
        try:
            return self.lm(input_ids=input_ids, use_cache=False, **kw)
        finally:
            self._memory.clear()


@register("memory_reweaving", paper="P42")
@dataclass(kw_only=True)
class MemoryReweaving:
    """Layered latent memory re-woven into a later layer (see the module docstring)."""

    kind: ClassVar[str] = "lm_memory"

    capture_layers: tuple[int, ...] = (1, 3, 4)
    target_layer: int = 5
    dim: int = 32
    heads: int = 2
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.capture_layers, (tuple, list)) or not self.capture_layers:
            raise ValueError(f"capture_layers must be a non-empty tuple of layer indices, got {self.capture_layers!r}")
        self.capture_layers = tuple(check_int("capture_layers", int(c), min=0) if isinstance(c, int) else c for c in self.capture_layers)
        check_int("target_layer", self.target_layer, min=1)
        if max(self.capture_layers) >= self.target_layer:
            raise ValueError(f"capture_layers {self.capture_layers} must all come before target_layer ({self.target_layer})")
        check_int("dim", self.dim, min=1)
        check_int("heads", self.heads, min=1)
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must divide by heads ({self.heads})")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be True or False, got {self.enabled!r}")

    def attach(self, lm: nn.Module) -> ReweaveModel:
        """``lm`` (a Llama-like causal LM with ``model.layers``) with the reweaving module."""
        layers = getattr(getattr(lm, "model", None), "layers", None)
        if layers is None:
            raise TypeError(f"lm must be a Llama-like causal LM with model.layers, got {type(lm).__name__}")
        if self.target_layer >= len(layers):
            raise ValueError(f"target_layer must be below the LM's {len(layers)} layers, got {self.target_layer}")
        return ReweaveModel(lm, self)


@register("reweave_control", family="KV", cite="control for P42: one extra attention block over the states right before the target layer")
@dataclass(kw_only=True)
class SameLayerReweaving(MemoryReweaving):
    """Baseline: reweaving from the layer right before the target only, width doubled (equal
    parameters to the 3-layer memory at dim 32)."""

    capture_layers: tuple[int, ...] = (4,)
    dim: int = 64
    heads: int = 2


# ------------------------------------------------------------------ training
@dataclass(kw_only=True)
class ReweaveConfig:
    """Recipe: the reweaving module on the frozen KV task model, its own mixture at one stage."""

    method: str = "memory_reweaving"
    seq_len: int = 768
    batch_size: int = 4
    max_gap: int = 64
    steps: int = 150
    lr: float = 3e-3
    warmup: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        import tokenworks as tw

        if tw.get(self.method).kind != "lm_memory":
            raise ValueError(f"method must be a reweaving method (memory_reweaving, reweave_control), got {self.method!r}")
        check_int("seq_len", self.seq_len, min=16, max=8192)
        check_int("batch_size", self.batch_size, min=1)
        check_int("max_gap", self.max_gap, min=1)
        check_int("steps", self.steps, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("warmup", self.warmup, min=0, max=self.steps)
        check_int("seed", self.seed, min=0)


def train_reweaving(out: str | Path, config: ReweaveConfig, *, ckpt_dir=None, device: str = "cpu", fp16: bool = True, base=None) -> dict:
    """Train the reweaving parameters on the frozen task model; save them (safetensors +
    ``tokenworks.json``) in ``out``. ``base``: ``(lm, tokenizer)`` (default: the KV task model)."""
    import tokenworks as tw
    from tokenworks.io import save_tensors
    from tokenworks.kvcache.task_model import TaskModelConfig, _batch_fn, _loss, task_model
    from tokenworks.kvcache.tasks import prose_stream, task_vocab
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    lm, tok = base if base is not None else task_model(train_if_missing=False)
    for p in lm.parameters():
        p.requires_grad_(False)
    torch.manual_seed(config.seed)
    model = tw.create(config.method).attach(lm)
    tm = TaskModelConfig(stages=((config.steps, config.seq_len, config.batch_size, config.max_gap),), warmup=0)  # the batches only
    batch_fn = _batch_fn(tm, task_vocab(tok), prose_stream(tok, "train"))

    class _Wrap(nn.Module):  # the task model's loss calls model.model / model.lm_head
        def __init__(self, m):
            super().__init__()
            self.m = m
            self.model = m.lm.model
            self.lm_head = m.lm.lm_head

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=0.0, seed=config.seed, device=device, desc=f"{config.method}", checkpoint_every=100)
    result = train(_Wrap(model), _loss, batch_fn, tc, ckpt_dir=ckpt_dir, params=list(model.reweaver.parameters()))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / "reweaver.safetensors", {k: (v.half() if fp16 else v) for k, v in model.reweaver.state_dict().items()})
    info = {"train_loss": result.final_loss, "train_seconds": round(result.seconds, 1), "history": [[s, round(v, 4)] for s, v in result.history],
            "params": sum(p.numel() for p in model.reweaver.parameters()), "options": asdict(model.method)}  # fmt: skip
    write_model_info(out, asdict(config), **info)
    return info


def preset_name(config: ReweaveConfig) -> str:
    """The folder name of a recipe: ``p42-memory-reweaving-s0`` / ``p42-reweave-control-s1``."""
    return f"p42-{config.method.replace('_', '-')}-s{config.seed}"


def reweave_model(config: ReweaveConfig, *, device: str = "cpu", train_if_missing: bool = False) -> tuple[ReweaveModel, Any, dict]:
    """``(model, tokenizer, info)``: the task model with the trained reweaving module of ``config``."""
    import tokenworks as tw
    from tokenworks.io import load_json, load_tensors
    from tokenworks.kvcache.task_model import task_model
    from tokenworks.models.store import load_or_train

    name = f"lm-tokens/{preset_name(config)}"

    def _train(out: Path, run: Path) -> None:
        train_reweaving(out, config, ckpt_dir=run, device=device)

    path = load_or_train(name, asdict(config), _train, train_if_missing=train_if_missing,
                         command=f"tokenworks train reweaving --method {config.method} --seed {config.seed}")  # fmt: skip
    lm, tok = task_model(device=device, train_if_missing=False)
    model = tw.create(config.method).attach(lm)
    model.reweaver.load_state_dict({k: v.float() for k, v in load_tensors(path / "reweaver.safetensors").items()})
    return model.to(device).eval(), tok, load_json(path / "tokenworks.json", kind=dict)
