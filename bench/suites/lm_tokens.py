"""Suite `lm-tokens`: how a language model holds its tokens (P28 lexinvariant LMs, P47
metadata conditioning on PCFGs, P69 CAFT). Every model is a committed checkpoint trained here
(``assets/lm-tokens/<preset>``, 3 seeds per arm; ``tokenworks train lm-variant --preset NAME``),
and every arm has its control in the same run, trained by the same recipe with one change.

(a) P28: a 4-layer d=64 Llama with per-sequence random Gaussian embeddings vs the same Llama
    with a learned table (same steps, data, seeds): held-out prose perplexity by context
    position (buckets of positions in 256-token windows). Claim: the lexinvariant LM's gap to
    the standard LM shrinks as the context grows (judged per seed: gap in the last bucket vs
    the first, against the seed spread). Also both on a substitution cipher of the same
    windows (a random vocabulary permutation per window): the standard LM breaks, the
    lexinvariant LM's perplexity is unchanged in distribution; and in-context deciphering: the
    next-token accuracy on the ciphered windows by context position (the lexinvariant LM should
    learn the cipher from the context, the standard LM cannot).
(b) P47: 3-layer Llamas on PCFG documents with 4 latent rule sets, trained with and without a
    one-token metadata prefix naming the rule set; evaluated WITHOUT metadata (the downstream
    setting): next-token loss by prompt length, and a linear probe of the rule set from the
    hidden state at that length. Claim: metadata helps only past a context length (hurts or
    ties below it). The metadata model with its metadata given is shown as the oracle.
(c) P69: the reference LM fine-tuned on the legal corpus with CAFT (4 auxiliary heads, the
    official defaults) vs plain next-token fine-tuning (same steps, data, seeds) and the
    untouched reference LM, and an ablation with the auxiliary coefficient 1.0 (``caft1``, 100x
    the official default): perplexity of multi-token legal concepts (tokens 2..m of a phrase
    from a fixed list, given the context and its first token), their exact greedy generation,
    and overall held-out legal perplexity.
(d) P61: a masked diffusion LM adapted here from the reference LM (``assets/lm-tokens/p61-mdlm``,
    ``tokenworks train diffusion-lm``) continues held-out prose prompts (96 tokens -> 32, blocks
    of 8, greedy, one token per step unless said). Arms in one run on the same prompts: the
    uncached confidence sampler (LLaDA), MDLM's random order, dKV-Cache-Decode, FreeCache
    (refresh at block starts; and every 4 steps), FreeCache with refresh every step (must equal
    the uncached sampler), FreeCache + guided unmasking by the reference AR LM, confidence
    unmasking with 2 tokens per step (the fewer-steps heuristic), and the AR LM's own greedy
    decoding with its KV cache. Metrics per sequence: DLM forwards (NFE), positions recomputed,
    guide forwards, wall time (CPU; ratios to the uncached sampler in this run), perplexity of
    the answers under the stronger 8-layer LM (``decode/large-lm``), distinct bigrams (a
    repetition check: greedy answers of small LMs loop, which lowers perplexity), and exact
    agreement with the uncached sampler. Spread: three disjoint prompt groups.
(e) P42: Contextual Memory Reweaving on the KV suite's frozen task model (``assets/kv/task-model``):
    hidden states of layers 1, 3, 4 re-woven into layer 5's input by a small trained attention
    (``assets/lm-tokens/p42-*``, 3 seeds; ``tokenworks train reweaving``) vs the same block
    reading only layer 4 (width doubled: equal parameters, same recipe) and the untouched model.
    Record retrieval (the KV suite's task (a), 16 records): exact recall of the 2-token value by distance
    between the record and the query, first-token recall of rare vs common values (value token
    counts in held-out prose, split at the median over the value words), and the overhead per token (wall-time ratio, parameters).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import torch
import torch.nn.functional as F

import tokenworks as tw
from bench.verdict import judge

NAME = "lm-tokens"
DESCRIPTION = """LM token variants, each with its control trained here by the same recipe (3 seeds): (a) P28 lexinvariant LM vs standard LM,
perplexity by context position and on a substitution cipher; (b) P47 PCFG pre-training with vs without a metadata prefix,
loss and rule-set probe by prompt length; (c) P69 CAFT vs plain fine-tuning of the reference LM on legal text, concept-span
perplexity and exact generation; (e) P42 memory reweaving vs a same-layer control, recall by distance, rare values, overhead; (f) P44 word-pooled vs byte and subword LMs, next-word accuracy by frequency; (d) P61 FreeCache and guided unmasking of a masked diffusion LM vs no cache, dKV-Cache,
confidence and random unmasking: forwards, positions and wall time per sequence, answer perplexity, agreement."""

SEEDS = (0, 1, 2)
P28_BUCKETS = ((0, 8), (8, 32), (32, 64), (64, 128), (128, 256))
P47_LENGTHS = (1, 2, 4, 8, 16, 32, 64, 127)
CONCEPTS = (
    "GNU General Public License", "GNU Lesser General Public License", "Free Software Foundation", "Apache License",
    "Creative Commons", "WITHOUT WARRANTY OF ANY KIND", "WITHOUT ANY WARRANTY", "MERCHANTABILITY",
    "FITNESS FOR A PARTICULAR PURPOSE", "IN NO EVENT SHALL", "BUT NOT LIMITED TO", "copyright holders",
    "Redistributions of source code", "Redistributions in binary form", "the above copyright notice",
    "this permission notice", "derivative works", "intellectual property", "royalty-free", "non-exclusive",
    "sublicense", "limitation of liability", "PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES", "Original Code",
    "Covered Code", "source code", "without restriction", "OTHER LIABILITY",
)  # fmt: skip


def _sizes(quick: bool) -> dict[str, int]:
    return dict(p28_windows=16 if quick else 64, p47_docs=96 if quick else 384, p69_windows=16 if quick else 64,
                p69_per_concept=4 if quick else 16, p61_prompts=6 if quick else 24,
                p42_rows=6 if quick else 48, p42_contexts=(512, 1536) if quick else (512, 1024, 1536, 2048, 3072),
                p44_contexts=64 if quick else 512)  # fmt: skip


def _row(section: str, method: str, paper, params: dict, metrics: dict, budget: dict | None = None) -> dict:
    return {"family": "TXT", "method": method, "paper": paper, "params": {"section": section, **params}, "budget": budget or {},
            "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}}  # fmt: skip


def _load(name: str, ctx):
    from tokenworks.text.variant_lm import variant_lm

    try:
        return variant_lm(name, device=ctx.device)
    except FileNotFoundError:
        ctx.log(f"lm-tokens: skipping {name}: not trained (`tokenworks train lm-variant --preset {name}`)")
        return None


def _verdict(method_ys: list[float], control_ys: list[float], *, higher_is_better: bool) -> tuple[str, float, float]:
    """Method vs control at one point, per seed (bench.verdict.judge with one control point)."""
    v = judge((0.0, method_ys), [(0.0, control_ys)], higher_is_better=higher_is_better)
    return v.verdict, v.gap, v.spread


def _paired(method_ys: list[float], control_ys: list[float], *, higher_is_better: bool) -> dict[str, float]:
    """Per-seed gains (method minus its same-seed control, signed so > 0 favours the method):
    the arms of one seed share the initialisation and the data order."""
    g = [(m - c) * (1 if higher_is_better else -1) for m, c in zip(method_ys, control_ys)]
    return {"paired_gain_min": min(g), "paired_gain_max": max(g)}


# ---------------------------------------------------------------------------------- P28
@torch.no_grad()
def _per_position_accuracy(variant, model, windows: torch.Tensor, seeds: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(N, T) bool: the argmax of ``variant``'s logits equals the next token of ``windows`` (N, T + 1)."""
    out = []
    for i in range(0, windows.shape[0], batch_size):
        w = windows[i : i + batch_size]
        out.append(variant.logits(model, w[:, :-1], seeds=seeds[i : i + batch_size]).argmax(-1) == w[:, 1:])
    return torch.cat(out)


