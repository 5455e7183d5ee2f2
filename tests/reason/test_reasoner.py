"""The reasoner mechanics: registry-wide contract, equality with HF greedy generation at zero
latent steps, KV-cached thoughts against a full recomputation, batch (left padding)
invariance, statistics and clear errors."""

from dataclasses import fields

import pytest
import torch

import tokenworks as tw
from tokenworks.reason import Coconut, LatentHead, NoChainOfThought, PauseTokens, Reasoner, left_pad

from reason_tiny import tiny_llama  # noqa: F401

EOS = 1


def _make(info, model, **kw):
    opts = dict(kw)
    if "head" in {f.name for f in fields(info.obj)}:
        torch.manual_seed(1)
        head = LatentHead(model.config.hidden_size)
        torch.nn.init.normal_(head.net[-1].weight, std=0.5)  # a head that is not zero
        opts["head"] = head
    if "gate" in {f.name for f in fields(info.obj)}:
        from tokenworks.reason.hrpo import HybridGate

        opts["gate"] = HybridGate(model.config.hidden_size, r_min=0.5, r_max=0.9)  # a gate that mixes
    return info.create(**opts)


@pytest.mark.parametrize("info", tw.methods(kind="reasoner"), ids=lambda m: m.name)
def test_contract(info, model, prompts):
    steps = 3 if info.obj.uses_latents else 0
    r = _make(info, model, latent_steps=steps, max_new_tokens=6)
    out = r.generate(model, prompts, eos_token_id=EOS)
    again = r.generate(model, prompts, eos_token_id=EOS)
    assert out.tokens == again.tokens  # deterministic
    st = out.stats
    assert len(out.tokens) == len(prompts) and all(1 <= len(t) <= 6 for t in out.tokens)
    assert all(0 <= n <= steps for n in st.latent_steps)
    assert st.generated_tokens == [len(t) for t in out.tokens]
    forced = [int(n > 0 and r.end_token_id is not None) for n in st.latent_steps]
    # one forward per position fed: prefill + thoughts + forced <eot> + tokens (the last token is not fed)
    for i in range(len(prompts)):
        assert st.row_forwards[i] == 1 + st.latent_steps[i] + forced[i] + st.generated_tokens[i] - 1
    assert st.forwards == max(st.row_forwards)


def test_zero_latent_steps_equals_hf_greedy_generate(model, prompts):
    """Would fail with wrong position ids under left padding, or with a cache not reused."""
    ids, mask = left_pad(prompts, 0)
    ref = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, eos_token_id=EOS, pad_token_id=0)[:, ids.shape[1] :]
    for r in (NoChainOfThought(max_new_tokens=8), Coconut(latent_steps=0, max_new_tokens=8)):
        out = r.generate(model, prompts, eos_token_id=EOS)
        for row, toks in zip(ref.tolist(), out.tokens):
            assert row[: len(toks)] == toks
            assert len(toks) == 8 or toks[-1] == EOS


class _Recording(Coconut):
    """Coconut that records the logits at every step (the stop hook sees them) and the thoughts."""

    def __post_init__(self):
        super().__post_init__()
        self.seen_logits, self.seen_thoughts = [], []

    def stop_thinking(self, logits, hidden=None):
        self.seen_logits.append(logits.clone())
        return None

    def thought(self, model, hidden, step):
        self.seen_thoughts.append(hidden.clone())
        return hidden


@torch.no_grad()
def _recompute(model, prompt: list[int], n_thoughts: int, end_id: int):
    """Reference without any cache: the whole sequence of embeddings is run again at each step."""
    emb = model.get_input_embeddings()
    x = emb(torch.tensor([prompt]))  # (1, T, D)
    logits, thoughts = [], []
    for _ in range(n_thoughts):
        out = model(inputs_embeds=x, output_hidden_states=True)
        logits.append(out.logits[0, -1])
        h = out.hidden_states[-1][0, -1]
        thoughts.append(h)
        x = torch.cat([x, h[None, None]], dim=1)
    out = model(inputs_embeds=torch.cat([x, emb(torch.tensor([[end_id]]))], dim=1))
    return logits, thoughts, out.logits[0, -1]


def test_cached_thoughts_equal_full_recomputation(model, prompts):
    """Would fail if the cache were not extended by each thought, or positions were off by one."""
    n, end = 4, 5
    r = _Recording(latent_steps=n, max_new_tokens=1, end_token_id=end)
    out = r.generate(model, prompts, eos_token_id=EOS)
    assert out.stats.latent_steps == [n] * len(prompts)
    for i, p in enumerate(prompts):
        ref_logits, ref_thoughts, ref_answer = _recompute(model, p, n, end)
        for k in range(n):
            torch.testing.assert_close(r.seen_logits[k][i], ref_logits[k], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(r.seen_thoughts[k][i], ref_thoughts[k], atol=1e-4, rtol=1e-4)
        assert out.tokens[i][0] == int(ref_answer.argmax())


@pytest.mark.parametrize("make", [lambda: Coconut(latent_steps=3, max_new_tokens=5), lambda: PauseTokens(latent_steps=2, max_new_tokens=5)])
def test_batch_equals_one_prompt_at_a_time(model, prompts, make):
    """Left padding must not change any row's result."""
    r = make()
    batch = r.generate(model, prompts, eos_token_id=EOS).tokens
    single = [r.generate(model, [p], eos_token_id=EOS).tokens[0] for p in prompts]
    assert batch == single


def test_flops_grow_with_latent_steps(model, prompts):
    f = [Coconut(latent_steps=k, max_new_tokens=1).generate(model, prompts[:1], eos_token_id=EOS, count_flops=True).stats.flops for k in (1, 3, 5)]
    assert f[0] < f[1] < f[2]
    assert f[2] - f[1] == pytest.approx(f[1] - f[0], rel=0.1)  # two more forwards each time


def test_bad_input_is_refused(model, prompts):
    with pytest.raises(ValueError, match="latent_steps"):
        Coconut(latent_steps=-1)
    with pytest.raises(ValueError, match="c"):
        Coconut(c=0)
    with pytest.raises(ValueError, match="c"):
        tw.create("colar", c=0)
    with pytest.raises(ValueError, match="latent_steps"):
        tw.create("cot", latent_steps=2)

    class NoEmbeds(torch.nn.Module):
        def get_input_embeddings(self):
            return torch.nn.Embedding(4, 4)

        def forward(self, input_ids):
            return input_ids

    with pytest.raises(ValueError, match="inputs_embeds"):
        Coconut(latent_steps=1).generate(NoEmbeds(), prompts, eos_token_id=EOS)
    ids, mask = left_pad(prompts, 0)
    with pytest.raises(ValueError, match="left-padded"):
        Coconut(latent_steps=1).generate(model, ids, mask.flip(1), eos_token_id=EOS)
    with pytest.raises(ValueError, match="head"):
        tw.create("colar").generate(model, prompts, eos_token_id=EOS)


def test_base_class_needs_a_thought_hook(model, prompts):
    with pytest.raises(NotImplementedError):
        Reasoner(latent_steps=1).generate(model, prompts, eos_token_id=EOS)
