"""P10 TexTok: caption conditioning of encoder and decoder."""

from __future__ import annotations

import pytest
import torch

import tokenworks as tw

from vision_tiny import captions_for, images, tiny


def test_caption_changes_the_output():
    tok = tiny("textok").eval()
    x = images(3)
    a, b = captions_for(tok, 3, seed=1), captions_for(tok, 3, seed=2)
    with torch.no_grad():
        la, lb = tok.encode_latents(x, tok.condition(a, 3)), tok.encode_latents(x, tok.condition(b, 3))
    assert (la - lb).abs().max() > 1e-4  # the encoder reads the caption
    ids = tok.encode(x, a)
    assert (tok.decode(ids, a) - tok.decode(ids, b)).abs().max() > 1e-4  # so does the decoder


def test_without_caption_it_is_titok_with_the_same_weights():
    tex = tiny("textok").eval()
    opts = {k: v for k, v in tex.config()["options"].items() if k not in ("text_tokens", "caption_dim", "caption_source")}
    plain = tw.create("titok", **opts).eval()
    missing, unexpected = plain.load_state_dict(tex.state_dict(), strict=False)
    assert not missing and set(unexpected) == {k for k in tex.state_dict() if k.startswith("text_")} | {"caption_cuts", "cuts_fitted"}
    x = images(3)
    ids = tex.encode(x)
    assert torch.equal(ids, plain.encode(x))
    assert torch.equal(tex.decode(ids), plain.decode(ids))


def test_string_captions_match_their_embeddings():
    from tokenworks.vision.captions import embed_captions

    tok = tiny("textok").eval()
    x = images(2)
    words = ["Coat", "Sandal"]
    assert torch.equal(tok.encode(x, words), tok.encode(x, embed_captions(words)))


def test_bad_captions():
    tok = tiny("textok")
    x = images(2)
    with pytest.raises(ValueError, match="caption_dim=384"):
        tok.encode(x, torch.zeros(2, 10))
    with pytest.raises(ValueError, match="one caption per image"):
        tok.encode(x, torch.zeros(3, 384))
    with pytest.raises(TypeError, match="captions must be"):
        tok.encode(x, 7)
    with pytest.raises(TypeError, match="captions must be a list of strings"):
        tok.encode(x, ["Coat", 3])
