import re
import sys
from pathlib import Path

import pytest

import tokenworks as tw
from tokenworks.registry import register

SHARED_INDEX = Path(__file__).resolve().parents[3] / "shared" / "papers" / "INDEX.md"


def test_papers_index_has_69_ids_with_families():
    papers = tw.papers()
    assert sorted(papers) == [f"P{i:02d}" for i in range(1, 70)]
    assert {p["family"] for p in papers.values()} <= set(tw.FAMILIES)


@pytest.mark.skipif(not SHARED_INDEX.is_file(), reason="the shared paper index is not beside this checkout")
def test_bundled_index_matches_shared_index():
    rows = re.findall(r"^\| (P\d\d) \| (.+?) \| ([A-Z]+) \|", SHARED_INDEX.read_text(), flags=re.M)
    assert {pid: (title, fam) for pid, title, fam in rows} == {
        pid: (p["title"], p["family"]) for pid, p in tw.papers().items()
    }


def test_every_method_names_a_paper_or_is_a_cited_baseline():
    ms = tw.methods()
    assert ms, "nothing registered"
    for m in ms:
        module_doc = sys.modules[m.obj.__module__].__doc__ or ""
        assert m.family in tw.FAMILIES
        if m.paper is None:
            assert m.cite, m.name
            assert "baseline" in (module_doc + (m.obj.__doc__ or "")).lower(), f"{m.name}: say 'baseline' in its docstring"
        else:
            assert m.family == tw.papers()[m.paper]["family"]
            assert module_doc.lstrip().startswith(m.paper), f"{m.name}: module docstring must start with {m.paper}"


def test_unknown_method_error_suggests_close_names():
    with pytest.raises(tw.UnknownMethodError, match="did you mean 'fsq'"):
        tw.get("fsqq")
    with pytest.raises(KeyError):
        tw.create("no-such-method")


def test_register_validates_its_arguments():
    with pytest.raises(ValueError, match="paper must be one of"):
        register("x1", paper="P99")
    with pytest.raises(ValueError, match="needs family"):
        register("x2")
    with pytest.raises(ValueError, match="needs cite"):
        register("x3", family="VIS")
    with pytest.raises(ValueError, match="disagrees"):
        register("x4", paper="P12", family="VIS")
    with pytest.raises(ValueError, match="already taken"):
        register("fsq", family="VIS", cite="dup")(type("Other", (), {}))


def test_methods_filters_and_rejects_unknown_family():
    vis = tw.methods(family="VIS")
    assert vis and all(m.family == "VIS" for m in vis)
    assert all(m.kind == "quantizer" for m in tw.methods(kind="quantizer"))
    with pytest.raises(ValueError, match="family must be one of"):
        tw.methods(family="XYZ")


def test_every_kind_of_method_has_a_registry_wide_contract_test():
    """`make test` exercises every registered method: each interface (kind) has a test module that
    parametrizes over ``tw.methods(kind=...)``, so a new method is tested the day it registers,
    and a new kind fails here until it has such a module."""
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    sources = {p: p.read_text(encoding="utf-8") for p in tests.rglob("*.py")}
    for kind in sorted({m.kind for m in tw.methods()}):
        needle = f'methods(kind="{kind}")'
        assert any(needle in text for p, text in sources.items() if p.name != Path(__file__).name), (
            f"no test module parametrizes over tw.{needle}"
        )
