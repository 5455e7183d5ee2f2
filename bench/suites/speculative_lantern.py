"""LANTERN (P17) rows of the ``speculative`` suite (a helper module, not a suite of its own).

Models: the class-conditional image-token pair of :mod:`tokenworks.decode.image_ar` (target
4 layers d=128, draft 2 layers d=64) over the ``vq-16`` tokenizer's codes (TiTok, 16 tokens,
1024-code VQ), loaded through the public API (``image_ar``, ``image_tokenizer``).
Neighbour table: each code's 8 nearest codes in the tokenizer's codebook space
(``latent_neighbours``). Every setting generates ``per_class`` images of each of the 10
classes (sampling at temperature 1, full softmax, k = 3 drafts), with ``SEEDS`` sampling
seeds. Per row (seed means; ``*_spread`` = max - min over seeds):

- ``tokens_per_target_forward``: generated tokens per target verification per image (the
  accepted length + 1), ``target_forwards_per_token`` its inverse, ``speedup_forwards`` =
  plain sampling's 1 target forward per token / the method's; ``acceptance`` (per-draft ``a``),
  ``theory_tokens_per_forward`` = ``(1 - a^(k+1)) / (1 - a)`` and ``fraction_of_theory``;
- ``tv``: the exact total variation between the distribution of the token LANTERN emits at a
  verified position and the target's (closed form given both models' distributions; mean over
  verified positions), ``tv_bound`` the coupling bound on it; ``delta`` is the paper's bound on
  each relaxed target ``TV(p, p~_x)``, which is not a bound on the output (see ``tv``);
- quality of the decoded images: ``fd_local`` against the real test images (Frechet distance
  on the project's classifier features; not FID) and ``class_accuracy`` (the classifier
  assigns the conditioning class); ``ms_per_image`` (CPU wall time, batch of all images),
  ``speedup_wall`` vs the target's own sampling, ``draft_cost`` (draft / target time per image
  when each samples alone), ``theory_speedup_wall`` = theory tokens per forward / (k x
  draft_cost + 1) and ``fraction_of_theory_wall``.

Reference rows: ``target-plain`` (the target's own sampling, HF ``generate``; 6 seeds, 2 in
the quick run: its spread is the noise floor), ``draft-plain`` (the draft alone: what unlimited relaxation
tends to), ``tokenizer-recon`` (test images through the tokenizer: the quality ceiling).
Verdict (P17's claim, per delta): "held" when the accepted length exceeds exact speculative
sampling's by more than the summed seed spreads *and* ``fd_local`` stays within the target's
own seed spread + the row's spread; "did not hold" when the length does not rise beyond the
spreads; "quality lost" when it rises but ``fd_local`` worsens beyond the spreads.
"""

from __future__ import annotations

import time

import torch

import tokenworks as tw

SEEDS = (0, 1, 2)
K = 3  # k + 1 divides the 16 tokens of an image: no verification is cut short by the image's end


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(per_class=12, deltas=(0.05, 0.1, 0.2, 0.4), static=(0.0, 0.2), plain_seeds=2)
    return dict(per_class=50, deltas=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5), static=(0.0, 0.05, 0.1, 0.2, 0.4), plain_seeds=6)


def _row(method, paper, params, batch, metrics):
    return {
        "family": "SPEC", "method": method, "paper": paper, "params": {"task": "image-ar", **params}, "budget": {"batch": batch},
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
    }  # fmt: skip


def _theory(a: float, k: int) -> float:
    return float(k + 1) if a >= 1 else (1 - a ** (k + 1)) / (1 - a)


