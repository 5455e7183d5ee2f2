"""Reasoning tasks with verifiable answers and chain-of-thought traces, and their word-level tokenizer.

Three generators, each deterministic in ``(split, index)`` and with disjoint splits:

- ``graph`` (ProsQA-style, Hao et al. 2024): a random DAG of made-up concepts ("A is B ."
  stands for "every A is a B"), a person who "is" two of them, and the question "is bob X or
  Y ?" where exactly one option is reachable from the person. The chain of thought is a
  shortest path, one fact per step; the chain length is the number of facts on it (2-4 by
  default). Distractor facts are the rest of the graph.
- ``pronto`` (ProntoQA-style, Saparov & He 2023): an ontology written as rules "A is B ." (every
  A is a B; every concept has one parent, so the concepts form a forest), property rules "A is
  P ." / "A is not P .", the fact "bob is A ." and the question "is bob [not] P ?", answered
  ``true`` or ``false``. The person's chain of concepts reaches exactly one rule about ``P``;
  a distractor concept outside that chain has the opposite rule. The chain of thought is
  forward deduction, one conclusion per step ("bob is B .", ..., "bob is not P ."); the
  chain length is the number of rule applications (2-4 by default).
- ``arith`` (GSM-style chains of 2-6 operations on numbers written as words): ``7 + 5 - 3 * 2 ?``
  evaluated left to right, every intermediate value kept in 0..29; one step per operation,
  ``- 3 = 9 .``.

Deviations from ProsQA / GSM8K: the graphs are smaller (10 concepts, about 17 facts), a fact is
written "A is B ." (4 tokens) instead of "Every A is a B.", and the arithmetic is synthetic
with small numbers so that a small model trained on a CPU in minutes can learn it.

Splits are decided by a hash of the question text (test 10%, valid 10%, train the rest), so
no question is in two splits; example ``i`` of a split is the ``i``-th accepted draw of a
generator seeded with ``(task, split)``.

Sequences (token strings, one word a token)::

    question <bot> step_1 ... step_n <eot> answer <eos>      (CoT)
    question <bot> <eot> answer <eos>                          (no CoT)

Latent methods replace steps by ``<latent>`` slots between ``<bot>`` and ``<eot>``.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

from tokenworks.checks import check_choice, check_int

__all__ = [
    "CONCEPTS", "PERSONS", "PROPERTIES", "SPECIALS", "TASKS", "Example", "arith_example", "examples", "graph_example",
    "pronto_example",
    "reason_tokenizer", "vocabulary",
]  # fmt: skip

TASKS = ("graph", "pronto", "arith")
SPLITS = ("train", "valid", "test")
PAD, EOS, UNK, BOT, EOT, LATENT, PAUSE = "<pad>", "<eos>", "<unk>", "<bot>", "<eot>", "<latent>", "<pause>"
MAX_C = 8
SPECIALS = (PAD, EOS, UNK, BOT, EOT, LATENT, PAUSE, *(f"<c{c}>" for c in range(1, MAX_C + 1)))
_SYLLABLES = ("wum", "yum", "zhor", "ster", "rem", "lor", "ror", "jel", "tum", "hil", "gor", "brim", "scrom", "lem", "boom",
              "shum", "yer", "gler", "dax", "fep", "kip", "mup", "nax", "quo", "sni", "tov", "vor", "wix", "zan", "bel",
              "cor", "dif", "fum", "gax", "hep", "jor", "kel", "lup", "mip", "nor")  # fmt: skip
CONCEPTS = tuple(s + "pus" for s in _SYLLABLES)
PERSONS = ("bob", "alice", "tom", "sally", "jack", "rex", "max", "eve")
MAX_VALUE = 29
_WORDS = ("is", "or", "?", ".", "=", "+", "-", "*", "not", "true", "false")
PROPERTIES = ("red", "blue", "sour", "sweet", "hot", "cold", "shy", "loud", "big", "small", "dull", "bright", "wet", "dry",
              "fast", "slow")  # fmt: skip


@dataclass(frozen=True)
class Example:
    """One problem: ``question`` and every ``steps[i]`` are space-separated tokens."""

    task: str
    question: str
    steps: tuple[str, ...]
    answer: str

    @property
    def length(self) -> int:
        """Chain length: the number of reasoning steps."""
        return len(self.steps)


def vocabulary() -> list[str]:
    return [*SPECIALS, *_WORDS, *(str(i) for i in range(MAX_VALUE + 1)), *PERSONS, *CONCEPTS, *PROPERTIES]


@lru_cache(maxsize=1)
def reason_tokenizer():
    """A word-level ``PreTrainedTokenizerFast`` (HF ``tokenizers`` WordLevel, split on spaces)
    over the tasks' fixed vocabulary; ``<pad>`` is id 0 and ``<eos>`` id 1."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
        additional_special_tokens=[s for s in SPECIALS if s not in (PAD, EOS, UNK)], padding_side="left",
    )  # fmt: skip


