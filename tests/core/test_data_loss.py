"""Nothing a user owns is lost: the four data-loss cases of issue 17 as regression tests, and
the rules of ``prepare_output`` / ``atomic_dir`` they rest on (checked on real folders, by
listing and reading every file before and after).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tokenworks.cli import app

MARKER = "tokenworks.json"

runner = CliRunner()
TINY = ["--steps", "2", "--batch-size", "2", "--dataset", "mnist5k", "--set", "width=8", "--set", "latent_dim=4"]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (the reference the commands must not change)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _users_models(tmp_path: Path) -> Path:
    mine = tmp_path / "my-models"
    (mine / "my-model").mkdir(parents=True)
    (mine / "my-model" / "config.json").write_text('{"mine": 1}')
    (mine / "my-model" / "model.safetensors").write_bytes(b"my weights")
    (mine / "notes.md").write_text("notes I keep here")
    return mine


# ---------------------------------------------------------------------------- the four cases
def test_empty_name_with_out_does_not_replace_the_users_folder(tmp_cache, tmp_path):
    mine = _users_models(tmp_path)
    before = tree(mine)
    r = runner.invoke(app, ["vision", "train", "patch2d", "--name", "", "--out", str(mine), *TINY])
    assert r.exit_code == 2 and "--name" in r.output and "non-empty" in r.output, r.output
    assert tree(mine) == before


def test_empty_name_does_not_wipe_the_cached_models(tmp_cache):
    cached = tmp_cache / "models" / "vision"
    for name in ("a", "b"):
        (cached / name).mkdir(parents=True)
        (cached / name / MARKER).write_text('{"fingerprint": {}}')
        (cached / name / "model.safetensors").write_bytes(b"weights " + name.encode())
    before = tree(cached)
    r = runner.invoke(app, ["vision", "train", "patch2d", "--name", "", *TINY])
    assert r.exit_code == 2 and "--name" in r.output, r.output
    assert tree(cached) == before


@pytest.mark.parametrize("name", ["../../../escaped", "../x", "a/b", "..", ".hidden", "x" * 300, "a\\b"])
def test_names_cannot_leave_the_cache(tmp_cache, tmp_path, name):
    r = runner.invoke(app, ["vision", "train", "patch2d", "--name", name, *TINY])
    assert r.exit_code == 2 and "--name" in r.output, r.output
    outside = sorted(p.name for p in tmp_path.iterdir())
    assert outside == [], outside  # nothing created: not the cache, not an escaped folder


def test_tokenizer_out_never_replaces_a_file_or_a_foreign_model(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("some text to train a tokenizer on, again and again. " * 50)
    report = tmp_path / "report.txt"
    report.write_text("my report")
    base = ["tokenizer", "train", str(docs), "--recipe", "byte_bpe", "--vocab-size", "300"]
    r = runner.invoke(app, [*base, "--out", str(report)])
    assert r.exit_code == 2 and "--out" in r.output and "report.txt" in r.output, r.output
    assert report.read_text() == "my report"
    for flags in ([], ["--overwrite"]):
        r = runner.invoke(app, [*base, "--out", str(report), *flags])
        assert r.exit_code == 2 and report.is_file() and report.read_text() == "my report"

    model = tmp_path / "existing-model"
    model.mkdir()
    (model / "config.json").write_text('{"mine": true}')
    (model / "model.safetensors").write_bytes(b"my weights")
    before = tree(model)
    r = runner.invoke(app, [*base, "--out", str(model)])
    assert r.exit_code == 2 and "--overwrite" in " ".join(r.output.split()), r.output
    assert tree(model) == before
    # with --overwrite, tokenworks' files are added and the user's files are kept
    r = runner.invoke(app, [*base, "--out", str(model), "--overwrite"])
    assert r.exit_code == 0, r.output
    after = tree(model)
    assert {k: after[k] for k in before} == before
    assert "tokenizer.json" in after and MARKER in after
    # a second run replaces tokenworks' own files only
    r = runner.invoke(app, [*base, "--vocab-size", "280", "--out", str(model)])
    assert r.exit_code == 0, r.output
    assert {k: tree(model)[k] for k in before} == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_reference_lm_out_file_is_refused(tmp_path):
    f = tmp_path / "lm.txt"
    f.write_text("mine")
    r = runner.invoke(app, ["train", "reference-lm", "--out", str(f), "--steps", "1"])
    assert r.exit_code == 2 and "--out" in r.output and f.read_text() == "mine"


# ---------------------------------------------------------------------------- the rules
def test_prepare_output_rules(tmp_path):
    from tokenworks.checks import ArgumentError
    from tokenworks.io import OutputError, prepare_output

    assert prepare_output(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    prepare_output(tmp_path / "empty")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / MARKER).write_text("{}")
    (ours / "x.bin").write_bytes(b"1")
    prepare_output(ours)
    (tmp_path / "file").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match=r"--out .*file is an existing file.*--overwrite"):
            prepare_output(tmp_path / "file", overwrite=overwrite)
    with pytest.raises(OutputError, match=r"under-a-file"):
        prepare_output(tmp_path / "file" / "under-a-file")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a").write_text("a")
    with pytest.raises(OutputError, match=r"--model .*foreign is a folder that tokenworks did not write.*--overwrite"):
        prepare_output(foreign, arg="--model")
    prepare_output(foreign, overwrite=True)
    assert isinstance(OutputError("x", "y"), (ArgumentError, ValueError))


def test_atomic_dir_keeps_files_it_did_not_write(tmp_path):
    from tokenworks.io import OutputError, atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as d:
        (d / "w.bin").write_bytes(b"1")
        (d / "old-only.bin").write_bytes(b"o")
    (target / "my-notes.md").write_text("mine")  # the user adds a file to a tokenworks folder
    (target / "sub").mkdir()
    (target / "sub" / "deep.txt").write_text("deep")
    with atomic_dir(target) as d:
        (d / "w.bin").write_bytes(b"2")
    assert tree(target) == {"w.bin": b"2", "my-notes.md": b"mine", "sub/deep.txt": b"deep", MARKER: (target / MARKER).read_bytes()}
    # a clash with the user's file is refused and changes nothing
    before = tree(target)
    with pytest.raises(OutputError, match="my-notes.md"):
        with atomic_dir(target) as d:
            (d / "my-notes.md").write_text("tokenworks' version")
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_writes_into_a_foreign_folder_only_with_overwrite(tmp_path):
    from tokenworks.io import OutputError, atomic_dir

    target = tmp_path / "theirs"
    target.mkdir()
    (target / "config.json").write_text("theirs")
    with pytest.raises(OutputError):
        with atomic_dir(target) as d:
            (d / "new.bin").write_bytes(b"n")
    with pytest.raises(OutputError, match="config.json"):
        with atomic_dir(target, overwrite=True) as d:
            (d / "config.json").write_text("ours")
    assert tree(target) == {"config.json": b"theirs"}
    with atomic_dir(target, overwrite=True) as d:
        (d / "new.bin").write_bytes(b"n")
    assert tree(target)["config.json"] == b"theirs" and tree(target)["new.bin"] == b"n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_a_killed_process_are_cleaned(tmp_path):
    from tokenworks.io import atomic_dir

    pid = _dead_pid()
    target = tmp_path / "model"
    with atomic_dir(target) as d:
        (d / "w.bin").write_bytes(b"1")
    stale_dir = tmp_path / f".model.{pid}.abc123.tmp"
    stale_dir.mkdir()
    (stale_dir / "half.bin").write_bytes(b"half")
    stale_file = tmp_path / f".x.json.{pid}.k2j_9.tmp"
    stale_file.write_text("{")
    alive = tmp_path / f".model.{os.getpid()}.zzz.tmp"  # a live process's temporary is left alone
    alive.mkdir()
    with atomic_dir(target) as d:
        (d / "w.bin").write_bytes(b"2")
    assert not stale_dir.exists() and alive.exists()
    from tokenworks.io import atomic_write_text

    atomic_write_text(tmp_path / "x.json", "{}")
    assert not stale_file.exists()
    alive.rmdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "x.json"]


def test_a_swap_killed_half_way_is_undone(tmp_path):
    """SIGKILL between 'move the old folder aside' and 'move the new one in' leaves the old
    version under .old: the next run puts it back (nothing lost) before doing anything."""
    from tokenworks.io import clean_stale

    pid = _dead_pid()
    target = tmp_path / "model"
    aside = tmp_path / f".model.{pid}.0123abcd.old"
    aside.mkdir()
    (aside / "w.bin").write_bytes(b"complete old version")
    (aside / "user.txt").write_text("mine")
    half = tmp_path / f".model.{pid}.q1w2e3.tmp"
    half.mkdir()
    (half / "w.bin").write_bytes(b"new")
    clean_stale(target)
    assert tree(target) == {"w.bin": b"complete old version", "user.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_cache_keys_stay_inside_the_cache(tmp_cache):
    from tokenworks.checks import ArgumentError
    from tokenworks.io import cache_dir

    assert cache_dir("models", "vision/titok-16") == tmp_cache / "models" / "vision" / "titok-16"
    for bad in ("", "..", "../x", "a//b", "/abs", "a/../../b"):
        with pytest.raises(ArgumentError, match="cache key"):
            cache_dir("models", bad)


def test_publish_never_escapes_or_overwrites(tmp_cache, tmp_path):
    from tokenworks.io import save_tensors
    from tokenworks.models.store import write_model_info

    src = tmp_cache / "models" / "q" / "m"
    save_tensors(src / "model.safetensors", {"w": torch.randn(2)})
    write_model_info(src, {"k": 1})
    for pattern in ("", "../*", "/etc/*", "q/../../*"):
        r = runner.invoke(app, ["publish", pattern, "--assets", str(tmp_path / "assets")])
        assert r.exit_code == 2 and "PATTERN" in r.output, (pattern, r.output)
    theirs = tmp_path / "assets" / "q" / "m"
    theirs.mkdir(parents=True)
    (theirs / "model.safetensors").write_bytes(b"their weights")
    r = runner.invoke(app, ["publish", "q/*", "--assets", str(tmp_path / "assets")])
    assert r.exit_code == 2 and "--assets" in r.output
    assert (theirs / "model.safetensors").read_bytes() == b"their weights"
