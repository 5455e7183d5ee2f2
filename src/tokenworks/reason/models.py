"""The latent-reasoning family's models: one small Llama per method, trained here on the tasks.

All start from the same architecture (``ReasonModelConfig``) and the same training mix
(``mix``: two ``graph`` examples for one ``pronto`` and one ``arith`` in every batch, drawn
from fixed train pools), with the project's training loop (progress bar, atomic
checkpoints, resume):

- ``cot``: from scratch on ``question <bot> steps <eot> answer <eos>``: 2500 steps at lr 2e-3
  (optionally ``cot_extra_steps`` more at ``stage_lr``, fresh optimizer; 0 in the committed
  recipe: 300 such steps did not help). Measured: the model writes well-formed chains on every
  task but, without a curriculum, on graph and pronto still misreads which facts the context
  states (a copying skill that did not emerge within the CPU budget; graph-only training reached
  65% in 1500 steps). Curriculum (``graph_warmup_steps``, 1200 of the 2500 steps in the
  committed recipe): the first steps draw their graph problems from
  ``graph_warmup_nodes``-concept graphs (fewer distractor facts; the evaluation keeps the
  10-concept graphs). Measured on graph-only training (same model, 100
  valid problems, seed 0): with 700 warm-up steps on 6-concept graphs the share of written
  steps that are facts of the prompt reached 0.38 / 0.46 / 0.44 at steps 750 / 1000 / 1250
  against 0.19 / 0.23 / 0.26 without, and the accuracy 0.52 / 0.75 / 0.79 against
  0.23 / 0.50 / 0.39 (0.59 at 1500): the copying skill forms sooner on small graphs. On top
  of such a graph-only CoT model (1200 steps, 600 warm-up; 150 test problems, seed 0): CoT
  0.600 (15 positions); Coconut stages 1-4 (150 steps each, this recipe) 0.600 / 0.620 /
  0.533 / 0.747 (3 thoughts); the same schedule without thoughts (iCoT) 0.633 / 0.647 /
  0.727 / 0.720; CoT trained 4 x 150 steps more 0.473. So the final Coconut model beats CoT
  with 3 positions instead of 15, but no more than the no-thought control: the gain comes
  from the staged training, not (yet) from the continuous thoughts. In the committed mixed
  recipe (1200 warm-up steps of 2500, graph half of each batch; 150 test problems, seed 0)
  the graph-only gain did not carry over: CoT graph / pronto / arith 0.533 / 0.560 / 1.000
  (the same recipe without warm-up: 0.467 / 0.493 / 0.727), the final Coconut stage
  0.527 / 0.447 / 0.107 (0.627 / 0.467 / 0.060), iCoT 0.547 / 0.473 / 0.093
  (0.573 / 0.473 / 0.087). One seed each; a standard error is about 0.04 at 150 problems.
  The stage training alone varies as much as the gaps: from the committed cot, the Coconut and
  iCoT stages trained with seed 1 (pools and draws; 300 test problems) reached graph / pronto /
  arith 0.603 / 0.500 / 0.093 and 0.533 / 0.500 / 0.090, against seed 0's 0.547 / 0.467 / 0.110
  and 0.527 / 0.487 / 0.080 (CoT 0.540 / 0.533 / 1.000). A whole second seed (part ``seeds``
  with ``seeds=2``, not committed: +1.7 MB) gave CoT 0.440 / 0.523 / 0.613, Coconut
  0.677 / 0.510 / 0.093, iCoT 0.687 / 0.497 / 0.080: on graph Coconut - CoT = +0.12 over the two
  seeds against a seed spread of 0.23, Coconut - iCoT = +0.005 against 0.29 (no verdict);
- ``no_cot``: from ``cot``, ``baseline_steps`` on ``question <bot> <eot> answer <eos>``;
- ``pause``: from ``cot``, ``baseline_steps`` with ``pauses`` ``<pause>`` tokens after ``<bot>``;
- ``coconut-stage{k}`` (P36): from ``cot``, stage by stage (k = 1 .. max_stage + 1), each stage
  starting from the previous one with a fresh optimizer; ``k * c`` thoughts replace the first
  k steps (all steps after the last stage);
- ``icot-stage{K}``: the same schedule with no thoughts (stepwise internalization); only the
  final stage is kept;
- ``colar`` (P38): from ``cot`` with a latent head, ``c`` drawn in 1..``colar_max_c`` per example;
- ``hrpo`` (P37) and ``grpo``: from ``cot``, ``rl_steps`` GRPO updates with and without the
  hybrid latent gate (``hybrid_gate.safetensors``);
- ``system15/`` (P39): depth-exit adapters and gates fitted on ``cot``, the step gate on the
  final Coconut model;
- ``cache-coprocessor/`` (P33): the coprocessor of the frozen reference LM (``assets/reference-lm``);
- ``lcm/`` (P50): the MSE and diffusion next-sentence-embedding models (MiniLM space),
  ``lcm_pairs`` train pairs, context dropout ``lcm_dropout``, weight decay ``lcm_weight_decay``;
- ``<name>-seed<s>`` for s = 1 .. ``seeds`` - 1 (part ``seeds``): cot and the final Coconut and
  iCoT stages trained again with seed ``seed + s`` (the same recipe otherwise), so that the
  suite's verdicts have a seed spread. ``seeds`` is 1 in the committed recipe: one more seed
  costs about an hour of one CPU core (2500 + 4 x 150 x 2 steps).

One part can be retrained inside an existing folder, its other files kept:
``tokenworks train reason-models --out assets/reason --only cache_aug`` (how the
committed coprocessor was made after the P33 change).

Baselines ``no_cot`` and ``pause`` start from ``cot`` (not from scratch) so that every row has
seen the same CoT data; the comparison isolates how the answer is produced.

``train_reason_models(out)`` writes each as a Hugging Face folder ``out/<name>`` (weights as
safetensors, the word-level tokenizer, extra modules as safetensors) and
``out/tokenworks.json`` with the recipe's fingerprint. Reproduce the committed models::

    tokenworks train reason-models --out assets/reason

(``--tiny`` runs a seconds-long configuration of the same recipe; it is tested.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch

from tokenworks.checks import check_float, check_int
from tokenworks.reason.base import Reasoner, answer_of
from tokenworks.reason.tasks import BOT, MAX_C, PAUSE, TASKS, Example, examples, reason_tokenizer

__all__ = [
    "NAME", "ReasonModelConfig", "evaluate", "load_reason_models", "model_names", "prompt_ids", "seed_model", "seed_names", "tiny_config",
    "train_reason_models",
]  # fmt: skip

NAME = "reason"


@dataclass(kw_only=True)
class ReasonModelConfig:
    """Size and recipe of the family's models (the defaults make the committed ones)."""

    hidden_size: int = 96
    layers: int = 3
    heads: int = 4
    intermediate_size: int = 192
    train_pool: int = 6000  # train examples per task
    mix: tuple[int, ...] = (2, 1, 1)  # examples of each task (TASKS order) per cycle of a batch
    batch_size: int = 32
    steps: int = 2500  # cot, from scratch
    lr: float = 2e-3
    cot_extra_steps: int = 0  # cot, an optional second phase with a fresh optimizer at stage_lr
    graph_warmup_steps: int = 1200  # cot: its first steps draw graph examples from small graphs (a curriculum)
    graph_warmup_nodes: int = 6  # concepts per graph during those steps (the tasks' graphs have 10)
    baseline_steps: int = 300  # no_cot and pause, from cot
    pauses: int = 6
    c: int = 1  # Coconut thoughts per step
    max_stage: int = 3
    stage_steps: int = 150  # Coconut and iCoT, per stage
    stage_lr: float = 1e-3
    colar_steps: int = 300
    colar_max_c: int = 4
    rl_steps: int = 30  # HRPO and GRPO updates, from cot
    rl_group: int = 8
    rl_questions: int = 4
    rl_lr: float = 1e-4
    cop_k: int = 8  # P33: latents the coprocessor appends to the reference LM's cache
    cop_steps: int = 300
    cop_prefix: int = 64
    cop_ahead: int = 32
    cop_train_bytes: int = 2_000_000
    lcm_pairs: int = 4000  # P50: (context, next sentence) train pairs from the prose corpus
    lcm_context: int = 4
    lcm_steps: int = 1500
    lcm_dropout: float = 0.3  # on the context embeddings while training (2,000 pairs without it: overfit)
    lcm_weight_decay: float = 0.1
    seeds: int = 1  # training seeds of cot and the final Coconut and iCoT stages (the verdicts' rows)
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("hidden_size", self.hidden_size, min=8)
        check_int("layers", self.layers, min=1)
        check_int("heads", self.heads, min=1)
        if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 2:
            raise ValueError(f"hidden_size ({self.hidden_size}) / heads ({self.heads}) must be an even integer")
        check_int("intermediate_size", self.intermediate_size, min=1)
        check_int("train_pool", self.train_pool, min=2)
        check_int("batch_size", self.batch_size, min=2)
        check_int("cot_extra_steps", self.cot_extra_steps, min=0)
        check_int("graph_warmup_steps", self.graph_warmup_steps, min=0, max=self.steps)
        check_int("graph_warmup_nodes", self.graph_warmup_nodes, min=4, max=10)
        for k in ("steps", "baseline_steps", "stage_steps", "colar_steps", "rl_steps", "rl_questions"):
            check_int(k, getattr(self, k), min=1)
        check_int("rl_group", self.rl_group, min=2, max=256)
        check_float("rl_lr", self.rl_lr, min=0.0, min_open=True)
        check_int("cop_k", self.cop_k, min=1, max=256)
        for k in ("cop_steps", "cop_prefix", "cop_ahead", "cop_train_bytes", "lcm_pairs", "lcm_context", "lcm_steps"):
            check_int(k, getattr(self, k), min=1)
        self.mix = tuple(self.mix)
        if len(self.mix) != len(TASKS) or any(not isinstance(m, int) or m < 0 for m in self.mix) or not any(self.mix):
            raise ValueError(f"mix: expected {len(TASKS)} non-negative integers (one per task of {TASKS}), not all 0, got {self.mix}")
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_float("stage_lr", self.stage_lr, min=0.0, min_open=True)
        check_int("pauses", self.pauses, min=1, max=64)
        check_int("c", self.c, min=1, max=8)
        check_int("max_stage", self.max_stage, min=1, max=16)
        check_int("colar_max_c", self.colar_max_c, min=1, max=MAX_C)
        check_float("lcm_dropout", self.lcm_dropout, min=0.0, max=0.9)
        check_float("lcm_weight_decay", self.lcm_weight_decay, min=0.0)
        check_int("seeds", self.seeds, min=1, max=8)
        check_int("seed", self.seed, min=0)


