"""The task model's training command on a tiny configuration of the committed recipe."""

import json

import pytest
import torch

from tokenworks.kvcache import task_model as tm
from tokenworks.kvcache import tasks

from kv_models import task_tokenizer


@pytest.fixture
def small_prose(monkeypatch):
    """Train on the (smaller) held-out split so the test does not tokenize the whole corpus."""
    tok = task_tokenizer()
    test_stream = tasks.prose_stream(tok, "test")
    monkeypatch.setattr(tasks, "prose_stream", lambda tokenizer, split="test": test_stream)
    monkeypatch.setattr(tm, "reference_tokenizer", lambda: tok, raising=False)
    import tokenworks.models

    monkeypatch.setattr(tokenworks.models, "reference_tokenizer", lambda *a, **k: tok)
    return tok


def test_cli_trains_a_tiny_task_model_that_loads_back(tmp_cache, small_prose, tmp_path):
    from typer.testing import CliRunner

    from tokenworks.cli import app

    out = tmp_path / "task-model"
    res = CliRunner().invoke(app, ["train", "kv-task-model", "--tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "tokenworks.json").read_text())
    assert info["fingerprint"] == tm.tiny_config().fingerprint()
    assert 0.0 <= info["retrieval_probe"]["exact_match"] <= 1.0
    from safetensors.torch import load_file

    weights = load_file(str(out / "model.safetensors"))
    assert all(t.dtype == torch.float16 for t in weights.values())
    # the loader finds it by fingerprint (here: via TOKENWORKS_ASSETS pointing at its parent)
    import os

    (tmp_path / "assets" / "kv").mkdir(parents=True)
    (out).rename(tmp_path / "assets" / "kv" / "task-model")
    os.environ["TOKENWORKS_ASSETS"] = str(tmp_path / "assets")
    model, tok = tm.task_model(config=tm.tiny_config(), train_if_missing=False)
    assert model.dtype == torch.float32 and model.config.num_hidden_layers == 2
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all()


def test_training_is_seeded_and_resumes_from_its_checkpoint(tmp_cache, small_prose, tmp_path):
    from tokenworks.io import load_tensors

    cfg = tm.tiny_config()
    tm.train_task_model(tmp_path / "a", cfg, ckpt_dir=tmp_path / "run", fp16=False)
    tm.train_task_model(tmp_path / "b", cfg, ckpt_dir=tmp_path / "run", fp16=False)  # resumes at the end
    tm.train_task_model(tmp_path / "c", cfg, ckpt_dir=tmp_path / "run-fresh", fp16=False)
    wa, wb, wc = (load_tensors(tmp_path / d / "model.safetensors") for d in "abc")
    assert all(torch.equal(wa[k], wb[k]) and torch.equal(wa[k], wc[k]) for k in wa)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == cfg.steps


def test_missing_model_without_training_is_a_clear_error(tmp_cache):
    with pytest.raises(FileNotFoundError, match="kv-task-model"):
        tm.task_model(config=tm.tiny_config(seed=99), train_if_missing=False)


def test_bad_recipe_names_the_field():
    with pytest.raises(ValueError, match="stages"):
        tm.TaskModelConfig(stages=((10, 64, 4, 8), (5, 64, 4, 8)))
    with pytest.raises(ValueError, match="record_frac"):
        tm.TaskModelConfig(copy_frac=0.8, record_frac=0.5)
