"""A fuzz test over the whole command line: every command of the Typer app, every option,
called with bad values of its type.

The command tree is read from the app itself (``typer.main.get_command``), so a command
added later is covered without editing this file. For each parameter the values come from
its declared type: integers and floats below/above their range, NaN and infinity, missing
paths, a file where a folder is expected and the reverse, garbage files and empty folders,
existing files and foreign folders as outputs, empty strings, unknown choices, hostile names
(``..``, separators, 300 characters) and ``--device bogus``/``tpu``/``cuda`` (no GPU here).

Each call must end with exit code 2 (bad input) or 1 (a handled runtime error such as a
damaged file), print a message naming the argument (its option, its name, or the file it
names), print no traceback, and change no file outside its temporary folder (the checkout,
the real cache and the folder around the test's own are compared before and after). Work
must not start for bad input: the training loop, BPE training and the benchmark runner are replaced by a
tripwire, and every call runs under a time limit, so an accepted bad value is reported as
such instead of training for an hour.

``TOKENWORKS_FUZZ_REPORT=path.json`` writes the counts (tracebacks, accepted bad inputs,
unnamed arguments, changed files) for the issue's before/after table.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import typing
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperArgument, TyperGroup
from typer.testing import CliRunner

import tokenworks as tw
from tokenworks.cli import app

REPO = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = int(os.environ.get("TOKENWORKS_FUZZ_TIME_LIMIT", "60"))


class WorkStarted(Exception):
    """Raised by the tripwires: a command started real work (training, a benchmark)."""


def _commands(cmd, path=()):
    if isinstance(cmd, TyperGroup):
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            if not getattr(sub, "hidden", False):
                yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


COMMANDS = dict(_commands(typer.main.get_command(app)))


# ---------------------------------------------------------------------------- fixtures on disk
def _world(tmp: Path) -> dict[str, Path]:
    """Files the bad values point at, all inside ``tmp``."""
    w = {}
    (tmp / "texts").mkdir()
    (tmp / "texts" / "a.txt").write_text("A small text, for a tokenizer to read.\n" * 20, encoding="utf-8")
    w["texts"] = tmp / "texts"
    w["file"] = tmp / "note.txt"
    w["file"].write_text("a user's note\n")
    w["garbage"] = tmp / "garbage.bin"
    w["garbage"].write_bytes(bytes(range(256)) * 4)
    w["garbage_json"] = tmp / "garbage.json"
    w["garbage_json"].write_text('{"rows": 3, "not": [valid')
    (tmp / "results").mkdir()
    w["results"] = tmp / "results" / "results.json"
    w["results"].write_text(json.dumps({"suites": {}, "machine": {}, "rows": [{"suite": "s", "method": "m", "x": 1}]}))
    w["empty_file"] = tmp / "empty.json"
    w["empty_file"].write_bytes(b"")
    w["empty_dir"] = tmp / "empty-dir"
    w["empty_dir"].mkdir()
    g = tmp / "garbage-dir"  # every file a loader might look for, each one garbage
    g.mkdir()
    for name in ("config.json", "tokenizer.json", "results.json", "tokenworks.json", "state.json"):
        (g / name).write_text("{ not json")
    for name in ("model.safetensors", "pytorch_model.bin", "optimizer.pt", "b.txt"):
        (g / name).write_bytes(b"\xff\xfe\x00garbage" * 64)
    w["garbage_dir"] = g
    f = tmp / "foreign"  # a user's folder: not written by tokenworks
    f.mkdir()
    (f / "config.json").write_text('{"mine": true}')
    (f / "notes.md").write_text("my notes")
    w["foreign"] = f
    # a fake checkout for `readme` (its README has the generated block)
    from bench.readme import BEGIN, END

    co = tmp / "checkout"
    (co / "bench" / "suites").mkdir(parents=True)
    (co / "bench" / "suites" / "__init__.py").write_text("")
    (co / "README.md").write_text(f"# x\n{BEGIN}\nold\n{END}\n")
    w["checkout"] = co
    # a valid tokenizer (so that `tokenizer eval` reaches its FOLDER)
    tok = tw.create("byte_bpe", vocab_size=300).train(["some text to train on, twice"] * 20)
    tok.save_pretrained(tmp / "tok")
    w["tok"] = tmp / "tok"
    return w


# Valid values for required parameters (and the few options a command needs to reach the one
# under test), by command; anything not listed gets a generic valid value from its type.
def _baseline(path: tuple[str, ...], w: dict[str, Path]) -> dict[str, list[str]]:
    return {
        ("tokenizer", "eval"): {"tokenizer": [str(w["tok"])]},
        ("kv", "generate"): {"model": ["task-model"], "--prompt": ["--prompt", "hello"]},
        ("readme",): {"--bench-dir": ["--bench-dir", str(w["checkout"])]},
        ("publish",): {"pattern": ["fuzz/*"]},
        ("report",): {"results": [str(w["results"])]},
    }.get(path, {})


# ---------------------------------------------------------------------------- bad values by type
def _info(p):
    return p.type_descriptor.parameter_info


def _annotation(p):
    a = p.type_descriptor.annotation
    if typing.get_origin(a) in (list, tuple):
        a = typing.get_args(a)[0]
    if typing.get_origin(a) is typing.Union:
        a = next(x for x in typing.get_args(a) if x is not type(None))
    return a


def _output_kind(p) -> str | None:
    parser = getattr(_info(p), "parser", None)
    kind = getattr(parser, "tokenworks_output", None)
    if kind is None and _annotation(p) is Path and p.name in ("out", "assets"):
        kind = "folder"  # (the old code had no marker; its outputs were named so)
    return kind


def _choices(p) -> list[str] | None:
    a = _annotation(p)
    if typing.get_origin(a) is typing.Literal:
        return [str(x) for x in typing.get_args(a)]
    fn = getattr(getattr(_info(p), "parser", None), "tokenworks_choices", None)
    return list(fn()) if fn is not None else None


def _bad_values(p, w: dict[str, Path]) -> list[tuple[str, str]]:
    """``(what, value)`` pairs that are wrong for parameter ``p``."""
    a, info = _annotation(p), _info(p)
    if a is bool:
        return []
    lo, hi = p.min, p.max
    if a is int:
        out = [("negative" if lo is None else "below min", str(-5 if lo is None else lo - 1))]
        out.append(("huge", str(10**30) if hi is None else str(hi + 1)))
        return [*out, ("not a number", "abc")]
    if a is float:
        out = [("nan", "nan"), ("inf", "inf"), ("huge", "1e308" if hi is None else repr(hi * 10 + 1))]
        return [*out, ("negative", "-1")] if lo is None or lo >= 0 else out
    if a is Path:
        kind = _output_kind(p)
        if kind is not None:
            out = [("existing file as output", str(w["file"])), ("empty path", "")]
            return out if kind == "parent" else [*out, ("foreign folder as output", str(w["foreign"]))]
        out = [("missing path", str(w["file"].parent / "no-such-thing"))]
        if info.file_okay is False or p.name in ("folder", "bench_dir"):
            out.append(("file for folder", str(w["file"])))
        if info.dir_okay is False or p.name in ("prompt_file", "readme", "results"):
            out.append(("folder for file", str(w["empty_dir"])))
        if info.file_okay is not False:
            out += [("garbage file", str(w["garbage"])), ("empty file", str(w["empty_file"]))]
        if info.dir_okay is not False:
            out += [("empty folder", str(w["empty_dir"])), ("garbage folder", str(w["garbage_dir"]))]
        return out
    out = [("empty", "")]
    if p.name == "device":
        out += [("bogus device", "bogus"), ("tpu", "tpu"), ("cuda:99", "cuda:99")]
        import torch

        if not torch.cuda.is_available():
            out.append(("cuda without a GPU", "cuda"))
    elif p.name == "name":
        out += [("path escape", "../../../escaped"), ("separator", "a/b"), ("long", "x" * 300)]
    elif _choices(p) is not None or p.name in ("kind", "family", "dataset", "policy", "recipe", "method", "only", "suites"):
        out.append(("unknown choice", "bogus-choice"))
    return out


def _valid(p, w: dict[str, Path]) -> str:
    a = _annotation(p)
    ch = _choices(p)
    if ch:
        return ch[0]
    if p.name == "name":
        return "fuzz-model"
    if a is Path:
        if _output_kind(p):
            return str(w["file"].parent / "new-output")
        return str(w["texts"]) if _info(p).file_okay is False or p.name == "folder" else str(w["file"])
    if a is int:
        return str(max(p.min or 1, 1))
    if a is float:
        return "0.5"
    return "x"


def _cases(path, cmd, w):
    base = _baseline(path, w)
    for p in cmd.params:
        if p.name == "help" or getattr(p, "hidden", False):
            continue
        for what, value in _bad_values(p, w):
            args = []
            for q in cmd.params:
                if q is p:
                    args += [value] if isinstance(q, TyperArgument) else [q.opts[0], value]
                elif q.name in base and isinstance(q, TyperArgument):
                    args += base[q.name]
                elif q.required and isinstance(q, TyperArgument):
                    args.append(_valid(q, w))
                elif q.required:
                    args += [q.opts[0], _valid(q, w)]
            for key, extra in base.items():
                if key.startswith("--") and not (p.name in ("prompt", "prompt_file") and key == "--prompt") and key not in p.opts:
                    args += extra
            yield p, what, value, args


def _names(p) -> list[str]:
    names = {p.name, p.name.replace("_", "-"), p.name.upper(), p.name.upper().replace("_", "-")}
    names.update(getattr(p, "opts", []))
    return sorted(n for n in names if n)


# ---------------------------------------------------------------------------- outside the tmp folder
def _snapshot(roots: list[Path], skip: list[Path]) -> dict[str, tuple[int, int]]:
    out = {}
    skip_names = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".venv"}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            d = Path(dirpath)
            dirnames[:] = [n for n in dirnames if n not in skip_names and not any(d / n == s for s in skip)]
            for n in filenames + [x for x in dirnames]:
                f = d / n
                try:
                    st = f.lstat()
                except FileNotFoundError:
                    continue
                out[str(f)] = (st.st_size, st.st_mtime_ns) if n in filenames else (-1, 0)
    return out


# ---------------------------------------------------------------------------- the test
FINDINGS: dict[str, list[str]] = {"traceback": [], "accepted": [], "unnamed": [], "changed_files": [], "cases": []}


@pytest.fixture
def fuzz_env(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "cache"  # outside work/, so that a name escaping the cache lands where it is seen
    monkeypatch.setenv("TOKENWORKS_CACHE", str(cache))
    monkeypatch.setenv("TOKENWORKS_ASSETS", str(work / "no-assets"))
    monkeypatch.setenv("TOKENWORKS_PROGRESS", "0")
    monkeypatch.delenv("TOKENWORKS_BENCH", raising=False)
    monkeypatch.chdir(work)
    if str(REPO) not in sys.path:
        monkeypatch.syspath_prepend(str(REPO))
    w = _world(work)
    # a trained-looking model in the fuzz cache, for `publish fuzz/*`
    from tokenworks.io import save_tensors
    from tokenworks.models.store import write_model_info

    import torch

    save_tensors(cache / "models" / "fuzz" / "m" / "model.safetensors", {"w": torch.zeros(2)})
    write_model_info(cache / "models" / "fuzz" / "m", {"k": 1})
    # tripwires: real work must not start for bad input
    import bench.harness
    import tokenworks.train.loop as loop

    tw.methods()  # import every family, so every module that holds `train` is loaded
    import tokenworks.models  # noqa: F401
    import tokenworks.vision.store  # noqa: F401

    def tripwire(*a, **k):
        raise WorkStarted("work started")

    import tokenworks.models.bpe as bpe
    from tokenworks.text.recipe import TokenizerRecipe

    work_fns = (loop.train, bench.harness.run_suites, bpe.train_byte_bpe)
    for mod in list(sys.modules.values()):
        name = getattr(mod, "__name__", "")
        if not (name.startswith("tokenworks") or name.startswith("bench")):
            continue
        for attr, val in list(vars(mod).items()):
            if any(val is f for f in work_fns):
                monkeypatch.setattr(mod, attr, tripwire)
    monkeypatch.setattr(TokenizerRecipe, "train", tripwire)
    return tmp_path, work, cache, w


def _alarm(signum, frame):
    raise WorkStarted(f"still running after {TIME_LIMIT_S} s")


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "root")
def test_every_bad_value_is_refused_clearly(path, fuzz_env):
    tmp_path, work, cache, w = fuzz_env
    cmd = COMMANDS[path]
    watched = [REPO, Path(os.environ.get("TOKENWORKS_FUZZ_REAL_CACHE", str(Path.home() / ".cache" / "tokenworks"))), tmp_path]
    before = _snapshot(watched, skip=[work, cache])
    runner = CliRunner()
    problems = []
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for p, what, value, args in _cases(path, cmd, w):
            label = f"{' '.join(path)} {' '.join(args)} [{p.name}: {what}]"
            FINDINGS["cases"].append(label)
            signal.alarm(TIME_LIMIT_S)
            try:
                result = runner.invoke(app, [*path, *args], terminal_width=200)
            finally:
                signal.alarm(0)
            out = result.output
            exc = result.exception
            if isinstance(exc, WorkStarted) or result.exit_code == 0:
                FINDINGS["accepted"].append(label)
                problems.append(f"accepted: {label} -> exit {result.exit_code} {exc!r}")
                continue
            if "Traceback" in out or (exc is not None and not isinstance(exc, SystemExit)):
                FINDINGS["traceback"].append(label)
                problems.append(f"traceback: {label} -> {exc!r}")
                continue
            if result.exit_code not in (1, 2):
                problems.append(f"exit code {result.exit_code}: {label}")
                continue
            named = any(n.lower() in out.lower() for n in _names(p)) or (value and value in out)
            if not named:
                FINDINGS["unnamed"].append(label)
                problems.append(f"unnamed: {label} -> {out.strip()[-300:]}")
    finally:
        signal.signal(signal.SIGALRM, old)
    after = _snapshot(watched, skip=[work, cache])
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    FINDINGS["changed_files"] += changed
    problems += [f"changed outside the test folder: {c}" for c in changed]
    _write_report()
    assert not problems, "\n".join(problems)


def _write_report() -> None:
    path = os.environ.get("TOKENWORKS_FUZZ_REPORT")
    if path:  # merged with an earlier run's file (the cases are labelled, so nothing counts twice)
        merged = {k: list(v) for k, v in FINDINGS.items()}
        if Path(path).is_file():
            old = json.loads(Path(path).read_text())
            for k in merged:
                merged[k] = sorted(set(old.get(k, [])) | set(merged[k]))
        counts = {k: len(v) for k, v in merged.items()}
        Path(path).write_text(json.dumps({"counts": counts, **merged}, indent=1))


def test_the_walk_sees_every_command():
    """The walk is the app's own tree: each family's commands are there (nothing hard-coded
    decides what is fuzzed; this only guards against an empty walk)."""
    names = {" ".join(p) for p in COMMANDS}
    assert {"list", "bench", "report", "readme", "publish", "vision train", "tokenizer train", "kv generate"} <= names
