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
    for method, corpus, bpt in (("byte_bpe", "prose", 2.8), ("byte_bpe", "legal", 4.2), ("kl3m_domain_bpe", "legal", 4.0), ("kl3m_char_bpe", "legal", 2.2)):
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
    for method, hn, bpb in (("original", None, 3.2), ("zett", "prose+legal", 2.7), ("zett", "prose", 3.0), ("mean_init", None, 3.1)):
        params = {"part": "transfer"} | ({"hypernet_trained_on": hn} if hn else {})
        rows.append({"family": "TXT", "method": method, "paper": None, "params": params,
                     "budget": {"vocab_size": 4096, "window_bytes": 640}, "metrics": {"bits_per_byte_legal": bpb, "bpb_vs_original": bpb / 3.2}})  # fmt: skip
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
    # general (prose) 2.8, plain legal 4.2, KL3M 4.0: the recipe costs 4.8% against the plain
    # BPE on the same text while the corpus gives +50% over the general BPE
    assert "| 4096 | 2.800 | 4.200 | 4.000 | -4.8% | +50.0% |" in text
    assert "**hurts**" in text
    assert "| zett (hypernetwork: prose+legal) | 2.7000 | 0.844x |" in text
    assert "| zett (hypernetwork: prose) | 3.0000 | 0.938x |" in text
    assert "640-byte windows" in text and "20.0%" in text
    by = lambda m: [r for r in rows if r["method"] == m]  # noqa: E731
    assert suite.headline("zett", by("zett")) == "legal bits/byte 2.700 on an unseen tokenizer, 0.844x (prose+legal) / 0.938x (prose) the original at equal bytes"
    assert suite.headline("byte_bpe", by("byte_bpe")) == "2.80 bytes/token legal, 4.00 prose (4k)"  # the prose-trained row
    assert suite.headline("dynamic_bpe", by("dynamic_bpe")) == "prompt 20% shorter, continuation ppl +2.0% (ZeTT embeddings)"
    assert "6620 reached" in suite._vocab(by("kl3m_char_bpe")[1])


def test_recipe_verdict_on_made_up_gains(suite):
    assert suite.recipe_verdict({4096: 0.03, 16384: 0.02}) == "helps"
    assert suite.recipe_verdict({4096: -0.10, 16384: -0.02}) == "hurts"
    assert suite.recipe_verdict({4096: -0.10, 16384: 0.02}) == "no clear effect"
    assert suite.recipe_verdict({4096: 0.005, 16384: 0.004}) == "no clear effect"  # within the 1% tolerance
    assert suite.recipe_verdict({}) == "no data"
