"""FLASH (P31) rows of the ``speculative`` suite (a helper module, not a suite of its own).

Model: the tiny captioning VLM of :mod:`tokenworks.decode.caption_vlm` (16 ``vq-16`` image codes
in, an attribute caption out, 4 layers d=128). Draft heads (:class:`~tokenworks.decode.flash.FlashHead`,
self-distilled on the VLM's greedy captions of 5,000 training images): 4 learned queries
compress the 16 image tokens (``flash``), and the control that changes one thing: 0 queries,
the head sees the answer only (``flash-text-only``). Model-free baseline: ``prompt_lookup``.
All decode the test images' prompts in one left-padded batch, greedily. Per row:
``tokens_per_target_forward`` (per image: generated tokens / verifications), ``identical``
(share of captions equal to the VLM's own greedy ``generate``: lossless means 1.0),
``acceptance``, ``theory_tokens_per_forward`` and ``fraction_of_theory``, ``head_cost`` (one head
pass / one target forward, same batch, measured), ``theory_speedup_wall`` = theory tokens per
forward / (1 + head_cost) (one head pass per step, whatever k), ``speedup_wall`` vs the VLM's
own batched ``generate`` and ``fraction_of_theory_wall``; ``caption_exact`` of the target's
captions against the reference captions (what the VLM knows; the same for every lossless row).
One seed: the heads are trained once.
"""

from __future__ import annotations

import time

import torch

import tokenworks as tw


def _row(method, paper, params, batch, metrics):
    return {
        "family": "SPEC", "method": method, "paper": paper, "params": {"task": "caption-vlm", **params}, "budget": {"batch": batch},
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
    }  # fmt: skip


@torch.no_grad()
def flash_rows(ctx) -> list[dict]:
    from tokenworks.decode.caption_vlm import caption_data, caption_vlm, flash_head

    try:
        vlm = caption_vlm(train_if_missing=False)
        heads = {q: flash_head(q, train_if_missing=not ctx.quick) for q in (4, 0)}
    except FileNotFoundError as e:
        ctx.log(f"skipping FLASH: {e}")
        return []
    n = 60 if ctx.quick else 500
    data = caption_data("test", n)
    P = data.prompt_len
    ids = data.seqs[:, :P]
    new = data.seqs.shape[1] - P
    kw = dict(max_new_tokens=new, eos_token_id=data.eos, pad_token_id=data.pad)

    def cut(rows):
        return [r[: r.index(data.eos) + 1] if data.eos in r else r for r in rows]

    vlm.generate(ids[:4], attention_mask=torch.ones_like(ids[:4]), do_sample=False, **kw)  # warm-up
    t0 = time.perf_counter()
    ref = cut(vlm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, **kw)[:, P:].tolist())
    t_plain = time.perf_counter() - t0
    truth = [data.text(r) for r in data.seqs[:, P:].tolist()]
    exact = sum(data.text(r) == t for r, t in zip(ref, truth)) / n
    rows = [_row("target-plain", None, {"k": 0}, n, {"tokens_per_target_forward": 1.0, "identical": 1.0, "speedup_wall": 1.0, "caption_exact": exact,
                                                     "ms_per_caption": 1000 * t_plain / n})]  # fmt: skip
    # one head pass vs one target forward on the same batch (the cost ratio of the theory)
    t0 = time.perf_counter()
    for _ in range(5):
        vlm(input_ids=ids)
    t_target = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(5):
        heads[4](ids[:, : P - 1], ids[:, P - 1 :])
    head_cost = (time.perf_counter() - t0) / t_target

    settings = [("flash", "P31", {"k": k, "queries": 4}, heads[4]) for k in ((4,) if ctx.quick else (2, 3, 4))]
    settings += [("flash-text-only", None, {"k": 4, "queries": 0}, heads[0]), ("prompt_lookup", None, {"k": 4}, None)]
    for name, paper, params, head in ctx.track(settings, "FLASH (caption VLM)"):
        opts = {"head": head, "image_tokens": P - 1} if head is not None else {}
        dec = tw.create("flash" if head is not None else name, k=params["k"], **opts)
        t0 = time.perf_counter()
        out = dec.generate(vlm, ids, **kw)
        secs = time.perf_counter() - t0
        st = out.stats
        tpf = st.new_tokens / sum(len(x) for x in st.accepted)
        a, k = st.acceptance_rate, params["k"]
        theory = float(k + 1) if a >= 1 else (1 - a ** (k + 1)) / (1 - a)
        m = {"tokens_per_target_forward": tpf, "target_forwards_per_token": 1 / tpf, "speedup_forwards": tpf, "acceptance": a,
             "theory_tokens_per_forward": theory, "fraction_of_theory": tpf / theory,
             "identical": sum(o == r for o, r in zip(out.tokens, ref)) / n, "speedup_wall": t_plain / secs, "ms_per_caption": 1000 * secs / n,
             "head_passes_per_step": st.extra.get("head_forwards", 0) / max(1, st.steps)}  # fmt: skip
        if head is not None:
            m.update(head_cost=head_cost, theory_speedup_wall=theory / (1 + head_cost))
            m["fraction_of_theory_wall"] = m["speedup_wall"] / m["theory_speedup_wall"]
        rows.append(_row(name, paper, params, n, m))
    return rows
