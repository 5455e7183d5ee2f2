"""Token reduction in a Hugging Face ``LlavaForConditionalGeneration``, with one line.

    with tw.compress.attach(model, "todre", keep=0.25):             # or attach(model, reducer, layer=K)
        out = model(input_ids=ids, pixel_values=px)                  # the unchanged forward / generate

``layer=0`` (default) reduces the projected visual tokens before the LM; ``layer=K >= 1``
reduces them inside the LM before decoder layer K, FastV style. Nothing of the model is
replaced: forward (pre-)hooks with kwargs, all removed by ``detach`` / leaving the ``with``.

Mechanics (all on the LM's own arguments, so ``generate`` with a KV cache works unchanged):
- a pre-hook on ``model.model`` keeps ``input_ids`` (to find the ``<image>`` slots: every row
  must hold the same number of them, at the same offset);
- before the LM (layer 0): the visual slice of ``inputs_embeds`` goes through the reducer;
  the sequence becomes prefix + kept slots (padded to the longest row, masked) + suffix; each
  kept token keeps its *original* position id (merged ones: the smallest index sent to the slot);
- inside the LM (layer K): a pre-hook on ``layers[K]`` cuts ``hidden_states``, the rotary
  ``position_embeddings`` and the mask the same way and every later layer gets the cut
  arguments (its KV cache then holds fewer entries than the earlier layers'); the attention
  mask for those layers is rebuilt (bool for sdpa, additive for eager);
- decode steps (a KV cache exists, no image): the 2-D attention mask is replaced by the kept
  slots' mask + the new tokens, position ids continue the original numbering.
Attention scores are computed only where a reducer reads them: FastV's last-text-token row at
layer K-1 (one query against all keys, from a pre-hook on that layer's ``self_attn`` that keeps
its normed input), and the vision tower's [CLS] row at its last layer for layer-0 reducers
that read ``cls_attention`` (ToDRE's first center, P54, ``cls_attention``).
Supported ``attn_implementation``: ``sdpa`` and ``eager`` (others are refused, naming it).
Merged tokens inside the LM carry no proportional attention (sizes are not used there).
ToDRE's second stage (P63's task relevance) runs at ``relevance_layer`` of the LM, scored by
the last text token's attention. P59's FFN skipping (:class:`~tokenworks.compress.ima.IMAFFNSkip`)
keeps every token and skips the FFN of the visual tokens that changed least in the layer before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tokenworks.checks import ArgumentError, check_int
from tokenworks.compress.base import Reducer

__all__ = ["LlavaCompression", "attach"]

SUPPORTED_ATTENTION = ("sdpa", "eager")


@dataclass
class _State:
    ids: torch.Tensor | None = None
    active: bool = False
    prefill: bool = False
    start: int = 0
    n_img: int = 0
    mask2d: torch.Tensor | None = None  # (B, L') real slots of the sequence held in layers < K cache
    pos: torch.Tensor | None = None  # (B, L') original position ids of those slots
    img: torch.Tensor | None = None  # (B, L') bool: visual slots
    next_pos: torch.Tensor | None = None  # (B,) original position after the prompt
    deep: dict[int, dict] = field(default_factory=dict)  # per cut layer: mask2d, pos, img after the cut
    cut_kwargs: dict | None = None  # kwargs handed to layers after a cut
    normed: dict[int, tuple] = field(default_factory=dict)  # layer -> (normed input, position_embeddings)
    cls_in: torch.Tensor | None = None
    kept: list[torch.Tensor] = field(default_factory=list)
    change: dict[int, torch.Tensor] = field(default_factory=dict)
    ffn_skipped: int = 0  # visual token x layer FFN calls skipped in the last prefill


def _rot(x, cos, sin):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    q, _ = apply_rotary_pos_emb(x, x, cos, sin)
    return q


class LlavaCompression:
    """The attached hooks; a context manager. See the module docstring."""

    def __init__(self, model, reducer: Reducer, layer: int = 0) -> None:
        inner = getattr(model, "model", None)
        if getattr(inner, "vision_tower", None) is None or getattr(inner, "language_model", None) is None:
            raise ArgumentError("model", f"must be a LlavaForConditionalGeneration with a vision tower, got {type(model).__name__}")
        if not isinstance(reducer, Reducer) or "llava" not in reducer.hosts:
            raise ArgumentError("reducer", f"must be a tokenworks token reducer (tw.create(...)), got {type(reducer).__name__}")
        lm = inner.language_model
        impl = lm.config._attn_implementation
        if impl not in SUPPORTED_ATTENTION:
            raise ArgumentError("attn_implementation", f"must be one of {SUPPORTED_ATTENTION} for token reduction, got {impl!r}")
        depth = len(lm.layers)
        check_int("layer", layer, min=0, max=depth - 1)
        self.model, self.lm, self.reducer, self.impl = model, lm, reducer, impl
        self.image_token = model.config.image_token_index
        self.stages = reducer.llava_stages(layer) if hasattr(reducer, "llava_stages") else reducer.stages(layer)
        for at, red in self.stages:
            check_int("layer", at, min=0, max=depth - 1)
            if at >= 1 and red.needs_grid:
                raise ArgumentError("layer", f"{type(red).__name__} pools the unreduced grid: only layer=0 (before the LM)")
        self.state = _State()
        h = [inner.register_forward_pre_hook(self._keep_ids, with_kwargs=True),
             lm.register_forward_pre_hook(self._lm_pre, with_kwargs=True)]  # fmt: skip
        self.cut_layers = sorted({at for at, r in self.stages if at >= 1 and not getattr(r, "skips_ffn", False)})
        self.ffn = [(at, red) for at, red in self.stages if getattr(red, "skips_ffn", False)]
        for at in self.cut_layers:
            h.append(lm.layers[at - 1].self_attn.register_forward_pre_hook(self._keep_normed(at - 1), with_kwargs=True))
        first = min(self.cut_layers, default=None)
        if first is not None:
            for i in range(first, depth):
                h.append(lm.layers[i].register_forward_pre_hook(self._layer_pre(i), with_kwargs=True))
        self._orig = []
        for at, red in self.ffn:
            if at < 1:
                raise ArgumentError("layer", f"{type(red).__name__} skips FFNs inside the LM: give layer >= 1")
            for i in range(at, depth):
                h.append(lm.layers[i - 1].register_forward_hook(self._change(i), with_kwargs=True))
                mlp = lm.layers[i].mlp
                self._orig.append(mlp)
                mlp.forward = self._skip(i, red, mlp.forward)
        if any(at == 0 and r.needs_attention for at, r in self.stages):
            vis = inner.vision_tower.vision_model.encoder.layers
            f = model.config.vision_feature_layer
            f = f if f >= 0 else len(vis) + 1 + f
            h.append(vis[f - 1].self_attn.register_forward_pre_hook(self._keep_cls_in, with_kwargs=True))
            self.vis_attn = vis[f - 1].self_attn
        self.handles = h

    # ---- hooks
    def _keep_ids(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if kwargs.get("pixel_values") is not None and ids is not None:
            self.state = _State(ids=ids)
        return None

    def _keep_cls_in(self, module, args, kwargs):
        self.state.cls_in = kwargs.get("hidden_states", args[0] if args else None)

    def _cls_attention(self):
        a, x = self.vis_attn, self.state.cls_in
        B, T, _ = x.shape
        H, Dh = a.num_heads, a.head_dim
        q = a.q_proj(x[:, :1]).view(B, 1, H, Dh)
        k = a.k_proj(x).view(B, T, H, Dh)
        p = (torch.einsum("bqhd,bthd->bht", q.float(), k.float()) * a.scale).softmax(-1)
        return p[:, :, 1:].mean(1)

    def _keep_normed(self, i):
        def hook(module, args, kwargs):
            if self.state.active and self.state.pos is not None:
                self.state.normed[i] = (kwargs.get("hidden_states", args[0] if args else None), kwargs["position_embeddings"])

        return hook

    def _last_attention(self, i, mask2d):
        """(B, L) attention of the last token at LM layer i over all keys (mean over heads)."""
        attn = self.lm.layers[i].self_attn
        x, (cos, sin) = self.state.normed[i]
        B, L, _ = x.shape
        Dh = attn.head_dim
        q = attn.q_proj(x[:, -1:]).view(B, 1, -1, Dh).transpose(1, 2)
        k = attn.k_proj(x).view(B, L, -1, Dh).transpose(1, 2)
        q, k = _rot(q, cos[:, -1:], sin[:, -1:]), _rot(k, cos, sin)
        k = k.repeat_interleave(q.shape[1] // k.shape[1], 1)
        s = (q.float() @ k.float().transpose(-1, -2))[:, :, 0] * attn.scaling  # (B, H, L)
        return s.masked_fill(~mask2d[:, None], float("-inf")).softmax(-1).mean(1)

    def _lm_pre(self, module, args, kwargs):
        st = self.state
        emb = kwargs.get("inputs_embeds")
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        if emb is None:
            return None
        B, L, _ = emb.shape
        if past == 0 and st.ids is not None and st.ids.shape[1] == L:  # a prefill with an image
            is_img = st.ids == self.image_token
            n = is_img.sum(1)
            if not bool((n == n[0]).all()) or int(n[0]) == 0:
                raise ArgumentError("input_ids", "must hold the same number (> 0) of image tokens in every row")
            start = int(is_img.long().argmax(1)[0])
            if not bool(is_img[:, start : start + int(n[0])].all()):
                raise ArgumentError("input_ids", "must hold the image tokens at the same offset in every row")
            cp = kwargs.get("cache_position")
            pos = kwargs.get("position_ids")
            if pos is None:
                pos = (cp if cp is not None else torch.arange(L, device=emb.device))[None].expand(B, L)
            am = kwargs.get("attention_mask")
            am = torch.ones(B, L, dtype=torch.bool, device=emb.device) if am is None else am.bool()
            st.active, st.prefill, st.start, st.n_img = True, True, start, int(n[0])
            st.mask2d, st.pos, st.img = am, pos.expand(B, L), is_img
            st.next_pos = st.pos[:, -1] + 1
            for at, red in self.stages:
                if at == 0 and not getattr(red, "skips_ffn", False):
                    emb = self._cut_input(red, emb)
            kwargs.update(inputs_embeds=emb, attention_mask=self._am(st.mask2d), position_ids=st.pos,
                          cache_position=torch.arange(emb.shape[1], device=emb.device))  # fmt: skip
            return args, kwargs
        if past > 0 and st.active:  # a decode step after a reduced prefill
            q = L
            extra = past - st.mask2d.shape[1]
            ones = torch.ones(B, extra + q, dtype=torch.bool, device=emb.device)
            pos = st.next_pos[:, None] + extra + torch.arange(q, device=emb.device)
            kwargs.update(attention_mask=self._am(torch.cat([st.mask2d, ones], 1)), position_ids=pos,
                          cache_position=torch.arange(past, past + q, device=emb.device))  # fmt: skip
            st.prefill = False
            return args, kwargs
        st.active = False
        return None

    def _am(self, m):
        # always explicit: with no mask and no cache, transformers reads gaps in position_ids as packed sequences
        return m.long()

    def _cut_input(self, red, emb):
        st = self.state
        s, n = st.start, st.n_img
        vis = emb[:, s : s + n]
        att = self._cls_attention if red.needs_attention else None
        g = int(round(n**0.5))
        out = red(vis, attention=att, grid=(g, g) if g * g == n else None)
        st.kept.append(out.counts)
        if out.identity:
            return emb
        emb = torch.cat([emb[:, :s], out.tokens.to(emb.dtype), emb[:, s + n :]], 1)
        kept = out.kept.clamp(min=0) + s
        vpos = st.pos.gather(1, kept)
        st.pos = torch.cat([st.pos[:, :s], vpos, st.pos[:, s + n :]], 1)
        st.mask2d = torch.cat([st.mask2d[:, :s], out.mask, st.mask2d[:, s + n :]], 1)
        st.img = torch.cat([st.img[:, :s], out.mask, st.img[:, s + n :]], 1)
        st.n_img = out.tokens.shape[1]
        return emb

    def _mask4d(self, mask2d, q_len, dtype):
        """(B, 1, q, K) mask: causal over the last q of K slots and key padding."""
        B, K = mask2d.shape
        qi = torch.arange(K - q_len, K, device=mask2d.device)[:, None]
        ok = (torch.arange(K, device=mask2d.device)[None] <= qi)[None, None] & mask2d[:, None, None, :]
        if self.impl == "sdpa":
            return ok
        return torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill(~ok, torch.finfo(dtype).min)

    def _layer_pre(self, i):
        def hook(module, args, kwargs):
            st = self.state
            cuts = [k for k in st.deep if k <= i] if st.active else []
            if not st.active or (st.prefill and i not in self.cut_layers and not cuts):
                return None
            x = args[0] if args else kwargs["hidden_states"]
            if st.prefill:
                if i in self.cut_layers and i not in st.deep:
                    red = next(r for at, r in self.stages if at == i and not getattr(r, "skips_ffn", False))
                    base = st.deep[max(st.deep)] if st.deep else {"mask2d": st.mask2d, "pos": st.pos, "img": st.img}
                    x = self._cut_inside(i, red, x, *kwargs["position_embeddings"], base)
                d = st.deep[max(k for k in st.deep if k <= i)]
                kwargs["position_embeddings"] = (d["cos"], d["sin"])
                kwargs["attention_mask"] = self._mask4d(d["mask2d"], x.shape[1], x.dtype)
                kwargs["position_ids"] = d["pos"]
                kwargs["cache_position"] = torch.arange(x.shape[1], device=x.device)
            else:
                d = st.deep[max(cuts)]
                cache = kwargs.get("past_key_values")
                past = cache.layers[i].get_seq_length() if cache is not None else 0
                q = x.shape[1]
                new = torch.ones(x.shape[0], past + q - d["mask2d"].shape[1], dtype=torch.bool, device=x.device)
                kwargs["attention_mask"] = self._mask4d(torch.cat([d["mask2d"], new], 1), q, x.dtype)
                kwargs["cache_position"] = torch.arange(past, past + q, device=x.device)
            if args:
                return (x, *args[1:]), kwargs
            kwargs["hidden_states"] = x
            return args, kwargs

        return hook

    def _cut_inside(self, i, red, x, cos, sin, base):
        st = self.state
        img = base["img"]
        # visual slots are contiguous from st.start (padding slots included): take the full slice
        s = st.start
        width = st.n_img
        vis = x[:, s : s + width]
        vmask = base["mask2d"][:, s : s + width] & img[:, s : s + width]
        att = (lambda: self._last_attention(i - 1, base["mask2d"])[:, s : s + width]) if red.needs_attention else None
        out = red(vis, mask=vmask, attention=att)
        st.kept.append(out.counts)
        if out.identity:
            st.deep[i] = {"mask2d": base["mask2d"], "pos": base["pos"], "img": img, "cos": cos, "sin": sin}
            return x
        kept = out.kept.clamp(min=0) + s

        def cut(t):
            idx = kept.view(*kept.shape, *([1] * (t.dim() - 2))).expand(*kept.shape, *t.shape[2:])
            return torch.cat([t[:, :s], t.gather(1, idx), t[:, s + width :]], 1)

        x = torch.cat([x[:, :s], out.tokens.to(x.dtype), x[:, s + width :]], 1)
        cos, sin = cut(cos.expand(x.shape[0], -1, -1) if cos.shape[0] == 1 else cos), cut(sin.expand(x.shape[0], -1, -1) if sin.shape[0] == 1 else sin)
        pos = cut(base["pos"])
        m2 = torch.cat([base["mask2d"][:, :s], out.mask, base["mask2d"][:, s + width :]], 1)
        im = torch.cat([img[:, :s], out.mask, img[:, s + width :]], 1)
        st.deep[i] = {"mask2d": m2, "pos": pos, "img": im, "cos": cos, "sin": sin}
        st.n_img = out.tokens.shape[1]
        return x

    # ---- P59 FFN skipping
    def _change(self, i):
        def hook(module, args, kwargs, out):
            st = self.state
            if not st.active:
                return None
            x_in = args[0] if args else kwargs["hidden_states"]
            y = out[0] if isinstance(out, tuple) else out
            if x_in.shape[1] > 1 and x_in.shape == y.shape:
                st.change[i] = 1 - torch.nn.functional.cosine_similarity(x_in.float(), y.float(), dim=-1)
            return None

        return hook

    def _skip(self, i, red, forward):
        def run(x):
            st = self.state
            if not st.active or not st.prefill or i not in st.change:
                return forward(x)
            d = st.deep[max(k for k in st.deep if k <= i)] if any(k <= i for k in st.deep) else {"img": st.img, "mask2d": st.mask2d}
            if d["img"].shape[1] != x.shape[1]:
                return forward(x)
            s, w = st.start, st.n_img
            vmask = d["img"][:, s : s + w] & d["mask2d"][:, s : s + w]
            r = red(x[:, s : s + w], mask=vmask, attention=st.change[i][:, s : s + w].clone())
            st.kept.append(r.counts)
            run_v = torch.zeros_like(vmask).scatter_(1, r.kept.clamp(min=0), r.mask) & vmask
            sel = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            sel[:, s : s + w] = run_v
            st.ffn_skipped += int((~sel).sum())
            out = torch.zeros_like(x)  # a skipped FFN adds nothing to the residual stream
            out[sel] = forward(x[sel][None])[0]
            return out

        return run

    # ---- public
    @property
    def kept(self) -> list[torch.Tensor]:
        """Per stage of the last prefill: tokens held per row (B,)."""
        return self.state.kept

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        for mlp in self._orig:
            if "forward" in mlp.__dict__:
                del mlp.forward
        self.handles, self._orig = [], []

    def __enter__(self) -> LlavaCompression:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()


def attach(model, reducer: Reducer | str, layer: int | None = None, **options) -> LlavaCompression:
    """Reduce the visual tokens of a HF LLaVA model: ``reducer`` an instance or a registry name
    (then ``keep=`` is its budget and other ``options`` its fields); ``layer`` 0 = before the LM,
    K >= 1 = inside the LM before decoder layer K."""
    if isinstance(reducer, str):
        import tokenworks as tw

        if "keep" in options:
            options["budget"] = options.pop("keep")
        reducer = tw.create(reducer, **options)
    elif options:
        raise ArgumentError("options", f"are only taken with a reducer name, got {sorted(options)}")
    return LlavaCompression(model, reducer, reducer.default_layer if layer is None else layer)
