"""The small Llama the KV-cache benchmark runs on: prose LM + long-context record retrieval.

It uses the reference BPE tokenizer and is trained here on CPU with the project's training
loop (resumable, atomic checkpoints), on a mix of

- prose language modelling (the ``prose`` corpus, train split),
- copy rows: a random run of key/value words repeated later in the row at a random offset
  (the induction pattern; a fixed offset would be learnt positionally, a random one forces a
  content match), and
- record rows (:func:`tokenworks.kvcache.tasks.record_stream`): ``@ KEY V1 V2`` records in
  prose, read back later; the read-back values are the tokens only retrieval can predict.

Why this recipe. Retrieval needs an induction circuit (a previous-token head and a head that
matches the current token against it), and small models sit on a plateau before it forms:
a 2-layer model on single-answer retrieval stayed at the "any value in context" level for
thousands of steps (see the issue). Measured here before choosing: on pure copy rows a
2-layer d=128 model left the plateau only slowly (about 12% copy accuracy after 500 steps of
64 x 64 tokens), with or without a hand-initialized previous-token head, while the same
model on rows of 24 tokens (256 rows per step) reached 39% after 300 steps: with few
candidate positions a still-uniform attention already puts real weight on the right token, so
the gradient that builds the circuit is stronger. A first attempt of this recipe that started
at 128 tokens sat at zero retrieval accuracy after 400 steps. The recipe therefore (1) puts
dense copy and record rows in every batch from the first step, with a separate mean loss on
the retrieval targets so they are not drowned by prose, (2) starts with 32-token rows (160 per
step) and lengthens them in stages (``stages``) at a constant ~5k tokens per step, with the
record gaps growing so retrieval distances reach the benchmark's thousands of tokens, and
(3) computes the unembedding only at the positions that carry a loss (a quarter of the prose
positions, all retrieval targets).

Reproduce the committed checkpoint (assets/kv/task-model, fp16)::

    tokenworks train kv-task-model --out assets/kv/task-model

A tiny configuration of the same command is tested (``tests/kvcache/test_task_model.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from tokenworks.checks import check_float, check_int

__all__ = ["TaskModelConfig", "evaluate_retrieval", "task_model", "train_task_model"]

NAME = "kv/task-model"


@dataclass(kw_only=True)
class TaskModelConfig:
    """Size and training recipe of the task model (the defaults make the committed one)."""

    hidden_size: int = 128
    layers: int = 6
    heads: int = 4
    intermediate_size: int = 384
    # curriculum: (until_step, seq_len, batch_size, max_gap) -- rows lengthen, gaps widen
    stages: tuple[tuple[int, int, int, int], ...] = (
        (500, 32, 160, 2), (1100, 64, 80, 6), (1700, 256, 20, 24), (2100, 768, 6, 64), (2400, 1536, 3, 160),
    )
    copy_frac: float = 0.3
    record_frac: float = 0.4
    lm_positions: float = 0.25
    value_len: int = 2
    lr: float = 2e-3
    warmup: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("hidden_size", self.hidden_size, min=8)
        check_int("layers", self.layers, min=1)
        check_int("heads", self.heads, min=1)
        if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 2:
            raise ValueError(f"hidden_size ({self.hidden_size}) / heads ({self.heads}) must be an even integer")
        check_int("intermediate_size", self.intermediate_size, min=1)
        self.stages = tuple(tuple(int(v) for v in s) for s in self.stages)
        if not self.stages:
            raise ValueError("stages must hold at least one (until_step, seq_len, batch_size, max_gap)")
        prev = 0
        for i, (until, seq_len, batch, gap) in enumerate(self.stages):
            if until <= prev:
                raise ValueError(f"stages[{i}]: until_step must increase, got {until} after {prev}")
            check_int(f"stages[{i}].seq_len", seq_len, min=16)
            check_int(f"stages[{i}].batch_size", batch, min=1)
            check_int(f"stages[{i}].max_gap", gap, min=0)
            prev = until
        check_float("copy_frac", self.copy_frac, min=0.0, max=1.0)
        check_float("record_frac", self.record_frac, min=0.0, max=1.0 - self.copy_frac)
        check_float("lm_positions", self.lm_positions, min=0.0, max=1.0, min_open=True)
        check_int("value_len", self.value_len, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("warmup", self.warmup, min=0, max=self.steps)

    @property
    def steps(self) -> int:
        return self.stages[-1][0]

    def stage(self, step: int) -> tuple[int, int, int]:
        for until, seq_len, batch, gap in self.stages:
            if step < until:
                return seq_len, batch, gap
        return self.stages[-1][1:]

    def llama_config(self, tokenizer):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.heads,
            max_position_embeddings=8192, tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        )  # fmt: skip

    def fingerprint(self) -> dict:
        d = asdict(self)
        d["stages"] = [list(s) for s in self.stages]
        return {"recipe": "kv-task-model-v1", **d}


def _batch_fn(config: TaskModelConfig, vocab, stream: torch.Tensor):
    from tokenworks.kvcache.tasks import record_stream

    pool = torch.cat([vocab.keys, vocab.values])

    def batch_fn(step: int, g: torch.Generator):
        T, B, max_gap = config.stage(step)
        ids = torch.empty(B, T + 1, dtype=torch.long)
        lm = torch.zeros(B, T, dtype=torch.bool)
        ret = torch.zeros(B, T, dtype=torch.bool)
        for b in range(B):
            u = float(torch.rand(1, generator=g))
            start = int(torch.randint(0, stream.numel() - T - 2, (1,), generator=g))
            row = stream[start : start + T + 1].clone()
            if u < config.copy_frac:  # a run of words repeated at a random offset, inside prose
                n = int(torch.randint(3, max(4, T // 3), (1,), generator=g))
                run = pool[torch.randint(0, pool.numel(), (n,), generator=g)]
                p1 = int(torch.randint(0, T + 1 - 2 * n, (1,), generator=g))
                p2 = int(torch.randint(p1 + n, T + 2 - n, (1,), generator=g))
                row[p1 : p1 + n] = run
                row[p2 : p2 + n] = run
                ret[b, p2 : p2 + n - 1] = True  # logits at p2..p2+n-2 predict the copied tokens
            elif u < config.copy_frac + config.record_frac:
                n_keys = int(torch.randint(2, 3 + T // 48, (1,), generator=g))
                reads = int(torch.randint(n_keys, 2 * n_keys + 4, (1,), generator=g))
                row, read_mask = record_stream(
                    vocab, stream, length=T, n_keys=n_keys, reads=reads, max_gap=max_gap,
                    value_len=config.value_len, g=g,
                )  # fmt: skip
                ret[b] = read_mask[1:]
            ids[b] = row
            lm[b] = torch.rand(T, generator=g) < config.lm_positions
        lm &= ~ret
        return ids, lm, ret

    return batch_fn


def _loss(model, batch):
    ids, lm, ret = batch
    hidden = model.model(input_ids=ids[:, :-1]).last_hidden_state  # (B, T, d)
    targets = ids[:, 1:]
    terms, logs = [], {}
    for name, m in (("lm", lm), ("retrieval", ret)):
        if m.any():
            logits = model.lm_head(hidden[m])
            ce = F.cross_entropy(logits.float(), targets[m])
            terms.append(ce)
            logs[name] = float(ce.detach())
            if name == "retrieval":
                logs["retrieval_acc"] = float((logits.argmax(-1) == targets[m]).float().mean())
    return sum(terms), logs


def train_task_model(out: str | Path, config: TaskModelConfig | None = None, *, ckpt_dir=None, device: str = "cpu", fp16: bool = True, tokenizer=None) -> dict:
    """Train the task model and save it (weights, tokenizer, ``tokenworks.json``) in ``out``."""
    from transformers import LlamaForCausalLM

    from tokenworks.kvcache.tasks import prose_stream, task_vocab
    from tokenworks.models import reference_tokenizer
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    config = config or TaskModelConfig()
    tokenizer = tokenizer if tokenizer is not None else reference_tokenizer()
    vocab = task_vocab(tokenizer)
    stream = prose_stream(tokenizer, "train")
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(config.llama_config(tokenizer))
    tc = TrainConfig(
        steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=0.1, seed=config.seed, device=device,
        desc="kv task model", checkpoint_every=100,
    )  # fmt: skip
    result = train(model, _loss, _batch_fn(config, vocab, stream), tc, ckpt_dir=ckpt_dir)
    model.to("cpu").eval()
    probe = evaluate_retrieval(model, tokenizer, context_len=min(1024, 4 * config.stages[-1][1]), n=16, n_pairs=16)
    out = Path(out)
    (model.half() if fp16 else model).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {
        "train_loss": result.final_loss, "train_seconds": result.seconds, "retrieval_probe": probe,
        "params": sum(p.numel() for p in model.parameters()),
        "command": "tokenworks train kv-task-model --out assets/kv/task-model",
    }  # fmt: skip
    write_model_info(out, config.fingerprint(), **info)
    return info


@torch.no_grad()
def evaluate_retrieval(model, tokenizer, *, context_len: int, n: int = 16, n_pairs: int = 16, seed: int = 123) -> dict:
    """Greedy exact-match accuracy on task (a) with the full cache (a quick probe)."""
    from tokenworks.kvcache.tasks import kv_retrieval

    data = kv_retrieval(tokenizer, n=n, context_len=context_len, n_pairs=n_pairs, seed=seed)
    ids, answers = data["input_ids"], data["answers"]
    device = next(model.parameters()).device
    x = ids.to(device)
    preds = []
    for _ in range(answers.shape[1]):  # teacher-free greedy decoding of the value
        nxt = model(input_ids=x).logits[:, -1].argmax(-1, keepdim=True)
        preds.append(nxt.cpu())
        x = torch.cat([x, nxt], 1)
    pred = torch.cat(preds, 1)
    return {"context_len": context_len, "n_pairs": n_pairs, "exact_match": float((pred == answers).all(1).float().mean())}


def _load(path: str):
    from tokenworks.models.lm import _load as load_lm  # cached, without HF's per-tensor loading bar

    return load_lm(path)


def task_model(device: str = "cpu", *, config: TaskModelConfig | None = None, train_if_missing: bool = True):
    """``(model, tokenizer)``: the task model (float32, eval), from the cache or assets/kv,
    trained (resumably, long: see the module doc) only if neither holds a matching copy."""
    import copy

    from tokenworks.models.store import load_or_train

    config = config or TaskModelConfig()

    def _train(out: Path, run: Path) -> None:
        train_task_model(out, config, ckpt_dir=run, device=device)

    path = load_or_train(NAME, config.fingerprint(), _train, train_if_missing=train_if_missing, command="tokenworks train kv-task-model")
    model, tok = _load(str(path))
    return copy.deepcopy(model).to(device), tok


def tiny_config(**overrides) -> TaskModelConfig:
    """A seconds-long configuration of the same recipe (tests)."""
    base = TaskModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64, stages=((3, 64, 4, 8), (5, 128, 2, 16)), warmup=1)
    return replace(base, **overrides)