def _p28(ctx, S) -> list[dict]:
    from tokenworks.data import load_prose
    from tokenworks.models.lm import token_stream
    from tokenworks.text import per_position_nll

    rows, by = [], {}
    g = torch.Generator().manual_seed(ctx.seed)
    windows = None
    for arm, variant in (("lexinvariant", "lexinvariant"), ("standard", "standard_lm")):
        for s in SEEDS:
            got = _load(f"p28-{arm}-s{s}", ctx)
            if got is None:
                continue
            lm, tok, info = got
            if windows is None:
                stream = token_stream(load_prose("test").documents, tok)
                starts = torch.randint(0, stream.numel() - 258, (S["p28_windows"],), generator=g)
                windows = torch.stack([stream[i : i + 257] for i in starts.tolist()])  # (N, 257)
                perms = torch.stack([torch.randperm(len(tok), generator=g) for _ in range(len(windows))])  # (N, V)
                ciphered = torch.gather(perms, 1, windows)
                seeds = torch.arange(len(windows)) + 10_000 * (ctx.seed + 1)
                seen = torch.zeros(len(windows), 256, dtype=torch.bool)  # target already in its window's context
                for b, w in enumerate(windows.tolist()):
                    earlier = {w[0]}
                    for t in range(256):
                        seen[b, t] = w[t + 1] in earlier
                        earlier.add(w[t + 1])
            v = tw.create(variant)
            t0 = time.perf_counter()
            nll = per_position_nll(v, lm, windows.to(ctx.device), seeds=seeds).cpu()  # (N, 256)
            secs = time.perf_counter() - t0
            nll_c = per_position_nll(v, lm, ciphered.to(ctx.device), seeds=seeds).cpu()
            acc_c = _per_position_accuracy(v, lm, ciphered.to(ctx.device), seeds).cpu().float()  # in-context deciphering
            by[(arm, s)] = nll
            by[(arm + "-cipher-acc", s)] = acc_c
            for lo, hi in P28_BUCKETS:
                rows.append(_row("p28", variant, "P28" if arm == "lexinvariant" else None, {"positions": f"{lo}-{hi}", "seed": s, "text": "cipher"},
                                 {"cipher_accuracy": float(acc_c[:, lo:hi].mean()), "cipher_nll": float(nll_c[:, lo:hi].mean()), "cipher_pos_mid": (lo + hi) / 2}))  # fmt: skip
            by[(arm + "-cipher", s)] = float(nll_c.mean() - nll.mean())  # nats the cipher costs
            for lo, hi in P28_BUCKETS:
                rows.append(_row("p28", variant, "P28" if arm == "lexinvariant" else None, {"positions": f"{lo}-{hi}", "seed": s},
                                 {"ppl": math.exp(nll[:, lo:hi].mean()), "nll": float(nll[:, lo:hi].mean()), "position_mid": (lo + hi) / 2}))  # fmt: skip
            rows.append(_row("p28", variant, "P28" if arm == "lexinvariant" else None, {"positions": "all", "seed": s},
                             {"ppl": math.exp(nll.mean()), "ppl_cipher": math.exp(nll_c.mean()), "ms_per_window": 1000 * secs / len(windows),
                              "nll_repeated_tokens": float(nll[seen].mean()), "nll_first_occurrences": float(nll[~seen].mean()),
                              "nll_uniform": math.log(len(tok)),
                              "train_seconds": info.get("train_seconds", float("nan")), "train_loss": info.get("train_loss", float("nan"))},
                             {"steps": len(info.get("history", [])), "params": sum(p.numel() for p in lm.parameters())}))  # fmt: skip
    seeds_both = [s for s in SEEDS if ("lexinvariant", s) in by and ("standard", s) in by]
    if seeds_both:
        (lo0, hi0), (lo1, hi1) = P28_BUCKETS[0], P28_BUCKETS[-1]
        first = [float(by["lexinvariant", s][:, lo0:hi0].mean() - by["standard", s][:, lo0:hi0].mean()) for s in seeds_both]
        last = [float(by["lexinvariant", s][:, lo1:hi1].mean() - by["standard", s][:, lo1:hi1].mean()) for s in seeds_both]
        verdict, gap, spread = _verdict(last, first, higher_is_better=False)
        rows.append(_row("p28", "lexinvariant", "P28", {"claim": "gap to the standard LM shrinks with context"},
                         {"gap_nats_first_bucket": sum(first) / len(first), "gap_nats_last_bucket": sum(last) / len(last),
                          "ppl_ratio_last_bucket": math.exp(sum(last) / len(last)), "shrink_nats": gap, "seed_spread": spread,
                          "seeds": len(seeds_both), "verdict": verdict}))  # fmt: skip
        gain = {a: [float(by[a + "-cipher-acc", s][:, lo1:hi1].mean() - by[a + "-cipher-acc", s][:, lo0:hi0].mean()) for s in seeds_both] for a in ("lexinvariant", "standard")}
        verdict, gap, spread = _verdict(gain["lexinvariant"], gain["standard"], higher_is_better=True)
        rows.append(_row("p28", "lexinvariant", "P28", {"claim": "in-context deciphering: next-token accuracy on a substitution cipher grows with context more than the standard LM's"},
                         {"acc_gain_lexinvariant": sum(gain["lexinvariant"]) / len(seeds_both), "acc_gain_standard": sum(gain["standard"]) / len(seeds_both),
                          "acc_last_bucket_lexinvariant": sum(float(by["lexinvariant-cipher-acc", s][:, lo1:hi1].mean()) for s in seeds_both) / len(seeds_both),
                          "gap": gap, "seed_spread": spread, "seeds": len(seeds_both), "verdict": verdict}))  # fmt: skip
        lex_c = [by["lexinvariant-cipher", s] for s in seeds_both]
        std_c = [by["standard-cipher", s] for s in seeds_both]
        verdict, gap, spread = _verdict(lex_c, std_c, higher_is_better=False)
        rows.append(_row("p28", "lexinvariant", "P28", {"claim": "a substitution cipher costs the lexinvariant LM less than the standard LM"},
                         {"cipher_cost_nats_lexinvariant": sum(lex_c) / len(lex_c), "cipher_cost_nats_standard": sum(std_c) / len(std_c),
                          "gap": gap, "seed_spread": spread, "seeds": len(seeds_both), "verdict": verdict}))  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------- P47
