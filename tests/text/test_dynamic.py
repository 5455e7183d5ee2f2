"""P57 dynamic tokenization: batch-level BPE merging (reversible, deterministic, in-word), its
reference implementation, and prefill with merged embeddings."""

from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenworks as tw
from tokenworks.text import token_bytes
from tokenworks.text.merging import joinable_boundaries
from tokenworks.text.vocab import backend

MERGERS = [m.name for m in tw.methods(kind="token_merger")]
HYP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TEXTS = [
    "The licensee shall distribute the licensed software under the license.",
    "Licensed works, licensed copies and their licensees are licensed.",
    "Redistribution of the software in source form is permitted (a) provided that",
]


def pretoken_runs(tokenizer, seq):
    """Split ``seq`` into runs of tokens lying inside one pre-token, another way than the code:
    the ByteLevel pre-tokenizer's pieces are written one character per byte, so their lengths
    are their byte spans (no character offsets involved)."""
    tb = token_bytes(tokenizer)
    text = b"".join(tb[i] for i in seq).decode("utf-8")
    pieces = backend(tokenizer).pre_tokenizer.pre_tokenize_str(text)
    starts, pos = set(), 0
    for piece, _ in pieces:
        starts.add(pos)
        pos += len(piece)
    runs, cur, pos = [], [], 0
    for i in seq:
        if cur and pos in starts:
            runs.append(cur)
            cur = []
        cur.append(i)
        pos += len(tb[i])
    return runs + ([cur] if cur else [])


def reference_merge(tokenizer, seqs, merges):
    """The slow reference, written differently: split each sequence into pre-token runs first,
    then plain Python BPE over the runs (Counter; ties to the pair seen first, as the official
    code's ``max`` over a Counter), applying each merge left to right."""
    runs = [(b, [(i,) for i in r]) for b, seq in enumerate(seqs) for r in pretoken_runs(tokenizer, seq)]
    for _ in range(merges):
        counts = Counter(p for _, r in runs for p in zip(r, r[1:]))
        if not counts:
            break
        a, c = max(counts, key=counts.get)  # first maximal in insertion order
        for k, (b, r) in enumerate(runs):
            out, j = [], 0
            while j < len(r):
                if j + 1 < len(r) and (r[j], r[j + 1]) == (a, c):
                    out.append(a + c)
                    j += 2
                else:
                    out.append(r[j])
                    j += 1
            runs[k] = (b, out)
    result = [[] for _ in seqs]
    for b, r in runs:
        result[b] += r
    return result


@pytest.fixture(scope="module")
def batch_ids(source_tokenizer):
    return [source_tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]


@pytest.mark.parametrize("name", MERGERS)
def test_contract_zero_merges_change_nothing(name, source_tokenizer, batch_ids, make_llama):
    model = make_llama(source_tokenizer)
    m = tw.get(name).create(merges=0)
    batch = m.merge(batch_ids, source_tokenizer)
    assert batch.ids() == batch_ids and batch.reduction == 0.0 and batch.new_units() == []
    # prefill with zero merges is the model itself, exactly
    prompts = [ids[:-4] for ids in batch_ids]
    conts = [ids[-4:] for ids in batch_ids]
    nll, n = m.continuation_nll(model, m.merge(prompts, source_tokenizer), conts, tw.create("mean_init"))
    ref = 0.0
    for ids in batch_ids:
        logits = model(input_ids=torch.tensor([ids])).logits[0, len(ids) - 5 : -1]
        ref += torch.nn.functional.cross_entropy(logits, torch.tensor(ids[-4:]), reduction="sum").item()
    assert n == 12 and nll == pytest.approx(ref, rel=1e-4)


def test_merging_matches_the_reference_and_stays_inside_pretokens(source_tokenizer, batch_ids):
    for merges in (1, 5, 20, 200):
        batch = tw.create("dynamic_bpe", merges=merges).merge(batch_ids, source_tokenizer)
        assert batch.units == reference_merge(source_tokenizer, batch_ids, merges)
    # with enough merges every pre-token is one unit: " licensed" etc.
    full = tw.create("dynamic_bpe", merges=10_000).merge(batch_ids, source_tokenizer)
    for seq, units in zip(batch_ids, full.units):
        assert [list(u) for u in units] == pretoken_runs(source_tokenizer, seq)
    words = {source_tokenizer.decode(list(u)) for seq in full.units for u in seq}
    assert " licensed" in words and " software" in words
    assert full.reduction > 0.2


def test_boundaries_are_the_tokenizers_pretokens_not_a_word_rule(source_tokenizer):
    """GPT-2's pre-tokenizer splits letters from digits (" ab" | "12") and keeps a leading space
    with its word; a word-character rule would join "ab"+"12" and never join " " + "word"."""
    text = " ab12 ab12 ab12 zq9 zq9 zq9 ,, x-y"
    ids = source_tokenizer(text, add_special_tokens=False)["input_ids"]
    full = tw.create("dynamic_bpe", merges=10_000).merge([ids], source_tokenizer)
    pieces = [source_tokenizer.decode(list(u)) for u in full.units[0]]
    assert pieces == [p.replace("Ġ", " ") for p, _ in backend(source_tokenizer).pre_tokenizer.pre_tokenize_str(text)]
    assert " ab" in pieces and "12" in pieces and "ab12" not in " ".join(pieces).replace(" ab 12", "")


