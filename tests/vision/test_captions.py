"""Caption embeddings: the bundled MiniLM, pooled like sentence-transformers pools it."""

from __future__ import annotations

import pytest
import torch

from tokenworks.vision.captions import CAPTION_DIM, embed_captions, minilm_path


def test_embeddings_are_normalized_cached_and_distinct():
    e = embed_captions(["Coat", "Sandal", "Coat"])
    assert e.shape == (3, CAPTION_DIM)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    assert torch.equal(e[0], e[2]) and not torch.allclose(e[0], e[1])


def test_matches_sentence_transformers():
    """Reference: the sentence-transformers library encoding the same bundled model."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    texts = ["T-shirt/top", "Ankle boot", "Bag"]
    ref = torch.as_tensor(model.encode(texts, normalize_embeddings=True))
    torch.testing.assert_close(embed_captions(texts), ref, atol=1e-4, rtol=1e-4)


def test_bad_input():
    with pytest.raises(TypeError, match="captions must be a list of strings"):
        embed_captions("Coat")
    with pytest.raises(ValueError, match="at least one"):
        embed_captions([])