def tiny_config() -> ReasonModelConfig:
    return ReasonModelConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32, train_pool=40, batch_size=4, steps=3,
                             baseline_steps=2, stage_steps=2, max_stage=2, colar_steps=2, colar_max_c=2, pauses=2, rl_steps=2,
                             rl_group=2, rl_questions=2, cop_k=2, cop_steps=2, cop_prefix=16, cop_ahead=8,
                             cop_train_bytes=20_000, lcm_pairs=12, lcm_steps=2, graph_warmup_steps=1, seeds=2)  # fmt: skip


def seed_names(config: ReasonModelConfig) -> list[str]:
    """The models trained once per seed (the verdicts compare them): cot and the final Coconut and iCoT stages."""
    K = config.max_stage + 1
    return ["cot", f"coconut-stage{K}", f"icot-stage{K}"]


def seed_model(name: str, s: int) -> str:
    """The folder of model ``name`` trained with seed index ``s`` (0: the recipe's own seed, no suffix)."""
    return name if s == 0 else f"{name}-seed{s}"


def model_names(config: ReasonModelConfig) -> list[str]:
    stages = range(1, config.max_stage + 2)
    extra = [seed_model(n, s) for s in range(1, config.seeds) for n in seed_names(config)]
    return ["cot", "no_cot", "pause", *(f"coconut-stage{k}" for k in stages), f"icot-stage{config.max_stage + 1}", "colar", "hrpo",
            "grpo", *extra]  # fmt: skip


