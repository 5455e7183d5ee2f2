"""``tokenworks decode generate`` on local model folders."""

import re

import torch
from typer.testing import CliRunner

from tokenworks.cli import app


def _tokenizer():
    from transformers import AutoTokenizer

    from tokenworks.io import assets_dir

    return AutoTokenizer.from_pretrained(str(assets_dir() / "reference-lm"))


def _model_dir(tmp_path, name, layers, seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)  # fmt: skip
    path = tmp_path / name
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_decode_generate_on_local_folders_is_lossless(tmp_path):
    t, d = _model_dir(tmp_path, "target", 2, 0), _model_dir(tmp_path, "draft", 1, 1)
    args = ["decode", "generate", str(t), "--draft", str(d), "--k", "3", "--max-new-tokens", "10",
            "--prompt", "The state of the union is strong", "--prompt", "Congress shall"]  # fmt: skip
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    m = re.search(r"(\d+) of (\d+) outputs identical", run.output)
    assert m and m.group(1) == m.group(2) == "2", run.output
    run = CliRunner().invoke(app, ["decode", "generate", str(t), "--method", "prompt_lookup", "--prompt", "a b a b a b", "--max-new-tokens", "6"])
    assert run.exit_code == 0 and "1 of 1 outputs identical" in run.output, run.output


def test_decode_generate_errors_name_the_argument(tmp_path):
    runner = CliRunner()
    t = _model_dir(tmp_path, "target", 1, 0)
    out = lambda *a: runner.invoke(app, ["decode", "generate", *a]).output  # noqa: E731
    assert "TARGET must be a local model folder" in out(str(tmp_path / "nope"), "--method", "prompt_lookup", "--prompt", "hi")
    assert "--method must be one of" in out(str(t), "--method", "magic", "--prompt", "hi")
    assert "--draft: is required" in out(str(t), "--prompt", "hi")
    assert "'--k'" in out(str(t), "--method", "prompt_lookup", "--k", "0", "--prompt", "hi")
    assert "exactly one of them" in out(str(t), "--method", "prompt_lookup")
    assert "uses no draft model" in out(str(t), "--method", "prompt_lookup", "--draft", str(t), "--prompt", "hi")