@torch.no_grad()
def lantern_rows(ctx) -> list[dict]:
    from tokenworks.data import load_fashion_mnist
    from tokenworks.decode.image_ar import class_prompts, image_ar, image_tokenizer
    from tokenworks.decode.lantern import latent_neighbours
    from tokenworks.metrics.image import frechet_distance
    from tokenworks.models import image_classifier

    s = _sizes(ctx.quick)
    try:
        target = image_ar("target", train_if_missing=not ctx.quick)
        draft = image_ar("draft", train_if_missing=not ctx.quick)
    except FileNotFoundError as e:
        ctx.log(f"skipping LANTERN: {e}")
        return []
    tok = image_tokenizer()
    Kc = tok.codebook_size
    codes = tok.quant.indices_to_codes(torch.arange(Kc)[None])[0].float()  # (K, D)
    table = latent_neighbours(codes, 8, vocab_size=target.config.vocab_size)
    clf = image_classifier()
    test = load_fashion_mnist("test").take(2000)
    real = test.float()
    real_feats = clf.features(real)

    def fd_local(_real, imgs):  # tokenworks.models.fd_local with the real images' features computed once
        return frechet_distance(real_feats, clf.features(imgs))

    labels = torch.arange(10).repeat_interleave(s["per_class"])
    prompts = class_prompts(labels, Kc)
    T = tok.num_tokens

    def quality(ids: torch.Tensor) -> dict:
        bad = int((ids >= Kc).sum())
        imgs = tok.decode(ids.clamp(max=Kc - 1).reshape(tok.index_shape(ids.shape[0])))
        acc = float((clf(imgs).argmax(-1) == labels).float().mean())
        return {"fd_local": fd_local(real, imgs), "class_accuracy": acc, "class_tokens_generated": bad}

    def agg(per_seed: list[dict]) -> dict:
        out = {}
        for key in per_seed[0]:
            vals = [m[key] for m in per_seed]
            out[key] = sum(vals) / len(vals)
            if key in ("fd_local", "class_accuracy", "tokens_per_target_forward"):
                out[f"{key}_spread"] = max(vals) - min(vals)
                out[f"{key}_seeds"] = [round(v, 4) for v in vals]
        return out

    rows = []
    # references
    recon = tok.decode(tok.encode(real[: len(labels)]))
    rows.append(_row("tokenizer-recon", None, {"tokenizer": "vq-16"}, len(labels), {
        "fd_local": fd_local(real, recon), "class_accuracy": float((clf(recon).argmax(-1) == test.labels[: len(labels)]).float().mean())}))  # fmt: skip
    plain = {}
    for name, model, seeds in (("target-plain", target, tuple(range(s["plain_seeds"]))), ("draft-plain", draft, SEEDS)):
        per_seed = []
        for seed in seeds:
            torch.manual_seed(ctx.seed * 1000 + seed)
            t0 = time.perf_counter()
            out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                 max_new_tokens=T, pad_token_id=0)  # fmt: skip
            secs = time.perf_counter() - t0
            per_seed.append({**quality(out[:, 1:]), "tokens_per_target_forward": 1.0, "ms_per_image": 1000 * secs / len(labels)})
        plain[name] = agg(per_seed)
        rows.append(_row(name, None, {"k": 0, "seeds": len(seeds)}, len(labels), plain[name]))

    settings = [("spec_sampling", None, {})] + [("lantern", "P17", {"delta": d}) for d in s["deltas"]]
    settings += [("lantern", "P17", {"delta": d, "static": True}) for d in s["static"]]
    exact_len = None
    for name, paper, opts in ctx.track(settings, "LANTERN (image AR)"):
        dec = tw.create(name, k=K, **({"neighbours": table} if name == "lantern" else {}), **opts)
        per_seed = []
        for seed in SEEDS:
            t0 = time.perf_counter()
            out = dec.generate(target, prompts, draft=draft, max_new_tokens=T, do_sample=True, eos_token_id=[], seed=ctx.seed * 1000 + seed)
            secs = time.perf_counter() - t0
            st = out.stats
            verifications = sum(len(x) for x in st.accepted)
            tpf = st.new_tokens / verifications
            a = st.acceptance_rate
            per_seed.append({**quality(out.sequences), "tokens_per_target_forward": tpf, "target_forwards_per_token": 1 / tpf,
                             "speedup_forwards": tpf, "acceptance": a, "theory_tokens_per_forward": _theory(a, K),
                             "fraction_of_theory": tpf / _theory(a, K), "tv": st.extra.get("tv", 0.0), "tv_bound": st.extra.get("tv_bound", 0.0),
                             "tv_bound_max": st.extra.get("tv_bound_max", 0.0), "ms_per_image": 1000 * secs / len(labels)})  # fmt: skip
        m = agg(per_seed)
        m["speedup_wall"] = plain["target-plain"]["ms_per_image"] / m["ms_per_image"]
        m["draft_cost"] = plain["draft-plain"]["ms_per_image"] / plain["target-plain"]["ms_per_image"]
        m["theory_speedup_wall"] = m["theory_tokens_per_forward"] / (K * m["draft_cost"] + 1)
        m["fraction_of_theory_wall"] = m["speedup_wall"] / m["theory_speedup_wall"]
        if name == "spec_sampling":
            exact_len = m
        elif not opts.get("static"):
            m["verdict"] = _verdict(m, exact_len, plain["target-plain"])
        rows.append(_row(name, paper, {"k": K, **opts, "seeds": len(SEEDS)}, len(labels), m))
    return rows