def _llama(config: ReasonModelConfig, tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, bos_token_id=None,
    ))  # fmt: skip


def prompt_ids(ex: Example, tok, *, c: int | None = None) -> list[int]:
    """The prompt every method gets: ``question <bot>`` (CoLaR: ``question <cK> <bot>``)."""
    q = tok.convert_tokens_to_ids(ex.question.split())
    return q + ([tok.convert_tokens_to_ids(f"<c{c}>")] if c is not None else []) + [tok.convert_tokens_to_ids(BOT)]


@torch.no_grad()
def evaluate(reasoner: Reasoner, model, tok, exs: list[Example], *, c: int | None = None, batch_size: int = 64,
             count_flops: bool = False) -> list[dict]:  # fmt: skip
    """One record per example: correct, latent steps, generated tokens, forwards (and FLOPs per
    answer when ``count_flops``: the batch's FLOPs split evenly over its rows), seconds."""
    model.eval()
    out = []
    for s in range(0, len(exs), batch_size):
        chunk = exs[s : s + batch_size]
        res = reasoner.generate(model, [prompt_ids(e, tok, c=c) for e in chunk], eos_token_id=tok.eos_token_id,
                                pad_token_id=tok.pad_token_id, count_flops=count_flops)  # fmt: skip
        st = res.stats
        for i, e in enumerate(chunk):
            a = answer_of(res.tokens[i], tok.eos_token_id)
            out.append({
                "task": e.task, "length": e.length, "correct": a is not None and tok.convert_ids_to_tokens(a) == e.answer,
                "latent_steps": st.latent_steps[i], "generated_tokens": st.generated_tokens[i], "forwards": st.row_forwards[i],
                "flops": None if st.flops is None else st.flops / len(chunk), "seconds": st.seconds / len(chunk),
            })  # fmt: skip
            if "depth_layers" in st.extra:  # System-1.5: layers run per fed token / all layers
                used = st.extra["depth_layers"][i]
                out[-1]["depth_layers"] = sum(used) / (len(used) * model.config.num_hidden_layers) if used else 1.0
    return out


