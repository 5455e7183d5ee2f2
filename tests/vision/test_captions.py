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


def test_attribute_captions_follow_pixel_statistics_computed_by_hand():
    """Reference: the four statistics of one image with numpy loops, then the tertile words."""
    import numpy as np

    from tokenworks.data import load_mnist5k
    from tokenworks.vision.captions import BRIGHTNESS, SHAPE, SIZE, TEXTURE, attribute_captions, attribute_cuts, image_attributes

    data = load_mnist5k("train").take(300)
    x = data.float()
    got = image_attributes(x[:5])
    for b in range(5):
        img = x[b, 0].numpy().astype(np.float64)
        on = [(i, j) for i in range(28) for j in range(28) if img[i, j] > 0.1]
        bright = sum(img[i, j] for i, j in on) / len(on)
        rows = {i for i, _ in on}
        cols = {j for _, j in on}
        g, n = 0.0, 0
        for i in range(27):
            for j in range(27):
                if img[i, j] > 0.1:
                    g += abs(img[i, j + 1] - img[i, j]) + abs(img[i + 1, j] - img[i, j])
                    n += 1
        assert float(got["brightness"][b]) == pytest.approx(bright, rel=1e-4)
        assert float(got["size"][b]) == pytest.approx(len(on) / 784, rel=1e-4)
        assert float(got["shape"][b]) == pytest.approx(len(cols) / len(rows), rel=1e-4)
        assert float(got["texture"][b]) == pytest.approx(g / n, rel=1e-4)
    cuts = attribute_cuts(x)
    caps = attribute_captions(x[:40], data.labels[:40], list(data.classes), cuts)
    words = [BRIGHTNESS, SIZE, SHAPE, TEXTURE]
    for cap, y in zip(caps, data.labels[:40].tolist()):
        assert cap.endswith(str(data.classes[y]).lower()) and cap.startswith("a ")
        for vocab, part in zip(words, cap[2:].split(", ")):
            assert any(part.startswith(w) for w in vocab), (cap, vocab)
    all_caps = attribute_captions(x, data.labels, list(data.classes), cuts)
    size_words = [c.split(", ")[1] for c in all_caps]
    for w in SIZE:  # tertiles: each word on about a third of the images the cuts were fitted on
        assert abs(size_words.count(w) / len(x) - 1 / 3) < 0.05
