"""The `text-tokenizers` suite's report side (plots, summary, headlines) on fabricated rows."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(ROOT))
    from bench import suites

    return suites.load("text-tokenizers")


def _rows():
    rows = []
    for method, corpus, bpt in (("byte_bpe", "prose", 2.8), ("kl3m_domain_bpe", "legal", 4.0), ("kl3m_char_bpe", "legal", 2.2)):
        for v in (4096, 16384):
            m = {"vocab_size": v if method != "kl3m_char_bpe" else min(v, 6620), "bytes_per_token_legal": bpt,
                 "bytes_per_token_prose": 4.0, "fertility_legal": 2.0, "vocab_use_legal": 0.5}  # fmt: skip
            for r in (0.01, 0.05):
                m[f"stability@{r:g}"] = 0.99 - r
                m[f"changes_per_error@{r:g}"] = 1.0
            if v == 4096:
                m["encode_ratio_vs_tokenizers"] = 0.97
            rows.append({"family": "TXT", "method": method, "paper": None if method == "byte_bpe" else "P55",
                         "params": {"part": "tokenizer", "trained_on": corpus}, "budget": {"vocab_size": v}, "metrics": m})  # fmt: skip
    for method, bpb in (("original", 3.2), ("zett", 2.7), ("mean_init", 3.1)):
        rows.append({"family": "TXT", "method": method, "paper": None, "params": {"part": "transfer"},
                     "budget": {"vocab_size": 4096}, "metrics": {"bits_per_byte_legal": bpb, "bpb_vs_original": bpb / 3.2}})  # fmt: skip
    for merges, red in ((0, 0.0), (100, 0.2)):
        for emb in ("zett", "mean_init"):
            rows.append({"family": "TXT", "method": "dynamic_bpe", "paper": "P57", "params": {"part": "dynamic", "embeddings": emb},
                         "budget": {"merges": merges},
                         "metrics": {"merges_applied": merges, "length_reduction": red, "continuation_ppl": 100 + red * 10}})  # fmt: skip
    return rows


def test_plots_summary_and_headlines(suite, tmp_path):
    rows = _rows()
    made = suite.plots(rows, tmp_path)
    assert len(made) == 5
    for _, fname in made:
        assert (tmp_path / fname).stat().st_size > 1000
    text = suite.summary(rows)
    assert "| 4096 | 2.800 | 4.000 | 30.0% |" in text  # 1 - 2.8 / 4.0
    assert "| zett | 2.7000 | 0.844x |" in text
    assert "20.0%" in text
    by = lambda m: [r for r in rows if r["method"] == m]  # noqa: E731
    assert suite.headline("zett", by("zett")) == "legal bits/byte 2.700 on an unseen tokenizer"
    assert suite.headline("dynamic_bpe", by("dynamic_bpe")) == "prompt 20% shorter, continuation ppl +2.0% (ZeTT embeddings)"
    assert "6620 reached" in suite._vocab(by("kl3m_char_bpe")[1])
