"""P11 Matryoshka Query Transformer (MQT): one resampler whose first m of its M latent queries
work for every m <= M.

A query transformer turns the N patch tokens into m tokens: m learned queries cross-attend to
the tokens (pre-norm cross-attention + MLP, residual on the queries) and replace them. MQT
trains it with a random m at every step (the first m queries only), so one model serves every
budget; the control is a separate resampler trained at each fixed m.

Here the resampler sits inside the benchmark's scene ViT (:mod:`tokenworks.compress.scene_vit`)
before block ``layer``: ``[CLS]`` + the m query outputs go on through the frozen later blocks.
Only the resampler is trained (the ViT is frozen), on the same scenes and loss as the ViT.

Deviations from MQT-LLaVA: there the query transformer feeds an LLM and is trained with it
(instruction data, m drawn from a set of sizes); here it feeds the rest of a frozen ViT
classifier and m is drawn uniformly from 1..M. The queries do not attend to each other (no
self-attention among queries), so the output of query i does not depend on how many others run:
the first m outputs are exactly a prefix of the M outputs (tested); MQT's query transformer has
query self-attention, where the prefix property holds only through training.

Reproduce the committed resamplers (assets/compress/mqt-*, fp16)::

    tokenworks train scene-mqt --out assets/compress
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import ArgumentError, check_float, check_int, check_tensor
from tokenworks.registry import register

__all__ = ["MQT", "MQTConfig", "mqt_models", "train_mqt"]

MQT_SIZES = (10, 22, 49, 98)  # keep 5 / 11 / 25 / 50% of 196 patch tokens


@register("mqt", paper="P11", kind="token_resampler")
class MQT(nn.Module):
    """Query transformer with ``max_queries`` latent queries; ``forward(tokens, m)`` -> (B, m, D)."""

    kind = "token_resampler"

    def __init__(self, *, dim: int = 48, max_queries: int = 98, heads: int = 4, mlp_ratio: int = 2) -> None:
        super().__init__()
        check_int("dim", dim, min=2)
        check_int("max_queries", max_queries, min=1)
        check_int("heads", heads, min=1)
        if dim % heads:
            raise ArgumentError("heads", f"must divide dim ({dim}), got {heads}")
        check_int("mlp_ratio", mlp_ratio, min=1)
        self.dim, self.max_queries, self.heads = dim, max_queries, heads
        self.queries = nn.Parameter(torch.randn(max_queries, dim) * 0.02)
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, tokens: torch.Tensor, m: int | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, N, dim), ``m`` queries (default all), ``mask`` (B, N) real tokens -> (B, m, dim)."""
        check_tensor("tokens", tokens, ndim=3, floating=True)
        if tokens.shape[-1] != self.dim:
            raise ArgumentError("tokens", f"must have {self.dim} features, got {tokens.shape[-1]}")
        m = self.max_queries if m is None else check_int("m", m, min=1, max=self.max_queries)
        B, N, _ = tokens.shape
        H, Dh = self.heads, self.dim // self.heads
        q0 = self.queries[:m].expand(B, m, self.dim)
        q = self.q(self.norm_q(q0)).view(B, m, H, Dh).transpose(1, 2)  # (B, H, m, Dh)
        k, v = self.kv(self.norm_kv(tokens)).view(B, N, 2, H, Dh).permute(2, 0, 3, 1, 4)  # (B, H, N, Dh) each
        bias = None if mask is None else torch.where(mask, 0.0, float("-inf")).to(q.dtype)[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, m, self.dim)
        h = q0 + self.proj(a)
        return h + self.mlp(self.norm_mlp(h))

    def attach(self, model, m: int, layer: int = 2):
        """Replace the patch tokens of a timm-layout ViT by ``m`` query outputs before
        ``model.blocks[layer]``; returns the hook handle (``.remove()``)."""
        check_int("m", m, min=1, max=self.max_queries)
        check_int("layer", layer, min=0, max=len(model.blocks) - 1)

        def hook(module, args):
            x = args[0]
            return (torch.cat([x[:, :1], self(x[:, 1:], m)], 1), *args[1:])

        return model.blocks[layer].register_forward_pre_hook(hook)