def _fit_probe(x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int) -> torch.nn.Linear:
    """Multinomial logistic regression (L-BFGS, small L2) on standardized features."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), y) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


@torch.no_grad()
def _p47(ctx, S) -> list[dict]:
    from tokenworks.data import PCFGFamily
    from tokenworks.text.variant_lm import preset

    fam = PCFGFamily(**preset("p47-plain-s0").pcfg)
    g = torch.Generator().manual_seed(12_345 + ctx.seed)  # held-out documents (training draws from other seeds)
    docs, ks = fam.batch(S["p47_docs"], 128, g)  # (N, 128)
    half = len(docs) // 2
    rows, by = [], {}
    for arm, variant in (("metadata", "metadata_prefix"), ("plain", "standard_lm")):
        for s in SEEDS:
            got = _load(f"p47-{arm}-s{s}", ctx)
            if got is None:
                continue
            lm, _, info = got
            out = lm(input_ids=docs.to(ctx.device), output_hidden_states=True)
            nll = F.cross_entropy(out.logits[:, :-1].flatten(0, 1).float(), docs[:, 1:].flatten().to(ctx.device), reduction="none").view(len(docs), -1).cpu()
            hid = out.hidden_states[-1].cpu()  # (N, 128, D)
            by[(arm, s)] = nll
            paper = "P47" if arm == "metadata" else None
            for L in P47_LENGTHS:  # prompt length L: the loss of the next token, the probe at the L-th state
                loss = float(nll[:, L - 1 : min(127, 2 * L)].mean())  # targets L .. 2L-1 (prompt length L..2L-1)
                x = hid[:, L - 1]
                mu, sd = x[:half].mean(0), x[:half].std(0) + 1e-6
                with torch.enable_grad():
                    probe = _fit_probe((x[:half] - mu) / sd, ks[:half], fam.n_rule_sets, ctx.seed)
                acc = float((probe((x[half:] - mu) / sd).argmax(-1) == ks[half:]).float().mean())
                rows.append(_row("p47", variant, paper, {"prompt_len": L, "seed": s, "metadata_at_test": False},
                                 {"loss": loss, "probe_accuracy": acc}))  # fmt: skip
            if arm == "metadata":  # the oracle: metadata given at test time
                meta = torch.tensor([[fam.meta_token(int(k))] for k in ks])
                rows_m = torch.cat([meta, docs], 1).to(ctx.device)
                lg = lm(input_ids=rows_m).logits[:, :-1].float()
                nll_m = F.cross_entropy(lg.flatten(0, 1), rows_m[:, 1:].flatten(), reduction="none").view(len(docs), -1).cpu()[:, 1:]  # doc targets 1..127
                for L in P47_LENGTHS:
                    rows.append(_row("p47", variant, paper, {"prompt_len": L, "seed": s, "metadata_at_test": True},
                                     {"loss": float(nll_m[:, L - 1 : min(127, 2 * L)].mean())}))  # fmt: skip
            rows.append(_row("p47", variant, paper, {"prompt_len": "all", "seed": s, "metadata_at_test": False},
                             {"loss": float(nll.mean()), "train_seconds": info.get("train_seconds", float("nan")), "train_loss": info.get("train_loss", float("nan"))},
                             {"steps": len(info.get("history", []))}))  # fmt: skip
    seeds_both = [s for s in SEEDS if ("metadata", s) in by and ("plain", s) in by]
    if seeds_both:
        # the paper's two effects: metadata training HURTS where the prompt cannot reveal the
        # latent rule set (short prompts) and HELPS once it can (long prompts)
        for name, (lo, hi), hurts in (("short", (0, 4), True), ("long", (63, 127), False)):
            m = [float(by["metadata", s][:, lo:hi].mean()) for s in seeds_both]
            c = [float(by["plain", s][:, lo:hi].mean()) for s in seeds_both]
            verdict, gap, spread = _verdict(m, c, higher_is_better=hurts)
            claim = f"metadata training {'raises' if hurts else 'lowers'} the loss at {name} prompts (context {lo + 1}-{hi}, no metadata at test)"
            rows.append(_row("p47", "metadata_prefix", "P47", {"claim": claim},
                             {"loss_metadata": sum(m) / len(m), "loss_plain": sum(c) / len(c), "effect_in_claimed_direction_nats": gap,
                              "seed_spread": spread, **_paired(m, c, higher_is_better=hurts), "seeds": len(seeds_both), "verdict": verdict}))  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------- P69
def _concept_occurrences(tok, docs, per_concept: int, ctx_len: int = 96) -> list[tuple[str, list[int], list[int]]]:
    """(concept, context ids ending with the concept's first token, the concept's other tokens)."""
    out = []
    for concept in CONCEPTS:
        found = 0
        for d in docs:
            if found >= per_concept:
                break
            for m in re.finditer(re.escape(concept), d):
                if found >= per_concept or m.start() < 200:
                    continue
                enc = tok(d[max(0, m.start() - 1500) : m.end()], add_special_tokens=False, return_offsets_mapping=True)
                base = max(0, m.start() - 1500)
                s, e = m.start() - base, m.end() - base
                span = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > s and a < e]
                if len(span) < 2 or enc["offset_mapping"][span[-1]][1] != e:
                    continue  # the concept must end on a token boundary
                ids = enc["input_ids"]
                first, rest = span[0], [ids[i] for i in span[1:]]
                context = ids[max(0, first + 1 - ctx_len) : first + 1]
                out.append((concept, context, rest))
                found += 1
                break  # one occurrence per document
    return out


@torch.no_grad()
def _concept_scores(lm, occ, device) -> dict[str, float]:
    nll_sum, n_tok, exact = 0.0, 0, 0
    for _, context, rest in occ:
        ids = torch.tensor([context + rest], device=device)
        logits = lm(input_ids=ids).logits[0].float()
        c = len(context)
        nll_sum += float(F.cross_entropy(logits[c - 1 : c - 1 + len(rest)], ids[0, c:], reduction="sum"))
        n_tok += len(rest)
        gen = lm.generate(torch.tensor([context], device=device), attention_mask=torch.ones(1, len(context), dtype=torch.long, device=device),
                          max_new_tokens=len(rest), do_sample=False, pad_token_id=0)[0, c:].tolist()  # fmt: skip
        exact += int(gen == rest)
    return {"concept_ppl": math.exp(nll_sum / max(1, n_tok)), "concept_exact": exact / max(1, len(occ)), "concepts": len(occ), "concept_tokens": n_tok}


def _p69(ctx, S) -> list[dict]:
    from tokenworks.data import load_legal
    from tokenworks.models import evaluate_lm, reference_lm

    docs = list(load_legal("test").documents)
    rows, by = [], {}
    occ = None
    arms = [("reference", None)] + [(f"{arm}-s{s}", s) for arm in ("caft", "caft1", "plain") for s in SEEDS]
    for name, s in arms:
        if name == "reference":
            lm, tok = reference_lm(device=ctx.device, train_if_missing=False)
            info = {}
        else:
            got = _load(f"p69-{name}", ctx)
            if got is None:
                continue
            lm, tok, info = got
        if occ is None:
            occ = _concept_occurrences(tok, docs, S["p69_per_concept"])
        m = _concept_scores(lm, occ, ctx.device)
        m["ppl"] = evaluate_lm(lm, tok, docs, seq_len=128, max_windows=S["p69_windows"])["ppl"]
        arm = name.split("-")[0]
        method = {"caft": "caft", "caft1": "caft", "plain": "standard_lm", "reference": "reference_lm"}[arm]
        by[(arm, s)] = m
        extra = {"heads_coefficient": 1.0} if arm == "caft1" else {}
        rows.append(_row("p69", method, "P69" if arm.startswith("caft") else None, {"arm": arm, "seed": s, **extra}, {**m, "train_seconds": info.get("train_seconds", float("nan"))},
                         {"steps": len(info.get("history", []))}))  # fmt: skip
    for arm, label in (("caft", "CAFT (official coefficient 0.01)"), ("caft1", "CAFT with coefficient 1.0")):
        seeds_both = [s for s in SEEDS if (arm, s) in by and ("plain", s) in by]
        if not seeds_both:
            continue
        for metric, hib in (("concept_ppl", False), ("concept_exact", True), ("ppl", False)):
            m = [by[arm, s][metric] for s in seeds_both]
            c = [by["plain", s][metric] for s in seeds_both]
            verdict, gap, spread = _verdict(m, c, higher_is_better=hib)
            rows.append(_row("p69", "caft", "P69", {"claim": f"{label} improves {metric} over plain fine-tuning"},
                             {"caft": sum(m) / len(m), "plain": sum(c) / len(c), "gain": gap, "seed_spread": spread, **_paired(m, c, higher_is_better=hib),
                              "seeds": len(seeds_both), "verdict": verdict}))  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------- P61
P61_PROMPT, P61_GEN, P61_BLOCK = 96, 32, 8
P61_ARMS = (  # (label, method, options, guided)
    ("uncached", "llada_confidence", {}, False),
    ("random-order", "mdlm_sampler", {}, False),
    ("dkv-cache", "dkv_cache", {}, False),
    ("freecache", "freecache", {}, False),
    ("freecache-refresh4", "freecache", {"refresh": 4}, False),
    ("freecache-refresh1", "freecache", {"refresh": 1}, False),
    ("guided-freecache", "guided_diffusion", {}, True),
    ("uncached-2-per-step", "llada_confidence", {"tokens_per_step": 2}, False),
)


def _distinct2(tokens: torch.Tensor) -> float:
    pairs = [tuple(r[i : i + 2]) for r in tokens.tolist() for i in range(len(r) - 1)]
    per_row = len(tokens[0]) - 1
    return sum(len(set(pairs[i : i + per_row])) for i in range(0, len(pairs), per_row)) / max(1, len(pairs))


@torch.no_grad()
def _p61(ctx, S) -> list[dict]:
    from tokenworks.data import load_prose
    from tokenworks.decode.large_lm import large_lm
    from tokenworks.models import reference_lm
    from tokenworks.models.lm import token_stream
    from tokenworks.text.diffusion_lm import diffusion_lm

    try:
        dlm, info = diffusion_lm(device=ctx.device)
        judge_lm, _ = large_lm(device=ctx.device, train_if_missing=False)
    except FileNotFoundError as e:
        ctx.log(f"lm-tokens: skipping P61: {e}")
        return []
    guide, tok = reference_lm(device=ctx.device, train_if_missing=False)
    stream = token_stream(load_prose("test").documents, tok)
    g = torch.Generator().manual_seed(61_000 + ctx.seed)
    n = S["p61_prompts"]
    starts = torch.randint(0, stream.numel() - P61_PROMPT - P61_GEN, (n,), generator=g)
    prompts = torch.stack([stream[i : i + P61_PROMPT] for i in starts.tolist()]).to(ctx.device)
    groups = [list(range(k, n, 3)) for k in range(3)]

    def judge_nll(ans: torch.Tensor) -> torch.Tensor:  # (n,) mean NLL of each answer under the large LM
        ids = torch.cat([prompts, ans.to(ctx.device)], 1)
        lg = judge_lm(input_ids=ids).logits[:, P61_PROMPT - 1 : -1].float()
        return F.cross_entropy(lg.flatten(0, 1), ids[:, P61_PROMPT:].flatten(), reduction="none").view(n, -1).mean(1).cpu()

    # warm-up (first calls allocate)
    tw.create("freecache", gen_len=P61_GEN, block=P61_BLOCK).generate(dlm, prompts[:1], seed=ctx.seed)
    res = {}
    for label, method, opts, guided in P61_ARMS:
        s = tw.create(method, gen_len=P61_GEN, block=P61_BLOCK, **opts)
        out = s.generate(dlm, prompts, seed=ctx.seed, guide=guide if guided else None)
        res[label] = (out.tokens, out.per_sequence, method, opts)
    ar_tokens, ar_secs = [], []
    for r in range(n):  # the guide alone: greedy decoding with its KV cache
        t0 = time.perf_counter()
        o = guide.generate(prompts[r : r + 1], attention_mask=torch.ones_like(prompts[r : r + 1]), max_new_tokens=P61_GEN, do_sample=False, pad_token_id=0)
        ar_secs.append(time.perf_counter() - t0)
        ar_tokens.append(o[0, P61_PROMPT:].cpu())
    ar_tokens = torch.stack(ar_tokens)

    ref_tokens, ref_per = res["uncached"][0], res["uncached"][1]
    rows, by = [], {}
    for label, (tokens, per, method, opts) in [*res.items(), ("ar-greedy", (ar_tokens, [{"seconds": x, "nfe": 0.0, "positions": 0.0} for x in ar_secs], "reference_lm", {}))]:
        nll = judge_nll(tokens)
        secs = torch.tensor([p["seconds"] for p in per])
        pos = torch.tensor([p["positions"] for p in per])
        ref_secs = torch.tensor([p["seconds"] for p in ref_per])
        ref_pos = torch.tensor([p["positions"] for p in ref_per])
        same = (tokens == ref_tokens).all(1)
        by[label] = {"nll": [float(nll[gi].mean()) for gi in groups], "seconds": [float(secs[gi].mean()) for gi in groups],
                     "speedup": [float(ref_secs[gi].mean() / secs[gi].mean()) for gi in groups]}  # fmt: skip
        m = {"nfe": sum(p["nfe"] for p in per) / n, "positions": float(pos.mean()), "guide_calls": sum(p.get("guide_calls", 0.0) for p in per) / n,
             "guide_positions": sum(p.get("guide_positions", 0.0) for p in per) / n, "ms_per_sequence": 1000 * float(secs.mean()),
             "speedup_wall": float(ref_secs.mean() / secs.mean()), "speedup_positions": float(ref_pos.mean() / pos.mean()) if float(pos.mean()) > 0 else float("nan"),
             "answer_ppl": math.exp(float(nll.mean())), "distinct2": _distinct2(tokens), "agree_sequences": float(same.float().mean()),
             "agree_tokens": float((tokens == ref_tokens).float().mean()), "equals_ar_greedy": float((tokens == ar_tokens).all(1).float().mean())}  # fmt: skip
        paper = "P61" if method in ("freecache", "guided_diffusion") else None
        rows.append(_row("p61", method, paper, {"arm": label, **opts, "prompt_len": P61_PROMPT, "gen_len": P61_GEN, "block": P61_BLOCK, "seed": ctx.seed}, m,
                         {"prompts": n, "dlm_params": sum(p.numel() for p in dlm.parameters()), "dlm_train_seconds": info.get("train_seconds", float("nan"))}))  # fmt: skip
    truth = torch.stack([stream[i + P61_PROMPT : i + P61_PROMPT + P61_GEN] for i in starts.tolist()])
    rows.append(_row("p61", "held_out_text", None, {"arm": "held-out continuation"}, {"answer_ppl": math.exp(float(judge_nll(truth).mean())), "distinct2": _distinct2(truth)}))
    same = (res["freecache-refresh1"][0] == ref_tokens).all(1).float().mean()
    rows.append(_row("p61", "freecache", "P61", {"claim": "FreeCache with refresh every step equals the uncached sampler"},
                     {"agree_sequences": float(same), "verdict": "held" if float(same) == 1.0 else "did not hold"}))  # fmt: skip
    claims = (  # the last claim of a method is its README headline
        ("dkv-cache", "dKV-Cache-Decode is faster than the uncached sampler (wall time)", "seconds", False, "uncached"),
        ("freecache", "FreeCache lowers answer perplexity vs the uncached sampler (paper: no loss, so a tie is its claim)", "nll", False, "uncached"),
        ("freecache", "FreeCache is faster than dKV-Cache-Decode (wall time)", "seconds", False, "dkv-cache"),
        ("freecache", "FreeCache (refresh at block starts) is faster than the uncached sampler (wall time)", "seconds", False, "uncached"),
        ("guided-freecache", "guided unmasking lowers answer perplexity vs confidence unmasking", "nll", False, "uncached"),
        ("guided-freecache", "guided FreeCache is faster than 2-tokens-per-step confidence unmasking", "seconds", False, "uncached-2-per-step"),
        ("guided-freecache", "guided FreeCache is faster than the AR guide's own greedy decoding (paper: comparable or faster)", "seconds", False, "ar-greedy"),
        ("guided-freecache", "guided FreeCache is faster than the uncached sampler (wall time)", "seconds", False, "uncached"),
    )  # fmt: skip
    for arm, claim, metric, hib, control in claims:
        v, gap, spread = _verdict(by[arm][metric], by[control][metric], higher_is_better=hib)
        rows.append(_row("p61", "guided_diffusion" if arm.startswith("guided") else ("dkv_cache" if arm == "dkv-cache" else "freecache"), "P61" if arm != "dkv-cache" else None,
                         {"claim": claim}, {"method": sum(by[arm][metric]) / 3, "control": sum(by[control][metric]) / 3, "gain": gap, "seed_spread": spread,
                                             "speedup_wall": sum(by[arm]["speedup"]) / 3, "spread_over": "3 prompt groups", "verdict": v}))  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------- P42
P42_DIST = ((0, 256), (256, 1024), (1024, 4096))


@torch.no_grad()
def _recall(model, ids: torch.Tensor, answers: torch.Tensor, device, batch: int = 4) -> torch.Tensor:
    """(n, value_len) bool: is each value token the argmax given the query and the value tokens
    before it. One teacher-forced forward; a row is all-True exactly when greedy decoding of
    the value would be right (greedy stays on the true prefix while it is right)."""
    out = []
    V = answers.shape[1]
    for i in range(0, len(ids), batch):
        x = torch.cat([ids[i : i + batch], answers[i : i + batch, :-1]], 1).to(device)
        pred = model(input_ids=x).logits[:, -V:].argmax(-1).cpu()
        out.append(pred == answers[i : i + batch])
    return torch.cat(out)


@torch.no_grad()
def _p42(ctx, S) -> list[dict]:
    from tokenworks.kvcache.reweave import ReweaveConfig, reweave_model
    from tokenworks.kvcache.task_model import task_model
    from tokenworks.kvcache.tasks import kv_retrieval, prose_stream, task_vocab

    try:
        base, tok = task_model(device=ctx.device, train_if_missing=False)
    except FileNotFoundError as e:
        ctx.log(f"lm-tokens: skipping P42: {e}")
        return []
    counts = torch.bincount(prose_stream(tok, "test"), minlength=len(tok))  # held-out prose counts (the train split takes ~40 s to tokenize)
    vals = task_vocab(tok).values
    rare_cut = float(counts[vals].float().median())
    data = []
    for L in S["p42_contexts"]:
        d = kv_retrieval(tok, n=S["p42_rows"], context_len=L, n_pairs=16, seed=42_000 + L + ctx.seed)
        dist = ((1 - d["depth"]) * L).round()
        data.append((L, d["input_ids"], d["answers"], dist))
    arms = [("base", None, None)] + [(m, m, s) for m in ("memory_reweaving", "reweave_control") for s in SEEDS]
    rows, by = [], {}
    timing_ids = data[0][1][:4].to(ctx.device)
    for label, method, seed in arms:
        if method is None:
            model, info, extra = base, {}, 0
        else:
            try:
                model, _, info = reweave_model(ReweaveConfig(method=method, seed=seed), device=ctx.device)
            except FileNotFoundError:
                ctx.log(f"lm-tokens: skipping {method} s{seed}: not trained (`tokenworks train reweaving --method {method} --seed {seed}`)")
                continue
            extra = sum(p.numel() for p in model.reweaver.parameters())
        ok, first, dists, rare = [], [], [], []
        for L, ids, answers, dist in data:
            got = _recall(model, ids, answers, ctx.device)
            ok.append(got.all(1))
            first.append(got[:, 0])
            dists.append(dist)
            rare.append(counts[answers[:, 0]].float() < rare_cut)
        ok, first, dists, rare = torch.cat(ok).float(), torch.cat(first).float(), torch.cat(dists), torch.cat(rare)
        t = []
        for _ in range(5):
            t0 = time.perf_counter()
            model(input_ids=timing_ids)
            t.append(time.perf_counter() - t0)
        ms_tok = 1000 * min(t) / timing_ids.numel()
        m = {"recall": float(ok.mean()), "recall_rare_first_token": float(first[rare].mean()), "recall_common_first_token": float(first[~rare].mean()),
             "ms_per_token": ms_tok, "added_params": extra, "train_seconds": info.get("train_seconds", float("nan"))}  # fmt: skip
        for lo, hi in P42_DIST:
            sel = (dists >= lo) & (dists < hi)
            m[f"recall_dist_{lo}_{hi}"] = float(ok[sel].mean()) if sel.any() else float("nan")
        by[(label, seed)] = m
        paper = "P42" if method == "memory_reweaving" else None
        rows.append(_row("p42", method or "task_model", paper, {"arm": label, "seed": seed, "contexts": list(S["p42_contexts"])}, m, {"rows": int(len(ok))}))
    base_m = by.get(("base", None))
    if base_m is not None:
        for r in rows:
            r["metrics"]["overhead_per_token"] = r["metrics"]["ms_per_token"] / base_m["ms_per_token"]
    far = f"recall_dist_{P42_DIST[-1][0]}_{P42_DIST[-1][1]}"
    mem = [by[("memory_reweaving", s)] for s in SEEDS if ("memory_reweaving", s) in by]
    ctl = [by[("reweave_control", s)] for s in SEEDS if ("reweave_control", s) in by]
    if mem and ctl and base_m is not None:
        oh = [x["ms_per_token"] / base_m["ms_per_token"] for x in mem]
        rows.append(_row("p42", "memory_reweaving", "P42", {"claim": "overhead per token of reweaving (wall-time ratio to the base model, CPU)"},
                         {"overhead_ratio": sum(oh) / len(oh), "added_params": mem[0]["added_params"], "verdict": "measured"}))  # fmt: skip
        for metric, label in (("recall_rare_first_token", "rare values (first token)"), (far, "the longest distances"), ("recall", "all distances")):
            a, c = [x[metric] for x in mem], [x[metric] for x in ctl]
            v, gap, spread = _verdict(a, c, higher_is_better=True)
            rows.append(_row("p42", "memory_reweaving", "P42", {"claim": f"layered reweaving raises recall at {label} over the same-layer control"},
                             {"reweaving": sum(a) / len(a), "same_layer": sum(c) / len(c), "base": base_m[metric], "gain": gap, "seed_spread": spread,
                              **_paired(a, c, higher_is_better=True), "seeds": len(a), "verdict": v}))  # fmt: skip
            v, gap, spread = _verdict(a, [base_m[metric]] * len(a), higher_is_better=True)
            rows.append(_row("p42", "memory_reweaving", "P42", {"claim": f"layered reweaving raises recall at {label} over the untouched model"},
                             {"reweaving": sum(a) / len(a), "base": base_m[metric], "gain": gap, "seed_spread": spread, "seeds": len(a), "verdict": v}))  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------- P44
P44_ARMS = ("word_pooled_lm", "byte_lm", "subword_lm")
P44_BUCKETS = (("unseen", 0, 1), ("1-9", 1, 10), ("10-99", 10, 100), ("100+", 100, 10**12))
P44_CONTEXT_WORDS = 32


def _p44(ctx, S) -> list[dict]:
    from collections import Counter

    from torch.utils.flop_counter import FlopCounterMode

    from tokenworks.data import load_prose
    from tokenworks.text.word_pooled import WORD_RE, WordLMConfig, word_lm

    base = WordLMConfig()
    counts: Counter = Counter()
    size = 0
    for d in load_prose("train").documents:  # the training text of the recipe (its first train_bytes)
        if base.train_bytes is not None and size >= base.train_bytes:
            break
        counts.update(w.strip() for w in WORD_RE.findall(d))
        size += len(d.encode("utf-8"))
    g = torch.Generator().manual_seed(44_000 + ctx.seed)
    pairs = []
    docs = [WORD_RE.findall(d) for d in load_prose("test").documents]
    docs = [d for d in docs if len(d) > P44_CONTEXT_WORDS + 1]
    while len(pairs) < S["p44_contexts"]:
        d = docs[int(torch.randint(0, len(docs), (1,), generator=g))]
        i = int(torch.randint(P44_CONTEXT_WORDS, len(d) - 1, (1,), generator=g))
        if d[i].strip():
            pairs.append(("".join(d[i - P44_CONTEXT_WORDS : i]), d[i]))
    contexts, truth = [c for c, _ in pairs], [w for _, w in pairs]
    freq = torch.tensor([counts.get(w.strip(), 0) for w in truth])
    rows, by = [], {}
    for arm in P44_ARMS:
        for s in SEEDS:
            try:
                method, net, info = word_lm(WordLMConfig(method=arm, seed=s), device=ctx.device)
            except FileNotFoundError:
                if s == 0:
                    ctx.log(f"lm-tokens: skipping {arm} s{s}: not trained (`tokenworks train word-lm --method {arm} --seed {s}`)")
                continue
            t0 = time.perf_counter()
            pred = []
            for i in range(0, len(contexts), 32):
                pred += method.next_words(net, contexts[i : i + 32])
            secs = time.perf_counter() - t0
            ok = torch.tensor([p == t for p, t in zip(pred, truth)], dtype=torch.float32)
            with FlopCounterMode(display=False) as fc, torch.no_grad():
                method.loss(net, contexts[:8])
            m = {"next_word_acc": float(ok.mean()), "ms_per_prediction": 1000 * secs / len(contexts), "params": sum(p.numel() for p in net.parameters()),
                 "forward_flops_per_window": fc.get_total_flops() / 8, "train_seconds": info.get("train_seconds", float("nan")), "train_loss": info.get("train_loss", float("nan"))}  # fmt: skip
            for name, lo, hi in P44_BUCKETS:
                sel = (freq >= lo) & (freq < hi)
                m[f"acc_{name}"] = float(ok[sel].mean()) if sel.any() else float("nan")
                m[f"n_{name}"] = int(sel.sum())
            by[(arm, s)] = m
            rows.append(_row("p44", arm, "P44" if arm == "word_pooled_lm" else None, {"seed": s, "context_words": P44_CONTEXT_WORDS}, m, {"predictions": len(contexts)}))
    for control in ("byte_lm", "subword_lm"):
        seeds_both = [s for s in SEEDS if ("word_pooled_lm", s) in by and (control, s) in by]
        if not seeds_both:
            continue
        for metric, label in (("acc_unseen", "words unseen in training"), ("acc_1-9", "rare words (1-9 training occurrences)"), ("next_word_acc", "all words")):
            a, c = [by["word_pooled_lm", s][metric] for s in seeds_both], [by[control, s][metric] for s in seeds_both]
            v, gap, spread = _verdict(a, c, higher_is_better=True)
            rows.append(_row("p44", "word_pooled_lm", "P44", {"claim": f"word-pooled LM beats the {control.replace('_', ' ')} at next-word accuracy on {label}"},
                             {"word_pooled": sum(a) / len(a), control: sum(c) / len(c), "gain": gap, "seed_spread": spread, "seeds": len(seeds_both), "verdict": v}))  # fmt: skip
    return rows


def run(ctx) -> list[dict]:
    torch.manual_seed(ctx.seed)
    S = _sizes(ctx.quick)
    rows = []
    for part in ctx.track((_p28, _p47, _p69, _p61, _p42, _p44), "lm-tokens sections"):
        t0 = time.perf_counter()
        got = part(ctx, S)
        ctx.log(f"lm-tokens {part.__name__[1:]}: {len(got)} rows in {time.perf_counter() - t0:.0f} s")
        rows += got
    return rows


# ---------------------------------------------------------------------------------- report
def _claims(rows):
    return [r for r in rows if "claim" in r["params"]]


def summary(rows: list[dict]) -> str:
    lines = ["| section | claim | numbers | verdict |", "|---|---|---|---|"]
    for r in _claims(rows):
        m = r["metrics"]
        nums = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items() if k != "verdict")
        lines.append(f"| {r['params']['section']} | {r['params']['claim']} | {nums} | {m['verdict']} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def headline(method: str, rows: list[dict]) -> str | None:
    c = [r for r in _claims(rows) if r["method"] == method]
    if not c:
        return None
    m = c[-1]["metrics"]
    return f"{c[-1]['params']['claim']}: {m['verdict']}"


def _mean_by(rows, key_fn, metric):
    acc: dict[Any, list[float]] = {}
    for r in rows:
        if metric in r["metrics"]:
            acc.setdefault(key_fn(r), []).append(r["metrics"][metric])
    return {k: (sum(v) / len(v), min(v), max(v)) for k, v in acc.items()}


def _err(d, xs):
    """Asymmetric error bars (mean to min, mean to max), never negative (rounding)."""
    return [[max(0.0, d[x][0] - d[x][1]) for x in xs], [max(0.0, d[x][2] - d[x][0]) for x in xs]]


def plots(rows: list[dict], out_dir) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    p28 = [r for r in rows if r["params"].get("section") == "p28" and "position_mid" in r["metrics"]]
    if p28:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for method in ("lexinvariant", "standard_lm"):
            d = _mean_by([r for r in p28 if r["method"] == method], lambda r: r["metrics"]["position_mid"], "ppl")
            xs = sorted(d)
            ax.errorbar(xs, [d[x][0] for x in xs], yerr=_err(d, xs), marker="o", capsize=3, label=method)
        uniform = [r["metrics"]["nll_uniform"] for r in rows if r["params"].get("section") == "p28" and "nll_uniform" in r["metrics"]]
        if uniform:
            ax.axhline(math.exp(uniform[0]), color="grey", ls=":", lw=1, label="uniform over the vocabulary")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("context position (bucket middle, tokens)")
        ax.set_ylabel("held-out prose perplexity (mean, seed range)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "lm_tokens_p28_ppl_vs_position.png", dpi=100)
        plt.close(fig)
        made.append(("P28 lexinvariant LM vs standard LM (same size, steps, data): perplexity by context position, 3 seeds", "lm_tokens_p28_ppl_vs_position.png"))
    cip = [r for r in rows if r["params"].get("section") == "p28" and "cipher_pos_mid" in r["metrics"]]
    if cip:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for method in ("lexinvariant", "standard_lm"):
            d = _mean_by([r for r in cip if r["method"] == method], lambda r: r["metrics"]["cipher_pos_mid"], "cipher_accuracy")
            xs = sorted(d)
            ax.errorbar(xs, [d[x][0] for x in xs], yerr=_err(d, xs), marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_xlabel("context position (bucket middle, tokens)")
        ax.set_ylabel("next-token accuracy on a substitution cipher")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "lm_tokens_p28_cipher_accuracy.png", dpi=100)
        plt.close(fig)
        made.append(("P28 in-context deciphering: next-token accuracy on substitution-ciphered prose by context position (3 seeds)", "lm_tokens_p28_cipher_accuracy.png"))
    p47 = [r for r in rows if r["params"].get("section") == "p47" and isinstance(r["params"].get("prompt_len"), int)]
    if p47:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for (method, meta), label in ((("metadata_prefix", False), "trained with metadata"), (("standard_lm", False), "trained without"),
                                      (("metadata_prefix", True), "with metadata, given at test (oracle)")):  # fmt: skip
            sel = [r for r in p47 if r["method"] == method and r["params"]["metadata_at_test"] == meta]
            for ax, metric in zip(axes, ("loss", "probe_accuracy")):
                d = _mean_by(sel, lambda r: r["params"]["prompt_len"], metric)
                if d:
                    xs = sorted(d)
                    ax.errorbar(xs, [d[x][0] for x in xs], yerr=_err(d, xs), marker="o", capsize=3, label=label)
        axes[0].set_ylabel("next-token loss (nats), no metadata at test")
        axes[1].set_ylabel("rule-set probe accuracy (4 classes)")
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("prompt length (tokens)")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "lm_tokens_p47_loss_vs_prompt.png", dpi=100)
        plt.close(fig)
        made.append(("P47 metadata conditioning on PCFGs: loss and rule-set probe vs prompt length, trained with vs without metadata (3 seeds)", "lm_tokens_p47_loss_vs_prompt.png"))
    p69 = [r for r in rows if r["params"].get("section") == "p69" and "arm" in r["params"]]
    if p69:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
        arms = ("reference", "plain", "caft", "caft1")
        for ax, metric, label in zip(axes, ("concept_ppl", "concept_exact", "ppl"), ("concept-span perplexity", "concept exact generation", "held-out legal perplexity")):
            d = _mean_by(p69, lambda r: r["params"]["arm"], metric)
            xs = [a for a in arms if a in d]
            ax.bar(xs, [d[a][0] for a in xs], yerr=_err(d, xs), capsize=4, color=[{"reference": "grey", "plain": "C0", "caft": "C1", "caft1": "C2"}[a] for a in xs])
            ax.set_title(label, fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / "lm_tokens_p69_concepts.png", dpi=100)
        plt.close(fig)
        made.append(("P69 CAFT vs plain fine-tuning of the reference LM on legal text (and the untouched LM): concept spans and overall perplexity (3 seeds)", "lm_tokens_p69_concepts.png"))
    p61 = [r for r in rows if r["params"].get("section") == "p61" and "arm" in r["params"] and "speedup_wall" in r["metrics"]]
    if p61:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, key, label in ((axes[0], "speedup_wall", "speed-up in wall time vs uncached (CPU, batch 1)"), (axes[1], "speedup_positions", "speed-up in positions recomputed vs uncached")):
            for r in p61:
                x, y = r["metrics"][key], r["metrics"]["answer_ppl"]
                if isinstance(x, float) and math.isfinite(x):
                    ax.scatter([x], [y], s=30)
                    ax.annotate(r["params"]["arm"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("answer perplexity under the 8-layer LM")
        truth = [r["metrics"]["answer_ppl"] for r in rows if r["params"].get("arm") == "held-out continuation"]
        for ax in axes:
            if truth:
                ax.axhline(truth[0], color="grey", ls=":", lw=1, label="held-out text")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "lm_tokens_p61_quality_vs_speedup.png", dpi=100)
        plt.close(fig)
        made.append(("P61 FreeCache and guided diffusion vs no cache, dKV-Cache, random / confidence unmasking and AR greedy: answer perplexity vs speed-up", "lm_tokens_p61_quality_vs_speedup.png"))
    p42 = [r for r in rows if r["params"].get("section") == "p42" and "arm" in r["params"]]
    if p42:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        keys = [k for k in p42[0]["metrics"] if k.startswith("recall_dist_")]
        mids = [(int(k.split("_")[2]) + int(k.split("_")[3])) / 2 for k in keys]
        for arm, label in (("base", "untouched task model"), ("reweave_control", "same-layer control"), ("memory_reweaving", "layered reweaving (P42)")):
            sel = [r for r in p42 if r["params"]["arm"] == arm]
            if not sel:
                continue
            ys = [[r["metrics"][k] for r in sel] for k in keys]
            mean = [sum(y) / len(y) for y in ys]
            ax.errorbar(mids, mean, yerr=[[m - min(y) for m, y in zip(mean, ys)], [max(y) - m for m, y in zip(mean, ys)]], marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("distance from the record to the query (tokens, bucket middle)")
        ax.set_ylabel("exact recall of the value")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "lm_tokens_p42_recall_vs_distance.png", dpi=100)
        plt.close(fig)
        made.append(("P42 Contextual Memory Reweaving vs a same-layer control and the untouched model: recall vs distance (3 seeds)", "lm_tokens_p42_recall_vs_distance.png"))
    p44 = [r for r in rows if r["params"].get("section") == "p44" and "next_word_acc" in r["metrics"]]
    if p44:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        names = ["next_word_acc", "acc_unseen", "acc_1-9", "acc_10-99", "acc_100+"]
        labels = ["all", "unseen", "1-9", "10-99", "100+"]
        arms = [a for a in ("word_pooled_lm", "byte_lm", "subword_lm") if any(r["method"] == a for r in p44)]
        for k, arm in enumerate(arms):
            d = {n: [r["metrics"][n] for r in p44 if r["method"] == arm and math.isfinite(r["metrics"].get(n, float("nan")))] for n in names}
            ys = [sum(v) / len(v) if v else 0.0 for v in d.values()]
            ax.bar([i + 0.27 * (k - 1) for i in range(len(names))], ys, width=0.27, label=arm)
        ax.set_xticks(range(len(names)), labels)
        ax.set_xlabel("word frequency in the training text")
        ax.set_ylabel("exact next-word accuracy")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "lm_tokens_p44_next_word_by_frequency.png", dpi=100)
        plt.close(fig)
        made.append(("P44 word-pooled LM vs byte LM and subword LM (same blocks, width, data, steps): next-word accuracy by training frequency", "lm_tokens_p44_next_word_by_frequency.png"))
    return made
