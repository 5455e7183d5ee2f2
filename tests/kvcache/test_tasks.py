"""The synthetic KV tasks: formats, answers present exactly where stated, determinism."""

import pytest
import torch

from tokenworks.kvcache.tasks import kv_retrieval, prose_windows, record_stream, recurrence_traces, task_vocab

from kv_models import task_tokenizer


@pytest.fixture(scope="module")
def tok():
    return task_tokenizer()


def test_task_vocab_is_disjoint_single_tokens(tok):
    v = task_vocab(tok)
    assert set(v.keys.tolist()).isdisjoint(v.values.tolist()) and v.mark not in set(v.keys.tolist() + v.values.tolist())
    assert len(v.keys) > 300 and len(v.values) > 300
    text = tok.decode([v.mark, int(v.keys[0]), int(v.values[0])])
    assert tok(text, add_special_tokens=False)["input_ids"] == [v.mark, int(v.keys[0]), int(v.values[0])]


def test_retrieval_answer_follows_the_queried_key_exactly_once(tok):
    d = kv_retrieval(tok, n=4, context_len=600, n_pairs=12, value_len=2, seed=3)
    v = task_vocab(tok)
    assert d["input_ids"].shape == (4, 600) and d["answers"].shape == (4, 2)
    for row, ans, depth in zip(d["input_ids"], d["answers"], d["depth"]):
        assert row[-2] == v.mark
        key = int(row[-1])
        hits = [i for i in range(len(row) - 3) if row[i] == v.mark and row[i + 1] == key]
        assert len(hits) == 1
        i = hits[0]
        assert row[i + 2 : i + 4].tolist() == ans.tolist()
        assert abs(i / 600 - float(depth)) < 1e-6
        assert int((row == v.mark).sum()) == 13  # 12 records + the query
    again = kv_retrieval(tok, n=4, context_len=600, n_pairs=12, value_len=2, seed=3)
    assert torch.equal(again["input_ids"], d["input_ids"])


def test_recurrence_targets_mark_read_back_values(tok):
    d = recurrence_traces(tok, n=3, prompt_len=80, trace_len=400, n_vars=4, min_period=60, max_period=120, seed=1)
    v = task_vocab(tok)
    ids, tgt, gap = d["input_ids"], d["targets"], d["gap"]
    assert ids.shape == tgt.shape == (3, 480)
    assert not tgt[:, :80].any() and tgt.sum() > 0
    for b in range(3):
        defs = {}
        for i in range(80 - 3):
            if ids[b, i] == v.mark:
                defs[int(ids[b, i + 1])] = ids[b, i + 2 : i + 4].tolist()
        assert len(defs) == 4
        for i in torch.nonzero(tgt[b])[:, 0].tolist():
            # logits at i predict ids[i + 1]: a value token of a read-back of a defined key
            start = i - 1 if ids[b, i - 1] == v.mark else i - 2
            assert ids[b, start] == v.mark
            key = int(ids[b, start + 1])
            assert ids[b, start + 2 : start + 4].tolist() == defs[key]
            assert gap[b, i] >= 60 - 4 or gap[b, i] > 0


def test_record_stream_marks_only_read_backs(tok):
    v = task_vocab(tok)
    stream = prose_windows(tok, n=1, length=5000, seed=0)[0]
    g = torch.Generator().manual_seed(0)
    ids, mask = record_stream(v, stream, length=256, n_keys=5, reads=8, max_gap=10, value_len=2, g=g)
    assert ids.shape == mask.shape == (257,)
    seen = {}
    for i in range(len(ids) - 3):
        if ids[i] == v.mark and int(ids[i + 1]) in set(v.keys.tolist()):
            k, val = int(ids[i + 1]), ids[i + 2 : i + 4].tolist()
            if k in seen:
                assert seen[k] == val and mask[i + 2 : i + 4].all()
            else:
                seen[k] = val
                assert not mask[i + 2 : i + 4].any()


def test_bad_task_arguments(tok):
    with pytest.raises(ValueError, match="context_len"):
        kv_retrieval(tok, n=1, context_len=20, n_pairs=10)
    with pytest.raises(ValueError, match="trace_len"):
        recurrence_traces(tok, n=1, prompt_len=40, trace_len=50, min_period=20, max_period=100)
    with pytest.raises(ValueError, match="split"):
        prose_windows(tok, n=1, length=10, split="dev")
