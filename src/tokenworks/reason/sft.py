"""Supervised fine-tuning data and the multi-pass forward shared by the latent methods' training.

:func:`encode` writes an example as token ids with labels (-100 where no loss is taken):
the loss covers what follows the latent slots and their closing ``<eot>``, as in the official
Coconut code where the markers around the latents are given, not predicted.

:func:`collate` left-pads so that every ``<bot>`` of a batch sits in the same column (every
row of a batch has the same number of slots), and right-pads the rest.

:func:`forward_with_latents` runs the model the way Coconut trains (Hao et al. 2024): one
forward over the prefix up to ``<bot>``, then one forward per slot whose input embedding is
``thought_fn(h)`` of the last hidden state ``h`` of the previous position, then one forward
over the rest; all through one ``DynamicCache``, with gradients through the cache and the
thoughts (back-propagation through the whole latent chain). Written here because HF has no
training-time "feed the hidden state back" mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tokenworks.reason.tasks import BOT, EOS, EOT, Example

__all__ = ["collate", "encode", "forward_with_latents", "sft_loss"]


def encode(ex: Example, tok, *, n_latent: int = 0, skip: int = 0, slot: str = "<latent>", steps: bool = True) -> tuple[list[int], list[int], int]:
    """``(ids, labels, bot_index)`` of one example; the first ``skip`` steps are removed (all
    steps when ``steps`` is False). Without slots: ``question <bot> steps <eot> answer <eos>``.
    With ``n_latent`` slots: ``question <bot> slot*n <eot> steps' [<eot>] answer <eos>``, the
    first ``<eot>`` given (it closes the latent chain, as Coconut's end-latent marker), the
    second (present only when steps remain) predicted."""
    conv = tok.convert_tokens_to_ids
    q = conv(ex.question.split())
    kept = conv([w for s in (ex.steps[skip:] if steps else ()) for w in s.split()])
    eot, tail_end = conv(EOT), conv([ex.answer]) + [conv(EOS)]
    ids = q + [conv(BOT)] + [conv(slot)] * n_latent
    if n_latent:
        ids.append(eot)
        tail = kept + ([eot] if kept else []) + tail_end
    else:
        tail = kept + [eot] + tail_end
    return ids + tail, [-100] * len(ids) + tail, len(q)


def collate(items: list[tuple[list[int], list[int], int]], pad_token_id: int = 0) -> dict[str, torch.Tensor | int]:
    """Batch of ``encode`` outputs: ``ids``, ``mask``, ``labels`` (B, T) and the ``bot`` column."""
    left = max(b for _, _, b in items)
    T = max(left - b + len(ids) for ids, _, b in items)
    B = len(items)
    ids = torch.full((B, T), pad_token_id, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, (x, y, b) in enumerate(items):
        s = left - b
        ids[i, s : s + len(x)] = torch.tensor(x)
        labels[i, s : s + len(y)] = torch.tensor(y)
        mask[i, s : s + len(x)] = 1
    return {"ids": ids, "mask": mask, "labels": labels, "bot": left}


def forward_with_latents(model, ids: torch.Tensor, mask: torch.Tensor, bot: int, n_latent: int,
                         thought_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """Logits (B, T, V) with the ``n_latent`` slots after column ``bot`` filled by thoughts;
    ``thought_fn`` maps the last hidden state (B, D) to the next input (B, D) (identity: Coconut)."""
    from transformers import DynamicCache

    emb = model.get_input_embeddings()
    x = emb(ids)  # (B, T, D)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    if n_latent == 0:
        return model(inputs_embeds=x, attention_mask=mask, position_ids=pos).logits
    cache = DynamicCache()
    cut = bot + 1
    out = model(inputs_embeds=x[:, :cut], attention_mask=mask[:, :cut], position_ids=pos[:, :cut], past_key_values=cache,
                use_cache=True, output_hidden_states=True)  # fmt: skip
    logits = [out.logits]
    for i in range(n_latent):
        h = out.hidden_states[-1][:, -1]
        t = h if thought_fn is None else thought_fn(h)
        out = model(inputs_embeds=t[:, None], attention_mask=mask[:, : cut + i + 1], position_ids=pos[:, cut + i : cut + i + 1],
                    past_key_values=cache, use_cache=True, output_hidden_states=True)  # fmt: skip
        logits.append(out.logits)
    rest = cut + n_latent
    if rest < ids.shape[1]:
        out = model(inputs_embeds=x[:, rest:], attention_mask=mask, position_ids=pos[:, rest:], past_key_values=cache, use_cache=True)
        logits.append(out.logits)
    return torch.cat(logits, dim=1)


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the labelled positions."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
