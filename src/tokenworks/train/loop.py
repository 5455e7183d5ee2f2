"""The training loop every tokenworks model uses.

``train(model, loss_fn, batch_fn, config, ckpt_dir=...)`` runs AdamW with linear warm-up and
cosine decay, shows a Rich progress bar, writes a checkpoint atomically every
``checkpoint_every`` steps and resumes from it when called again after being killed.

Reproducibility: the batch for step ``s`` comes from ``batch_fn(s, generator)`` with a
generator seeded from ``(seed, s)``, and the global RNG (dropout, sampling inside the model) is
re-seeded from ``(seed, s)`` before each step. A run interrupted and resumed therefore ends
with the same weights as one that was never interrupted (the caller seeds the model's
initialisation with the same seed before building it: every tokenworks trainer does).

A checkpoint is a folder written through :func:`tokenworks.io.atomic_dir`: a SIGKILL at any
moment leaves either the previous checkpoint or the new one, and the next write removes the
killed process's temporaries. A checkpoint that cannot be read (a damaged ``state.json``,
weights or optimizer state; the optimizer state is loaded with ``weights_only=True``, so a
crafted pickle is refused, never run) is reported with a warning and training starts over.

Under ``torchrun`` (``torch.distributed`` initialized) the model is wrapped in
``DistributedDataParallel``, each rank draws its own batches (the generator is seeded with
the rank too) and only rank 0 writes checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tokenworks.checks import FileFormatError, check_device, check_float, check_int
from tokenworks.io import atomic_dir, clean_stale, load_json, load_tensors, save_tensors

__all__ = ["TrainConfig", "TrainResult", "batch_generator", "progress_enabled", "train"]


@dataclass(kw_only=True)
class TrainConfig:
    """Options of the training loop."""

    steps: int
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    device: str = "cpu"
    desc: str = "training"

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_float("min_lr_ratio", self.min_lr_ratio, min=0.0, max=1.0)
        check_int("warmup", self.warmup, min=0, max=self.steps)
        check_float("weight_decay", self.weight_decay, min=0.0)
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, min=0.0, min_open=True)
        check_int("seed", self.seed, min=0)
        check_int("checkpoint_every", self.checkpoint_every, min=0)
        check_device("device", self.device)
        self.betas = tuple(self.betas)  # JSON round-trips tuples as lists

    def lr_at(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed (the device may change)."""
        d = asdict(self)
        d.pop("device")
        d.pop("desc")
        d.pop("checkpoint_every")
        d["betas"] = list(d["betas"])
        return d


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    history: list[tuple[int, float]] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0


def progress_enabled() -> bool:
    return os.environ.get("TOKENWORKS_PROGRESS", "1") != "0"


def batch_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator a training step draws its batch from (a function of seed, step, rank)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 131 + rank)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _write_checkpoint(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    with atomic_dir(ckpt, owned=True, arg="checkpoint") as tmp:
        save_tensors(tmp / "model.safetensors", model.state_dict())
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))


def _read_state(ckpt: Path) -> dict | None:
    """The checkpoint's ``state.json`` if it is well-formed, else None (with a warning)."""
    try:
        state = load_json(ckpt / "state.json", kind=dict)
        ok = isinstance(state.get("config"), dict) and isinstance(state.get("step"), int) and state["step"] >= 0
        ok = ok and isinstance(state.get("history"), list) and all(isinstance(h, list) and len(h) == 2 for h in state["history"])
        if not ok:
            raise FileFormatError(str(ckpt / "state.json"), "is not a training state (expected config, step, history)")
        return state
    except ValueError as e:
        warnings.warn(f"checkpoint {ckpt} cannot be read ({e}); training starts over", stacklevel=3)
        return None


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor | tuple[torch.Tensor, dict[str, float]]],
    batch_fn: Callable[[int, torch.Generator], Any],
    config: TrainConfig,
    *,
    ckpt_dir: str | os.PathLike | None = None,
    params: list[nn.Parameter] | list[dict] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.steps`` steps and return the loss history.

    ``batch_fn(step, generator)`` returns a batch (tensors on any device; they are moved to
    ``config.device`` by ``loss_fn`` or here when the batch is a tensor / tuple of tensors).
    ``loss_fn(model, batch)`` returns the loss, or ``(loss, {"name": value})``.
    ``params`` restricts the optimizer to some parameters (default: those that require grad); it may
    also be optimizer parameter groups (dicts with ``params``), each with an optional ``lr_scale``
    that multiplies the scheduled learning rate for that group.
    With ``ckpt_dir``, ``ckpt_dir/checkpoint`` is written every ``checkpoint_every`` steps and
    resumed from if present (its config must match, else a ValueError says so).
    """
    device = torch.device(config.device)
    model.to(device)
    model.train()
    trainable = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("train: the model has no trainable parameters")
    opt = torch.optim.AdamW(trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    rank = _rank()
    net: nn.Module = model
    if dist.is_available() and dist.is_initialized():
        net = nn.parallel.DistributedDataParallel(model)

    start, history = 0, []
    ckpt = Path(ckpt_dir) / "checkpoint" if ckpt_dir is not None else None
    if ckpt is not None:
        clean_stale(ckpt)
    if ckpt is not None and (ckpt / "state.json").is_file():
        state = _read_state(ckpt)
        if state is not None and state["config"] != config.fingerprint():
            raise ValueError(
                f"checkpoint {ckpt} was written with another training config "
                f"({state['config']}); delete it or use another ckpt_dir"
            )
        if state is not None:
            model_state = {k: v.clone() for k, v in model.state_dict().items()}
            try:
                model.load_state_dict(load_tensors(ckpt / "model.safetensors", device))
                opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
                start, history = state["step"], [tuple(h) for h in state["history"]]
            except Exception as e:  # noqa: BLE001 - a damaged checkpoint of ours: start over, say so
                model.load_state_dict(model_state)
                opt = torch.optim.AdamW(trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
                warnings.warn(f"checkpoint {ckpt} cannot be read ({type(e).__name__}: {e}); training starts over", stacklevel=2)

    show = progress if progress is not None else progress_enabled()
    t0 = time.perf_counter()
    loss_value = history[-1][1] if history else float("nan")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), disable=not show or rank != 0,
    )  # fmt: skip
    with bar:
        task = bar.add_task(config.desc, total=config.steps, completed=start, loss=loss_value)
        for step in range(start, config.steps):
            torch.manual_seed(config.seed * 7_919 + step)
            batch = batch_fn(step, batch_generator(config.seed, step, rank))
            batch = _to(batch, device)
            for g in opt.param_groups:
                g["lr"] = config.lr_at(step) * g.get("lr_scale", 1.0)
            out = loss_fn(net, batch)
            loss = out[0] if isinstance(out, tuple) else out
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{config.desc}: loss is {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], config.grad_clip)
            opt.step()
            loss_value = loss.item()
            history.append((step + 1, loss_value))
            bar.update(task, advance=1, loss=loss_value)
            done = step + 1
            if ckpt is not None and rank == 0 and config.checkpoint_every and (
                done % config.checkpoint_every == 0 or done == config.steps
            ):
                _write_checkpoint(ckpt, model, opt, {"step": done, "config": config.fingerprint(), "history": history})
    model.eval()
    return TrainResult(
        steps=config.steps, final_loss=loss_value, history=history, resumed_from=start,
        seconds=time.perf_counter() - t0,
    )  # fmt: skip


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch
