"""Bits per byte at equal bytes of context (the ZeTT comparison of the text suite)."""

import math

import pytest
import torch

from tokenworks.text.lm_bytes import bits_per_byte_windows, byte_windows, window_token_counts

DOCS = ["Größe of the licensee: " * 20, "short", "東京 licensed software, 2019. " * 15]


def test_byte_windows_cut_at_characters_and_cover_each_document_in_order():
    w = byte_windows(DOCS, 50)
    assert all(len(x.encode("utf-8")) <= 50 for x in w)
    assert all(len(x.encode("utf-8")) >= 25 for x in w)  # short tails (and "short") are dropped
    joined = "".join(w)
    assert joined.startswith(DOCS[0][:400]) and "short" not in joined
    # every piece is a run of its document: the pieces of doc 0 spell a prefix of it
    n0 = sum(1 for x in w if "Größe" in x or "licensee" in x)
    assert DOCS[0].startswith("".join(w[:n0]))
    with pytest.raises(ValueError, match="window_bytes must be >= 4"):
        byte_windows(DOCS, 2)


def test_bits_per_byte_windows_equals_one_window_at_a_time(source_tokenizer, target_tokenizer, make_llama):
    """Batched and padded vs each window alone through the model (an independent loop)."""
    windows = byte_windows(DOCS, 60)
    for tok in (source_tokenizer, target_tokenizer):
        model = make_llama(tok)
        got = bits_per_byte_windows(model, tok, windows, batch_size=3)
        nll = 0.0
        for w in windows:
            ids = torch.tensor([[tok.eos_token_id, *tok(w, add_special_tokens=False)["input_ids"]]])
            logits = model(input_ids=ids).logits[0, :-1]
            nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        n_bytes = sum(len(w.encode("utf-8")) for w in windows)
        assert got["bytes"] == n_bytes and got["windows"] == len(windows)
        assert got["tokens"] == sum(window_token_counts(tok, windows))
        assert got["bits_per_byte"] == pytest.approx(nll / math.log(2) / n_bytes, rel=1e-4)


def test_equal_bytes_for_tokenizers_of_different_granularity(source_tokenizer, target_tokenizer, make_llama):
    windows = byte_windows(DOCS, 60)
    a = bits_per_byte_windows(make_llama(source_tokenizer), source_tokenizer, windows)
    b = bits_per_byte_windows(make_llama(target_tokenizer), target_tokenizer, windows)
    assert a["bytes"] == b["bytes"] and a["tokens"] != b["tokens"]
    with pytest.raises(ValueError, match="max_tokens=3"):
        bits_per_byte_windows(make_llama(source_tokenizer), source_tokenizer, windows, max_tokens=3)
