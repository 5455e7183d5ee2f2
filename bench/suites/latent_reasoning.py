"""Suite ``latent-reasoning``: chain-of-thought against reasoning in latent space, same small models, same tasks.

Models (``assets/reason``, ``tokenworks train reason-models --out assets/reason``): one small
Llama per method (3 layers, d=96), trained here on a mix of the three tasks of
``tokenworks.reason.tasks``: ``graph`` (ProsQA-style: is the person an X or a Y, following
"A is B" facts among distractors; chains of 2-4 facts; two options, so chance is 50%),
``pronto`` (ProntoQA-style deduction: "is bob [not] P ?" from is-a and property rules, chains
of 2-4 rule applications, true/false) and ``arith`` (chains of 2-6 operations on numbers
0..29). Held-out test problems (disjoint split).

Methods (``tw.methods(kind="reasoner")`` on their models): ``no_cot`` (direct answer),
``cot`` (writes its steps), ``pause`` (6 pause tokens, trained with them), ``icot`` (CoT
internalized stage by stage, no thoughts), ``coconut`` (P36: continuous thoughts, staged
curriculum from the CoT model; one row per stage, the stage-k model thinking k x c times),
``colar`` (P38: compressed latent chain; one row per compression factor c), ``hrpo`` (P37:
the CoT model after GRPO with the hybrid gate, decoding with it) against ``grpo`` (the same
GRPO without the latent path), ``system15`` (P39: shortcuts fitted on the frozen models; the
depth shortcut on the CoT model and the step shortcut on the final Coconut model, one row per
gate threshold, with ``depth_layer_fraction`` = layers run per fed token / all layers).
Trivial rows: the majority answer of the train split (pronto, arith) and chance (graph, 0.5).

Beside the tasks: ``cache-aug`` (P33: the reference LM's held-out perplexity on the
next 1-32 tokens after a 64-token prefix, with and without 8 latents from the trained
coprocessor appended to its cache, the prefix's last token fed again after them, by
distance) and ``lcm`` with ``objective`` mse / diffusion (P50:
next-sentence-embedding prediction in MiniLM space on held-out prose, retrieval of the true
next sentence among 10 and cosine, with ``copy-last-sentence`` as the trivial row).

Per method and task: ``accuracy`` (exact answer token), per chain length (rows with
``length``), ``latent_steps``, ``generated_tokens`` (all decoded tokens, answer and <eos>
included), ``reasoning_positions`` = latent steps + generated tokens - 2 (everything between
<bot> and the answer; a forced <eot> after the thoughts is not counted), ``forwards`` per
answer (prefill included), ``flops_per_answer`` (``torch.utils.flop_counter`` over the whole
generation, batch of ``flops_n`` problems, split evenly: padding included), ``ms_per_answer``
(batched wall time on this CPU). Verdicts per task (``bench.verdict``, on the accuracies of
the recipe's ``seeds`` training seeds of cot and the final Coconut and iCoT stages: held only
when the gap exceeds the seed spread; "too few seeds" below 3): ``coconut-vs-cot`` (higher
accuracy with fewer reasoning positions) and ``coconut-vs-icot`` (continuous thoughts against
the same staged curriculum without thoughts, P36's "w/o thought" ablation); beside each, the
paired bootstrap interval of the seed-0 accuracy difference over test problems, and for
Coconut whether it is above the trivial row beyond that interval (a win over CoT below
chance is no win). The probe (P36's
BFS reading): the first continuous thought of the final Coconut model decoded by the LM head
over the question's concepts: mass on the person's direct concepts (the search frontier)
against their share of the candidates.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import torch

import tokenworks as tw

NAME = "latent-reasoning"
DESCRIPTION = __doc__.split("\n\n", 1)[1]


def _config():
    from tokenworks.reason.models import ReasonModelConfig

    return ReasonModelConfig()


def _sizes(quick: bool) -> dict:
    # max_new: room for the longest CoT (6 arithmetic steps of 5 tokens, <eot>, answer, <eos>)
    if quick:
        return dict(n=60, flops_n=8, max_new=40, cop_windows=48, lcm_pairs=300)
    return dict(n=300, flops_n=16, max_new=40, cop_windows=256, lcm_pairs=1000)


def _row(method, paper, params, metrics, budget=None) -> dict:
    return {
        "family": "LAT", "method": method, "paper": paper, "params": params, "budget": budget or {},
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
    }  # fmt: skip


def _paper(method: str) -> str | None:
    """The paper of a row's method; ``grpo`` is P37's control (HRPO decoding without the latent path)."""
    return None if method == "grpo" else tw.get(method).paper


def _summary(recs: list[dict]) -> dict:
    n = len(recs)
    mean = lambda k: sum(r[k] for r in recs) / n  # noqa: E731
    return {
        "accuracy": mean("correct"), "n": n, "latent_steps": mean("latent_steps"), "generated_tokens": mean("generated_tokens"),
        "reasoning_positions": sum(r["latent_steps"] + r["generated_tokens"] - 2 for r in recs) / n, "forwards": mean("forwards"),
    }  # fmt: skip


def _paired_ci(a: list[bool], b: list[bool], seed: int, reps: int = 2000) -> tuple[float, float, float]:
    """Accuracy difference a - b and its 95% paired bootstrap interval over problems."""
    rng = random.Random(seed)
    n = len(a)
    diffs = []
    for _ in range(reps):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(sum(a[i] - b[i] for i in idx) / n)
    diffs.sort()
    return sum(x - y for x, y in zip(a, b)) / n, diffs[int(0.025 * reps)], diffs[int(0.975 * reps)]


def _configs(models: dict, cfg, max_new: int) -> list[tuple[str, str, dict, object, object, int | None]]:
    """(method, model name, params, reasoner, head, c) for every row group."""
    K = cfg.max_stage + 1
    out = [
        ("no_cot", "no_cot", {}, tw.create("no_cot", max_new_tokens=max_new), None, None),
        ("cot", "cot", {}, tw.create("cot", max_new_tokens=max_new), None, None),
        ("pause", "pause", {"pauses": cfg.pauses}, tw.create("pause", latent_steps=cfg.pauses, max_new_tokens=max_new), None, None),
    ]
    out.append(("icot", f"icot-stage{K}", {"stage": K}, tw.create("icot", max_new_tokens=max_new), None, None))
    for k in range(1, K + 1):
        n = min(k, cfg.max_stage) * cfg.c
        out.append(("coconut", f"coconut-stage{k}", {"stage": k, "thoughts": n}, tw.create("coconut", latent_steps=n, c=cfg.c, max_new_tokens=max_new), None, None))
    head = models["colar"][1]
    for c in range(1, cfg.colar_max_c + 1):
        out.append(("colar", "colar", {"c": c}, tw.create("colar", c=c, head=head, latent_steps=48, max_new_tokens=max_new), head, c))
    if "hrpo" in models:
        out.append(("hrpo", "hrpo", {"rl_steps": cfg.rl_steps}, tw.create("hrpo", gate=models["hrpo"][1], max_new_tokens=max_new), None, None))
        out.append(("grpo", "grpo", {"rl_steps": cfg.rl_steps}, tw.create("hrpo", latent=False, max_new_tokens=max_new), None, None))
    if "system15" in models:
        sc = models["system15"][1]
        for t in (1.0, 0.95, 0.8, 0.5):
            out.append(("system15", "cot", {"shortcut": "depth", "threshold": t},
                        tw.create("system15", depth=sc["depth"], depth_threshold=t, max_new_tokens=max_new), None, None))  # fmt: skip
        n = cfg.max_stage * cfg.c
        for t in (1.0, 0.95, 0.8, 0.5):
            out.append(("system15", f"coconut-stage{K}", {"shortcut": "step", "threshold": t, "thoughts": n},
                        tw.create("system15", step_gate=sc["step"], step_threshold=t, latent_steps=n, max_new_tokens=max_new), None, None))  # fmt: skip
    return out


@torch.no_grad()
def run(ctx) -> list[dict]:
    from bench.verdict import judge
    from tokenworks.reason.models import evaluate, load_reason_models
    from tokenworks.reason.tasks import TASKS, examples

    torch.manual_seed(ctx.seed)
    s = _sizes(ctx.quick)
    cfg = _config()
    models, tok = load_reason_models(cfg, train_if_missing=False)
    K = cfg.max_stage + 1
    rows: list[dict] = []
    per_problem: dict[tuple, list[bool]] = {}
    configs = _configs(models, cfg, s["max_new"])
    for task in TASKS:
        exs = list(examples(task, "test", s["n"]))
        # trivial rows
        if task == "graph":
            rows.append(_row("chance", None, {"task": task}, {"accuracy": 0.5, "n": len(exs)}))
        else:
            major = Counter(e.answer for e in examples(task, "train", 2000)).most_common(1)[0][0]
            rows.append(_row("majority-answer", None, {"task": task}, {"accuracy": sum(e.answer == major for e in exs) / len(exs), "n": len(exs)}))
        for method, mname, params, reasoner, _, c in ctx.track(configs, f"latent-reasoning {task}"):
            model = models[mname][0]
            t0 = time.perf_counter()
            recs = evaluate(reasoner, model, tok, exs, c=c, batch_size=len(exs))
            secs = time.perf_counter() - t0
            frecs = evaluate(reasoner, model, tok, exs[: s["flops_n"]], c=c, batch_size=s["flops_n"], count_flops=True)
            m = _summary(recs)
            if "depth_layers" in recs[0]:
                m["depth_layer_fraction"] = sum(r["depth_layers"] for r in recs) / len(recs)
            m.update(flops_per_answer=sum(r["flops"] for r in frecs) / len(frecs), ms_per_answer=1000 * secs / len(exs))
            p = {"task": task, "model": mname, **params}
            rows.append(_row(method, _paper(method), p, m, {"batch": len(exs)}))
            per_problem[(task, method, mname, c, params.get("threshold"))] = [r["correct"] for r in recs]
            for length in sorted({r["length"] for r in recs}):
                sub = [r for r in recs if r["length"] == length]
                rows.append(_row(method, _paper(method), {**p, "length": length}, _summary(sub)))
    seed_acc = _seed_accuracies(models, tok, cfg, configs, per_problem, s["n"])
    rows += _coconut_verdict(rows, per_problem, seed_acc, K, judge, ctx.seed)
    rows += _hrpo_verdict(rows, per_problem, cfg, judge, ctx.seed)
    rows += _probe(models[f"coconut-stage{K}"][0], tok, examples("graph", "test", s["n"]), cfg)
    if "cache-coprocessor" in models:
        rows += _cache_augmentation(models["cache-coprocessor"], cfg, s["cop_windows"])
    if "lcm" in models:
        rows += _lcm(models["lcm"][1], cfg, s["lcm_pairs"], ctx.seed)
    return rows


_BUCKETS = ((1, 1), (2, 4), (5, 8), (9, 16), (17, 32), (33, 64))


@torch.no_grad()
def _cache_augmentation(entry, cfg, n_windows: int) -> list[dict]:
    """P33: held-out perplexity of the reference LM on the next 1 .. ahead tokens after a prefix,
    with and without the coprocessor's latents appended to its cache, by distance bucket."""
    import math

    from tokenworks.data import load_prose
    from tokenworks.models.lm import token_stream
    from tokenworks.reason.cache_aug import nll_by_distance

    dec, extra = entry
    cop, rtok = extra["coprocessor"], extra["tokenizer"]
    P, A = cfg.cop_prefix, cfg.cop_ahead
    stream = token_stream(load_prose("test").documents, rtok)
    W = P + A
    n = min(n_windows, stream.numel() // W)
    windows = stream[: n * W].view(n, W)
    base, aug = nll_by_distance(dec, None, windows, P), nll_by_distance(dec, cop, windows, P)
    rows = []
    for lo, hi in _BUCKETS:
        if lo > A:
            break
        b, a = base[lo - 1 : min(hi, A)].mean().item(), aug[lo - 1 : min(hi, A)].mean().item()
        rows.append(_row("cache-aug", "P33", {"distance": f"{lo}-{min(hi, A)}", "k": cop.k, "prefix": P}, {
            "ppl_without": math.exp(b), "ppl_with": math.exp(a), "ppl_ratio": math.exp(a - b), "n_windows": n,
        }))  # fmt: skip
    b, a = base.mean().item(), aug.mean().item()
    rows.append(_row("cache-aug", "P33", {"distance": f"1-{A}", "k": cop.k, "prefix": P}, {
        "ppl_without": math.exp(b), "ppl_with": math.exp(a), "ppl_ratio": math.exp(a - b), "n_windows": n,
        "nll_by_distance_without": [round(x, 4) for x in base.tolist()], "nll_by_distance_with": [round(x, 4) for x in aug.tolist()],
    }))  # fmt: skip
    return rows


@torch.no_grad()
def _lcm(lcms: dict, cfg, n_pairs: int, seed: int) -> list[dict]:
    """P50: next-sentence-embedding prediction on held-out prose, MSE regression vs diffusion,
    against copying the last context sentence's embedding; retrieval among 10 and cosine."""
    from tokenworks.reason.lcm import embed_sentences, next_sentence_pairs, retrieval_scores

    ctxs, tgts = next_sentence_pairs("test", n_pairs, context=cfg.lcm_context)
    uniq = sorted({s for c in ctxs for s in c} | set(tgts))
    E = dict(zip(uniq, embed_sentences(uniq)))
    X = torch.stack([torch.stack([E[s] for s in c]) for c in ctxs])
    Y = torch.stack([E[s] for s in tgts])
    preds = {("copy-last-sentence", None): X[:, -1], ("lcm", "mse"): lcms["mse"].predict(X),
             ("lcm", "diffusion"): lcms["diffusion"].predict(X, torch.Generator().manual_seed(seed))}  # fmt: skip
    rows = []
    for (name, objective), pred in preds.items():
        sc = retrieval_scores(pred, Y, candidates=10, seed=seed)
        params = {"space": "minilm-l6", "candidates": 10, "context": cfg.lcm_context, **({"objective": objective} if objective else {})}
        rows.append(_row(name, None if objective is None else "P50", params, {**sc, "n": len(tgts)}))
    return rows


@torch.no_grad()
def _seed_accuracies(models, tok, cfg, configs, per_problem, n: int) -> dict[tuple[str, str], list[float]]:
    """{(task, method): [accuracy per training seed]} for the models the verdicts compare (cot, the
    final Coconut and iCoT stages): seed 0 from the main rows, the other seeds
    (``<model>-seed<s>``, when the recipe trains them) evaluated here on the same problems."""
    from tokenworks.reason.models import evaluate, seed_model, seed_names
    from tokenworks.reason.tasks import TASKS, examples

    wanted = set(seed_names(cfg))
    out: dict[tuple[str, str], list[float]] = {}
    for task in TASKS:
        exs = list(examples(task, "test", n))
        for method, mname, params, reasoner, _, c in configs:
            key = (task, method, mname, c, params.get("threshold"))
            if mname not in wanted or method == "system15" or key not in per_problem:
                continue
            accs = [sum(per_problem[key]) / len(per_problem[key])]
            for s in range(1, cfg.seeds):
                if seed_model(mname, s) in models:
                    recs = evaluate(reasoner, models[seed_model(mname, s)][0], tok, exs, c=c, batch_size=len(exs))
                    accs.append(sum(r["correct"] for r in recs) / len(recs))
            out[(task, method)] = accs
    return out


def _coconut_verdict(rows, per_problem, seed_acc, K, judge, seed) -> list[dict]:
    """P36's claims per task, judged on the training seeds' accuracies (``bench.verdict``: held
    only when the gap exceeds the seed spread): Coconut beats CoT with fewer reasoning positions,
    and Coconut beats the same staged curriculum without thoughts (iCoT, the paper's "w/o
    thought" ablation; judged at equal schedule, positions aside). Beside each: the paired
    bootstrap interval of the seed-0 accuracy difference over test problems."""
    from tokenworks.reason.tasks import TASKS

    out = []
    for task in TASKS:

        def pick(method, **kw):
            return next((r for r in rows if r["method"] == method and r["params"].get("task") == task and "length" not in r["params"]
                         and all(r["params"].get(k) == v for k, v in kw.items())), None)  # fmt: skip

        main = {"coconut": pick("coconut", stage=K), "cot": pick("cot"), "icot": pick("icot")}
        if main["coconut"] is None or main["cot"] is None:
            continue
        co, cot = main["coconut"]["metrics"], main["cot"]["metrics"]
        accs = {m: seed_acc.get((task, m), [main[m]["metrics"]["accuracy"]] if main[m] else None) for m in main}
        v = judge((co["reasoning_positions"], accs["coconut"]), [(cot["reasoning_positions"], accs["cot"])], x_higher_is_better=False)
        co_correct = per_problem[(task, "coconut", f"coconut-stage{K}", None, None)]
        diff, lo, hi = _paired_ci(co_correct, per_problem[(task, "cot", "cot", None, None)], seed)
        trivial = next(r["metrics"]["accuracy"] for r in rows if r["method"] in ("chance", "majority-answer") and r["params"]["task"] == task)
        _, triv_lo, _ = _paired_ci(co_correct, [trivial] * len(co_correct), seed)
        fewer = co["reasoning_positions"] < cot["reasoning_positions"]
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        out.append(_row("coconut-vs-cot", "P36", {"task": task, "claim": "higher accuracy than CoT with fewer reasoning positions"}, {
            "accuracy_coconut": mean(accs["coconut"]), "accuracy_cot": mean(accs["cot"]), "seeds": min(len(accs["coconut"]), len(accs["cot"])),
            "accuracy_by_seed_coconut": accs["coconut"], "accuracy_by_seed_cot": accs["cot"], "seed_gap": v.gap, "seed_spread": v.spread,
            "accuracy_gap": diff, "gap_ci95_low": lo, "gap_ci95_high": hi, "fewer_positions": fewer,
            "positions_coconut": co["reasoning_positions"], "positions_cot": cot["reasoning_positions"],
            "verdict_rule": v.verdict, "beats_cot_beyond_sampling": bool(fewer and lo > 0),
            "trivial_accuracy": trivial, "coconut_above_trivial": bool(triv_lo > 0),
        }))  # fmt: skip
        if main["icot"] is None:
            continue
        ic = main["icot"]["metrics"]
        v = judge((0.0, accs["coconut"]), [(0.0, accs["icot"])])
        diff, lo, hi = _paired_ci(co_correct, per_problem[(task, "icot", f"icot-stage{K}", None, None)], seed)
        out.append(_row("coconut-vs-icot", "P36", {"task": task, "claim": "continuous thoughts beat the same curriculum without thoughts"}, {
            "accuracy_coconut": mean(accs["coconut"]), "accuracy_icot": mean(accs["icot"]), "seeds": min(len(accs["coconut"]), len(accs["icot"])),
            "accuracy_by_seed_coconut": accs["coconut"], "accuracy_by_seed_icot": accs["icot"], "seed_gap": v.gap, "seed_spread": v.spread,
            "accuracy_gap": diff, "gap_ci95_low": lo, "gap_ci95_high": hi,
            "positions_coconut": co["reasoning_positions"], "positions_icot": ic["reasoning_positions"],
            "verdict_rule": v.verdict, "beats_icot_beyond_sampling": bool(lo > 0),
        }))  # fmt: skip
    return out


def _hrpo_verdict(rows, per_problem, cfg, judge, seed) -> list[dict]:
    """P37's claim: GRPO with the hybrid latent path beats GRPO without it (same start, same steps)."""
    from tokenworks.reason.tasks import TASKS

    out = []
    for task in TASKS:
        a = per_problem.get((task, "hrpo", "hrpo", None, None))
        b = per_problem.get((task, "grpo", "grpo", None, None))
        if a is None or b is None:
            continue
        diff, lo, hi = _paired_ci(a, b, seed)
        acc_a, acc_b = sum(a) / len(a), sum(b) / len(b)
        v = judge((0.0, [acc_a]), [(-1.0, [acc_b]), (1.0, [acc_b])])
        out.append(_row("hrpo-vs-grpo", "P37", {"task": task, "claim": "hybrid latent GRPO beats token-only GRPO", "rl_steps": cfg.rl_steps}, {
            "accuracy_hrpo": acc_a, "accuracy_grpo": acc_b, "accuracy_gap": diff, "gap_ci95_low": lo, "gap_ci95_high": hi,
            "verdict_rule": v.verdict, "beats_grpo_beyond_sampling": bool(lo > 0), "n": len(a),
        }))  # fmt: skip
    return out


@torch.no_grad()
def _probe(model, tok, exs, cfg) -> list[dict]:
    """First continuous thought of the final Coconut model read through the LM head over the
    question's concepts: mass on the person's direct concepts (frontier) vs their share."""
    from tokenworks.reason.coconut import probe_thought
    from tokenworks.reason.models import prompt_ids
    from tokenworks.reason.tasks import CONCEPTS

    mass, share, top_frontier = [], [], []
    for e in exs:
        words = e.question.split()
        person = words[-5]
        cands = sorted({w for w in words if w in CONCEPTS})
        frontier = {words[i + 2] for i in range(len(words) - 2) if words[i] == person and words[i + 1] == "is" and words[i + 2] in CONCEPTS}
        ids = torch.tensor([prompt_ids(e, tok)])
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][:, -1]  # the first thought
        p = probe_thought(model, h, tok.convert_tokens_to_ids(cands))[0]
        sel = torch.tensor([c in frontier for c in cands])
        mass.append(float(p[sel].sum()))
        share.append(float(sel.float().mean()))
        top_frontier.append(bool(sel[p.argmax()]))
    n = len(exs)
    return [_row("coconut-probe", "P36", {"task": "graph", "thought": 1, "model": f"coconut-stage{cfg.max_stage + 1}"}, {
        "frontier_mass": sum(mass) / n, "frontier_share_of_candidates": sum(share) / n, "top_is_frontier": sum(top_frontier) / n, "n": n,
    })]  # fmt: skip


