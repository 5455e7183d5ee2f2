"""Defining properties of the decoding base and baselines, each against an independent reference:
the target's own distribution (chi-square), sum(min(p, q)) for the acceptance rate, a fresh
forward over the accepted prefix for the rolled-back caches, a loop for the n-gram lookup."""

import pytest
import torch
from scipy.stats import chisquare

import tokenworks as tw
from tokenworks.decode.base import _Stream
from tokenworks.decode.prompt_lookup import lookup

from decode_models import METHODS, left_pad, make, tiny_lm

V8 = 8


@pytest.fixture(scope="module")
def tiny_vocab_pair():
    target = tiny_lm(layers=1, seed=3, vocab=V8, eos=None)
    draft = tiny_lm(layers=1, seed=4, vocab=V8, eos=None)
    with torch.no_grad():  # spread-out distributions on 8 tokens (the fixture sharpens by 40)
        target.lm_head.weight.div_(8.0)
        draft.lm_head.weight.div_(8.0)
    return target, draft


PROMPT = [3, 5, 2, 3, 5]  # "3 5" repeats: prompt lookup proposes drafts too
N = 6000  # rows sampled at once (one batch)


def _first_tokens(name, pair, k):
    target, draft = pair
    ids = torch.tensor([PROMPT] * N)
    dec = make(name, k=k, **({"max_ngram": 2} if name == "prompt_lookup" else {}))
    out = dec.generate(target, ids, draft=draft if dec.needs_draft else None, max_new_tokens=1, do_sample=True, eos_token_id=[], seed=123)
    return torch.tensor([t[0] for t in out.tokens]), out


def _target_p(model):
    with torch.no_grad():
        return torch.softmax(model(torch.tensor([PROMPT])).logits[0, -1].double(), -1)


@pytest.mark.parametrize("name", METHODS)
def test_sampling_preserves_the_targets_distribution(name, tiny_vocab_pair):
    """Chi-square goodness of fit of the first sampled token to the target's softmax, with a
    fixed seed; tolerance: p-value > 0.001. The same counts must reject the draft's softmax
    (the test has the power to see a wrong acceptance rule)."""
    toks, out = _first_tokens(name, tiny_vocab_pair, k=2)
    counts = torch.bincount(toks, minlength=V8).double()
    p = _target_p(tiny_vocab_pair[0])
    q = _target_p(tiny_vocab_pair[1])
    assert chisquare(counts.numpy(), (p * N).numpy()).pvalue > 1e-3
    assert chisquare(counts.numpy(), (q * N).numpy()).pvalue < 1e-6
    if name == "prompt_lookup":
        assert all(n == 2 for n in out.stats.proposed[0])  # drafts really were proposed


def test_acceptance_rate_equals_sum_min_p_q(tiny_vocab_pair):
    """With k = 1 the share of rows accepting the draft is sum_x min(p(x), q(x)) (binomial, 4 sigma)."""
    _, out = _first_tokens("spec_sampling", tiny_vocab_pair, k=1)
    rate = sum(out.stats.accepted[0]) / N
    p, q = _target_p(tiny_vocab_pair[0]), _target_p(tiny_vocab_pair[1])
    want = float(torch.minimum(p, q).sum())
    assert 0.2 < want < 0.95  # a non-trivial pair
    assert abs(rate - want) < 4 * (want * (1 - want) / N) ** 0.5


def test_greedy_draft_acceptance_is_the_target_probability_of_the_draft_argmax(tiny_vocab_pair):
    _, out = _first_tokens("greedy_draft", tiny_vocab_pair, k=1)
    p, q = _target_p(tiny_vocab_pair[0]), _target_p(tiny_vocab_pair[1])
    want = float(p[q.argmax()])
    rate = sum(out.stats.accepted[0]) / N
    assert abs(rate - want) < 4 * (want * (1 - want) / N) ** 0.5


