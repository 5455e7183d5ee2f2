"""Suite `text-tokenizers`: P55 KL3M domain and character BPE, P29 ZeTT, P57 dynamic tokenization.

(a) Bytes per token (and fertility, vocabulary use) at equal vocabulary (4k, 8k, 16k) on
    held-out legal text and held-out prose, three ways: the general byte-level BPE trained on
    prose, a *plain* byte-level BPE trained on the same legal text (the control that changes one
    thing), and the KL3M domain recipe (custom tokens, 13 special tokens, power-of-two padding)
    on the legal text. KL3M vs plain legal BPE is the recipe's own contribution; plain legal BPE
    vs general BPE is the corpus's. Ablations at 4k: the recipe without custom tokens, without
    the number-like groups (years, citations, section numbers: ~1,260 of the ~1,700), uncased.
(b) Boundary stability under OCR-like noise (rn/m, l/1, O/0, cl/d, e/c, dropped spaces) vs the
    noise rate, for the KL3M character BPE (tokens <= 3 characters) and the BPEs of (a).
(c) The reference LM moved onto the legal domain BPE (4k), which the hypernetworks never saw:
    bits per byte on held-out legal text with the original tokenizer, ZeTT hypernetwork
    embeddings (one hypernetwork trained on prose + legal, one on prose only: the second has
    never seen legal text, so its gain is not domain adaptation), the mean of constituent
    embeddings, random embeddings (and random with the tokens both vocabularies share copied).
    Measured at EQUAL BYTES of context: the same windows of at most 512 bytes of text for every
    tokenizer, each read after the end-of-text token (``tokenworks.text.lm_bytes``); the older
    256-token-window figures, which give the legal tokenizer more context, are kept beside them.
(d) Dynamic tokenization of held-out prose prompts (192 tokens, batch-level BPE merges inside
    the tokenizer's pre-tokens) with ZeTT (every token of the batch from the hypernetwork, the
    paper's choice; or only the merged ones), mean or (as a control) random embeddings for the
    merged tokens: prompt length reduction vs the perplexity of the next 64 tokens (original
    tokenizer, teacher-forced). Prompt + continuation = 256 tokens, the reference LM's training
    context: with a 256-token prompt the continuation sat at positions the LM never trained on,
    and merged (shorter) prompts then *lowered* the perplexity even with random embeddings.
Also: encode throughput of each 4k tokenizer through transformers (what ``recipe.train``
returns) vs the same ``tokenizer.json`` through ``tokenizers`` directly, as a ratio measured
in the same run.

Held-out text is a fixed random sample of whole documents, the last one cut, to a character
budget (quick: 300k characters of each corpus; 60k of legal for the noise and bits-per-byte
measurements). Tokenizers are cached (``$TOKENWORKS_CACHE/models/text/...``) after the first run. The ZeTT
hypernetworks are committed: ``assets/text/zett-hypernet`` (prose + legal; ``tokenworks train
zett-hypernet --out assets/text/zett-hypernet --fp16``) and ``assets/text/zett-hypernet-prose``
(``tokenworks train zett-hypernet --corpus prose --out assets/text/zett-hypernet-prose --fp16``).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import torch

import tokenworks as tw
from tokenworks.data import load_legal, load_prose
from tokenworks.models import LMTrainConfig, evaluate_lm, load_or_train, reference_lm, token_stream
from tokenworks.models.store import write_model_info
from tokenworks.text import boundary_changes, load_tokenizer, ocr_noise, reference_hypernet, text_stats
from tokenworks.text.lm_bytes import bits_per_byte_windows, byte_windows, window_token_counts

NAME = "text-tokenizers"
DESCRIPTION = """Text tokenizers and moving an LM onto them: (a) bytes/token of the KL3M recipe (legal) vs a plain BPE on
the same legal text vs a general BPE (prose) at equal vocabulary, (b) boundary stability of KL3M character BPE under OCR-like noise, (c) the reference LM
on an unseen legal tokenizer with ZeTT hypernetworks (trained with / without legal text) / mean / random embeddings (bits per
byte at equal bytes of context), (d) dynamic
tokenization: prompt length reduction vs continuation perplexity; plus encode throughput vs raw `tokenizers`."""

VERSION = 1
VOCABS = (4096, 8192, 16384)
QUICK_VOCABS = (4096, 16384)
NOISE_RATES = (0.01, 0.02, 0.05, 0.1, 0.2)
CORPUS_LOADERS = {"legal": load_legal, "prose": load_prose}
NO_NUMBERS = ("whitespace", "markdown", "html", "json", "xml", "legal_abbreviations")  # ablation: no years, citations, section numbers
WINDOW_BYTES = 512  # (c): bytes of text per window, the same for every tokenizer (windows over 255 tokens of either are dropped)


def _sample(docs, max_chars: int, seed: int = 0) -> list[str]:
    """Documents in a fixed random order, the last one cut so the total is ``max_chars``."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    out, n = [], 0
    for d in docs:
        if n >= max_chars:
            break
        out.append(d[: max_chars - n])
        n += len(out[-1])
    return out


