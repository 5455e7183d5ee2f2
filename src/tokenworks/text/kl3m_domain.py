"""P55 KL3M Tokenizers: domain-specific BPE for legal text (the kl3m-004 recipe, at small scale).

Mechanism (read from ``kl3m_tokenizers/tokenizers/kl3m_004/train_tokenizer.py`` of
``alea-institute/kl3m-tokenizers``): a byte-level BPE trained on domain text (here the license
texts of ``licensedcode-data``) plus *custom tokens* added after training, 13 special tokens and
power-of-two padding. The custom tokens, in groups as in KL3M's ``get_custom_tokens``
(``custom_tokens=`` selects groups; ``fixed_tokens=False`` drops them all):

- ``whitespace``: runs of 2-8 spaces, tabs, carriage returns and newlines, "\\r\\n", "\\t ";
- ``markdown``: "##" .. "######", "**", "~~", "```", "![", URI pieces ("http://", "https://",
  "www.", "ftp://", "mailto:", "tel:", "://") and runs of 2-8 of ". - = _ * ~";
- ``html``: "<tag" (lower and upper case) and "</tag>" for KL3M's 37 tags, and the
  attributes " href=", " src=", " alt=", " title=", " class=", " id=" (both cases);
- ``json``: '{"', '"}', '["', '"]', '":', '","', '":"', "null", "true", "false";
- ``xml``: "<!--", "-->", "<![CDATA[", "]]>", "<?xml", "<xml", "</xml>";
- ``years``: "1776" .. "2049";
- ``citations``: "(a)" .. "(z)", "(A)" .. "(Z)", "(1)" .. "(99)", "(ii)" .. "(ix)" in both
  cases, and the numbers "10" .. "999" (section numbers);
- ``legal_abbreviations``: *our stand-in* for the lists KL3M downloads at training time from
  Free Law Project's reporters-db (laws, reporters, journals, case-name abbreviations):
  a short hand-made list for license text ("U.S.C.", "e.g.", "Inc.", '"AS IS"', "(c)",
  license identifiers such as "GPL-2.0" and "SPDX-License-Identifier:").

As in KL3M: tokens are de-duplicated and single characters dropped; the BPE trainer gets
``vocab_size`` minus the custom tokens, custom tokens the BPE already learned are not added
again, and the vocabulary is then padded with runs of spaces and newlines up to a power of two;
the special tokens are KL3M's 13 (``<|start|>``, ``<|end|>``, ``<|pad|>``, ``<|unk|>``,
``<|sep|>``, ``<|cls|>``, ``<|mask|>`` and the system / user / instruction start and end tags),
with ``<|end|>`` as the end-of-text token between documents. ``cased=False`` gives the uncased
variant (lower-casing normalizer, custom tokens lower-cased, the upper-case HTML tokens left
out, as in KL3M's ``lowercase`` option).

At 4k-16k entries the full custom set (about 1,650 tokens, sized by KL3M for a 128k vocabulary
where it is 1.3%) takes 10-40% of the vocabulary away from BPE. The benchmark therefore compares
three tokenizers at equal vocabulary: the general BPE trained on prose, a *plain* BPE (the
``byte_bpe`` recipe) trained on the same legal text, and this recipe on the legal text; the
recipe's own contribution is this recipe vs the plain legal BPE.

Deviations from the official code and why:
- No NFKC normalization (KL3M normalizes with NFKC): tokenworks requires every tokenizer to
  round-trip arbitrary text exactly. The uncased variant round-trips the lower-cased text.
- The reporters-db abbreviation lists are downloaded by KL3M at training time; nothing may be
  downloaded here, so ``legal_abbreviations`` is a short hand-made list (about 50 tokens).
- KL3M pads to the power of two *above* the trained size even when that size already is one
  (8192 for 4096); we pad to the smallest power of two >= the trained size, so a power-of-two
  ``vocab_size`` is kept exactly. KL3M's trainer size also subtracts the special tokens twice
  (once explicitly, once inside ``tokenizers``); ours subtracts them once.
- Custom tokens made of word characters at both ends (numbers, years, "null", "GPL-2.0") are
  ``single_word`` added tokens, so "999" never matches inside "19999" nor "GPL-2.0" inside
  "LGPL-2.0"; KL3M adds them without that flag.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import ClassVar

from tokenworks.registry import register
from tokenworks.text.byte_bpe import byte_level_engine
from tokenworks.text.recipe import Engine, TokenizerRecipe

__all__ = ["CUSTOM_GROUPS", "KL3M_SPECIAL_TOKENS", "KL3MDomainBPE", "kl3m_custom_tokens", "legal_fixed_tokens"]

KL3M_SPECIAL_TOKENS = (
    "<|start|>", "<|end|>", "<|pad|>", "<|unk|>", "<|sep|>", "<|cls|>", "<|mask|>",
    "<|system|>", "</|system|>", "<|user|>", "</|user|>", "<|instruction|>", "</|instruction|>",
)  # fmt: skip
CUSTOM_GROUPS = ("whitespace", "markdown", "html", "json", "xml", "years", "citations", "legal_abbreviations")

_HTML_TAGS = (
    "html head body div span img table thead tbody tfoot tr td ul ol li h1 h2 h3 h4 iframe script style svg "
    "input button form label select option textarea meta link title pre code row column"
).split()
_HTML_ATTRIBUTES = ("href", "src", "alt", "title", "class", "id")
_ROMAN = ("ii", "iii", "iv", "v", "vi", "vii", "viii", "ix")
_LICENSE_IDS = (
    "GPL-2.0", "GPL-3.0", "LGPL-2.0", "LGPL-2.1", "LGPL-3.0", "AGPL-3.0", "GFDL-1.3", "MPL-1.1",
    "MPL-2.0", "EPL-1.0", "EPL-2.0", "CDDL-1.0", "Apache-2.0", "Apache-1.1", "BSD-2-Clause",
    "BSD-3-Clause", "BSD-4-Clause", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC0-1.0",
    "Artistic-2.0", "Zlib", "ISC", "MIT", "X11", "Unlicense", "-only", "-or-later",
    "SPDX-License-Identifier:",
)  # fmt: skip
_ABBREVIATIONS = ("U.S.", "U.S.C.", "C.F.R.", "e.g.", "i.e.", "etc.", "Inc.", "Ltd.", "Corp.", "No.", "Sec.", "Art.")
_MARKERS = ('"AS IS"', "(c)", "(C)")


def _group(name: str, cased: bool) -> list[str]:
    if name == "whitespace":
        return [w * k for w in (" ", "\t", "\r", "\n") for k in range(2, 9)] + ["\r\n", "\t "]
    if name == "markdown":
        toks = ["##", "###", "####", "#####", "######", "**", "~~", "```", "!["]
        toks += ["http://", "https://", "www.", "ftp://", "mailto:", "tel:", "://"]
        return toks + [c * k for c in ".-=_*~" for k in range(2, 9)]
    if name == "html":
        toks = ["<" + t for t in _HTML_TAGS] + (["<" + t.upper() for t in _HTML_TAGS] if cased else [])
        toks += ["</" + t + ">" for t in _HTML_TAGS]
        return toks + [f" {a}=" for a in _HTML_ATTRIBUTES] + ([f" {a.upper()}=" for a in _HTML_ATTRIBUTES] if cased else [])
    if name == "json":
        return ['{"', '"}', '["', '"]', '":', '","', '":"', "null", "true", "false"]
    if name == "xml":
        return ["<!--", "-->", "<![CDATA[", "]]>", "<?xml", "<xml", "</xml>"]
    if name == "years":
        return [str(y) for y in range(1776, 2050)]
    if name == "citations":
        toks = [f"({c})" for c in string.ascii_letters] + [f"({n})" for n in range(1, 100)]
        toks += [f"({r})" for r in _ROMAN] + ([f"({r.upper()})" for r in _ROMAN] if cased else [])
        return toks + [str(n) for n in range(10, 1000)]
    if name == "legal_abbreviations":
        return [*_MARKERS, *_LICENSE_IDS, *_ABBREVIATIONS]
    raise ValueError(f"custom_tokens: unknown group {name!r}, expected some of {list(CUSTOM_GROUPS)}")


def kl3m_custom_tokens(groups=CUSTOM_GROUPS, *, cased: bool = True) -> list[str]:
    """KL3M's custom tokens of ``groups`` (lower-cased unless ``cased``), sorted, without
    repeats or single characters (as KL3M's ``get_custom_tokens``)."""
    toks = [t for g in groups for t in _group(g, cased)]
    if not cased:
        toks = [t.lower() for t in toks]
    return sorted(t for t in set(toks) if len(t) > 1)


def legal_fixed_tokens(*, cased: bool = True) -> list[str]:
    """The custom tokens of the default recipe (every group)."""
    return kl3m_custom_tokens(CUSTOM_GROUPS, cased=cased)


def padding_candidates():
    """KL3M's power-of-two padding tokens: runs of spaces and newlines, shortest first (lazy:
    as many as the padding needs)."""
    return (w * k for k in range(2, 1 << 16) for w in (" ", "\n"))


@register("kl3m_domain_bpe", paper="P55")
@dataclass(kw_only=True)
class KL3MDomainBPE(TokenizerRecipe):
    """KL3M domain BPE: byte-level BPE + KL3M's custom tokens + 13 special tokens + power-of-two
    vocabulary."""

    ROLES: ClassVar[dict[str, str]] = {
        "bos_token": "<|start|>", "eos_token": "<|end|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>",
        "sep_token": "<|sep|>", "cls_token": "<|cls|>", "mask_token": "<|mask|>",
    }  # fmt: skip

    vocab_size: int = 4096
    min_frequency: int = 2
    cased: bool = True
    fixed_tokens: bool = True
    custom_tokens: tuple[str, ...] = CUSTOM_GROUPS
    special_tokens: tuple[str, ...] = KL3M_SPECIAL_TOKENS
    pad_to_power_of_two: bool = True

    def validate(self) -> None:
        for name in ("cased", "fixed_tokens"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if isinstance(self.custom_tokens, str) or not all(isinstance(g, str) for g in self.custom_tokens):
            raise TypeError(f"custom_tokens must be a list of group names from {list(CUSTOM_GROUPS)}, got {self.custom_tokens!r}")
        bad = [g for g in self.custom_tokens if g not in CUSTOM_GROUPS]
        if bad:
            raise ValueError(f"custom_tokens: unknown group(s) {bad}, expected some of {list(CUSTOM_GROUPS)}")
        self.custom_tokens = tuple(dict.fromkeys(self.custom_tokens))

    def tokens(self) -> list[str]:
        """The custom tokens this recipe adds (empty with ``fixed_tokens=False``)."""
        return kl3m_custom_tokens(self.custom_tokens, cased=self.cased) if self.fixed_tokens else []

    @property
    def n_fixed(self) -> int:
        return len(self.tokens())

    def engine(self) -> Engine:
        from tokenizers import AddedToken, pre_tokenizers

        fixed = []
        for t in self.tokens():
            word = t[0].isalnum() and t[-1].isalnum()
            fixed.append(AddedToken(t, single_word=word, normalized=not self.cased))
        return Engine(
            byte_level_engine(lowercase=not self.cased),
            {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet()},
            fixed_tokens=fixed,
            padding_tokens=padding_candidates(),
        )