def headline(method: str, rows: list[dict]) -> str | None:
    if method == "lcm":
        got = {r["params"].get("objective"): r["metrics"] for r in rows if r["method"] == "lcm"}
        copy = next((r["metrics"] for r in rows if r["method"] == "copy-last-sentence"), None)
        if not {"mse", "diffusion"} <= set(got):
            return None
        extra = f", copy-last {copy['retrieval_top1']:.0%}" if copy else ""
        return (f"next-sentence retrieval@10 {got['diffusion']['retrieval_top1']:.0%} (diffusion) vs {got['mse']['retrieval_top1']:.0%} "
                f"(MSE){extra}; cosine {got['diffusion']['cosine']:.2f} vs {got['mse']['cosine']:.2f}")  # fmt: skip
    if method == "cache-aug":
        r = next((r for r in rows if r["method"] == method and "nll_by_distance_with" in r["metrics"]), None)
        if r is None:
            return None
        m = r["metrics"]
        return f"ppl of the next {r['params']['distance']} tokens {m['ppl_with']:.1f} with {r['params']['k']} latents vs {m['ppl_without']:.1f} without"
    main = [r for r in rows if r["method"] == method and "length" not in r["params"] and "accuracy" in r["metrics"]]
    if method == "system15":
        main = [r for r in main if r["params"].get("threshold") == 0.8 and r["params"].get("shortcut") == "depth"]
    if method == "coconut":
        K = max((r["params"].get("stage", 0) for r in main), default=0)
        main = [r for r in main if r["params"].get("stage") == K]
    if method == "colar":
        main = [r for r in main if r["params"].get("c") == 2]
    if not main:
        return None
    parts = [f"{r['params']['task']} {r['metrics']['accuracy']:.0%} with {r['metrics']['reasoning_positions']:.1f} reasoning positions" for r in main]
    return "; ".join(parts)


