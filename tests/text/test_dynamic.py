"""P57 dynamic tokenization: batch-level BPE merging (reversible, deterministic, in-word), its
reference implementation, and prefill with merged embeddings."""

from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenworks as tw
from tokenworks.text import token_bytes
from tokenworks.text.merging import word_byte

MERGERS = [m.name for m in tw.methods(kind="token_merger")]
HYP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TEXTS = [
    "The licensee shall distribute the licensed software under the license.",
    "Licensed works, licensed copies and their licensees are licensed.",
    "Redistribution of the software in source form is permitted (a) provided that",
]


def reference_merge(seqs, tb, merges):
    """Brute force, written differently: split each sequence into maximal in-word runs first,
    then run BPE on the runs, tie to the smallest pair."""
    runs = []  # (seq index, list of units)
    for b, seq in enumerate(seqs):
        cur = []
        for i in seq:
            if cur and not (tb[cur[-1][-1]] and tb[i] and word_byte(tb[cur[-1][-1]][-1]) and word_byte(tb[i][0])):
                runs.append((b, cur))
                cur = []
            cur.append((i,))
        if cur:
            runs.append((b, cur))
    for _ in range(merges):
        counts = Counter(p for _, r in runs for p in zip(r, r[1:]))
        if not counts:
            break
        top = max(counts.values())
        a, c = min(p for p, n in counts.items() if n == top)
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


def test_merging_matches_the_reference_and_stays_inside_words(source_tokenizer, batch_ids):
    tb = token_bytes(source_tokenizer)
    for merges in (1, 5, 20, 200):
        batch = tw.create("dynamic_bpe", merges=merges).merge(batch_ids, source_tokenizer)
        assert batch.units == reference_merge(batch_ids, tb, merges)
        for seq in batch.units:
            for u in seq:
                for a, c in zip(u, u[1:]):
                    assert word_byte(tb[a][-1]) and word_byte(tb[c][0])
                    assert not tb[c].startswith(b" ")
    # with enough merges every word is one token: "licensed" etc.
    full = tw.create("dynamic_bpe", merges=10_000).merge(batch_ids, source_tokenizer)
    words = {source_tokenizer.decode(list(u)) for seq in full.units for u in seq}
    assert " licensed" in words and " software" in words
    assert full.reduction > 0.2


@HYP
@given(data=st.data())
def test_merging_is_deterministic_reversible_and_counts_its_savings(source_tokenizer, data):
    texts = data.draw(st.lists(st.text(alphabet="abcdlicens .,\nXY", min_size=1, max_size=40), min_size=1, max_size=4))
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


def test_embeddings_of_merged_units(source_tokenizer, batch_ids, make_llama):
    model = make_llama(source_tokenizer)
    src = model.get_input_embeddings().weight
    m = tw.create("dynamic_bpe", merges=30)
    batch = m.merge(batch_ids, source_tokenizer)
    embeds = m.embed(batch, model, tw.create("mean_init"))
    for seq, e in zip(batch.units, embeds):
        assert e.shape == (len(seq), src.shape[1])
        for u, row in zip(seq, e):
            torch.testing.assert_close(row, src[list(u)].mean(0))


def test_merger_errors(source_tokenizer, batch_ids, make_llama):
    with pytest.raises(ValueError, match="merges must be >= 0"):
        tw.create("dynamic_bpe", merges=-1)
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        tw.create("dynamic_bpe", min_count=0)
    m = tw.create("dynamic_bpe", merges=3)
    with pytest.raises(ValueError, match=r"input_ids\[0\] holds ids outside"):
        m.merge([[1, 10**6]], source_tokenizer)
    with pytest.raises(TypeError, match="non-empty list of id lists"):
        m.merge([], source_tokenizer)
    with pytest.raises(TypeError, match="EmbeddingTransfer"):
        m.embed(m.merge(batch_ids, source_tokenizer), make_llama(source_tokenizer), "mean")
    with pytest.raises(ValueError, match="one sequence per prompt"):
        m.continuation_nll(make_llama(source_tokenizer), m.merge(batch_ids, source_tokenizer), [[1]], tw.create("mean_init"))
