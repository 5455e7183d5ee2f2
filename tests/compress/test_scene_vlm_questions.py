"""The scene VLM's questions and its use of position, against references written differently:
answers recomputed by parsing the question's words over the cell labels, question and answer
frequencies counted by brute force, and a position-blind oracle (a model that knows every item of
a scene but not where it is) that the committed VLM must beat on position questions."""

from collections import Counter

import pytest
import torch

from tokenworks.compress.scene_vlm import VOCAB, make_qa

# the answer word of each scene label, spelled out here (not the module's table)
LABEL_WORD = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
LABEL_WORD += [str(d) for d in range(10)] + ["empty"]


def _reference_answer(words: list[str], cells: list[int]) -> str:
    """The answer to one question about a 2 x 2 scene (row-major cells), by parsing its words."""
    names = [LABEL_WORD[c] for c in cells]
    if words[0] == "what":  # what item is at the <row>-<col>
        row, col = words[5].split("-")
        return names[(2 if row == "bottom" else 0) + (1 if col == "right" else 0)]
    if words[0] == "how":  # how many <kind> are there ?
        kind = words[2]
        n = 0
        for c in cells:
            if kind == "digits" and 10 <= c <= 19 or kind == "garments" and c <= 9 or kind == "blanks" and c == 20:
                n += 1
            elif kind == "shoes" and LABEL_WORD[c] in ("sandal", "sneaker", "boot"):
                n += 1
        return str(n)
    if words[0] == "is":  # is there a digit <d> ?
        return "yes" if words[4] in names else "no"  # digits are the only one-character names
    # which side holds the shoe ?
    shoe_cols = {i % 2 for i, w in enumerate(names) if w in ("sandal", "sneaker", "boot")}
    return {frozenset(): "none", frozenset({0}): "left", frozenset({1}): "right", frozenset({0, 1}): "both"}[frozenset(shoe_cols)]


@pytest.fixture(scope="module")
def drawn():
    from tokenworks.data.scenes import make_scenes

    g = torch.Generator().manual_seed(11)
    _, labels = make_scenes(2000, split="test", grid=2, generator=g)
    q, a, t = make_qa(labels, g)
    return labels, q, a, t


def test_every_answer_matches_a_parse_of_its_question(drawn):
    labels, q, a, _ = drawn
    for cells, qi, ai in zip(labels.tolist(), q.tolist(), a.tolist()):
        words = [VOCAB[i] for i in qi]
        assert VOCAB[ai] == _reference_answer(words, cells), words


def test_question_types_positions_and_answers_are_balanced(drawn):
    labels, q, a, t = drawn
    n = len(t)
    kinds = Counter(VOCAB[row[0]] for row in q.tolist())  # first word: what / how / is / which
    assert set(kinds) == {"what", "how", "is", "which"}
    assert all(abs(c / n - 0.25) < 0.04 for c in kinds.values()), kinds
    where = Counter(VOCAB[row[5]] for row in q.tolist() if VOCAB[row[0]] == "what")
    assert len(where) == 4 and max(where.values()) / min(where.values()) < 1.4, where
    pos_answers = Counter(VOCAB[ai] for row, ai in zip(q.tolist(), a.tolist()) if VOCAB[row[0]] == "what")
    total = sum(pos_answers.values())
    # every cell is empty with probability 0.25: the majority answer is not more frequent than that
    assert abs(pos_answers["empty"] / total - 0.25) < 0.05 and len(pos_answers) == 21
    yes = Counter(VOCAB[ai] for row, ai in zip(q.tolist(), a.tolist()) if VOCAB[row[0]] == "is")
    assert 0.3 < yes["yes"] / (yes["yes"] + yes["no"]) < 0.7, yes


def _permute_cells(images: torch.Tensor, labels: torch.Tensor, perm: list[int]):
    """Move cell perm[k] of every 56 x 56 scene to cell k (pixels and labels, by slicing)."""
    out, lab = torch.empty_like(images), torch.empty_like(labels)
    for k, src in enumerate(perm):
        r, c, sr, sc = k // 2, k % 2, src // 2, src % 2
        out[..., r * 28 : r * 28 + 28, c * 28 : c * 28 + 28] = images[..., sr * 28 : sr * 28 + 28, sc * 28 : sc * 28 + 28]
        lab[:, k] = labels[:, src]
    return out, lab


def test_committed_vlm_reads_position_beyond_a_position_blind_oracle():
    """Quadrant-permuted held-out scenes, every position asked: the VLM's accuracy must exceed the
    best any model can do that knows each scene's items but not their places (per scene: the most
    frequent label's count / 4), so its answers follow where the items are."""
    from tokenworks.compress.scene_vlm import NAME, WORD, prompt_ids, scene_vlm
    from tokenworks.data.scenes import make_scenes
    from tokenworks.io import assets_dir

    root = assets_dir()
    if root is None or not (root / NAME / "model.safetensors").exists():
        pytest.skip("no committed scene VLM here (assets/compress/scene-vlm)")
    model = scene_vlm(train_if_missing=False)
    x, y = make_scenes(60, split="test", grid=2, generator=torch.Generator().manual_seed(77))
    x, y = _permute_cells(x, y, [3, 2, 1, 0])  # rotate each scene by 180 degrees, cell-wise
    hits, blind = 0, 0.0
    for k, place in enumerate(("top-left", "top-right", "bottom-left", "bottom-right")):
        q = torch.tensor([[WORD[w] for w in ("what", "item", "is", "at", "the", place)]] * len(y))
        with torch.no_grad():
            pred = model(input_ids=prompt_ids(q), pixel_values=(x - 0.5) / 0.5).logits[:, -1].argmax(-1)
        hits += sum(VOCAB[p] == LABEL_WORD[c] for p, c in zip(pred.tolist(), y[:, k].tolist()))
    for cells in y.tolist():
        blind += max(Counter(cells).values())  # hits of the best fixed answer over the scene's 4 questions
    acc, oracle = hits / (4 * len(y)), blind / (4 * len(y))
    assert acc > oracle + 0.05, (acc, oracle)  # 0.05: about 1.7 standard errors of a 240-item accuracy
