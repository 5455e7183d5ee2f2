"""Tokenizer metrics against hand-computed values on small strings, and OCR-noise alignment."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenworks.text import (
    NoisyText,
    boundary_changes,
    boundary_stability,
    bytes_per_token,
    evaluate_tokenizer,
    fertility,
    ocr_noise,
    token_boundaries,
    vocab_use,
)
from tokenworks.text.metrics import stable_boundaries


@pytest.fixture(scope="module")
def word_tok():
    """Words and punctuation runs are tokens (tokenizers' WordLevel + Whitespace pre-tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "the": 1, "cat": 2, "sat": 3, "thecat": 4, ".": 5, "mat": 6, "on": 7}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["[UNK]"])
    return tok


@pytest.fixture(scope="module")
def char_tok():
    """Every character its own token (a BPE with no merges)."""
    from tokenizers import Tokenizer, models

    chars = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,\n"
    return Tokenizer(models.BPE({c: i for i, c in enumerate(chars)}, []))


def test_hand_computed_counts(word_tok):
    docs = ["the cat sat.", "on the mat"]
    # tokens: the cat sat . | on the mat = 7; bytes: 12 + 10 = 22; words (split): 3 + 3 = 6
    assert bytes_per_token(word_tok, docs) == pytest.approx(22 / 7)
    assert fertility(word_tok, docs) == pytest.approx(7 / 6)
    # 6 distinct ids used (the cat sat . on mat) of 7 non-special entries ([UNK] is special)
    assert vocab_use(word_tok, docs) == pytest.approx(6 / 7)


def test_hand_computed_boundary_stability(word_tok):
    # "the cat sat" -> boundaries at 3 and 7; dropping the space at 3 gives "thecat sat" (one
    # token "thecat", boundary 6): boundary 3 (edge of the span) is lost, 7 maps to 6 and stays.
    nt = NoisyText(clean="the cat sat", text="thecat sat", spans=((3, 4),), replacements=("",))
    assert token_boundaries(word_tok, "the cat sat") == {3, 7}
    assert token_boundaries(word_tok, "thecat sat") == {6}
    assert nt.to_noisy(7) == 6 and nt.to_noisy(3) == 3 and not nt.inside(3) and not nt.inside(4)
    assert boundary_stability(word_tok, nt) == pytest.approx(1 / 2)
    # "rn" -> "m" inside a span: boundaries strictly inside a span are not counted
    nt2 = NoisyText(clean="abcd", text="amd", spans=((1, 3),), replacements=("m",))
    assert nt2.inside(2) and not nt2.inside(1) and not nt2.inside(3)
    assert stable_boundaries({1, 2, 3}, {1, 2}, nt2) == (2, 2)  # 1 -> 1 kept, 3 -> 2 kept
    assert stable_boundaries({1, 2, 3}, {1}, nt2) == (1, 2)


def test_character_tokens_keep_every_boundary_outside_the_noise(char_tok):
    text = "the modern clinic sold 10 Oak barrels on line 1\n" * 3
    for rate in (0.1, 0.5):
        nt = ocr_noise(text, rate, seed=1)
        assert nt.text != text
        assert boundary_stability(char_tok, nt) == 1.0


def test_token_boundaries_match_a_prefix_decoding_reference(trained):
    _, tok = trained["byte_bpe"]
    text = "Licensed under the Apache License, Version 2.0 (the \"License\");\nyou may not use this file."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # reference: the length of the decoded prefix after each token but the last
    ref = {len(tok.decode(ids[: k + 1])) for k in range(len(ids) - 1)}
    assert token_boundaries(tok, text) == ref


def test_ocr_noise_rates_and_confusions():
    text = "modern rn l1 O0 cl d e c I"
    assert ocr_noise(text, 0.0).text == text and ocr_noise(text, 0.0).spans == ()
    full = ocr_noise("rn", 1.0)
    assert full.text == "m" and full.spans == ((0, 2),)
    assert ocr_noise("a b", 1.0).text == "ab"
    assert ocr_noise("a b", 1.0, drop_spaces=False).text == "a b"
    assert ocr_noise(text, 0.3, seed=5) == ocr_noise(text, 0.3, seed=5)  # seeded
    with pytest.raises(ValueError, match=r"rate must be in \[0.0, 1.0\]"):
        ocr_noise(text, 1.5)
    with pytest.raises(TypeError, match="text must be a str"):
        ocr_noise(b"bytes", 0.1)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="rnml1IO0cde ab\n", max_size=60), rate=st.floats(0, 1), seed=st.integers(0, 1000))
def test_ocr_noise_alignment_is_exact(text, rate, seed):
    nt = ocr_noise(text, rate, seed=seed)
    # rebuilding the noisy text from the clean one and the spans gives it back
    out, pos = [], 0
    for (s, e), r in zip(nt.spans, nt.replacements):
        assert pos <= s < e
        out += [text[pos:s], r]
        pos = e
    assert "".join(out) + text[pos:] == nt.text
    # every character outside the spans sits at its mapped offset
    for p, ch in enumerate(text):
        if not any(s <= p < e for s, e in nt.spans):
            assert nt.text[nt.to_noisy(p)] == ch
    assert nt.to_noisy(len(text)) == len(nt.text)


def test_metric_errors(word_tok):
    with pytest.raises(ValueError, match="docs is empty"):
        bytes_per_token(word_tok, [])
    with pytest.raises(ValueError, match="all empty or whitespace"):
        fertility(word_tok, ["  "])
    with pytest.raises(TypeError, match="NoisyText"):
        boundary_stability(word_tok, ["not noisy"])
    with pytest.raises(TypeError, match="transformers fast tokenizer or a tokenizers.Tokenizer"):
        bytes_per_token(object(), ["abc"])


def test_evaluate_tokenizer_reports_every_metric(trained):
    _, tok = trained["kl3m_char_bpe"]
    out = evaluate_tokenizer(tok, ["The licensee shall not modify the Software."], noise_rates=(0.05, 0.2))
    assert set(out) == {"bytes_per_token", "fertility", "vocab_use", "vocab_size", "stability@0.05", "stability@0.2"}
    assert 1.0 <= out["bytes_per_token"] <= 3.0 and 0 < out["stability@0.2"] <= 1.0


def test_hand_computed_boundary_changes(word_tok):
    # clean "the cat sat" (boundaries 3, 7), noisy "thecat sat" (boundary 6): boundary 3 lost,
    # 7 kept at 6; the noisy side has no boundary that the clean one lacks.
    nt = NoisyText(clean="the cat sat", text="thecat sat", spans=((3, 4),), replacements=("",))
    assert boundary_changes(word_tok, nt) == {"stability": 0.5, "precision": 1.0, "changes_per_error": 1.0}
    # "on the mat" -> "on the rnat": "rnat" is unknown but still one word, so nothing changes
    nt2 = NoisyText(clean="on the mat", text="on the rnat", spans=((7, 8),), replacements=("rn",))
    assert nt2.noisy_spans() == ((7, 9),)
    assert boundary_changes(word_tok, nt2) == {"stability": 1.0, "precision": 1.0, "changes_per_error": 0.0}
    # a new boundary: "the.cat" style split adds one noisy boundary outside the span
    nt3 = NoisyText(clean="thecat sat", text="the cat sat", spans=((3, 3),), replacements=(" ",))
    assert boundary_changes(word_tok, nt3) == {"stability": 1.0, "precision": 0.5, "changes_per_error": 1.0}