def graph_example(rng: random.Random, hops: int, *, nodes: int = 10) -> Example | None:
    """A ProsQA-style problem whose answer is ``hops`` facts away from the person, or None
    when this random graph has no such target (the caller draws again)."""
    names = rng.sample(CONCEPTS, nodes)
    person = rng.choice(PERSONS)
    edges = []  # (parent, child) over indices; parents come earlier in the order
    for j in range(1, nodes):
        for i in rng.sample(range(j), min(j, rng.choice((1, 1, 2)))):
            edges.append((i, j))
    starts = rng.sample(range(min(3, nodes)), 2)
    # BFS from the person (the person node is -1); parent pointers give one shortest path
    children: dict[int, list[int]] = {-1: sorted(starts)}
    for i, j in edges:
        children.setdefault(i, []).append(j)
    dist, parent, queue = {-1: 0}, {}, deque([-1])
    while queue:
        u = queue.popleft()
        for v in sorted(children.get(u, [])):
            if v not in dist:
                dist[v], parent[v] = dist[u] + 1, u
                queue.append(v)
    targets = [v for v, d in dist.items() if d == hops]
    others = [v for v in range(nodes) if v not in dist]
    if not targets or not others:
        return None
    target, other = rng.choice(targets), rng.choice(others)
    path = [target]
    while path[-1] != -1:
        path.append(parent[path[-1]])
    path.reverse()
    label = lambda v: person if v == -1 else names[v]  # noqa: E731
    facts = [f"{person} is {names[s]} ." for s in starts] + [f"{names[i]} is {names[j]} ." for i, j in edges]
    rng.shuffle(facts)
    options = [names[target], names[other]]
    rng.shuffle(options)
    question = " ".join(facts) + f" is {person} {options[0]} or {options[1]} ?"
    steps = tuple(f"{label(a)} is {label(b)} ." for a, b in zip(path, path[1:]))
    return Example("graph", question, steps, names[target])


def pronto_example(rng: random.Random, hops: int, *, distractors: int = 4, extra_properties: int = 3) -> Example:
    """A ProntoQA-style problem needing ``hops`` rule applications: ``hops - 1`` "is-a" rules
    from the person's concept up its chain, then the property rule."""
    names = rng.sample(CONCEPTS, hops + distractors)
    chain, others = names[:hops], names[hops:]
    person = rng.choice(PERSONS)
    rules = [(chain[i], chain[i + 1]) for i in range(hops - 1)]
    # distractor concepts hang off the chain or off each other (one parent each: a forest)
    placed = list(chain)
    for d in others:
        rules.append((d, rng.choice(placed)))
        placed.append(d)
    prop, *rest = rng.sample(PROPERTIES, 1 + extra_properties)
    positive = rng.random() < 0.5
    decoy = rng.choice(others)  # not an ancestor of the person's concept (ancestors are all in chain)
    props = [(chain[-1], prop, positive), (decoy, prop, not positive)]
    for q in rest:  # properties the question does not ask about, on any concept
        props.append((rng.choice(names), q, rng.random() < 0.5))
    facts = [f"{a} is {b} ." for a, b in rules] + [f"{a} is {'' if pos else 'not '}{q} ." for a, q, pos in props]
    facts.append(f"{person} is {chain[0]} .")
    rng.shuffle(facts)
    asked_positive = rng.random() < 0.5
    question = " ".join(facts) + f" is {person} {'' if asked_positive else 'not '}{prop} ?"
    steps = tuple(f"{person} is {c} ." for c in chain[1:]) + (f"{person} is {'' if positive else 'not '}{prop} .",)
    return Example("pronto", question, steps, "true" if positive == asked_positive else "false")


def arith_example(rng: random.Random, ops: int) -> Example:
    """``ops`` operations applied left to right to a start value, all values in 0..29."""
    value = rng.randint(0, 19)
    question, steps = [str(value)], []
    for _ in range(ops):
        choices = [("+", b) for b in range(1, 10) if value + b <= MAX_VALUE]
        choices += [("-", b) for b in range(1, 10) if value - b >= 0]
        choices += [("*", b) for b in (2, 3) if value * b <= MAX_VALUE]
        op, b = rng.choice(choices)
        value = value + b if op == "+" else value - b if op == "-" else value * b
        question += [op, str(b)]
        steps.append(f"{op} {b} = {value} .")
    return Example("arith", " ".join(question) + " ?", tuple(steps), str(value))


DEFAULT_LENGTHS = {"graph": (2, 4), "pronto": (2, 4), "arith": (2, 6)}


def _split_of(question: str) -> str:
    h = int.from_bytes(hashlib.sha256(question.encode()).digest()[:4], "little") % 10
    return "test" if h == 0 else "valid" if h == 1 else "train"


@lru_cache(maxsize=64)
def examples(task: str, split: str, n: int, *, lengths: tuple[int, int] | None = None, seed: int = 0,
             nodes: int | None = None) -> tuple[Example, ...]:  # fmt: skip
    """The first ``n`` examples of ``split``; chain lengths cycle through ``lengths``
    (inclusive range, the task's default when None) so every length is equally present.
    ``nodes`` (graph only): concepts per graph instead of 10 (smaller graphs, fewer
    distractor facts: a training curriculum; evaluation uses the default)."""
    check_choice("task", task, TASKS)
    check_choice("split", split, SPLITS)
    check_int("n", n, min=0)
    if nodes is not None:
        if task != "graph":
            raise ValueError(f"nodes: only the graph task has a graph size, got nodes={nodes} for task {task!r}")
        check_int("nodes", nodes, min=4, max=len(CONCEPTS))
    lo, hi = lengths or DEFAULT_LENGTHS[task]
    check_int("lengths[0]", lo, min=2 if task == "graph" else 1, max=8)
    check_int("lengths[1]", hi, min=lo, max=8)
    rng = random.Random(f"{task}/{split}/{seed}" + ("" if nodes is None else f"/nodes{nodes}"))
    out: list[Example] = []
    seen: set[str] = set()
    while len(out) < n:
        length = lo + len(out) % (hi - lo + 1)
        if task == "graph":
            ex = graph_example(rng, length) if nodes is None else graph_example(rng, length, nodes=nodes)
        elif task == "pronto":
            ex = pronto_example(rng, length)
        else:
            ex = arith_example(rng, length)
        if ex is None or _split_of(ex.question) != split or ex.question in seen:
            continue
        seen.add(ex.question)
        out.append(ex)
    return tuple(out)