def _figure(tasks, draw, xlabel: str, out_dir, fname: str) -> str:
    """One panel per task: ``draw(ax, task)``, then labels, legend and the PNG."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        draw(ax, task)
        ax.set_title(task)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / fname, dpi=100)
    plt.close(fig)
    return fname


def plots(rows: list[dict], out_dir) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    main = [r for r in rows if "length" not in r["params"] and "reasoning_positions" in r["metrics"]]
    if not main:
        return []
    tasks = sorted({r["params"]["task"] for r in main})

    def pareto(ax, task):
        for i, method in enumerate(dict.fromkeys(r["method"] for r in main)):
            pts = sorted((r["metrics"]["reasoning_positions"], r["metrics"]["accuracy"]) for r in main if r["method"] == method and r["params"]["task"] == task)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if len(pts) > 1 else "o", color=f"C{i}", label=method)
        for r in rows:
            if r["method"] in ("chance", "majority-answer") and r["params"]["task"] == task:
                ax.axhline(r["metrics"]["accuracy"], color="grey", ls=":", lw=1)

    by_len = [r for r in rows if "length" in r["params"]]
    final = {}
    for r in by_len:
        if r["method"] == "coconut":
            final[r["params"]["task"]] = max(final.get(r["params"]["task"], 0), r["params"]["stage"])

    def by_length(ax, task):
        for i, (method, keep) in enumerate((("no_cot", None), ("cot", None), ("pause", None), ("coconut", final.get(task)), ("colar", 2))):
            pts = sorted(
                (r["params"]["length"], r["metrics"]["accuracy"]) for r in by_len if r["method"] == method and r["params"]["task"] == task
                and (keep is None or r["params"].get("stage", r["params"].get("c")) == keep)
            )  # fmt: skip
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=method if keep is None else f"{method} ({'stage' if method == 'coconut' else 'c'}={keep})")

    f1 = _figure(tasks, pareto, "reasoning positions per answer", out_dir, "latent_reasoning_accuracy_vs_tokens.png")
    f2 = _figure(tasks, by_length, "chain length (reasoning steps)", out_dir, "latent_reasoning_accuracy_vs_length.png")
    made = [("Latent reasoning: accuracy vs reasoning positions per answer (one point per method; Coconut by stage, CoLaR by c)", f1),
            ("Latent reasoning: accuracy vs chain length (held-out problems)", f2)]  # fmt: skip
    s15 = [r for r in main if r["method"] == "system15"]
    if s15:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, (shortcut, key, label) in zip(axes, (("depth", "depth_layer_fraction", "layers run per fed token / all layers"),
                                                     ("step", "latent_steps", "continuous thoughts per answer"))):  # fmt: skip
            for i, task in enumerate(tasks):
                pts = sorted((r["metrics"].get(key, 1.0), r["metrics"]["accuracy"]) for r in s15 if r["params"]["shortcut"] == shortcut and r["params"]["task"] == task)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=task)
            ax.set_xlabel(label)
            ax.set_ylabel("accuracy")
            ax.set_title(f"System-1.5 {shortcut} shortcut (thresholds 1.0 .. 0.5)")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "latent_reasoning_system15.png", dpi=100)
        plt.close(fig)
        made.append(("System-1.5: accuracy vs compute kept (depth: CoT model; steps: final Coconut model)", "latent_reasoning_system15.png"))
    cop = next((r for r in rows if r["method"] == "cache-aug" and "nll_by_distance_with" in r["metrics"]), None)
    if cop is not None:
        import math

        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for key, label in (("nll_by_distance_without", "reference LM"), ("nll_by_distance_with", f"+ {cop['params']['k']} latents (P33)")):
            v = cop["metrics"][key]
            ax.plot(range(1, len(v) + 1), [math.exp(x) for x in v], "o-", ms=3, label=label)
        ax.set_xlabel("distance from the augmentation (tokens)")
        ax.set_ylabel("perplexity")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "latent_reasoning_cache_augmentation.png", dpi=100)
        plt.close(fig)
        made.append(("P33 cache augmentation: held-out perplexity by distance, with and without latents", "latent_reasoning_cache_augmentation.png"))
    return made
