"""P33 Deliberation in latent space via differentiable cache augmentation (Liu et al. 2024).

Mechanism: a frozen decoder LM reads a prefix into its KV cache; a *coprocessor* (a
transformer with the decoder's layers, initialised from them and trained) reads that cache
with ``k`` learnt soft-token queries and returns ``k`` latent embeddings (its last, normed
hidden states); the decoder appends them to its cache (one forward on them as
``inputs_embeds``) and goes on decoding. Only the coprocessor and the soft tokens are
trained, with the decoder's LM loss on the ``ahead`` tokens after the prefix; gradients flow
through the frozen decoder into the latents. Evaluation: perplexity of the next 1 .. ``ahead``
tokens with and without the augmentation, by distance from it.

Deviations: the decoder is the project's reference LM (``tokenworks.models.reference_lm``,
4 layers, d = 128) on the prose corpus, not Gemma; one split point per training window (the
paper trains many in parallel with a custom mask); the coprocessor has no token embeddings
or LM head of its own (it only needs the layers); hundreds of steps, not a pre-training run.
After the latents the decoder is fed the prefix's last token once more (position ``P + k``)
and then the continuation, so the first continuation token is predicted at a real token that
attends to the latents, not at the last latent. Measured reason: predicting it at the last
latent (the first version) lost the decoder's local next-token cue and made the perplexity at
distance 1 3.5x worse (4.01 -> 5.25 nats) while distances >= 5 were unchanged; retrained
this way (same 300 steps), the held-out ratio at distance 1 is 1.21 and over 1-32 tokens
1.004 (48 windows, one seed): no longer harmful beyond the first token, but not the paper's
gain either (its coprocessor is trained far longer; our training loss fell only from 3.73 to
3.70 nats over the 300 steps). The extra position costs one decoder forward per augmentation.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_int
from tokenworks.registry import register

__all__ = ["CacheCoprocessor", "augmented_logits", "train_coprocessor"]


@register("cache-aug", paper="P33", kind="cache_coprocessor")
class CacheCoprocessor(nn.Module):
    """``k`` soft tokens and a copy of the decoder's layers (a ``LlamaModel``, embeddings unused)."""

    def __init__(self, decoder, k: int):
        super().__init__()
        from transformers import LlamaModel

        check_int("k", k, min=0, max=512)
        cfg = copy.deepcopy(decoder.config)
        cfg.vocab_size, cfg.pad_token_id = 1, None  # inputs are the soft tokens only
        self.body = LlamaModel(cfg)
        own = self.body.state_dict()
        for name, t in decoder.model.state_dict().items():
            if not name.startswith("embed_tokens"):
                own[name] = t.detach().clone().float()
        self.body.load_state_dict(own)
        emb = decoder.get_input_embeddings().weight
        g = torch.Generator().manual_seed(0)
        rows = torch.randint(emb.shape[0], (k,), generator=g)
        self.soft = nn.Parameter(emb.detach()[rows].clone().float())  # (k, D): start at real token embeddings
        self.k = k

    def forward(self, cache, start: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, k, D) from a copy of ``cache`` (B rows, prefix length T); ``start``
        (B,) is the position of the first latent, ``mask`` (B, T) the prefix's attention mask."""
        B = start.shape[0]
        if self.k == 0:
            return self.soft.new_zeros(B, 0, self.soft.shape[1])
        from transformers import DynamicCache

        c = DynamicCache()  # a shallow copy: appending the soft tokens' keys builds new tensors (cat)
        for i, layer in enumerate(cache.layers):
            c.update(layer.keys, layer.values, i)
        x = self.soft[None].expand(B, -1, -1)
        pos = start[:, None] + torch.arange(self.k)[None]
        am = None if mask is None else torch.cat([mask, torch.ones(B, self.k, dtype=mask.dtype)], 1)
        return self.body(inputs_embeds=x, past_key_values=c, use_cache=True, position_ids=pos, attention_mask=am).last_hidden_state