def test_boundaries_inside_a_character_and_at_special_tokens(source_tokenizer):
    tb = token_bytes(source_tokenizer)
    eos = source_tokenizer.eos_token_id
    ids = source_tokenizer("東京", add_special_tokens=False)["input_ids"]
    assert len(ids) >= 2 and all(joinable_boundaries(source_tokenizer, ids))  # byte pieces of one pre-token
    assert joinable_boundaries(source_tokenizer, [*ids, eos, *ids]) == [True] * (len(ids) - 1) + [False, False] + [True] * (len(ids) - 1)
    # a window cut in the middle of a character still works (invalid UTF-8 at the edge)
    cut = [i for i in ids if tb[i]][1:]
    assert len(joinable_boundaries(source_tokenizer, cut)) == len(cut) - 1


@HYP
@given(data=st.data())
def test_merging_is_deterministic_reversible_and_counts_its_savings(source_tokenizer, data):
    texts = data.draw(st.lists(st.text(alphabet="abcdlicens .,\nXY09'zé東", min_size=1, max_size=40), min_size=1, max_size=4))
    merges = data.draw(st.integers(0, 30))
    ids = [source_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids = [i for i in ids if i] or [[5, 6, 7]]
    m = tw.create("dynamic_bpe", merges=merges)
    a, b = m.merge(ids, source_tokenizer), m.merge([list(x) for x in ids], source_tokenizer)
    assert a.units == b.units and a.merges == b.merges
    assert a.ids() == ids
    assert source_tokenizer.batch_decode(a.ids()) == source_tokenizer.batch_decode(ids)
    assert len(a.merges) <= merges
    assert sum(a.original_lengths) - sum(a.lengths) >= len(a.merges)  # each merge saves >= 1 token
    assert a.units == reference_merge(source_tokenizer, ids, merges)  # the vectorized loop = the slow one


def test_min_count_and_tensor_input(source_tokenizer, batch_ids):
    t = torch.tensor([batch_ids[0][:10], batch_ids[0][:10]])
    only_frequent = tw.create("dynamic_bpe", merges=50, min_count=3).merge(t, source_tokenizer)
    assert only_frequent.merges == []  # every pair occurs exactly twice
    twice = tw.create("dynamic_bpe", merges=50, min_count=2).merge(t, source_tokenizer)
    assert twice.merges and twice.units[0] == twice.units[1]


def test_merged_prefill_generation_continues_with_the_original_tokenizer(source_tokenizer, make_llama):
    model = make_llama(source_tokenizer)
    prompts = ["The licensee shall", "Permission is"]
    out0 = tw.create("dynamic_bpe", merges=0).generate(model, source_tokenizer, prompts, tw.create("mean_init"), max_new_tokens=5)
    for p, o in zip(prompts, out0):  # zero merges: greedy generation from the token ids
        ids = torch.tensor([source_tokenizer(p, add_special_tokens=False)["input_ids"]])
        ref = model.generate(input_ids=ids, max_new_tokens=5, do_sample=False, pad_token_id=source_tokenizer.pad_token_id)
        assert o == source_tokenizer.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)
    merged = tw.create("dynamic_bpe", merges=20).generate(model, source_tokenizer, prompts, tw.create("mean_init"), max_new_tokens=5)
    assert len(merged) == 2 and all(isinstance(s, str) for s in merged)


def test_embeddings_of_merged_and_unmerged_units(source_tokenizer, batch_ids, make_llama):
    from tokenworks.text import ZettHypernetwork

    model = make_llama(source_tokenizer)
    src = model.get_input_embeddings().weight
    eos = source_tokenizer.eos_token_id
    ids = [batch_ids[0] + [eos], *batch_ids[1:]]
    net = ZettHypernetwork.for_model(model, hidden_size=16, heads=2, layers=1)  # untrained: far from identity
    zett = tw.create("zett", hypernet=net)
    for unmerged in ("transfer", "original"):
        m = tw.create("dynamic_bpe", merges=30, unmerged=unmerged)
        batch = m.merge(ids, source_tokenizer)
        assert any(len(u) == 1 and u[0] != eos for seq in batch.units for u in seq)
        embeds = m.embed(batch, model, zett)
        for seq, e in zip(batch.units, embeds):
            assert e.shape == (len(seq), src.shape[1])
            for u, row in zip(seq, e):
                if u == (eos,) or (len(u) == 1 and unmerged == "original"):
                    torch.testing.assert_close(row, src[u[0]])  # the model's own embedding
                else:  # the hypernetwork's prediction for this unit alone
                    torch.testing.assert_close(row, zett.embed_parts([u], src, None)[0][0], rtol=1e-4, atol=1e-5)
    # the mean of one part is the part itself: both choices agree for mean_init
    m = tw.create("dynamic_bpe", merges=30)
    batch = m.merge(ids, source_tokenizer)
    for seq, e in zip(batch.units, m.embed(batch, model, tw.create("mean_init"))):
        for u, row in zip(seq, e):
            torch.testing.assert_close(row, src[list(u)].mean(0))


def test_merger_errors(source_tokenizer, batch_ids, make_llama):
    with pytest.raises(ValueError, match="merges must be >= 0"):
        tw.create("dynamic_bpe", merges=-1)
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        tw.create("dynamic_bpe", min_count=0)
    with pytest.raises(ValueError, match="unmerged must be one of"):
        tw.create("dynamic_bpe", unmerged="own")
    m = tw.create("dynamic_bpe", merges=3)
    with pytest.raises(ValueError, match=r"input_ids\[0\] holds ids outside"):
        m.merge([[1, 10**6]], source_tokenizer)
    with pytest.raises(TypeError, match="non-empty list of id lists"):
        m.merge([], source_tokenizer)
    with pytest.raises(TypeError, match="EmbeddingTransfer"):
        m.embed(m.merge(batch_ids, source_tokenizer), make_llama(source_tokenizer), "mean")
    with pytest.raises(ValueError, match="one sequence per prompt"):
        m.continuation_nll(make_llama(source_tokenizer), m.merge(batch_ids, source_tokenizer), [[1]], tw.create("mean_init"))