def _tokenizer(recipe: str, corpus: str, vocab: int, **options):
    """Train (or load from the cache) ``recipe`` on the train split of ``corpus``."""
    r = tw.create(recipe, vocab_size=vocab, **options)
    fingerprint = {"suite": NAME, "version": VERSION, "recipe": recipe, "options": r.options(), "corpus": f"{corpus}/train"}
    tag = "-".join([recipe, corpus, str(vocab), *(f"{k}={'+'.join(v) if isinstance(v, (list, tuple)) else v}" for k, v in sorted(options.items()))])

    def _train(out: Path, _run: Path) -> None:
        t0 = time.perf_counter()
        tok = r.train(CORPUS_LOADERS[corpus]("train").documents)
        tok.save_pretrained(out)
        write_model_info(out, fingerprint, train_seconds=time.perf_counter() - t0)

    return load_or_train(f"text/{tag}", fingerprint, _train), r


def _throughput(tok, docs) -> dict[str, float]:
    """MB/s of the transformers tokenizer and of the same tokenizer.json through tokenizers."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    best = {"ours": float("inf"), "tokenizers": float("inf")}
    for _ in range(2):
        t0 = time.perf_counter()
        tok(docs, add_special_tokens=False)["input_ids"]
        best["ours"] = min(best["ours"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        raw.encode_batch(docs, add_special_tokens=False)
        best["tokenizers"] = min(best["tokenizers"], time.perf_counter() - t0)
    return {"encode_mb_s": mb / best["ours"], "encode_mb_s_tokenizers": mb / best["tokenizers"], "encode_ratio_vs_tokenizers": best["tokenizers"] / best["ours"]}


def run(ctx) -> Any:
    quick = ctx.quick
    t_start = time.perf_counter()
    legal_test = _sample(load_legal("test").documents, 300_000 if quick else 1_500_000)
    prose_test = _sample(load_prose("test").documents, 300_000 if quick else 1_100_000)
    noisy_docs = _sample(legal_test, 60_000 if quick else 300_000, seed=1)
    noisy = {r: [ocr_noise(d, r, seed=k) for k, d in enumerate(noisy_docs)] for r in NOISE_RATES}

    # ---- (a) + (b): tokenizers ------------------------------------------------------------
    vocabs = QUICK_VOCABS if quick else VOCABS
    # three-way at equal vocabulary: general BPE (prose), plain BPE on the same legal text (the
    # control that changes one thing), the KL3M recipe (legal)
    jobs = [("byte_bpe", "prose", v, {}) for v in vocabs] + [("byte_bpe", "legal", v, {}) for v in vocabs]
    jobs += [("kl3m_domain_bpe", "legal", v, {}) for v in vocabs]
    jobs += [("kl3m_char_bpe", "legal", v, {}) for v in vocabs]
    jobs += [("kl3m_domain_bpe", "legal", 4096, {"fixed_tokens": False}), ("kl3m_domain_bpe", "legal", 4096, {"cased": False}),
             ("kl3m_domain_bpe", "legal", 4096, {"custom_tokens": NO_NUMBERS})]  # fmt: skip
    legal_4k = None
    for recipe, corpus, vocab, options in ctx.track(jobs, "text-tokenizers: train/load + measure tokenizers"):
        path, r = _tokenizer(recipe, corpus, vocab, **options)
        tok = load_tokenizer(path)
        if recipe == "kl3m_domain_bpe" and vocab == 4096 and not options:
            legal_4k = tok
        info = tw.get(recipe)
        metrics: dict[str, Any] = {"vocab_size": len(tok)}
        for name, docs in (("legal", legal_test), ("prose", prose_test)):
            metrics |= {f"{k}_{name}": v for k, v in text_stats(tok, docs).items()}
        for rate, items in noisy.items():
            changes = boundary_changes(tok, items)
            metrics[f"stability@{rate:g}"] = changes["stability"]
            metrics[f"changes_per_error@{rate:g}"] = changes["changes_per_error"]
        if vocab == 4096:
            metrics |= _throughput(tok, legal_test[: len(legal_test) // 2])
        yield {
            "family": info.family, "method": recipe, "paper": info.paper,
            "params": {"part": "tokenizer", "trained_on": corpus, **options},
            "budget": {"vocab_size": vocab}, "metrics": metrics,
        }  # fmt: skip

    ctx.log(f"text-tokenizers: tokenizers measured ({time.perf_counter() - t_start:.0f} s so far)")

    # ---- (c): the reference LM on the unseen legal tokenizer --------------------------------
    # bits per byte at EQUAL BYTES of context: the same byte windows for every tokenizer, each
    # read after the end-of-text token; windows any tokenizer cannot fit in the LM's context
    # are dropped for all (the legal BPE covers more bytes per token, so 256-token windows
    # would give it more context)
    model, ref_tok = reference_lm(device=ctx.device)
    nets = {"prose+legal": reference_hypernet(), "prose": reference_hypernet(corpora=("prose",))}
    bpb_docs = _sample(legal_test, 60_000 if quick else 400_000, seed=2)
    L = LMTrainConfig().seq_len
    windows = byte_windows(bpb_docs, WINDOW_BYTES)
    fits = [max(a, b) + 1 <= L for a, b in zip(window_token_counts(ref_tok, windows), window_token_counts(legal_4k, windows))]
    windows = [w for w, ok in zip(windows, fits) if ok]
    base = bits_per_byte_windows(model, ref_tok, windows, max_tokens=L)
    base_tok = evaluate_lm(model, ref_tok, bpb_docs, seq_len=256)
    yield {
        "family": "TXT", "method": "original", "paper": None,
        "params": {"part": "transfer", "tokenizer": "reference (prose BPE 4096)"},
        "budget": {"vocab_size": len(ref_tok), "window_bytes": WINDOW_BYTES},
        "metrics": {"bits_per_byte_legal": base["bits_per_byte"], "tokens": base["tokens"], "bytes": base["bytes"],
                    "windows": base["windows"], "windows_dropped": len(fits) - sum(fits),
                    "bytes_per_token": base["bytes"] / base["tokens"],
                    "bits_per_byte_legal_256_token_windows": base_tok["bits_per_byte"]},
    }  # fmt: skip
    transfers = [("zett", {"hypernet": "prose+legal"}), ("zett", {"hypernet": "prose"}), ("mean_init", {}), ("random_init", {}),
                 ("random_init", {"copy_overlap": True})]  # fmt: skip
    for name, opts in ctx.track(transfers, "text-tokenizers: transfer the reference LM"):
        method = tw.create(name, **({"hypernet": nets[opts["hypernet"]]} if "hypernet" in opts else opts))
        t0 = time.perf_counter()
        moved = method.transfer(model, ref_tok, legal_4k)
        seconds = time.perf_counter() - t0
        # how close each method gets to the LM's own embeddings when "moved" onto its own tokenizer
        own, _ = method.embeddings(model, ref_tok, ref_tok)
        keep = [i for i in range(len(ref_tok)) if i not in set(ref_tok.all_special_ids)]
        src = model.get_input_embeddings().weight
        self_cos = torch.nn.functional.cosine_similarity(own[keep], src[keep], dim=-1).mean().item()
        out = bits_per_byte_windows(moved, legal_4k, windows, max_tokens=L)
        out_tok = evaluate_lm(moved, legal_4k, bpb_docs, seq_len=256)
        info = tw.get(name)
        params = {k: v for k, v in opts.items() if k != "hypernet"}
        if "hypernet" in opts:
            params["hypernet_trained_on"] = opts["hypernet"]
        yield {
            "family": info.family, "method": name, "paper": info.paper,
            "params": {"part": "transfer", "tokenizer": "kl3m_domain_bpe legal 4096", **params},
            "budget": {"vocab_size": len(legal_4k), "window_bytes": WINDOW_BYTES},
            "metrics": {"bits_per_byte_legal": out["bits_per_byte"], "tokens": out["tokens"], "bytes": out["bytes"],
                        "windows": out["windows"], "bpb_vs_original": out["bits_per_byte"] / base["bits_per_byte"],
                        "bytes_per_token": out["bytes"] / out["tokens"], "self_transfer_cos": self_cos,
                        "bits_per_byte_legal_256_token_windows": out_tok["bits_per_byte"],
                        "bpb_vs_original_256_token_windows": out_tok["bits_per_byte"] / base_tok["bits_per_byte"],
                        "transfer_seconds": seconds},
        }  # fmt: skip

    ctx.log(f"text-tokenizers: transfer measured ({time.perf_counter() - t_start:.0f} s so far)")

    # ---- (d): dynamic tokenization of prompts ------------------------------------------------
    # prompt + continuation = the LM's training context: positions beyond it would make shorter
    # (merged) prompts look better just by pulling the continuation back inside the context
    C, B = 64, (16 if quick else 48)
    P = LMTrainConfig().seq_len - C
    stream = token_stream(prose_test, ref_tok)
    step = (stream.numel() - (P + C)) // B
    windows = [stream[k * step : k * step + P + C].tolist() for k in range(B)]
    prompts, conts = [w[:P] for w in windows], [w[P:] for w in windows]
    budgets = (0, 32, 128, 512, 100_000) if quick else (0, 16, 32, 64, 128, 256, 512, 1024, 100_000)
    # random embeddings for the merged tokens are a control: how much the metric reacts to them
    # unmerged tokens: "transfer" = the paper's choice (every token of the batch from the
    # hypernetwork / mean), "original" = the model's own embedding for tokens left alone
    net = nets["prose+legal"]
    embedders = {"zett": (tw.create("zett", hypernet=net), "transfer"), "zett (unmerged: original)": (tw.create("zett", hypernet=net), "original"),
                 "mean_init": (tw.create("mean_init"), "transfer"), "random_init": (tw.create("random_init"), "original")}  # fmt: skip
    info = tw.get("dynamic_bpe")
    for merges in ctx.track(budgets, "text-tokenizers: dynamic tokenization"):
        t0 = time.perf_counter()
        batch = tw.create("dynamic_bpe", merges=merges).merge(prompts, ref_tok)
        merge_seconds = time.perf_counter() - t0
        for emb, (transfer, unmerged) in embedders.items():
            merger = tw.create("dynamic_bpe", merges=merges, unmerged=unmerged)
            nll, n = merger.continuation_nll(model, batch, conts, transfer)
            yield {
                "family": info.family, "method": "dynamic_bpe", "paper": info.paper,
                "params": {"part": "dynamic", "embeddings": emb, "unmerged": unmerged, "prompt_tokens": P, "continuation_tokens": C, "prompts": B},
                "budget": {"merges": merges},
                "metrics": {"merges_applied": len(batch.merges), "length_reduction": batch.reduction, "merge_seconds": merge_seconds,
                            "continuation_ppl": math.exp(nll / n), "continuation_nll": nll / n},
            }  # fmt: skip


# ---- report ----------------------------------------------------------------------------------
RECIPE_TOLERANCE = 0.01  # a bytes/token change within 1% is "no clear effect" (BPE training is deterministic: no seed spread)


def recipe_verdict(gains: dict[int, float], tol: float = RECIPE_TOLERANCE) -> str:
    """The recipe's own effect from its relative bytes/token gain over the plain BPE on the same
    corpus at each vocabulary size: "helps" if every gain is above ``tol``, "hurts" if every
    one is below ``-tol``, else "no clear effect"."""
    if not gains:
        return "no data"
    if all(g > tol for g in gains.values()):
        return "helps"
    if all(g < -tol for g in gains.values()):
        return "hurts"
    return "no clear effect"


def _part(rows, part):
    return [r for r in rows if r["params"].get("part") == part]


def _find(rows, method, corpus, vocab):
    return next((r for r in rows if r["method"] == method and r["params"].get("trained_on") == corpus and r["budget"]["vocab_size"] == vocab), None)


def _vocab(r) -> str:
    want, got = r["budget"]["vocab_size"], r["metrics"].get("vocab_size", r["budget"]["vocab_size"])
    return str(want) if want == got else f"{want} ({got} reached)"


def _label(r) -> str:
    extra = [f"{k}={'+'.join(v) if isinstance(v, (list, tuple)) else v}" for k, v in r["params"].items() if k not in ("part", "trained_on")]
    return f"{r['method']} ({r['params'].get('trained_on', '')}{', ' + ', '.join(extra) if extra else ''})"


def _transfer_label(r) -> str:
    p = r["params"]
    if p.get("hypernet_trained_on"):
        return f"{r['method']} (hypernetwork: {p['hypernet_trained_on']})"
    return r["method"] + (" (copy overlap)" if p.get("copy_overlap") else "")


def plots(rows: list[dict], out_dir: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    made = []
    toks = _part(rows, "tokenizer")
    main = [r for r in toks if len(r["params"]) == 2]  # no ablation options
    if main:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, corpus in zip(axes, ("legal", "prose")):
            for key in dict.fromkeys((r["method"], r["params"]["trained_on"]) for r in main):
                rs = sorted([r for r in main if (r["method"], r["params"]["trained_on"]) == key], key=lambda r: r["budget"]["vocab_size"])
                ax.plot([r["budget"]["vocab_size"] for r in rs], [r["metrics"][f"bytes_per_token_{corpus}"] for r in rs], "-o", label=_label(rs[0]))
            ax.set(xscale="log", xlabel="vocabulary size (requested)", ylabel="bytes per token", title=f"held-out {corpus} text")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "text_bytes_per_token.png", dpi=110)
        plt.close(fig)
        made.append(("(a) bytes per token vs vocabulary size: KL3M recipe (legal) vs plain BPE (legal) vs general BPE (prose), higher = fewer tokens", "text_bytes_per_token.png"))

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for r in main:
            style = "-o" if r["method"] == "kl3m_char_bpe" else "--s"
            for ax, key in zip(axes, ("stability@", "changes_per_error@")):
                pts = sorted((float(k.split("@")[1]), v) for k, v in r["metrics"].items() if k.startswith(key))
                ax.plot([k for k, _ in pts], [v for _, v in pts], style, label=f"{_label(r)} {_vocab(r)}", ms=4)
        axes[0].set(xlabel="OCR noise rate", ylabel="share of clean boundaries kept", title="(b) boundary stability outside corrupted spans")
        axes[1].set(xlabel="OCR noise rate", ylabel="boundaries lost + added per corrupted span", title="boundary changes per error")
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out_dir / "text_boundary_stability.png", dpi=110)
        plt.close(fig)
        made.append(("(b) boundary stability vs noise rate: KL3M character BPE (solid) vs BPEs (dashed)", "text_boundary_stability.png"))

    thr = [r for r in toks if "encode_ratio_vs_tokenizers" in r["metrics"]]
    if thr:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.barh([_label(r) for r in thr], [r["metrics"]["encode_ratio_vs_tokenizers"] for r in thr])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set(xlabel="throughput ratio (transformers wrapper / raw tokenizers)", title="encode throughput, 4k tokenizers, same run")
        fig.tight_layout()
        fig.savefig(out_dir / "text_encode_throughput.png", dpi=110)
        plt.close(fig)
        made.append(("encode throughput of our tokenizers (transformers) relative to the same tokenizer.json through tokenizers", "text_encode_throughput.png"))

    tr = _part(rows, "transfer")
    if tr:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.barh([_transfer_label(r) for r in tr], [r["metrics"]["bits_per_byte_legal"] for r in tr], color=["grey" if r["method"] == "original" else "C0" for r in tr])
        ax.set(xlabel="bits per byte, held-out legal text, equal bytes of context (lower is better)", title="(c) reference LM moved to the unseen legal BPE")
        fig.tight_layout()
        fig.savefig(out_dir / "text_transfer_bpb.png", dpi=110)
        plt.close(fig)
        made.append(("(c) bits per byte of the reference LM on held-out legal text at equal bytes of context: original tokenizer vs transferred embeddings", "text_transfer_bpb.png"))

    dyn = _part(rows, "dynamic")
    if dyn:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for emb in dict.fromkeys(r["params"]["embeddings"] for r in dyn):
            rs = sorted([r for r in dyn if r["params"]["embeddings"] == emb], key=lambda r: r["metrics"]["length_reduction"])
            ax.plot([100 * r["metrics"]["length_reduction"] for r in rs], [r["metrics"]["continuation_ppl"] for r in rs], "-o", label=f"embeddings: {emb}")
        ax.set(xlabel="prompt length reduction (%)", ylabel="continuation perplexity (64 tokens)", title="(d) dynamic tokenization of the prompt")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "text_dynamic.png", dpi=110)
        plt.close(fig)
        made.append(("(d) continuation perplexity vs prompt length reduction, one point per merge budget", "text_dynamic.png"))
    return made


def headline(method: str, rows: list[dict]) -> str | None:
    if method == "dynamic_bpe":
        zr = [r for r in rows if r["params"].get("embeddings") == "zett"]
        if not zr:
            return None
        base = min(zr, key=lambda r: r["budget"]["merges"])
        top = max(zr, key=lambda r: r["budget"]["merges"])
        d = top["metrics"]["continuation_ppl"] / base["metrics"]["continuation_ppl"] - 1
        return f"prompt {top['metrics']['length_reduction']:.0%} shorter, continuation ppl {d:+.1%} (ZeTT embeddings)"
    tr = [r for r in rows if r["params"].get("part") == "transfer" and not r["params"].get("copy_overlap")]
    if tr:
        parts = [f"{r['metrics']['bpb_vs_original']:.3f}x" + (f" ({r['params']['hypernet_trained_on']})" if r["params"].get("hypernet_trained_on") else "")
                 for r in tr if "bpb_vs_original" in r["metrics"]]  # fmt: skip
        return f"legal bits/byte {tr[0]['metrics']['bits_per_byte_legal']:.3f} on an unseen tokenizer" + (f", {' / '.join(parts)} the original at equal bytes" if parts else "")
    tk = [r for r in rows if r["params"].get("part") == "tokenizer" and len(r["params"]) == 2]
    r4 = [r for r in tk if r["budget"]["vocab_size"] == 4096 and r["params"]["trained_on"] == ("prose" if method == "byte_bpe" else "legal")]
    if not r4:
        return None
    m = r4[0]["metrics"]
    if method == "kl3m_char_bpe":
        return (f"boundary stability {m['stability@0.05']:.3f}, {m['changes_per_error@0.05']:.2f} boundary changes per error "
                f"at 5% OCR noise; {m['bytes_per_token_legal']:.2f} bytes/token (4k)")  # fmt: skip
    return f"{m['bytes_per_token_legal']:.2f} bytes/token legal, {m['bytes_per_token_prose']:.2f} prose (4k)"


def summary(rows: list[dict]) -> str:
    lines = []
    toks = [r for r in _part(rows, "tokenizer") if len(r["params"]) == 2]
    if toks:
        lines += ["**(a) bytes per token, held-out text (higher = fewer tokens); the recipe's own effect = KL3M recipe vs plain BPE on the same legal text**", "",
                  "| vocab | general BPE (prose) on legal | plain BPE (legal) on legal | KL3M recipe (legal) on legal | recipe vs plain | corpus: plain legal vs general | general on prose | plain legal on prose | KL3M on prose |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        gains = {}
        for v in sorted({r["budget"]["vocab_size"] for r in toks}):
            g, p, d = _find(toks, "byte_bpe", "prose", v), _find(toks, "byte_bpe", "legal", v), _find(toks, "kl3m_domain_bpe", "legal", v)
            if g and d:
                gm, dm = g["metrics"], d["metrics"]
                pm = p["metrics"] if p else None
                rec = dm["bytes_per_token_legal"] / pm["bytes_per_token_legal"] - 1 if pm else float("nan")
                if pm:
                    gains[v] = rec
                corp = pm["bytes_per_token_legal"] / gm["bytes_per_token_legal"] - 1 if pm else float("nan")
                pl = f"{pm['bytes_per_token_legal']:.3f}" if pm else ""
                pp = f"{pm['bytes_per_token_prose']:.3f}" if pm else ""
                lines.append(f"| {v} | {gm['bytes_per_token_legal']:.3f} | {pl} | {dm['bytes_per_token_legal']:.3f} | {rec:+.1%} | {corp:+.1%} | "
                             f"{gm['bytes_per_token_prose']:.3f} | {pp} | {dm['bytes_per_token_prose']:.3f} |")  # fmt: skip
        if gains:
            lines += ["", f"Verdict on the KL3M recipe itself (legal bytes/token vs plain BPE on the same text, tolerance {RECIPE_TOLERANCE:.0%}): **{recipe_verdict(gains)}**."]
        abl = [r for r in _part(rows, "tokenizer") if r["method"] == "kl3m_domain_bpe" and len(r["params"]) > 2]
        if abl:
            lines += ["", "Ablations (4k, legal bytes/token): " + "; ".join(f"{_label(r)} {r['metrics']['bytes_per_token_legal']:.3f}" for r in abl)]
        lines += ["", "**(b) boundary stability at 5% OCR noise, held-out legal (boundary changes per corrupted span in brackets)**", "",
                  "| vocab | char BPE (legal) | general BPE (prose) | plain BPE (legal) | KL3M recipe (legal) |", "|---|---|---|---|---|"]  # fmt: skip
        for v in sorted({r["budget"]["vocab_size"] for r in toks}):
            cells = []
            for meth, corpus in (("kl3m_char_bpe", "legal"), ("byte_bpe", "prose"), ("byte_bpe", "legal"), ("kl3m_domain_bpe", "legal")):
                r = _find(toks, meth, corpus, v)
                cells.append(f"{r['metrics']['stability@0.05']:.4f} ({r['metrics']['changes_per_error@0.05']:.2f})" if r and "stability@0.05" in r["metrics"] else "")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    tr = _part(rows, "transfer")
    if tr:
        w = tr[0]["budget"].get("window_bytes")
        lines += ["", f"**(c) reference LM on the unseen legal BPE: bits per byte, held-out legal, equal bytes of context ({w}-byte windows)**", "",
                  "| embeddings | bits/byte | vs original | bytes/token | bits/byte, 256-token windows | vs original (256 tokens) | self-transfer cosine |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in tr:
            m = r["metrics"]
            cos = f"{m['self_transfer_cos']:.3f}" if "self_transfer_cos" in m else ""
            t256 = f"{m['bits_per_byte_legal_256_token_windows']:.4f}" if "bits_per_byte_legal_256_token_windows" in m else ""
            v256 = f"{m['bpb_vs_original_256_token_windows']:.3f}x" if "bpb_vs_original_256_token_windows" in m else ("1.000x" if r["method"] == "original" else "")
            lines.append(f"| {_transfer_label(r)} | {m['bits_per_byte_legal']:.4f} | {m.get('bpb_vs_original', 1.0):.3f}x | "
                         f"{m.get('bytes_per_token', float('nan')):.2f} | {t256} | {v256} | {cos} |")  # fmt: skip
    dyn = _part(rows, "dynamic")
    if dyn:
        embs = list(dict.fromkeys(r["params"]["embeddings"] for r in dyn))
        lines += ["", f"**(d) dynamic tokenization of {dyn[0]['params'].get('prompt_tokens', '?')}-token prose prompts: continuation perplexity ({dyn[0]['params'].get('continuation_tokens', '?')} tokens) by embeddings**", "",
                  "| merges | applied | length reduction | " + " | ".join(embs) + " |", "|---|---|---|" + "---|" * len(embs)]  # fmt: skip
        for m in sorted({r["budget"]["merges"] for r in dyn}):
            rs = {r["params"]["embeddings"]: r for r in dyn if r["budget"]["merges"] == m}
            ref = next(iter(rs.values()))
            cells = [f"{rs[e]['metrics']['continuation_ppl']:.3f}" if e in rs else "" for e in embs]
            lines.append(f"| {m} | {ref['metrics']['merges_applied']} | {ref['metrics']['length_reduction']:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
