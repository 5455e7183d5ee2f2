"""P28 lexinvariant LM: per-sequence random embeddings, tied output, reduction to the standard LM."""

import pytest
import torch

import tokenworks as tw


def _captured_embeddings(v, model, x, seeds):
    got = {}

    def hook(mod, args, kwargs):
        got["emb"] = kwargs["inputs_embeds"].detach().clone()

    h = model.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        v.logits(model, x, seeds=seeds)
    finally:
        h.remove()
    return got["emb"]  # (B, T, D)


def test_same_token_same_vector_within_a_sequence_and_new_vectors_across(make_lm):
    v = tw.create("lexinvariant")
    lm = make_lm(30)
    x = torch.tensor([[3, 7, 3, 9, 7, 3], [3, 7, 3, 9, 7, 3], [3, 7, 3, 9, 7, 3]])
    emb = _captured_embeddings(v, lm, x, torch.tensor([11, 12, 11]))
    for b in range(3):
        for i in range(6):
            for j in range(6):
                same = torch.equal(emb[b, i], emb[b, j])
                assert same == (x[b, i] == x[b, j]).item(), (b, i, j)
    assert not torch.allclose(emb[0], emb[1])  # another seed: other vectors for the same tokens
    assert torch.equal(emb[0], emb[2])  # the same seed: the same vectors
    # never the model's own table
    assert not torch.allclose(emb[0, 0], lm.get_input_embeddings().weight[3])


def test_vectors_are_gaussian_with_the_documented_scale(make_lm):
    v = tw.create("lexinvariant")
    lm = make_lm(30, dim=32)
    t = v.tables(lm, 64, torch.arange(64), "cpu")  # (64, 30, 32)
    assert abs(t.mean().item()) < 0.01
    assert abs(t.std().item() - 32**-0.5) < 0.01
    # pairwise independent across sequences: correlation of two sequences' tables ~ 0
    c = torch.corrcoef(torch.stack([t[0].flatten(), t[1].flatten()]))[0, 1]
    assert abs(c.item()) < 0.1


def test_fixed_table_reduces_to_the_standard_lm(make_lm):
    lm = make_lm(40)
    x = torch.randint(0, 40, (2, 12))
    got = tw.create("lexinvariant").logits(lm, x, table=lm.get_input_embeddings().weight)
    ref = lm(input_ids=x).logits  # Hugging Face's own forward, learned tied table
    assert torch.allclose(got, ref, atol=1e-5)


def test_cipher_invariance_in_distribution(make_lm):
    """A substitution cipher changes nothing for a lexinvariant LM: with the cipher applied to
    the table too, the NLL of the ciphered text equals the plain text's (exchangeable tables)."""
    v = tw.create("lexinvariant")
    lm = make_lm(30)
    x = torch.randint(0, 30, (2, 10))
    perm = torch.randperm(30)
    t = v.tables(lm, 2, torch.tensor([4, 5]), "cpu")
    t_ciphered = torch.empty_like(t)
    t_ciphered[:, perm] = t  # ciphered token perm[v] gets the vector of v
    a = v.logits(lm, x, table=t)
    b = v.logits(lm, perm[x], table=t_ciphered)
    assert torch.allclose(a, b[..., perm], atol=1e-5)


def test_bad_options_and_seeds(make_lm):
    with pytest.raises(ValueError, match="std"):
        tw.create("lexinvariant", std=0.0)
    v = tw.create("lexinvariant")
    with pytest.raises(ValueError, match="seeds"):
        v.logits(make_lm(20), torch.zeros(2, 4, dtype=torch.long), seeds=torch.tensor([1, 2, 3]))