# -- training -------------------------------------------------------------------------------------


def _pools(config: ReasonModelConfig, *, small_graphs: bool = False) -> list[tuple[Example, ...]]:
    """One train pool per slot of the mix cycle (a task weighted 2 appears twice); with
    ``small_graphs`` the graph pool holds ``graph_warmup_nodes``-concept graphs."""
    pools = {t: examples(t, "train", config.train_pool, seed=config.seed) for t in TASKS if t != "graph"}
    pools["graph"] = examples("graph", "train", config.train_pool, seed=config.seed,
                              nodes=config.graph_warmup_nodes if small_graphs else None)  # fmt: skip
    return [pools[t] for t, m in zip(TASKS, config.mix) for _ in range(m)]


def _draw(pools, g: torch.Generator, n: int) -> list[Example]:
    """``n`` examples, alternating tasks, indices drawn with ``g``."""
    out = []
    for i in range(n):
        pool = pools[i % len(pools)]
        out.append(pool[int(torch.randint(len(pool), (1,), generator=g))])
    return out


def _sft(model, config, pools, tok, *, steps, lr, desc, run_dir, make, n_latent=0, device="cpu", warm_pools=None,
         warm_steps=0) -> float:  # fmt: skip
    """Train ``model`` on batches of ``make(example)`` (``encode`` outputs) with ``n_latent``
    continuous thoughts after ``<bot>`` (the first ``warm_steps`` batches from ``warm_pools``);
    returns the final loss."""
    from tokenworks.reason.sft import collate, forward_with_latents, sft_loss
    from tokenworks.train import TrainConfig, train

    def batch_fn(step, g):
        src = warm_pools if warm_pools is not None and step < warm_steps else pools
        return collate([make(e) for e in _draw(src, g, config.batch_size)], tok.pad_token_id)

    def loss_fn(m, b):
        return sft_loss(forward_with_latents(m, b["ids"], b["mask"], b["bot"], n_latent), b["labels"])

    tc = TrainConfig(steps=steps, lr=lr, warmup=min(50, steps // 10), seed=config.seed, desc=desc, checkpoint_every=100, device=device)
    return train(model, loss_fn, batch_fn, tc, ckpt_dir=run_dir).final_loss


def _colar(model, config, pools, tok, run_dir, device="cpu") -> tuple[torch.nn.Module, float]:
    from tokenworks.reason.colar import LatentHead, colar_loss, encode_colar
    from tokenworks.train import TrainConfig, train

    head = LatentHead(config.hidden_size)

    class Both(torch.nn.Module):  # one module, so the loop's optimizer and checkpoint hold both
        def __init__(self):
            super().__init__()
            self.lm, self.head = model, head

    both = Both()

    def batch_fn(step, g):
        items = []
        for e in _draw(pools, g, config.batch_size):
            c = int(torch.randint(1, config.colar_max_c + 1, (1,), generator=g))
            items.append(encode_colar(e, tok, c))
        T = max(len(ids) for ids, _, _ in items)
        B = len(items)
        ids = torch.full((B, T), tok.pad_token_id)
        labels = torch.full((B, T), -100)
        mask = torch.zeros(B, T, dtype=torch.long)
        groups = torch.full((B, T, config.colar_max_c), -1)
        for i, (x, y, gr) in enumerate(items):
            ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
            start = x.index(tok.convert_tokens_to_ids(BOT)) + 1
            for j, grp in enumerate(gr):
                groups[i, start + j, : len(grp)] = torch.tensor(grp)
        return {"ids": ids, "mask": mask, "labels": labels, "groups": groups}

    def loss_fn(m, b):
        m = getattr(m, "module", m)
        return colar_loss(m.lm, m.head, b)

    tc = TrainConfig(steps=config.colar_steps, lr=config.stage_lr, warmup=min(50, config.colar_steps // 10), seed=config.seed,
                     desc="colar", checkpoint_every=100, device=device)  # fmt: skip
    res = train(both, loss_fn, batch_fn, tc, ckpt_dir=run_dir)
    return head, res.final_loss


def train_reason_models(out: str | Path, config: ReasonModelConfig | None = None, *, run_dir: str | Path | None = None,
                        fp16: bool = True, device: str = "cpu", only: tuple[str, ...] | None = None) -> dict:  # fmt: skip
    """Train every model of :func:`model_names` into ``out/<name>`` (see the module docstring);
    ``only`` ("cot", "no_cot", "pause", "coconut", "icot", "colar", "hrpo", "system15",
    "cache_aug", "lcm", "seeds") trains a part (the parts
    that need ``cot`` resume it from ``run_dir``)."""
    import copy
    import shutil
    import tempfile
    from dataclasses import replace

    from tokenworks.io import save_tensors
    from tokenworks.models.store import write_model_info
    from tokenworks.reason.coconut import curriculum
    from tokenworks.reason.sft import collate, encode

    config = config or ReasonModelConfig()
    tok = reason_tokenizer()
    pools = _pools(config)
    out = Path(out)
    run = Path(run_dir) if run_dir is not None else None
    sub = lambda name: None if run is None else run / name  # noqa: E731
    losses: dict[str, float] = {}

    def save(name, model, extra=None):
        d = out / name
        copy.deepcopy(model).cpu().to(torch.float16 if fp16 else torch.float32).save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
        for fname, module in (extra or {}).items():
            save_tensors(d / fname, {k: (v.cpu().half() if fp16 else v.cpu()) for k, v in module.state_dict().items()})

    def fresh():
        torch.manual_seed(config.seed)
        return _llama(config, tok)

    want = lambda part: only is None or part in only  # noqa: E731
    common = dict(steps=config.steps, lr=config.lr, device=device)
    cot = fresh()
    if only is None or set(only) & {"cot", "no_cot", "pause", "coconut", "icot", "colar", "hrpo", "system15"}:
        warm = _pools(config, small_graphs=True) if config.graph_warmup_steps else None
        losses["cot"] = _sft(cot, config, pools, tok, desc="cot", run_dir=sub("cot"), make=lambda e: encode(e, tok), warm_pools=warm,
                             warm_steps=config.graph_warmup_steps, **common)  # fmt: skip
        if config.cot_extra_steps:
            losses["cot"] = _sft(cot, config, pools, tok, steps=config.cot_extra_steps, lr=config.stage_lr, desc="cot (phase 2)",
                                 run_dir=sub("cot-2"), make=lambda e: encode(e, tok), device=device)  # fmt: skip
        save("cot", cot)
    base = dict(steps=config.baseline_steps, lr=config.stage_lr, device=device)
    if want("no_cot"):
        m = copy.deepcopy(cot)
        losses["no_cot"] = _sft(m, config, pools, tok, desc="no_cot", run_dir=sub("no_cot"), make=lambda e: encode(e, tok, steps=False), **base)
        save("no_cot", m)
    if want("pause"):
        m = copy.deepcopy(cot)
        losses["pause"] = _sft(m, config, pools, tok, desc="pause", run_dir=sub("pause"),
                               make=lambda e: encode(e, tok, n_latent=config.pauses, slot=PAUSE, steps=False), **base)  # fmt: skip
        save("pause", m)
    for method, c in (("coconut", config.c), ("icot", 0)):
        if not want(method):
            continue
        m = copy.deepcopy(cot)
        for k in range(1, config.max_stage + 2):
            skip, n = curriculum(k, max(c, 1), config.max_stage)
            n = n if c else 0
            name = f"{method}-stage{k}"
            losses[name] = _sft(m, config, pools, tok, steps=config.stage_steps, lr=config.stage_lr, desc=name, run_dir=sub(name),
                                make=lambda e, skip=skip, n=n: encode(e, tok, n_latent=n, skip=skip), n_latent=n, device=device)  # fmt: skip
            if method == "coconut" or k == config.max_stage + 1:  # iCoT: only the final model is kept (asset budget)
                save(name, m)
    if want("colar"):
        m = copy.deepcopy(cot)
        head, losses["colar"] = _colar(m, config, pools, tok, sub("colar"), device)
        save("colar", m, {"latent_head.safetensors": head})
    if want("hrpo"):
        from tokenworks.reason.hrpo import HybridGate, grpo_train

        rl_pools = [examples(t, "train", config.train_pool, seed=config.seed) for t in TASKS]
        for name, latent in (("hrpo", True), ("grpo", False)):
            m = copy.deepcopy(cot)
            gate = HybridGate(config.hidden_size, seed=config.seed) if latent else None
            curve = grpo_train(m, gate, rl_pools, tok, steps=config.rl_steps, group_size=config.rl_group, questions=config.rl_questions,
                               lr=config.rl_lr, gate_lr=10 * config.rl_lr, seed=config.seed)  # fmt: skip
            losses[f"{name}_reward_first"] = sum(curve[: max(1, len(curve) // 4)]) / max(1, len(curve) // 4)
            losses[f"{name}_reward_last"] = sum(curve[-max(1, len(curve) // 4) :]) / max(1, len(curve) // 4)
            save(name, m, {"hybrid_gate.safetensors": gate} if gate is not None else None)
    if want("system15"):
        from transformers import LlamaForCausalLM

        from tokenworks.reason.system15 import fit_depth_exit, fit_step_gate

        K = config.max_stage + 1
        coco = LlamaForCausalLM.from_pretrained(out / f"coconut-stage{K}", dtype=torch.float32).eval()
        fit = [e for t in TASKS for e in examples(t, "train", config.train_pool, seed=config.seed)[:96]]
        batches = [collate([encode(e, tok) for e in fit[i : i + 48]], tok.pad_token_id) for i in range(0, len(fit), 48)]
        cot.eval()
        depth = fit_depth_exit(cot, batches, seed=config.seed)
        step = fit_step_gate(coco, [prompt_ids(e, tok) for e in fit], config.max_stage * config.c, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, seed=config.seed)  # fmt: skip
        (out / "system15").mkdir(parents=True, exist_ok=True)
        for fname, module in (("depth_exit.safetensors", depth), ("step_gate.safetensors", step)):
            save_tensors(out / "system15" / fname, {k: (v.cpu().half() if fp16 else v.cpu()) for k, v in module.state_dict().items()})
    if want("cache_aug"):
        from tokenworks.models import reference_lm
        from tokenworks.reason.cache_aug import train_coprocessor

        dec, rtok = reference_lm(train_if_missing=False)
        cop, losses["cache_coprocessor"] = train_coprocessor(
            dec, rtok, k=config.cop_k, prefix_len=config.cop_prefix, ahead=config.cop_ahead, steps=config.cop_steps,
            batch_size=config.batch_size // 2, seed=config.seed, train_bytes=config.cop_train_bytes, run_dir=sub("cache_aug"),
        )  # fmt: skip
        (out / "cache-coprocessor").mkdir(parents=True, exist_ok=True)
        save_tensors(out / "cache-coprocessor" / "coprocessor.safetensors",
                     {k: (v.cpu().half() if fp16 else v.cpu()) for k, v in cop.state_dict().items()})  # fmt: skip
    if want("lcm"):
        from tokenworks.reason.lcm import embed_sentences, next_sentence_pairs, train_concept_model

        ctxs, tgts = next_sentence_pairs("train", config.lcm_pairs, context=config.lcm_context)
        uniq = sorted({s for c in ctxs for s in c} | set(tgts))
        E = dict(zip(uniq, embed_sentences(uniq)))
        X = torch.stack([torch.stack([E[s] for s in c]) for c in ctxs])
        Y = torch.stack([E[s] for s in tgts])
        (out / "lcm").mkdir(parents=True, exist_ok=True)
        for kind in ("mse", "diffusion"):
            lm = train_concept_model(kind, X, Y, steps=config.lcm_steps, seed=config.seed, dropout=config.lcm_dropout,
                                     weight_decay=config.lcm_weight_decay)  # fmt: skip
            save_tensors(out / "lcm" / f"{kind}.safetensors", {k: (v.cpu().half() if fp16 else v.cpu()) for k, v in lm.state_dict().items()})
    if want("seeds"):  # seeds 1 .. seeds-1 of the models the verdicts compare: the same recipe, seed + s
        for s in range(1, config.seeds):
            sub_config = replace(config, seed=config.seed + s, seeds=1)
            with tempfile.TemporaryDirectory() as tmp:
                sub_info = train_reason_models(tmp, sub_config, run_dir=sub(f"seed{s}"), fp16=fp16, device=device, only=("coconut", "icot"))
                for name in seed_names(config):
                    shutil.rmtree(out / seed_model(name, s), ignore_errors=True)
                    shutil.copytree(Path(tmp) / name, out / seed_model(name, s))
                    losses[seed_model(name, s)] = sub_info["losses"][name]
    info = {"losses": losses, "params": sum(p.numel() for p in cot.parameters()), "models": model_names(config)}
    write_model_info(out, asdict(config), **info)
    return info


@lru_cache(maxsize=2)
def _load_dir(path: str) -> dict:
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tokenworks.io import load_tensors
    from tokenworks.models.lm import quiet_loading
    from tokenworks.reason.colar import LatentHead
    from tokenworks.reason.hrpo import HybridGate

    root = Path(path)
    names = json.loads((root / "tokenworks.json").read_text())["models"]
    out = {}
    for name in names:
        with quiet_loading():
            model = LlamaForCausalLM.from_pretrained(root / name, dtype=torch.float32).eval()
        head = None  # the method's extra module: CoLaR's latent head, HRPO's gate
        for fname, make in (("latent_head.safetensors", LatentHead), ("hybrid_gate.safetensors", HybridGate)):
            if (root / name / fname).is_file():
                head = make(model.config.hidden_size)
                head.load_state_dict({k: v.float() for k, v in load_tensors(root / name / fname).items()})
                head.eval()
        out[name] = (model, head)
    if (root / "system15").is_dir():  # System-1.5's shortcuts, fitted on cot (depth) and the final Coconut (steps)
        from tokenworks.reason.system15 import DepthExit, StepGate

        cfg = out["cot"][0].config
        shortcuts = {"depth": DepthExit(cfg.hidden_size, cfg.num_hidden_layers), "step": StepGate(cfg.hidden_size)}
        for key, fname in (("depth", "depth_exit.safetensors"), ("step", "step_gate.safetensors")):
            shortcuts[key].load_state_dict({k: v.float() for k, v in load_tensors(root / "system15" / fname).items()})
            shortcuts[key].eval()
        out["system15"] = (None, shortcuts)
    if (root / "lcm").is_dir():  # P50's next-sentence-embedding models
        from tokenworks.reason.lcm import ConceptModel

        lcms = {}
        for kind in ("mse", "diffusion"):
            sd = {k: v.float() for k, v in load_tensors(root / "lcm" / f"{kind}.safetensors").items()}
            lm = ConceptModel(kind, context=sd["net.0.weight"].shape[1] // 384 if kind == "mse" else (sd["net.0.weight"].shape[1] - 384 - 32) // 384)
            lm.load_state_dict(sd)
            lcms[kind] = lm.eval()
        out["lcm"] = (None, lcms)
    if (root / "cache-coprocessor").is_dir():  # P33's coprocessor for the reference LM (its decoder)
        from tokenworks.models import reference_lm
        from tokenworks.reason.cache_aug import CacheCoprocessor

        dec, rtok = reference_lm(train_if_missing=False)
        sd = {k: v.float() for k, v in load_tensors(root / "cache-coprocessor" / "coprocessor.safetensors").items()}
        cop = CacheCoprocessor(dec, sd["soft"].shape[0])
        cop.load_state_dict(sd)
        out["cache-coprocessor"] = (dec, {"coprocessor": cop.eval(), "tokenizer": rtok})
    return {"models": out, "tokenizer": AutoTokenizer.from_pretrained(root / "cot")}


def load_reason_models(config: ReasonModelConfig | None = None, *, train_if_missing: bool = False) -> tuple[dict, object]:
    """``({name: (model, latent head or None)}, tokenizer)`` from the cache or the committed
    assets (``assets/reason``); trained into the cache when missing and ``train_if_missing``."""
    from tokenworks.models.store import load_or_train

    config = config or ReasonModelConfig()

    def _train(out: Path, run: Path) -> None:
        train_reason_models(out, config, run_dir=run)

    fingerprint = json.loads(json.dumps(asdict(config)))  # tuples as the JSON lists they are stored as
    path = load_or_train(NAME, fingerprint, _train, train_if_missing=train_if_missing, command="tokenworks train reason-models")
    d = _load_dir(str(path))
    return d["models"], d["tokenizer"]


