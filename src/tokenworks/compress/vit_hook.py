"""Token reduction between the blocks of a ViT in timm's layout, with one line.

    with attach_vit(model, tw.create("tome", budget=0.25), layer=2):   # or h = attach_vit(...); h.detach()
        logits = model(images)                                          # the unchanged forward

``model`` is a ``timm.models.vision_transformer.VisionTransformer`` or any model of the same
layout: ``model.blocks[i]`` with ``.attn.qkv`` (a Linear to 3 x dim), ``.attn.num_heads``,
``.attn.scale`` (or head_dim), an ``attn.forward(x, attn_mask=None)``, a [CLS] token first in
the sequence and ``model.patch_embed.grid_size``. The project's own classifier
(:mod:`tokenworks.compress.scene_vit`) has that layout; timm itself is not a dependency (on
this project's CPU machines timm's required torchvision has no wheel for the pinned CPU torch).

How it hooks the model (nothing of the model is replaced; ``detach`` removes every hook):
- a forward hook on ``blocks[layer - 1].attn.qkv`` keeps that block's q, k, v output (a
  reference, no copy); from it the reducer's view computes, only when a reducer asks, the
  [CLS] row of the attention (one query against N keys) and ToMe's keys (mean over heads);
- a forward pre-hook on ``blocks[layer]`` hands the patch tokens (not [CLS]) to the reducer
  and returns [CLS] + the reduced tokens, so every later block runs on fewer tokens;
- every block's attention gets ``attn_mask`` from the hook once tokens were reduced: ``log
  size`` of each merged token (ToMe's proportional attention) and ``-inf`` on padding slots
  (rows that keep different counts), through the attention's own ``attn_mask`` argument, so
  sdpa (or timm's eager path) runs unchanged. Before any reduction no mask is passed: a budget
  that keeps everything leaves the forward bit-identical.
A reducer with a second stage (ToDRE) gets a pre-hook at each stage's block.
``handle.kept`` lists, per stage of the last forward, the tokens held per row (B,).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from tokenworks.checks import check_int
from tokenworks.compress.base import Reducer

__all__ = ["ViTCompression", "attach_vit"]


@dataclass
class _State:
    mask: torch.Tensor | None = None
    sizes: torch.Tensor | None = None
    grid: tuple[int, int] | None = None
    bias: torch.Tensor | None = None  # (B, 1, 1, 1 + N) additive attention mask
    qkv: dict[int, torch.Tensor] = field(default_factory=dict)
    kept: list[torch.Tensor] = field(default_factory=list)


class ViTCompression:
    """The attached hooks; a context manager. See the module docstring."""

    def __init__(self, model, reducer: Reducer, layer: int) -> None:
        blocks = getattr(model, "blocks", None)
        if blocks is None or not all(hasattr(getattr(b, "attn", None), "qkv") for b in blocks):
            raise TypeError(f"model must be a timm-style VisionTransformer (model.blocks[i].attn.qkv), got {type(model).__name__}")
        if not isinstance(reducer, Reducer):
            raise TypeError(f"reducer must be a tokenworks token reducer (tw.create(...)), got {type(reducer).__name__}")
        if "vit" not in reducer.hosts:
            raise ValueError(f"reducer {type(reducer).__name__} works inside a LLaVA LM only (tw.compress.attach), not in a ViT")
        depth = len(blocks)
        check_int("layer", layer, min=0 if not reducer.needs_attention else 1, max=depth - 1)
        for b in blocks:
            if "attn_mask" not in inspect.signature(b.attn.forward).parameters:
                raise TypeError(f"model's attention {type(b.attn).__name__}.forward takes no attn_mask (needed for padding and "
                                "proportional attention; timm >= 1.0 has it)")  # fmt: skip
        self.model, self.reducer, self.state, self.handles = model, reducer, _State(), []
        self.stages = reducer.stages(layer)
        for at, red in self.stages:
            check_int("layer", at, min=1 if red.needs_attention else 0, max=depth - 1)
        grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
        self.grid = tuple(grid) if grid is not None else None
        self.handles.append(blocks[0].register_forward_pre_hook(self._reset))
        for at, red in self.stages:
            if at >= 1:
                self.handles.append(blocks[at - 1].attn.qkv.register_forward_hook(self._keep_qkv(at)))
            self.handles.append(blocks[at].register_forward_pre_hook(self._reduce(at, red)))
        self._orig = []
        for b in blocks:
            self._orig.append((b.attn, b.attn.forward))
            b.attn.forward = self._masked(b.attn.forward)

    # ---- hooks
    def _reset(self, module, args):
        self.state = _State(grid=self.grid)

    def _keep_qkv(self, at: int):
        def hook(module, args, out):
            self.state.qkv[at] = out

        return hook

    def _masked(self, forward):
        def run(x, attn_mask=None, **kw):
            if attn_mask is None and self.state.bias is not None:
                attn_mask = self.state.bias.to(x.dtype)
            return forward(x, attn_mask=attn_mask, **kw)

        return run

    def _reduce(self, at: int, red: Reducer):
        blocks = self.model.blocks

        def hook(module, args):
            x = args[0]  # (B, 1 + N, D)
            attn = blocks[at - 1].attn if at >= 1 else None
            st = self.state

            def heads():
                qkv = st.qkv[at]
                B, T, _ = qkv.shape
                H = attn.num_heads
                qkv = qkv.reshape(B, T, 3, H, -1)
                q, k = qkv[:, :1, 0], qkv[:, :, 1]  # the [CLS] query (B, 1, H, Dh); keys (B, T, H, Dh)
                q = attn.q_norm(q) if hasattr(attn, "q_norm") else q  # timm's qk-norm acts on the head dim
                k = attn.k_norm(k) if hasattr(attn, "k_norm") else k
                return q, k

            def cls_attention():
                q, k = heads()
                scale = getattr(attn, "scale", q.shape[-1] ** -0.5)
                logits = torch.einsum("bqhd,bthd->bht", q.float(), k.float()) * scale  # (B, H, T): the [CLS] row only
                if st.bias is not None:
                    logits = logits + st.bias[:, 0].float()
                return logits.softmax(-1)[:, :, 1:].mean(1)

            def keys():
                return heads()[1][:, 1:].mean(2)

            after_attn = at >= 1  # before block 0 there is no attention yet: ToMe's metric is then the tokens
            out = red(x[:, 1:], mask=st.mask, sizes=st.sizes, attention=cls_attention if after_attn else None,
                      keys=keys if after_attn else None, grid=st.grid)  # fmt: skip
            st.kept.append(out.counts)
            if out.identity:
                return None
            st.mask, st.sizes, st.grid = out.mask, out.sizes, None
            if bool(out.mask.all()) and bool((out.sizes == 1).all()):
                st.bias = None
            else:
                b = torch.where(out.mask, out.sizes.clamp(min=1e-12).log(), float("-inf"))
                st.bias = torch.cat([b.new_zeros(b.shape[0], 1), b], 1)[:, None, None, :]
            return (torch.cat([x[:, :1], out.tokens], 1), *args[1:])

        return hook

    # ---- public
    @property
    def kept(self) -> list[torch.Tensor]:
        return self.state.kept

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        for attn, fwd in self._orig:
            if "forward" in attn.__dict__:
                del attn.forward
        self.handles, self._orig = [], []

    def __enter__(self) -> ViTCompression:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()


def attach_vit(model, reducer: Reducer, layer: int = 2) -> ViTCompression:
    """Reduce the patch tokens before ``model.blocks[layer]`` (after ``layer`` blocks ran)."""
    return ViTCompression(model, reducer, layer)