def augmented_logits(decoder, cop: CacheCoprocessor | None, prefix: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
    """Decoder logits (B, N, V) at the ``cont`` (B, N) positions after ``prefix`` (B, P), with
    the coprocessor's latents appended to the cache between them (None or ``k = 0``: none).
    The logits at position ``j`` predict ``cont[:, j + 1]``; the logits that predict
    ``cont[:, 0]`` come first: (B, N + 1, V) in all. With latents, those first logits are the
    decoder's at the prefix's last token fed again after the latents."""
    from transformers import DynamicCache

    B, P = prefix.shape
    cache = DynamicCache()
    with torch.no_grad():
        out = decoder(input_ids=prefix, past_key_values=cache, use_cache=True)
    k = 0 if cop is None else cop.k
    if not k:
        pos = torch.arange(P, P + cont.shape[1])[None].expand(B, -1)
        rest = decoder(input_ids=cont, past_key_values=cache, use_cache=True, position_ids=pos).logits
        return torch.cat([out.logits[:, -1:], rest], 1)
    z = cop(cache, torch.full((B,), P))
    decoder(inputs_embeds=z.to(out.logits.dtype), past_key_values=cache, use_cache=True, position_ids=torch.arange(P, P + k)[None].expand(B, -1))
    # the last prefix token again, then the continuation: the first prediction is made at a
    # real token (which now also attends to the latents), not at a latent
    again = torch.cat([prefix[:, -1:], cont], 1)
    pos = torch.arange(P + k, P + k + again.shape[1])[None].expand(B, -1)
    return decoder(input_ids=again, past_key_values=cache, use_cache=True, position_ids=pos).logits


def _loss(decoder, cop, batch: torch.Tensor, prefix_len: int) -> torch.Tensor:
    prefix, cont = batch[:, :prefix_len], batch[:, prefix_len:]
    logits = augmented_logits(decoder, cop, prefix, cont[:, :-1])  # (B, N, V) predicting cont
    return F.cross_entropy(logits.flatten(0, 1).float(), cont.flatten())


def train_coprocessor(decoder, tokenizer, *, k: int = 8, prefix_len: int = 64, ahead: int = 32, steps: int = 300,
                      batch_size: int = 16, lr: float = 1e-3, seed: int = 0, train_bytes: int | None = 2_000_000,
                      run_dir=None) -> tuple[CacheCoprocessor, float]:  # fmt: skip
    """Train a :class:`CacheCoprocessor` on prose windows of ``prefix_len + ahead`` tokens with
    the frozen ``decoder``'s LM loss on the ``ahead`` tokens (the project's training loop)."""
    from tokenworks.models.lm import prose_batches
    from tokenworks.train import TrainConfig, train

    check_int("prefix_len", prefix_len, min=1)
    check_int("ahead", ahead, min=1)
    for p in decoder.parameters():
        p.requires_grad_(False)
    decoder.eval()
    torch.manual_seed(seed)
    cop = CacheCoprocessor(decoder, k)
    batch_fn = prose_batches(tokenizer, train_bytes=train_bytes, seq_len=prefix_len + ahead - 1, batch_size=batch_size)

    def loss_fn(m, b):
        return _loss(decoder, getattr(m, "module", m), b, prefix_len)

    tc = TrainConfig(steps=steps, lr=lr, warmup=min(30, steps // 10), seed=seed, desc="cache coprocessor", checkpoint_every=100)
    res = train(cop, loss_fn, batch_fn, tc, ckpt_dir=run_dir)
    return cop.eval(), res.final_loss


@torch.no_grad()
def nll_by_distance(decoder, cop: CacheCoprocessor | None, windows: torch.Tensor, prefix_len: int, batch_size: int = 16) -> torch.Tensor:
    """Mean next-token NLL (nats) at each distance 1 .. ahead after the prefix, over ``windows``
    (N, prefix_len + ahead)."""
    tot = None
    for s in range(0, windows.shape[0], batch_size):
        b = windows[s : s + batch_size]
        prefix, cont = b[:, :prefix_len], b[:, prefix_len:]
        logits = augmented_logits(decoder, cop, prefix, cont[:, :-1])
        nll = F.cross_entropy(logits.flatten(0, 1).float(), cont.flatten(), reduction="none").view(cont.shape).sum(0)
        tot = nll if tot is None else tot + nll
    return tot / windows.shape[0]
