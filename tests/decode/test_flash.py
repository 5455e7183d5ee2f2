"""P31 FLASH: the semi-autoregressive mask against a loop, the head's one-pass k-token proposal
(mask token j blind to later ones), lossless verification against the target's own greedy
generate, and self-distillation raising acceptance over an untrained head."""

import pytest
import torch

import tokenworks as tw
from tokenworks.decode.flash import FlashHead, semi_ar_mask, train_flash_head

from decode_models import tiny_lm

P, V = 4, 64


def test_semi_ar_mask_equals_a_loop():
    m, n, k = 3, 4, 2
    got = semi_ar_mask(m, n, k)
    for i in range(m + n + k):
        for j in range(m + n + k):
            want = j <= i or (i < m and j < m)  # causal, except that visual tokens see each other
            assert bool(got[i, j]) == want, (i, j)


def test_mask_token_j_does_not_see_later_mask_tokens():
    torch.manual_seed(0)
    head = FlashHead(V, P, k=3, queries=2, d=32, layers=2).eval()
    img, ans = torch.randint(0, V, (2, P)), torch.randint(0, V, (2, 5))
    base = head(img, ans)
    with torch.no_grad():
        head.mask_tok[2].add_(1.0)
    moved = head(img, ans)
    assert torch.equal(base[:, :2], moved[:, :2]) and not torch.allclose(base[:, 2], moved[:, 2])
    with torch.no_grad():  # the image reaches the proposal through the compressed tokens
        assert not torch.allclose(head(img.flip(0), ans), moved)
    text_only = FlashHead(V, P, k=3, queries=0, d=32, layers=2).eval()
    assert torch.equal(text_only(img, ans), text_only(img.flip(0), ans))


def _target_answers(target, images, n):
    ids = torch.cat([images, torch.full((len(images), 1), 2)], 1)  # [image, SEP=2]
    out = target.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=1)
    return ids, out[:, P:]  # answers start with SEP


@pytest.fixture(scope="module")
def setup():
    target = tiny_lm(layers=2, seed=0)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(3, V, (300, P), generator=g)
    ids, answers = _target_answers(target, images, 8)
    return target, images, ids, answers


@pytest.mark.parametrize("k", [1, 3])
def test_flash_greedy_output_is_the_targets_own(setup, k):
    target, images, ids, answers = setup
    torch.manual_seed(1)
    head = FlashHead(V, P, k=3, queries=2, d=32, layers=1).eval()
    out = tw.create("flash", k=k, head=head, image_tokens=P).generate(target, ids[:6], max_new_tokens=8, eos_token_id=1)
    ref = [r[1:][: r[1:].index(1) + 1] if 1 in r[1:] else r[1:] for r in answers[:6].tolist()]
    assert out.tokens == ref
    assert out.stats.extra["head_forwards"] >= out.stats.steps - 1


def test_self_distillation_raises_acceptance(setup):
    target, images, ids, answers = setup
    torch.manual_seed(2)
    head = FlashHead(V, P, k=3, queries=2, d=32, layers=1)
    before = tw.create("flash", k=3, head=head.eval(), image_tokens=P).generate(target, ids[240:], max_new_tokens=8, eos_token_id=1).stats
    train_flash_head(head, images[:240], answers[:240], pad=0, steps=150, batch_size=64, lr=3e-3)
    after = tw.create("flash", k=3, head=head, image_tokens=P).generate(target, ids[240:], max_new_tokens=8, eos_token_id=1).stats
    assert after.mean_accepted > before.mean_accepted + 0.3


def test_bad_options():
    with pytest.raises(ValueError, match="k must be >= 1"):
        tw.create("flash", k=0)
    with pytest.raises(TypeError, match="head must be"):
        tw.create("flash", head=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="queries"):
        FlashHead(V, P, queries=P + 1)
    with pytest.raises(ValueError, match="head's k"):
        tw.create("flash", k=5, head=FlashHead(V, P, k=3))


def test_reproduce_commands_tiny(tmp_path, monkeypatch):
    """`tokenworks train decode-caption-vlm --tiny` runs; the head's training function (what
    `tokenworks train decode-flash-head` runs) works with tiny settings on the committed VLM."""
    from typer.testing import CliRunner

    from tokenworks.cli import app
    from tokenworks.decode.caption_vlm import train_flash_head_and_save
    from tokenworks.io import load_json

    monkeypatch.setenv("TOKENWORKS_CACHE", str(tmp_path / "cache"))
    run = CliRunner().invoke(app, ["train", "decode-caption-vlm", "--tiny", "--out", str(tmp_path / "vlm")])
    assert run.exit_code == 0, run.output
    info = load_json(tmp_path / "vlm" / "tokenworks.json")
    assert "a" in info["fingerprint"]["words"] and len(info["history"]) == 2
    try:
        arch = train_flash_head_and_save(tmp_path / "head", 2, {"steps": 2, "train_images": 40, "batch_size": 8})
    except FileNotFoundError:
        pytest.skip("the caption VLM is not trained")
    assert arch["queries"] == 2 and (tmp_path / "head" / "model.safetensors").is_file()
    run = CliRunner().invoke(app, ["train", "decode-flash-head", "--queries", "17", "--out", str(tmp_path / "x")])
    assert run.exit_code != 0 and "--queries" in run.output
