"""Reference models on tiny configs: train, cache, reload; fd_local's basic properties."""

import pytest
import torch

from tokenworks.data import load_fashion_mnist, load_prose
from tokenworks.models import (
    ClassifierConfig,
    LMTrainConfig,
    evaluate_lm,
    fd_local,
    find_model,
    image_classifier,
    reference_lm,
    train_byte_bpe,
)

TINY_LM = LMTrainConfig(vocab_size=300, hidden_size=16, layers=1, heads=2, kv_heads=1, intermediate_size=32, seq_len=32, batch_size=2, steps=6, warmup=1, train_bytes=20_000, eval_windows=4)


@pytest.fixture(scope="module")
def tiny_bpe():
    return train_byte_bpe(load_prose("test").documents[:5], 300)


def test_byte_bpe_round_trips_any_text(tiny_bpe):
    text = "Größe — naïve café 東京 \x00\n\t 🤖 <|pad|>?"
    ids = tiny_bpe(text, add_special_tokens=False)["input_ids"]
    assert tiny_bpe.decode(ids) == text
    assert len(tiny_bpe) == 300
    with pytest.raises(ValueError, match="vocab_size must be >="):
        train_byte_bpe(["abc"], 100)
    with pytest.raises(ValueError, match="non-empty"):
        train_byte_bpe(["", "  "], 300)


def test_reference_lm_trains_caches_and_reloads(tmp_cache, tiny_bpe, monkeypatch):
    import tokenworks.models.bpe as bpe

    monkeypatch.setattr(bpe, "reference_tokenizer", lambda *a, **k: tiny_bpe)
    model, tok = reference_lm(config=TINY_LM)
    path = find_model("reference-lm", __import__("dataclasses").asdict(TINY_LM))
    assert path is not None and (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    info = __import__("json").loads((path / "tokenworks.json").read_text())
    assert info["held_out"]["ppl"] > 1 and info["held_out"]["bits_per_byte"] > 0
    # a second call loads, not trains: identical weights, and a copy the caller may modify
    again, _ = reference_lm(config=TINY_LM)
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b) and a is not b
    with pytest.raises(FileNotFoundError, match="train it first"):
        reference_lm(config=LMTrainConfig(**{**TINY_LM.__dict__, "steps": 7}), train_if_missing=False)


def test_evaluate_lm_bits_per_byte_is_consistent_with_perplexity(tiny_bpe):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(TINY_LM.llama_config(tiny_bpe)).eval()
    docs = load_prose("test").documents[:2]
    out = evaluate_lm(model, tiny_bpe, docs, seq_len=32, max_windows=4)
    assert out["tokens"] == 4 * 32
    # bits/byte = ln(ppl) * tokens / ln 2 / bytes
    expected = torch.log(torch.tensor(out["ppl"])).item() * out["tokens"] / torch.log(torch.tensor(2.0)).item() / out["bytes"]
    assert out["bits_per_byte"] == pytest.approx(expected, rel=1e-4)


def test_lm_config_is_validated():
    with pytest.raises(ValueError, match="must divide"):
        LMTrainConfig(hidden_size=30, heads=4)
    with pytest.raises(ValueError, match="kv_heads must be <="):
        LMTrainConfig(heads=2, kv_heads=4)


def test_classifier_tiny_training(tmp_cache):
    cfg = ClassifierConfig(dataset="mnist5k", width=4, feature_dim=8, steps=3, batch_size=8)
    clf = image_classifier("mnist5k", config=cfg)
    feats = clf.features(torch.rand(3, 1, 28, 28))
    assert feats.shape == (3, 8)
    with pytest.raises(ValueError, match=r"x must be \(B, 1, 28, 28\)"):
        clf.features(torch.rand(3, 1, 32, 32))


def test_fd_local_orders_degradations():
    x = load_fashion_mnist("test").take(600).float()
    noisy = (x + 0.15 * torch.randn_like(x)).clamp(0, 1)
    very_noisy = (x + 0.5 * torch.randn_like(x)).clamp(0, 1)
    other = load_fashion_mnist("test").float()[600:1200]
    d_same = fd_local(x, x)
    assert d_same == pytest.approx(0.0, abs=1e-3)
    d_other, d_noisy, d_very = fd_local(x, other), fd_local(x, noisy), fd_local(x, very_noisy)
    assert d_other < d_noisy < d_very
