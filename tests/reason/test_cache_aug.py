"""P33 cache augmentation: no latents = the decoder alone; latents appended through the cache
= one cache-free forward over [prefix, latents, last prefix token, continuation]; the coprocessor at init reads
the cache as the decoder's own layers would; a short training run lowers the loss."""

import torch
from reason_tiny import tiny_llama

from tokenworks.reason.cache_aug import CacheCoprocessor, augmented_logits, nll_by_distance


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, 40, (3, 7), generator=g), torch.randint(2, 40, (3, 5), generator=g)


@torch.no_grad()
def test_zero_latents_leave_the_decoder_unchanged():
    dec = tiny_llama()
    prefix, cont = _data()
    full = dec(input_ids=torch.cat([prefix, cont], 1)).logits[:, prefix.shape[1] - 1 :]
    for cop in (None, CacheCoprocessor(dec, 0)):
        torch.testing.assert_close(augmented_logits(dec, cop, prefix, cont), full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_latents_through_the_cache_equal_a_cache_free_forward():
    dec = tiny_llama()
    cop = CacheCoprocessor(dec, 4)
    torch.nn.init.normal_(cop.soft, std=1.0)
    prefix, cont = _data(1)
    P = prefix.shape[1]
    got = augmented_logits(dec, cop, prefix, cont)
    # reference 1: at init the coprocessor's layers are the decoder's, so its latents are the
    # decoder body's last hidden states over [prefix, soft tokens] in one cache-free pass
    emb = dec.get_input_embeddings()
    x = torch.cat([emb(prefix), cop.soft[None].expand(3, -1, -1)], 1)
    z = dec.model(inputs_embeds=x).last_hidden_state[:, P:]
    from transformers import DynamicCache

    cache = DynamicCache()
    dec(input_ids=prefix, past_key_values=cache, use_cache=True)
    torch.testing.assert_close(cop(cache, torch.full((3,), P)), z, atol=1e-5, rtol=1e-5)
    # reference 2: the decoder once over [prefix, latents, last prefix token, continuation]
    ref = dec(inputs_embeds=torch.cat([emb(prefix), z, emb(prefix[:, -1:]), emb(cont)], 1)).logits[:, P + 4 :]
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    assert (got - augmented_logits(dec, None, prefix, cont)).abs().max() > 1e-3  # the latents do something


def test_training_the_coprocessor_lowers_the_loss_and_leaves_the_decoder_frozen():
    dec = tiny_llama()
    for p in dec.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in dec.state_dict().items()}
    cop = CacheCoprocessor(dec, 2)
    g = torch.Generator().manual_seed(0)
    w = torch.randint(2, 40, (8, 10), generator=g)
    w[:, 7:] = w[:, :3]  # the continuation repeats the prefix's start: learnable from the cache
    base = nll_by_distance(dec, cop, w, 7).mean()
    opt = torch.optim.Adam(cop.parameters(), lr=1e-2)
    for _ in range(40):
        logits = augmented_logits(dec, cop, w[:, :7], w[:, 7:-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 7:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert nll_by_distance(dec, cop, w, 7).mean() < base
    assert all(torch.equal(before[k], v) for k, v in dec.state_dict().items())
