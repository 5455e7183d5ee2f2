"""Synthetic documents from probabilistic context-free grammars with a latent rule set (for P47).

A :class:`PCFGFamily` holds ``n_rule_sets`` grammars over the same nonterminals and terminals,
in Chomsky normal form: nonterminal ``A`` rewrites to ``B C`` (binary rules) or to one terminal.
Rule set ``k`` draws its own rules and probabilities for every nonterminal, so the rule set is
a latent "semantics" of a document that the text reveals only gradually: a document is one
rule set's sentences (each derived from the start symbol ``n0``) joined by a separator token.
The metadata of a document is its rule set's id; :meth:`PCFGFamily.meta_token` is the token
that names it.

Token ids: terminals ``0 .. n_terminals - 1``, the separator ``n_terminals``, then one
metadata token per rule set. Sentences stay finite: the binary rules of a nonterminal carry
``binary_mass`` (< 0.5) of its probability, so a derivation branches less than once per node
on average, and past ``max_depth`` only terminal rules are used (still a derivation of the
grammar; tested with an independent Earley parser, :meth:`PCFGFamily.lark_grammar`).

Deviation from P47 (Higuchi et al. 2025): their grammars are the hierarchical ones of Allen-Zhu
and Li's "Physics of LMs" with the rule choice at each level as metadata; here the rule sets
are drawn independently per nonterminal (smaller, CPU-sized), and the metadata is one token.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from tokenworks.checks import check_float, check_int

__all__ = ["PCFGFamily"]


@dataclass(kw_only=True, frozen=True)
class PCFGFamily:
    """``n_rule_sets`` CNF grammars over shared symbols (see the module docstring)."""

    n_rule_sets: int = 4
    n_nonterminals: int = 8
    n_terminals: int = 24
    binary_rules: int = 3
    terminal_rules: int = 4
    binary_mass: float = 0.49
    max_depth: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_rule_sets", self.n_rule_sets, min=1, max=1000)
        check_int("n_nonterminals", self.n_nonterminals, min=1, max=1000)
        check_int("n_terminals", self.n_terminals, min=1, max=100_000)
        check_int("binary_rules", self.binary_rules, min=0, max=self.n_nonterminals**2)
        check_int("terminal_rules", self.terminal_rules, min=1, max=self.n_terminals)
        check_float("binary_mass", self.binary_mass, min=0.0, max=0.5, max_open=True)
        check_int("max_depth", self.max_depth, min=1, max=30)
        check_int("seed", self.seed, min=0)

    @property
    def sep(self) -> int:
        return self.n_terminals

    @property
    def vocab_size(self) -> int:
        return self.n_terminals + 1 + self.n_rule_sets

    def meta_token(self, k: int) -> int:
        check_int("k", k, min=0, max=self.n_rule_sets - 1)
        return self.n_terminals + 1 + k

    @cached_property
    def rules(self) -> list[list[tuple[list[tuple[int, int]], list[int], torch.Tensor]]]:
        """``rules[k][A] = (binary [(B, C)], terminals [t], probs)``: probs over binary then
        terminal rules (sum 1)."""
        g = torch.Generator().manual_seed(self.seed)
        N, T = self.n_nonterminals, self.n_terminals
        out = []
        for _ in range(self.n_rule_sets):
            per = []
            for _a in range(N):
                pairs = torch.randperm(N * N, generator=g)[: self.binary_rules].tolist()
                binary = [(p // N, p % N) for p in pairs]
                terms = torch.randperm(T, generator=g)[: self.terminal_rules].tolist()
                pt = torch.rand(len(terms), generator=g) + 0.1
                pb = -torch.log(torch.rand(len(binary), generator=g).clamp_min(1e-9))  # Dirichlet(1) weights
                pb = pb / pb.sum().clamp_min(1e-9) * self.binary_mass
                probs = torch.cat([pb, pt / pt.sum() * (1 - (self.binary_mass if binary else 0.0))])
                per.append((binary, terms, probs))
            out.append(per)
        return out

    def sentence(self, k: int, g: torch.Generator) -> list[int]:
        """One sentence of rule set ``k``: terminals of a derivation from ``n0`` (left to right)."""
        rules = self.rules[k]
        out: list[int] = []
        stack = [(0, 0)]  # (nonterminal, depth); the top is the leftmost open symbol
        while stack:
            a, depth = stack.pop()
            binary, terms, probs = rules[a]
            if depth >= self.max_depth:
                probs = probs.clone()
                probs[: len(binary)] = 0.0
            r = int(torch.multinomial(probs, 1, generator=g))
            if r < len(binary):
                b, c = binary[r]
                stack.append((c, depth + 1))
                stack.append((b, depth + 1))
            else:
                out.append(terms[r - len(binary)])
        return out

    def document(self, k: int, length: int, g: torch.Generator) -> list[int]:
        """``length`` tokens of rule set ``k``: sentences joined by the separator (cut at length)."""
        check_int("length", length, min=1)
        out: list[int] = []
        while len(out) < length:
            out.extend(self.sentence(k, g))
            out.append(self.sep)
        return out[:length]

    def batch(self, n: int, length: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(documents (n, length) LongTensor, rule-set ids (n,)), rule sets uniform."""
        check_int("n", n, min=1)
        ks = torch.randint(0, self.n_rule_sets, (n,), generator=g)
        docs = torch.tensor([self.document(int(k), length, g) for k in ks])
        return docs, ks

    def lark_grammar(self, k: int) -> str:
        """Rule set ``k`` as a Lark grammar over one character per terminal (``a``, ``b``, ...;
        past ``z``: ``A``...), start symbol ``start -> n0`` (for independent parsing checks)."""
        rules = self.rules[k]
        lines = ["start: n0"]
        for a, (binary, terms, _) in enumerate(rules):
            alts = [f"n{b} n{c}" for b, c in binary] + [f'"{self.char(t)}"' for t in terms]
            lines.append(f"n{a}: " + " | ".join(alts))
        return "\n".join(lines) + "\n"

    @staticmethod
    def char(t: int) -> str:
        chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        if t >= len(chars):
            raise ValueError(f"terminal {t}: lark_grammar spells at most {len(chars)} terminals")
        return chars[t]
