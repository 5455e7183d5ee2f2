"""P29 Zero-Shot Tokenizer Transfer (ZeTT): a hypernetwork predicts the embeddings of any new
tokenizer for a frozen LM, trained over many sampled tokenizers, applied zero-shot.

Mechanism: every token of the new tokenizer is decomposed into the LM's original tokens; the
hypernetwork (``tokenworks.text.hypernet``) maps the original embeddings of those parts to the
new token's input (and, for untied LMs, output) embedding. Training keeps the LM frozen and
minimizes the LM's next-token loss on text tokenized with a *sampled* tokenizer whose
embeddings all come from the hypernetwork, so the hypernetwork learns how the LM wants a token
made of given parts to look, across tokenizers. Two ZeTT details are kept: (1) a warm-up phase
of "identity" steps that teaches the hypernetwork to return the original embedding for a
one-part decomposition, and (2) an auxiliary loss (weight 0.5 as in ZeTT's configs) that
keeps predictions close to the original embeddings for tokens that exist in both vocabularies
(squared distance over the mean norm of the targets, as in ZeTT's code). The softmax runs over
a subsample of the sampled vocabulary: the tokens in the batch plus random negatives (ZeTT's
``n_token_subsample``).

    net, info = train_hypernet(model, tokenizer, {"prose": docs, "legal": docs}, HypernetTrainConfig())
    new_model = tw.create("zett", hypernet=net).transfer(model, tokenizer, new_tokenizer)

Reproduce the committed hypernetwork of the reference LM (``assets/text/zett-hypernet``):
``tokenworks train zett-hypernet --out assets/text/zett-hypernet --fp16``.

Deviations from the paper and why:
- Sampled tokenizers: ZeTT draws a UnigramLM tokenizer per batch from the batch's substring
  counts with Gumbel noise (its own Rust sampler). Here a pool of ``n_tokenizers`` byte-level
  BPE tokenizers is trained up front with the same ``tokenizers`` engine as every recipe, each
  on a random share of each training corpus with a log-uniform random vocabulary size, and each
  step draws one of them: BPE is the kind of tokenizer the method is evaluated on here, and a
  pool keeps CPU training cheap. The evaluation tokenizer (the KL3M legal BPE) is never in it,
  but its training text overlaps the pool's: 92% of the legal BPE's 4,096 tokens occur in at
  least one pool tokenizer, so "zero-shot" is about the tokenizer, not about unseen strings
  (ZeTT samples its training tokenizers from the same languages it is evaluated on, too).
- Scale: the 1.4M-parameter reference LM (128 wide), a 0.44M-parameter hypernetwork (the
  LM's width, 2 layers) and about 15 CPU minutes (300 identity + 3,000 steps of 8 x 128 tokens)
  instead of 7B LMs and 200k TPU steps. ZeTT's unigram prior bias on the logits is left out (BPE has
  no unigram scores). The identity loss is the squared error relative to the target's squared
  norm (scale-free) instead of the raw squared error.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tokenworks.checks import check_float, check_int
from tokenworks.registry import register
from tokenworks.text.corpus import check_texts
from tokenworks.text.hypernet import HypernetConfig, ZettHypernetwork
from tokenworks.text.transfer import EmbeddingTransfer, decompose, lm_embeddings, special_source_ids
from tokenworks.text.vocab import backend

__all__ = [
    "HypernetTrainConfig",
    "ZeTT",
    "reference_fingerprint",
    "reference_hypernet",
    "sample_tokenizers",
    "train_hypernet",
    "train_reference_hypernet",
]


@dataclass(kw_only=True)
class HypernetTrainConfig:
    """Recipe of a ZeTT hypernetwork training run (the defaults make the committed one)."""

    steps: int = 3000
    identity_steps: int = 300
    batch_size: int = 8
    seq_len: int = 128
    vocab_sample: int = 1024
    n_tokenizers: int = 16
    vocab_min: int = 1024
    vocab_max: int = 8192
    share_min: float = 0.02
    share_max: float = 0.3
    stream_tokens: int = 200_000
    aux_weight: float = 0.5
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0
    hypernet: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min=1)
        check_int("identity_steps", self.identity_steps, min=0)
        check_int("batch_size", self.batch_size, min=1)
        check_int("seq_len", self.seq_len, min=2)
        check_int("vocab_sample", self.vocab_sample, min=2)
        check_int("n_tokenizers", self.n_tokenizers, min=1)
        check_int("vocab_min", self.vocab_min, min=260)
        check_int("vocab_max", self.vocab_max, min=self.vocab_min)
        check_float("share_min", self.share_min, min=0.0, max=1.0, min_open=True)
        check_float("share_max", self.share_max, min=self.share_min, max=1.0)
        check_int("stream_tokens", self.stream_tokens, min=self.seq_len + 1)
        check_float("aux_weight", self.aux_weight, min=0.0)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("warmup", self.warmup, min=0, max=self.steps)
        check_int("seed", self.seed, min=0)
        if not isinstance(self.hypernet, dict):
            raise TypeError(f"hypernet must be a dict of HypernetConfig options, got {self.hypernet!r}")
        bad = set(self.hypernet) - {"hidden_size", "layers", "heads", "intermediate_size", "max_parts"}
        if bad:
            raise ValueError(f"hypernet options {sorted(bad)} are not HypernetConfig sizes (hidden_size, layers, heads, intermediate_size, max_parts)")


def sample_tokenizers(corpora: dict[str, list[str]], config: HypernetTrainConfig):
    """The pool: ``n_tokenizers`` (tokenizer, documents) pairs, each a byte-level BPE trained
    on a random share of every corpus, with a log-uniform random vocabulary size."""
    from tokenworks.text.byte_bpe import ByteBPE

    rng = random.Random(config.seed)
    pool = []
    for _ in range(config.n_tokenizers):
        docs = []
        for name in sorted(corpora):
            share = rng.uniform(config.share_min, config.share_max)
            k = max(1, round(share * len(corpora[name])))
            docs += rng.sample(corpora[name], k)
        rng.shuffle(docs)
        vocab = round(math.exp(rng.uniform(math.log(config.vocab_min), math.log(config.vocab_max))))
        pool.append((ByteBPE(vocab_size=vocab).train(docs), docs))
    return pool


class _Pool:
    """Per sampled tokenizer: its token stream, decompositions and special-token map."""

    def __init__(self, source_tokenizer, pool, config: HypernetTrainConfig, max_parts: int) -> None:
        from tokenworks.models import token_stream

        self.streams, self.parts, self.fixed = [], [], []
        for tok, docs in pool:
            head, chars = [], 0
            for d in docs:  # tokenize only what stream_tokens needs (at least 1 token per 16 characters)
                head.append(d)
                chars += len(d)
                if chars >= 16 * config.stream_tokens:
                    break
            stream = token_stream(head, tok)[: config.stream_tokens]
            if stream.numel() < config.seq_len + 1:
                raise ValueError(f"training text too short: a sampled tokenizer's stream has {stream.numel()} tokens, need > seq_len={config.seq_len}")
            parts = decompose(source_tokenizer, tok)
            longest = max(len(p) for p in parts)
            if longest > max_parts:
                raise ValueError(f"a sampled tokenizer has a token of {longest} source parts > max_parts={max_parts}; raise hypernet max_parts")
            table = torch.full((len(parts), max(longest, 1)), -1, dtype=torch.long)
            for i, p in enumerate(parts):
                table[i, : len(p)] = torch.tensor(p, dtype=torch.long)
            special = special_source_ids(source_tokenizer, tok)
            # -1: predicted; >= 0: copied from that source id; -2: the mean source embedding
            fixed = torch.full((len(parts),), -1, dtype=torch.long)
            for i, p in enumerate(parts):
                if not p:
                    j = special.get(i)
                    fixed[i] = -2 if j is None else j
            self.streams.append(stream)
            self.parts.append(table)
            self.fixed.append(fixed)

    def batch(self, config: HypernetTrainConfig, g: torch.Generator) -> dict[str, torch.Tensor]:
        k = int(torch.randint(len(self.streams), (1,), generator=g))
        stream, table, fixed = self.streams[k], self.parts[k], self.fixed[k]
        L = config.seq_len
        starts = torch.randint(0, stream.numel() - L, (config.batch_size,), generator=g)
        x = torch.stack([stream[s : s + L + 1] for s in starts.tolist()])  # (B, L+1) ids of tokenizer k
        V = table.shape[0]
        present = torch.unique(x)
        want = max(config.vocab_sample, present.numel())
        keep = torch.zeros(V, dtype=torch.bool)
        keep[present] = True
        others = (~keep).nonzero().squeeze(1)
        n_neg = min(want - present.numel(), others.numel())
        neg = others[torch.randperm(others.numel(), generator=g)[:n_neg]]
        sub = torch.cat([present, neg])  # (K,) ids of tokenizer k
        remap = torch.full((V,), -1, dtype=torch.long)
        remap[sub] = torch.arange(sub.numel())
        return {"x": remap[x], "parts": table[sub], "fixed": fixed[sub]}


def _assemble(net, parts, fixed, src_in, src_out):
    """Embeddings of a vocabulary subsample: predicted rows + copied special rows."""
    pred = (fixed == -1).nonzero().squeeze(1)
    e_in, e_out = net(parts[pred], src_in, src_out)

    def fill(e_pred: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        rows = src[fixed.clamp_min(0)]  # copies for fixed rows (garbage for predicted, replaced)
        rows = torch.where((fixed == -2)[:, None], src.mean(0, keepdim=True), rows)
        return rows.index_put((pred,), e_pred)

    E_in = fill(e_in, src_in)
    E_out = None if src_out is None else fill(e_out, src_out)
    return E_in, E_out, pred


def train_hypernet(
    model,
    tokenizer,
    corpora: dict[str, list[str]],
    config: HypernetTrainConfig | None = None,
    *,
    ckpt_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool | None = None,
) -> tuple[ZettHypernetwork, dict[str, Any]]:
    """Train a ZeTT hypernetwork for the frozen ``model`` (a Hugging Face causal LM) and its
    ``tokenizer`` on ``corpora`` (name -> documents). Resumable with ``ckpt_dir``."""
    from tokenworks.train import TrainConfig, train

    config = config or HypernetTrainConfig()
    if not isinstance(corpora, dict) or not corpora:
        raise ValueError("corpora must be a non-empty dict: name -> list of documents")
    corpora = {k: check_texts(f"corpora[{k!r}]", v) for k, v in corpora.items()}
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    e_in, e_out = lm_embeddings(model)
    src_in, src_out = e_in.detach(), (None if e_out is None else e_out.detach())
    torch.manual_seed(config.seed)  # the initialisation is part of the recipe (--seed)
    net = ZettHypernetwork.for_model(model, **config.hypernet).to(device)
    body = model.base_model
    special = set(backend(tokenizer).get_added_tokens_decoder())
    ordinary = torch.tensor([i for i in range(src_in.shape[0]) if i not in special], dtype=torch.long)
    info: dict[str, Any] = {}
    ckpt = Path(ckpt_dir) if ckpt_dir is not None else None

    if config.identity_steps:
        def id_batch(step: int, g: torch.Generator) -> torch.Tensor:
            return ordinary[torch.randint(ordinary.numel(), (config.vocab_sample,), generator=g)]

        def id_loss(hn, ids: torch.Tensor):
            e_in, e_out = hn(ids[:, None], src_in, src_out)
            tgt = src_in[ids] if src_out is None else torch.cat([src_in[ids], src_out[ids]], -1)
            pred = e_in if e_out is None else torch.cat([e_in, e_out], -1)
            return ((pred - tgt).pow(2).sum(-1) / tgt.pow(2).sum(-1).clamp_min(1e-12)).mean()

        tc = TrainConfig(steps=config.identity_steps, lr=config.lr, warmup=min(config.warmup, config.identity_steps),
                         weight_decay=0.01, grad_clip=1.0, seed=config.seed, device=device, desc="ZeTT identity", checkpoint_every=100)  # fmt: skip
        r = train(net, id_loss, id_batch, tc, ckpt_dir=None if ckpt is None else ckpt / "identity", progress=progress)
        info["identity_loss"] = r.final_loss

    pool = _Pool(tokenizer, sample_tokenizers(corpora, config), config, net.config.max_parts)

    def lm_loss(hn, batch):
        x, parts, fixed = batch["x"], batch["parts"], batch["fixed"]
        E_in, E_out, pred = _assemble(hn, parts, fixed, src_in, src_out)
        h = body(inputs_embeds=E_in[x[:, :-1]]).last_hidden_state  # (B, L, D)
        logits = h @ (E_in if E_out is None else E_out).T  # (B, L, K)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())
        aux = torch.zeros((), device=loss.device)
        if config.aux_weight:
            p = parts[pred]
            single = (p[:, 1:] < 0).all(1) if p.shape[1] > 1 else torch.ones(p.shape[0], dtype=torch.bool, device=p.device)
            if single.any():
                ids = p[single, 0]
                tgt = src_in[ids]
                aux = (E_in[pred][single] - tgt).pow(2).sum(-1).mean() / tgt.norm(dim=-1).mean()
                if E_out is not None:
                    tgt_o = src_out[ids]
                    aux = (aux + (E_out[pred][single] - tgt_o).pow(2).sum(-1).mean() / tgt_o.norm(dim=-1).mean()) / 2
        return loss + config.aux_weight * aux, {"lm_loss": loss.item(), "aux": aux.item()}

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=0.01, grad_clip=1.0,
                     seed=config.seed, device=device, desc="ZeTT hypernetwork", checkpoint_every=100)  # fmt: skip
    r = train(net, lm_loss, lambda s, g: pool.batch(config, g), tc, ckpt_dir=None if ckpt is None else ckpt / "main", progress=progress)
    info.update(final_loss=r.final_loss, train_seconds=r.seconds)
    # the loss curve: mean loss of each block of 100 steps (step = the block's last step)
    info["curve"] = [[s, round(sum(v for _, v in r.history[max(0, k - 99) : k + 1]) / len(r.history[max(0, k - 99) : k + 1]), 4)]
                     for k, (s, _) in enumerate(r.history) if s % 100 == 0 or s == config.steps]  # fmt: skip
    net.eval()
    return net.cpu(), info


#: The training corpora a reference hypernetwork may be trained on (``corpora=`` below).
REFERENCE_CORPORA = ("prose", "legal")


def _check_corpora(corpora) -> tuple[str, ...]:
    if isinstance(corpora, str) or not corpora:
        raise ValueError(f"corpora must be a non-empty list drawn from {list(REFERENCE_CORPORA)}, got {corpora!r}")
    corpora = tuple(corpora)
    bad = [c for c in corpora if c not in REFERENCE_CORPORA]
    if bad or len(set(corpora)) != len(corpora):
        raise ValueError(f"corpora must be distinct names from {list(REFERENCE_CORPORA)}, got {list(corpora)}")
    return tuple(c for c in REFERENCE_CORPORA if c in corpora)  # canonical order


def reference_name(corpora=REFERENCE_CORPORA) -> str:
    """Cache/asset name of the reference LM's hypernetwork trained on ``corpora``:
    ``text/zett-hypernet`` (prose + legal, the committed default) or ``text/zett-hypernet-prose``."""
    corpora = _check_corpora(corpora)
    return "text/zett-hypernet" if corpora == REFERENCE_CORPORA else "text/zett-hypernet-" + "-".join(corpora)


def reference_fingerprint(config: HypernetTrainConfig, corpora=REFERENCE_CORPORA) -> dict[str, Any]:
    """What a committed or cached hypernetwork of the reference LM must have been made with."""
    from tokenworks.models import LMTrainConfig

    return {"train": asdict(config), "lm": asdict(LMTrainConfig()), "corpora": [f"{c}/train" for c in _check_corpora(corpora)]}


def train_reference_hypernet(
    out: str | Path, config: HypernetTrainConfig, *, ckpt_dir=None, device: str = "cpu", fp16: bool = True, corpora=REFERENCE_CORPORA
) -> dict:
    """Train the reference LM's hypernetwork on ``corpora`` (train splits; default prose +
    legal, ``("prose",)`` for the control that never sees legal text) into ``out`` (an existing
    directory; ``hypernet.json``, ``hypernet.safetensors``, ``tokenworks.json`` with the loss
    curve every 100 steps under ``curve``)."""
    from tokenworks.data import load_legal, load_prose
    from tokenworks.models import reference_lm
    from tokenworks.models.store import write_model_info

    corpora = _check_corpora(corpora)
    loaders = {"prose": load_prose, "legal": load_legal}
    model, tok = reference_lm(device=device)
    texts = {c: list(loaders[c]("train").documents) for c in corpora}
    net, info = train_hypernet(model, tok, texts, config, ckpt_dir=ckpt_dir, device=device)
    net.save_into(out, fp16=fp16)
    info["params"] = sum(p.numel() for p in net.parameters())
    write_model_info(out, reference_fingerprint(config, corpora), **info)
    return info


def reference_hypernet(
    *, train_if_missing: bool = True, config: HypernetTrainConfig | None = None, device: str = "cpu", corpora=REFERENCE_CORPORA
) -> ZettHypernetwork:
    """The hypernetwork of the reference LM (``reference_lm()``) trained on ``corpora``, from
    the cache or the committed assets (``assets/text/zett-hypernet``, prose + legal;
    ``assets/text/zett-hypernet-prose``, prose only); trained (resumably) if neither matches."""
    from tokenworks.models.store import load_or_train

    config = config or HypernetTrainConfig()
    corpora = _check_corpora(corpora)

    def _train(out: Path, run: Path) -> None:
        train_reference_hypernet(out, config, ckpt_dir=run, device=device, corpora=corpora)

    flag = "" if corpora == REFERENCE_CORPORA else " " + " ".join(f"--corpus {c}" for c in corpora)
    path = load_or_train(reference_name(corpora), reference_fingerprint(config, corpora), _train, train_if_missing=train_if_missing,
                         command=f"tokenworks train zett-hypernet{flag}")  # fmt: skip
    return ZettHypernetwork.from_pretrained(path)


@register("zett", paper="P29")
@dataclass(kw_only=True)
class ZeTT(EmbeddingTransfer):
    """ZeTT transfer: embeddings predicted by a trained hypernetwork (``hypernet``: a
    ``ZettHypernetwork``, a directory holding one, or None for the reference LM's)."""

    hypernet: Any = None

    def validate(self) -> None:
        if self.hypernet is not None and not isinstance(self.hypernet, (ZettHypernetwork, str, Path)):
            raise TypeError(f"hypernet must be a ZettHypernetwork, a directory path or None, got {type(self.hypernet).__name__}")

    def network(self) -> ZettHypernetwork:
        if self.hypernet is None:
            self.hypernet = reference_hypernet()
        elif isinstance(self.hypernet, (str, Path)):
            self.hypernet = ZettHypernetwork.from_pretrained(self.hypernet)
        return self.hypernet

    def predict(self, parts, source_in, source_out):
        net = self.network()
        P = max(len(p) for p in parts)
        ids = torch.full((len(parts), P), -1, dtype=torch.long)
        for k, p in enumerate(parts):
            ids[k, : len(p)] = torch.tensor(p, dtype=torch.long)
        net = net.to(source_in.device).eval()
        src_out = None if source_out is None else source_out.float()
        e_in, e_out = net(ids.to(source_in.device), source_in.float(), src_out)
        return e_in, e_out
