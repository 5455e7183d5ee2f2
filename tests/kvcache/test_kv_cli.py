"""``tokenworks kv generate``: a policy on a user's own local model folder, from the shell."""

import re

import torch
from typer.testing import CliRunner

from kv_models import task_tokenizer
from tokenworks.cli import app


def _model_dir(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = task_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, pad_token_id=tok.pad_token_id, eos_token_id=None, bos_token_id=None)  # fmt: skip
    path = tmp_path / "my-model"
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _agree(output: str) -> tuple[int, int]:
    m = re.search(r"the first (\d+) of (\d+) generated tokens agree", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


def test_generate_with_a_policy_on_a_local_model(tmp_path):
    path = _model_dir(tmp_path)
    prompt = "The committee shall report to the council on the state of the union every year. " * 3
    run = CliRunner().invoke(app, ["kv", "generate", str(path), "--policy", "full", "--prompt", prompt, "--max-new-tokens", "8"])
    assert run.exit_code == 0, run.output
    assert _agree(run.output) == (8, 8)  # keeping everything changes nothing
    run = CliRunner().invoke(app, ["kv", "generate", str(path), "--policy", "streaming_llm", "--budget", "8",
                                   "--option", "sinks=2", "--prompt", prompt, "--max-new-tokens", "8"])  # fmt: skip
    assert run.exit_code == 0, run.output
    held = [float(x) for x in re.findall(r"([\d.]+) MB", run.output)]
    assert len(held) == 2 and held[1] < held[0], run.output  # the policy's cache really holds less


def test_generate_errors_name_the_argument(tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["kv", "generate", str(tmp_path / "nope"), "--prompt", "hi"]).output
    assert "local model folder" in out
    path = _model_dir(tmp_path)
    assert "--policy must be one of" in runner.invoke(app, ["kv", "generate", str(path), "--policy", "magic", "--prompt", "hi"]).output
    assert "exactly one of --prompt or --prompt-file" in runner.invoke(app, ["kv", "generate", str(path)]).output
    assert "budget" in runner.invoke(app, ["kv", "generate", str(path), "--budget", "0", "--prompt", "hi"]).output
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    assert "UTF-8" in runner.invoke(app, ["kv", "generate", str(path), "--prompt-file", str(tmp_path / "bad.txt")]).output