def _fresh_logits(model, prefix):
    with torch.no_grad():
        return model(torch.tensor([prefix])).logits[0, -1].float()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_rolled_back_cache_equals_a_fresh_forward_over_the_accepted_prefix(kind):
    """Drafts fed in one chunk (target-style) and one at a time (draft-style), rows keeping
    different numbers; then the next distribution of every row is compared with a plain
    forward of the model over that row's accepted tokens alone (no padding, no cache)."""
    model = tiny_lm(layers=2, seed=5, kind=kind)
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(2, 64, (n,), generator=g).tolist() for n in (9, 4, 6)]
    ids, mask = left_pad(rows)
    for one_at_a_time in (False, True):
        s = _Stream(model, ids, mask)
        seqs = [list(r) for r in rows]
        for step, keep in enumerate([[0, 3, 1], [4, 0, 2], [2, 2, 4]]):
            drafts = torch.randint(2, 64, (3, 4), generator=g)
            if one_at_a_time:
                s.feed()
                for j in range(4):
                    s.feed(drafts[:, j : j + 1])
            else:
                s.feed(drafts)
            keep_t = torch.tensor(keep)
            s.rollback(keep_t)
            nxt = torch.randint(2, 64, (3,), generator=g)
            for b in range(3):
                seqs[b] += drafts[b, : keep[b]].tolist() + [int(nxt[b])]
                s.pending[b] = [int(nxt[b])]
            got = s.feed()[:, -1]
            s.rollback(torch.zeros(3, dtype=torch.long))
            for b in range(3):
                torch.testing.assert_close(got[b], _fresh_logits(model, seqs[b]), atol=1e-4, rtol=1e-4)
            assert int(s.nreal[b]) == len(seqs[b])
        assert s.cache.get_seq_length() == s.mask.shape[1] < sum(len(r) for r in seqs)  # cropped, no recomputation


def _lookup_loop(seq, k, max_ngram, eos=()):
    """Hugging Face's rule written as plain loops: first earlier match, longest n-gram first."""
    T = len(seq)
    for n in range(min(max_ngram, T - 1), 0, -1):
        tail = seq[T - n :]
        for i in range(0, T - n + 1):
            if seq[i : i + n] == tail and i + n < T:
                d = seq[i + n : min(i + n + k, T)]
                for j, t in enumerate(d):
                    if t in eos:
                        return d[:j]
                return d
    return []


def test_lookup_equals_a_loop_reference():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        seq = torch.randint(0, 5, (int(torch.randint(1, 30, (1,), generator=g)),), generator=g).tolist()
        for k, n in ((3, 2), (5, 3), (1, 1)):
            assert lookup(torch.tensor(seq), k, n, 1, {4}) == _lookup_loop(seq, k, n, {4})


def test_prompt_lookup_matches_hf_prompt_lookup_generate(pair):
    """The peer: HF's generate(prompt_lookup_num_tokens=k) gives the same greedy tokens."""
    target = pair[0]
    ids = torch.tensor([[5, 6, 7, 8, 5, 6, 7, 9, 5, 6]])
    hf = target.generate(ids, max_new_tokens=12, do_sample=False, prompt_lookup_num_tokens=3, pad_token_id=0, eos_token_id=1)
    ours = make("prompt_lookup", k=3).generate(target, ids, max_new_tokens=12, eos_token_id=1)
    want = hf[0, ids.shape[1] :].tolist()
    assert ours.tokens[0] == (want[: want.index(1) + 1] if 1 in want else want)


def test_bad_inputs_give_one_line_errors_naming_the_argument(pair):
    from transformers import MistralConfig, MistralForCausalLM

    target, draft = pair
    ids = torch.tensor([[5, 6, 7]])
    dec = make("spec_sampling", k=2)
    other = tiny_lm(layers=1, vocab=80)
    with pytest.raises(ValueError, match="draft has a vocabulary of 80 tokens but target has 64"):
        dec.generate(target, ids, draft=other)
    with pytest.raises(ValueError, match="needs a draft model"):
        dec.generate(target, ids)
    with pytest.raises(ValueError, match="draft must be None"):
        make("prompt_lookup").generate(target, ids, draft=draft)
    with pytest.raises(TypeError, match="target must be a Hugging Face PreTrainedModel"):
        dec.generate(torch.nn.Linear(2, 2), ids, draft=draft)
    sliding = MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=4, num_key_value_heads=2, sliding_window=4))  # fmt: skip
    with pytest.raises(TypeError, match="sliding-window"):
        dec.generate(sliding, ids, draft=draft)
    with pytest.raises(ValueError, match="input_ids must be a"):
        dec.generate(target, ids[0], draft=draft)
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        dec.generate(target, ids, torch.ones(1, 2, dtype=torch.long), draft=draft)
    with pytest.raises(ValueError, match="max_ngram"):
        make("prompt_lookup", max_ngram=0)
