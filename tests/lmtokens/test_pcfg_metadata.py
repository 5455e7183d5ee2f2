"""P47: the PCFG sampler's strings parse under their grammar (Lark's Earley parser, an
independent implementation), and the metadata prefix rows and loss mask."""

import pytest
import torch

import tokenworks as tw
from tokenworks.data import PCFGFamily


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_sentences_parse_under_their_rule_set(seed):
    lark = pytest.importorskip("lark")
    fam = PCFGFamily(seed=seed, n_rule_sets=2, max_depth=6)
    g = torch.Generator().manual_seed(seed)
    for k in range(fam.n_rule_sets):
        parser = lark.Lark(fam.lark_grammar(k), parser="earley", lexer="basic")
        sentences = [fam.sentence(k, g) for _ in range(15)]
        assert max(len(s) for s in sentences) > 5  # not only one-terminal sentences
        for s in sentences:
            parser.parse("".join(fam.char(t) for t in s))  # raises if the string is not in the language


def test_the_parse_check_can_fail():
    """A one-symbol string is in the language iff the start symbol has that terminal rule: the
    Earley check rejects the others, so it is not an accept-all oracle."""
    lark = pytest.importorskip("lark")
    fam = PCFGFamily(seed=0)
    parser = lark.Lark(fam.lark_grammar(0), parser="earley", lexer="basic")
    start_terminals = set(fam.rules[0][0][1])
    for t in range(fam.n_terminals):
        try:
            parser.parse(fam.char(t))
            ok = True
        except lark.exceptions.LarkError:
            ok = False
        assert ok == (t in start_terminals), t


def test_documents_batches_and_tokens():
    fam = PCFGFamily(n_rule_sets=4, n_terminals=10)
    g = torch.Generator().manual_seed(0)
    docs, ks = fam.batch(8, 50, g)
    assert docs.shape == (8, 50) and ks.shape == (8,)
    assert int(docs.max()) <= fam.sep and int(docs.min()) >= 0  # no metadata inside documents
    assert (docs == fam.sep).any(dim=1).all()
    assert fam.vocab_size == 10 + 1 + 4 and fam.meta_token(3) == 14
    # the same generator state gives the same documents
    a = fam.batch(2, 20, torch.Generator().manual_seed(5))[0]
    b = fam.batch(2, 20, torch.Generator().manual_seed(5))[0]
    assert torch.equal(a, b)


def test_rule_sets_differ_in_their_statistics():
    fam = PCFGFamily(n_rule_sets=2)
    g = torch.Generator().manual_seed(0)
    h = [torch.bincount(torch.tensor(fam.document(k, 3000, g)), minlength=fam.vocab_size).float() for k in range(2)]
    tv = 0.5 * (h[0] / h[0].sum() - h[1] / h[1].sum()).abs().sum()
    assert tv > 0.2


def test_bad_grammar_options_name_the_argument():
    with pytest.raises(ValueError, match="binary_mass"):
        PCFGFamily(binary_mass=0.5)
    with pytest.raises(ValueError, match="terminal_rules"):
        PCFGFamily(n_terminals=3, terminal_rules=4)
    with pytest.raises(ValueError, match="k must be"):
        PCFGFamily(n_rule_sets=2).meta_token(2)


def test_metadata_prefix_rows_and_mask(make_lm):
    v = tw.create("metadata_prefix", prefix_len=2)
    docs = torch.arange(20).view(2, 10)
    meta = torch.tensor([[90, 91], [92, 93]])
    rows = v.add_prefix(docs, meta)
    assert rows.tolist()[0] == [90, 91, 0, 1, 2, 3, 4, 5, 6, 7]
    mask = v.loss_mask(rows)
    assert mask.shape == (2, 9) and not mask[:, 0].any() and mask[:, 1:].all()  # target 91 is metadata
    # the masked loss equals a hand computation over the document targets only
    lm = make_lm(100)
    loss, _ = v.loss(lm, rows)
    logits = lm(input_ids=rows[:, :-1]).logits
    ref = torch.nn.functional.cross_entropy(logits[:, 1:].reshape(-1, 100), rows[:, 2:].reshape(-1))
    assert torch.allclose(loss, ref, atol=1e-6)
    with pytest.raises(ValueError, match="meta"):
        v.add_prefix(docs, meta[:, :1])
    with pytest.raises(ValueError, match="prefix_len"):
        tw.create("metadata_prefix", prefix_len=0)


def test_one_token_prefix_keeps_every_target(make_lm):
    v = tw.create("metadata_prefix")
    rows = v.add_prefix(torch.arange(12).view(2, 6), torch.tensor([[40], [41]]))
    lm = make_lm(50)
    assert torch.allclose(v.loss(lm, rows)[0], tw.create("standard_lm").loss(lm, rows)[0])
