"""`tokenworks tokenizer train|eval` on folders of text files."""

import json

from typer.testing import CliRunner

from tokenworks.cli import app
from tokenworks.text import load_tokenizer

runner = CliRunner()


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _folder(tmp_path, small_corpus):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    for i, doc in enumerate(small_corpus[:12]):
        (folder / ("sub" if i % 2 else ".") / f"{i}.txt").write_text(doc, encoding="utf-8")
    return folder


def test_train_then_eval_a_tokenizer_from_a_folder(tmp_path, small_corpus):
    folder = _folder(tmp_path, small_corpus)
    out = tmp_path / "tok"
    r = runner.invoke(app, ["tokenizer", "train", str(folder), "--out", str(out), "--recipe", "kl3m_char_bpe",
                            "--vocab-size", "400", "--option", "max_chars=2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    tok = load_tokenizer(out)
    assert json.loads((out / "recipe.json").read_text())["options"]["max_chars"] == 2
    assert max(len(t) for t in tok.get_vocab() if not t.startswith("<|")) <= 2
    r = runner.invoke(app, ["tokenizer", "eval", str(out), str(folder), "--noise-rate", "0.1", "--json"])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.output)
    assert set(metrics) == {"bytes_per_token", "fertility", "vocab_use", "vocab_size", "stability@0.1"}
    assert 1.0 < metrics["bytes_per_token"] <= 2.0


def test_cli_errors_are_clear(tmp_path, small_corpus):
    folder = _folder(tmp_path, small_corpus)
    r = runner.invoke(app, ["tokenizer", "train", str(folder), "--out", str(tmp_path / "x"), "--recipe", "wordpiece"])
    assert r.exit_code == 2 and "--recipe must be one of" in said(r)
    r = runner.invoke(app, ["tokenizer", "train", str(folder), "--out", str(tmp_path / "x"), "--vocab-size", "100"])
    assert r.exit_code == 2 and "vocab_size must be >=" in said(r)
    r = runner.invoke(app, ["tokenizer", "train", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "does not exist" in said(r)
    (folder / "bad.txt").write_bytes(b"\xff\xfe bad")
    r = runner.invoke(app, ["tokenizer", "train", str(folder), "--out", str(tmp_path / "x"), "--vocab-size", "2048"])
    assert r.exit_code == 2 and "not valid UTF-8" in said(r) and "bad.txt" in said(r)
    r = runner.invoke(app, ["tokenizer", "eval", str(tmp_path), str(folder)])
    assert r.exit_code == 2 and "no tokenizer at" in said(r)
    r = runner.invoke(app, ["tokenizer", "train", str(folder), "--out", str(tmp_path / "x"), "--option", "cased"])
    assert r.exit_code == 2 and "key=value" in said(r)
    assert not (tmp_path / "x").exists()
