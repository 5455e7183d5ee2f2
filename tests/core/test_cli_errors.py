"""Every case of issue 17's list ends in one clear line: ``Error: ...`` naming the argument
(or the file), exit code 2 for bad input (1 for a handled runtime error), no traceback; and
``--debug`` shows the traceback, a real internal error still shows one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tokenworks.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def run(args, **kw):
    r = runner.invoke(app, [str(a) for a in args], terminal_width=200, **kw)
    out = " ".join(r.output.split())
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), (args, r.exception, r.output)
    return r.exit_code, out


@pytest.fixture
def files(tmp_path, tmp_cache, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = {}
    f["text"] = tmp_path / "r.txt"
    f["text"].write_text("hello")
    f["binary"] = tmp_path / "r.bin"
    f["binary"].write_bytes(bytes(range(256)))
    f["garbage_json"] = tmp_path / "g.json"
    f["garbage_json"].write_text("{ nope")
    f["rowless"] = tmp_path / "rowless.json"
    f["rowless"].write_text(json.dumps({"suites": {}, "rows": []}))
    f["list_json"] = tmp_path / "list.json"
    f["list_json"].write_text("[1, 2]")
    f["empty"] = tmp_path / "empty"
    f["empty"].mkdir()
    g = tmp_path / "garbage-model"
    g.mkdir()
    (g / "config.json").write_text(json.dumps({"model_type": "llama", "method": "patch2d", "options": {}}))
    (g / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    (g / "tokenizer.json").write_text("{}")
    f["garbage_model"] = g
    t = tmp_path / "truncated"
    t.mkdir()
    from tokenworks.io import save_tensors

    save_tensors(t / "model.safetensors", {"w": torch.randn(64)})
    (t / "model.safetensors").write_bytes((t / "model.safetensors").read_bytes()[:-40])
    (t / "config.json").write_text(json.dumps({"model_type": "llama", "method": "patch2d", "options": {}}))
    (t / "tokenizer.json").write_text("{}")
    f["truncated"] = t
    p = tmp_path / "pickled"
    p.mkdir()
    (p / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (p / "pytorch_model.bin").write_bytes(b"\x80\x04crafted pickle")
    f["pickled"] = p
    tj = tmp_path / "tok"
    tj.mkdir()
    (tj / "tokenizer.json").write_text('{"model": {"type": "nonsense"}}')
    f["bad_tokenizer"] = tj
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("some text")
    f["docs"] = tmp_path / "docs"
    return f


CASES = [
    # (args, exit code, what the message must say)
    (["report", "{text}"], 2, "is not valid JSON"),
    (["report", "{binary}"], 2, "is not a UTF-8 text file"),
    (["report", "{garbage_json}"], 2, "is not valid JSON"),
    (["report", "{rowless}"], 2, "holds no result rows"),
    (["report", "{list_json}"], 2, "must hold a JSON dict"),
    (["readme", "--check", "--readme", "{empty}/README.md", "--bench-dir", REPO], 2, "--readme: "),
    (["readme"], 2, "--bench-dir: cannot find the benchmark folder"),  # outside a checkout
    (["publish", ""], 2, "PATTERN: must be a name or glob"),
    (["train", "reference-tokenizer", "--vocab-size", "0"], 2, "'--vocab-size'"),
    (["train", "reference-tokenizer", "--vocab-size", "-5"], 2, "'--vocab-size'"),
    (["tokenizer", "eval", "{bad_tokenizer}", "{docs}"], 2, "cannot be loaded as a tokenizer"),
    (["tokenizer", "eval", "{garbage_json}", "{docs}"], 2, "is not valid JSON"),
    (["vision", "eval", "{garbage_model}"], 2, "is not a safetensors file"),
    (["vision", "eval", "{truncated}"], 2, "is truncated"),
    (["vision", "eval", "{empty}"], 2, "holds no image tokenizer"),
    (["kv", "generate", "{empty}", "--prompt", "hi"], 2, "MODEL: {empty} holds no config.json"),
    (["kv", "generate", "{garbage_model}", "--prompt", "hi"], 2, "is not a safetensors file"),
    (["kv", "generate", "{truncated}", "--prompt", "hi"], 2, "is truncated"),
    (["kv", "generate", "{pickled}", "--prompt", "hi"], 2, "pytorch_model.bin are pickles, which tokenworks does not load"),
    (["train", "reference-lm", "--device", "tpu"], 2, "'--device': must be cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["vision", "train", "patch2d", "--name", "x", "--device", "bogus"], 2, "'--device'"),
    (["kv", "generate", "task-model", "--prompt", "hi", "--device", "tpu"], 2, "'--device'"),
    (["vision", "train", "patch2d", "--name", "x", "--dataset", "bogus"], 2, "'bogus' is not one of 'fashion-mnist', 'mnist5k'"),
    (["list", "--kind", "bogus"], 2, "--kind must be one of ["),
    (["vision", "presets", "--bench-dir", "/nonexistent"], 2, "'--bench-dir'"),
    (["bench", "--bench-dir", "/nonexistent"], 2, "'--bench-dir'"),
    (["bench", "--bench-dir", "{empty}"], 2, "--bench-dir: "),
    (["train", "reference-lm", "--out", "{text}"], 2, "'--out'"),
    (["vision", "train", "titok", "--name", "x", "--set", "num_latents=0"], 2, "--set: num_latents must be >= 1"),
    (["tokenizer", "train", "{docs}", "--out", "{empty}/o", "--recipe", "byte_bpe", "--vocab-size", "100"], 2, "--vocab-size: vocab_size must be >="),
]


@pytest.mark.parametrize("args,code,said", CASES, ids=[" ".join(map(str, c[0]))[:60] for c in CASES])
def test_issue_cases_fail_clearly(files, args, code, said):
    args = [str(a).format(**files) for a in args]
    exit_code, out = run(args)
    assert exit_code == code, out
    assert "Error: " in out and said.format(**files) in out, out


def test_cuda_without_a_gpu_is_refused_up_front(files):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, out = run(["vision", "train", "patch2d", "--name", "x", "--device", "cuda"])
    assert code == 2 and "no CUDA device here" in out


def test_debug_shows_the_traceback_and_internal_errors_keep_theirs(files, monkeypatch):
    r = runner.invoke(app, ["--debug", "report", str(files["garbage_json"])])
    assert r.exit_code != 0 and isinstance(r.exception, ValueError)  # raised, not turned into a line
    import tokenworks.models as models

    def broken(*a, **k):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(models, "reference_tokenizer", broken)
    r = runner.invoke(app, ["train", "reference-tokenizer"])
    assert isinstance(r.exception, RuntimeError)  # not hidden behind an "Error:" line


def test_check_helpers_name_the_argument():
    from tokenworks.checks import ArgumentError, check_device, check_key, check_name

    assert check_name("n", "titok-16") == "titok-16" and check_key("k", "vision/titok-16") == "vision/titok-16"
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-flag", "x" * 101, "a b", "nul\x00"):
        with pytest.raises(ArgumentError, match=r"^n must be"):
            check_name("n", bad)
    for bad in ("", "/a", "a/", "a//b", "a/../b"):
        with pytest.raises(ArgumentError, match=r"^k must be"):
            check_key("k", bad)
    assert check_device("--device", "cpu") == "cpu"
    for bad in ("tpu", "", "cpu:0", "cuda:x", "CUDA", None):
        with pytest.raises(ArgumentError, match="must be cpu, cuda, cuda:N or mps"):
            check_device("--device", bad)
    e = ArgumentError("vocab_size", "must be >= 1, got 0")
    assert (e.arg, e.expected, str(e)) == ("vocab_size", "must be >= 1, got 0", "vocab_size must be >= 1, got 0")


def test_loaders_check_files_before_the_parsers(tmp_path):
    from tokenworks.checks import FileFormatError
    from tokenworks.io import check_safetensors, load_json, load_tensors, save_tensors

    save_tensors(tmp_path / "ok.safetensors", {"a": torch.arange(6).reshape(2, 3), "b": torch.ones(2, dtype=torch.float16)})
    assert set(check_safetensors(tmp_path / "ok.safetensors")) >= {"a", "b"}
    data = (tmp_path / "ok.safetensors").read_bytes()
    for name, blob, said in [
        ("short", data[:5], "only 5 bytes"),
        ("huge-header", (10**12).to_bytes(8, "little") + data[8:], "header length"),
        ("not-json", data[:8] + b"\xff" * (len(data) - 8), "header is not JSON"),
        ("truncated", data[:-3], "is truncated"),
        ("padded", data + b"xx", "is truncated or padded"),
    ]:
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(FileFormatError, match=said):
            load_tensors(tmp_path / name)
    (tmp_path / "j").write_text("[1]")
    with pytest.raises(FileFormatError, match="must hold a JSON dict"):
        load_json(tmp_path / "j", kind=dict)
    with pytest.raises(FileNotFoundError):
        load_json(tmp_path / "missing.json")
