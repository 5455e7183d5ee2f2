"""P44 word-pooled tokens: exact round trip of the word split, causal word LM and byte decoder
(perturbation tests), the kind's contract over byte / subword / word-pooled LMs, bad input."""

import pytest
import torch

import tokenworks as tw
from tokenworks.text.word_pooled import EOW, PAD, join_words, split_words

HOSTILE = [
    "", " ", "a", "  two  spaces\n\nand\ttabs ", "naïve café — 東京 😀 end", "x" * 40 + " short",
    "trailing   ", "\n leading newline", "e\u0301 combining", "a\u00a0nbsp b",
]  # fmt: skip


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("max_bytes", [1, 3, 16])
def test_split_words_round_trips_exactly(text, max_bytes):
    words = split_words(text, max_bytes)
    assert b"".join(words) == text.encode("utf-8") and join_words(words) == text
    assert all(1 <= len(w) <= max_bytes for w in words)


def test_words_carry_their_leading_whitespace():
    assert split_words("the cat  sat\n") == [b"the", b" cat", b"  sat", b"\n"]


def _tiny(name):
    return tw.create(name, dim=16, heads=2, layers=3, max_words=12, max_bytes=8)


def test_word_lm_is_causal_over_words():
    m = _tiny("word_pooled_lm")
    torch.manual_seed(0)
    net = m.build().eval()
    a_ids, _ = net._pack(["one two three four five six"])
    b_ids, _ = net._pack(["one two three fxur sax sevens"])
    with torch.no_grad():
        a, b = net.context(a_ids), net.context(b_ids)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # words 0..2 are the same: so are their states
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-4


def test_byte_decoder_is_causal_within_the_word():
    m = _tiny("word_pooled_lm")
    torch.manual_seed(0)
    net = m.build().eval()
    ctx = torch.randn(1, 16)
    x = torch.tensor([[104, 101, 108, 108]])
    y = torch.tensor([[104, 101, 120, 33]])
    with torch.no_grad():
        a, b = net.decode_logits(ctx, x), net.decode_logits(ctx, y)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # slots 0..2 read bytes < 2 only
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-5


def test_loss_targets_are_the_next_words_bytes_then_end_of_word():
    m = _tiny("word_pooled_lm")
    torch.manual_seed(0)
    net = m.build()
    seen = {}
    orig = net.decode_logits

    def spy(ctx, nxt):
        seen["nxt"] = nxt.clone()
        return orig(ctx, nxt)

    net.decode_logits = spy
    m.loss(net, ["ab cd"])
    assert seen["nxt"].tolist() == [[32, 99, 100] + [PAD] * 5]  # " cd" follows "ab"
    assert EOW == 258


WORD_LMS = [x.name for x in tw.methods(kind="word_lm")]


@pytest.mark.parametrize("name", WORD_LMS)
def test_word_lm_contract(name):
    m = _tiny(name)
    torch.manual_seed(0)
    net = m.build()
    loss = m.loss(net, ["the quick brown fox", "jumps over the lazy dog again"])
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing or name == "subword_lm" and all("emb" in n or "pos" in n for n in missing), missing
    net.eval()
    words = m.next_words(net, ["the quick brown", "a"])
    assert len(words) == 2 and all(isinstance(w, str) for w in words)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="layers"):
        tw.create("word_pooled_lm", layers=2)
    with pytest.raises(ValueError, match="dim"):
        tw.create("byte_lm", dim=10, heads=4)
    with pytest.raises(ValueError, match="max_bytes"):
        split_words("abc", 0)
    with pytest.raises(TypeError, match="text"):
        split_words(b"abc")
    from tokenworks.text.word_pooled import WordLMConfig

    with pytest.raises(ValueError, match="method"):
        WordLMConfig(method="freecache")


def test_reproduce_command_runs_tiny(tmp_path, tmp_cache, monkeypatch):
    from pathlib import Path

    from typer.testing import CliRunner

    from tokenworks.cli import app
    from tokenworks.io import load_json

    monkeypatch.setenv("TOKENWORKS_ASSETS", str(Path(__file__).resolve().parents[2] / "assets"))
    out = tmp_path / "w"
    r = CliRunner().invoke(app, ["train", "word-lm", "--method", "word_pooled_lm", "--seed", "2", "--tiny", "--out", str(out)])
    assert r.exit_code == 0, r.output
    info = load_json(out / "tokenworks.json", kind=dict)
    assert info["fingerprint"]["seed"] == 2 and len(info["history"]) == 2
    r = CliRunner().invoke(app, ["train", "word-lm", "--method", "bpe", "--tiny"])
    assert r.exit_code == 2 and "--method" in r.output