@dataclass(kw_only=True)
class MQTConfig:
    """A resampler's recipe: ``fixed_m`` None trains MQT (random m in 1..max_queries each step)."""

    max_queries: int = 98
    fixed_m: int | None = None
    layer: int = 2
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("max_queries", self.max_queries, min=1)
        if self.fixed_m is not None:
            check_int("fixed_m", self.fixed_m, min=1, max=self.max_queries)
        check_int("layer", self.layer, min=0)
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("seed", self.seed, min=0)

    def fingerprint(self, vit_fingerprint: dict) -> dict:
        return {"recipe": "scene-mqt-v1", **asdict(self), "vit": vit_fingerprint}


def train_mqt(out: str | Path, vit, config: MQTConfig, *, ckpt_dir=None, fp16: bool = True) -> dict:
    """Train one resampler inside the frozen scene ViT; save it with its fingerprint."""
    from tokenworks.data.scenes import make_scenes
    from tokenworks.io import save_tensors
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    torch.manual_seed(config.seed)
    vit = vit.eval().requires_grad_(False)
    mqt = MQT(dim=vit.config.dim, max_queries=config.max_queries, heads=vit.config.heads)
    grid, empty = vit.config.grid, vit.config.empty

    def batch_fn(step, g):
        x, y = make_scenes(config.batch_size, split="train", grid=grid, empty=empty, generator=g)
        m = config.fixed_m or int(torch.randint(1, config.max_queries + 1, (1,), generator=g))
        return x, y, m

    def loss_fn(model, batch):
        x, y, m = batch
        handle = model.attach(vit, m, config.layer)
        try:
            return F.cross_entropy(vit(x).flatten(0, 1), y.flatten())
        finally:
            handle.remove()

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(30, config.steps), seed=config.seed, desc=f"MQT (m={config.fixed_m or 'random'})")
    result = train(mqt, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    save_tensors(Path(out) / "model.safetensors", {k: (v.half() if fp16 else v) for k, v in mqt.state_dict().items()})
    write_model_info(out, config.fingerprint(vit.config.fingerprint()), train_loss=result.final_loss, train_seconds=round(result.seconds, 1))
    return {"train_loss": result.final_loss}


def _name(config: MQTConfig) -> str:
    return "compress/mqt-" + ("random" if config.fixed_m is None else f"fixed-{config.fixed_m}")


def mqt_configs(sizes: tuple[int, ...] = MQT_SIZES, **kw) -> list[MQTConfig]:
    """MQT (random m up to the largest size) and one fixed-m control per size."""
    return [MQTConfig(max_queries=max(sizes), **kw)] + [MQTConfig(max_queries=m, fixed_m=m, **kw) for m in sizes]


def mqt_models(vit, configs: list[MQTConfig] | None = None, *, train_if_missing: bool = True) -> dict[str, MQT]:
    """{"random": MQT, "fixed-10": ..., ...}: the committed (or cached, or freshly trained) resamplers."""
    from tokenworks.io import load_tensors
    from tokenworks.models.store import load_model

    out = {}
    for c in configs or mqt_configs():

        def load(path: Path, c=c) -> MQT:
            m = MQT(dim=vit.config.dim, max_queries=c.max_queries, heads=vit.config.heads)
            m.load_state_dict({k: v.float() for k, v in load_tensors(path / "model.safetensors").items()})
            return m.eval().requires_grad_(False)

        def train_fn(o: Path, run: Path, c=c) -> None:
            train_mqt(o, vit, c, ckpt_dir=run)

        out[_name(c).split("mqt-", 1)[1]] = load_model(_name(c), c.fingerprint(vit.config.fingerprint()), load, train_fn,
                                                       train_if_missing=train_if_missing, command="tokenworks train scene-mqt")  # fmt: skip
    return out