def _verdict(m: dict, exact: dict, plain: dict) -> str:
    """P17's claim at one delta: longer accepted drafts than exact sampling, quality kept."""
    gain = m["tokens_per_target_forward"] - exact["tokens_per_target_forward"]
    if gain <= m["tokens_per_target_forward_spread"] + exact["tokens_per_target_forward_spread"]:
        return "did not hold"
    loss = m["fd_local"] - plain["fd_local"]
    if loss > m["fd_local_spread"] + plain["fd_local_spread"]:
        return "quality lost"
    return "held"


def lantern_plot(rows, out_dir) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    rr = [r for r in rows if r["params"].get("task") == "image-ar" and "tokens_per_target_forward" in r["metrics"]]
    pts = [r for r in rr if r["method"] in ("lantern", "spec_sampling")]
    if not pts:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for static, style in ((False, "o-"), (True, "s--")):
        mr = [r for r in pts if bool(r["params"].get("static")) == static and (r["method"] == "lantern" or not static)]
        mr.sort(key=lambda r: r["params"].get("delta", 0.0))
        x = [r["metrics"]["tokens_per_target_forward"] for r in mr]
        label = "LANTERN++ static (argmax drafts)" if static else "LANTERN (sampled drafts; delta=0: exact)"
        axes[0].errorbar(x, [r["metrics"]["fd_local"] for r in mr], yerr=[r["metrics"]["fd_local_spread"] / 2 for r in mr], fmt=style, label=label)
        axes[1].plot(x, [r["metrics"]["class_accuracy"] for r in mr], style, label=label)
        for r, xi in zip(mr, x):
            axes[0].annotate(f"{r['params'].get('delta', 0.0):g}", (xi, r["metrics"]["fd_local"]), fontsize=7)
    for r in rr:
        if r["method"] in ("target-plain", "draft-plain"):
            axes[0].axhline(r["metrics"]["fd_local"], ls=":", color="k" if r["method"] == "target-plain" else "r", lw=1, label=r["method"])
            axes[1].axhline(r["metrics"]["class_accuracy"], ls=":", color="k" if r["method"] == "target-plain" else "r", lw=1, label=r["method"])
    axes[0].set_xlabel("tokens per target forward (accepted length + 1)")
    axes[0].set_ylabel("fd_local of generated images (lower is better)")
    axes[1].set_xlabel("tokens per target forward (accepted length + 1)")
    axes[1].set_ylabel("classifier accuracy of generated images")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fname = "lantern_quality_vs_speed.png"
    fig.savefig(out_dir / fname, dpi=100)
    plt.close(fig)
    return [("LANTERN (P17): image quality vs accepted length at several delta (numbers: delta), class-conditional image-token AR pair", fname)]
