"""Registry-wide contract of speculative decoders (parametrized over
``tw.methods(kind="spec_decoder")``): lossless greedy decoding, determinism, stats."""

import pytest
import torch

import tokenworks as tw
from tokenworks.decode import SpeculativeDecoder

from decode_models import METHODS, distill_draft, left_pad, make, tiny_lm


def _draft(name, pair):
    return pair[1] if tw.get(name).obj.needs_draft else None


def test_registry_has_the_issue_baselines():
    assert {"spec_sampling", "greedy_draft", "prompt_lookup"} <= set(METHODS)
    for m in tw.methods(kind="spec_decoder"):
        assert issubclass(m.obj, SpeculativeDecoder) and m.family == "SPEC"


ROWS = [[5, 6, 7, 8, 9, 10, 11, 5, 6, 7], [12, 13, 14], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]]


def _hf_greedy(target, ids, mask, n, eos):
    out = target.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=eos)
    rows = []
    for r in out[:, ids.shape[1] :].tolist():  # HF pads finished rows with pad_token_id after EOS
        rows.append(r[: r.index(eos) + 1] if eos in r else r)
    return rows


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("k", [1, 4])
def test_greedy_output_equals_the_targets_own_greedy_generate(name, k, pair):
    target = pair[0]
    ids, mask = left_pad(ROWS)
    ref = _hf_greedy(target, ids, mask, 16, eos=1)
    out = make(name, k=k).generate(target, ids, mask, draft=_draft(name, pair), max_new_tokens=16, eos_token_id=1)
    assert out.tokens == ref
    assert out.sequences.shape == (3, max(len(r) for r in ref))


@pytest.mark.parametrize("name", METHODS)
def test_greedy_stops_at_an_eos_met_inside_a_draft(name, pair):
    """EOS is a token the target emits mid-way; with long drafts it is accepted inside one."""
    target = pair[0]
    ids, mask = left_pad(ROWS)
    free = _hf_greedy(target, ids, mask, 24, eos=None)
    eos = free[0][6]  # the 7th generated token of row 0 becomes the EOS
    ref = _hf_greedy(target, ids, mask, 24, eos=eos)
    assert len(ref[0]) <= 7 and ref[0][-1] == eos
    out = make(name, k=6).generate(target, ids, mask, draft=_draft(name, pair), max_new_tokens=24, eos_token_id=eos)
    assert out.tokens == ref
    inside = [a for step in out.stats.accepted for a in step]
    if name == "flash":  # no head given: it proposes nothing here (a trained head: tests/decode/test_flash.py)
        assert max(inside) == 0
        return
    assert max(inside) >= 1  # drafts were accepted (the EOS row is cut inside an accepted run)


@pytest.mark.parametrize("name", METHODS)
def test_sampling_is_seeded_and_stats_add_up(name, pair):
    target = pair[0]
    ids, mask = left_pad(ROWS)
    dec = make(name, k=3)
    kw = dict(draft=_draft(name, pair), max_new_tokens=12, do_sample=True, temperature=1.0, eos_token_id=[], seed=7)  # [] : no EOS
    a = dec.generate(target, ids, mask, **kw)
    b = dec.generate(target, ids, mask, **kw)
    assert a.tokens == b.tokens
    assert all(len(t) == 12 for t in a.tokens)
    s = a.stats
    assert s.target_forwards == s.steps  # one per step; the prompt is fed with the first drafts
    assert s.new_tokens == 36
    # every step gives each active row its accepted drafts + one token (cut at the length limit)
    assert sum(a + 1 for step in s.accepted for a in step) >= s.new_tokens
    if tw.get(name).obj.needs_draft:
        assert s.draft_forwards >= s.steps * (dec.k - 1)
    else:
        assert s.draft_forwards == 0
    assert 1.0 <= s.mean_accepted <= dec.k + 1


@pytest.mark.parametrize("name", METHODS)
def test_bad_options_name_the_argument(name, pair):
    for k in (0, -2):
        with pytest.raises(ValueError, match="k must be >= 1"):
            make(name, k=k)
    with pytest.raises(TypeError, match="k must be an integer"):
        make(name, k=2.5)
    dec = make(name, k=2)
    ids, mask = left_pad(ROWS)
    with pytest.raises(ValueError, match="max_new_tokens"):
        dec.generate(pair[0], ids, mask, draft=_draft(name, pair), max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        dec.generate(pair[0], ids, mask, draft=_draft(name, pair), do_sample=True, temperature=0.0)
