"""Seeds that seed, resume after SIGKILL, and damaged saved files that never crash a run.

The reference for "resumed correctly" is a second, uninterrupted run of the same command with
the same seed, in its own process: the weights must be bit-identical (tokenworks' training
loop re-seeds every step from (seed, step), and the CLI seeds the initialisation). A killed
run must leave no partial output and, once rerun, no temporary file at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from tokenworks.io import load_tensors

SRC = str(Path(__file__).resolve().parents[2] / "src")
# a small patch tokenizer: checkpoints every 50 steps (max(50, steps // 10)), 150 steps
CMD = ["vision", "train", "patch2d", "--steps", "150", "--batch-size", "2", "--dataset", "mnist5k", "--fp32",
       "--set", "width=8", "--set", "latent_dim=4", "--seed", "3"]  # fmt: skip


def _env(cache: Path) -> dict[str, str]:
    env = {**os.environ, "TOKENWORKS_CACHE": str(cache), "TOKENWORKS_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(args, cache: Path, **kw) -> subprocess.Popen:
    code = "import sys; from tokenworks.cli import app; sys.argv = ['tokenworks', *sys.argv[1:]]; app()"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith((".tmp", ".old")))


@pytest.mark.slow
def test_sigkill_after_the_first_checkpoint_then_resume_equals_an_uninterrupted_run(tmp_path):
    cache = tmp_path / "cache"
    runs = cache / "runs" / "vision" / "killed"  # checkpoints sit in a sub-folder named by the recipe's hash
    proc = _cli([*CMD, "--name", "killed"], cache)
    deadline = time.monotonic() + 300
    while not any(runs.rglob("state.json")) if runs.is_dir() else True:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (cache / "models" / "vision" / "killed").exists()  # no partial model
    resumed = _cli([*CMD, "--name", "killed"], cache)
    plain = _cli([*CMD, "--name", "plain"], cache)
    for p in (resumed, plain):
        out = p.communicate(timeout=600)[0].decode()
        assert p.returncode == 0, out
    a = load_tensors(cache / "models" / "vision" / "killed" / "model.safetensors")
    b = load_tensors(cache / "models" / "vision" / "plain" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), max(float((a[k] - b[k]).abs().max()) for k in a)
    assert _leftovers(cache) == []


def test_seed_fixes_the_initialisation(tmp_cache):
    """Two saves with the same recipe and seed are identical whatever the global RNG held
    before (the old code initialised from the global RNG: these differed)."""
    from tokenworks.vision.store import train_and_save
    from tokenworks.vision.train import TokenizerTrainConfig

    outs = []
    for i, seed in enumerate((5, 5)):
        torch.manual_seed(1000 + i)  # whatever the global state was before
        out = tmp_cache / f"m{i}"
        train_and_save(out, "patch2d", {"width": 8, "latent_dim": 4}, TokenizerTrainConfig(steps=1, batch_size=2, warmup=0, seed=seed),
                       dataset="mnist5k", half=False)  # fmt: skip
        outs.append(load_tensors(out / "model.safetensors"))
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


# ---------------------------------------------------------------------------- damaged files
def _tiny_train(ckpt, steps=6):
    from tokenworks.train import TrainConfig, train

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x = torch.randn(32, 3)

    def batch_fn(step, g):
        return x[torch.randint(0, 32, (4,), generator=g)]

    train(model, lambda m, b: m(b).pow(2).mean(), batch_fn, TrainConfig(steps=steps, checkpoint_every=3), ckpt_dir=ckpt, progress=False)
    return model


@pytest.mark.parametrize("damage", ["state.json", "model.safetensors", "optimizer.pt", "pickle"])
def test_a_damaged_checkpoint_is_reported_and_training_starts_over(tmp_path, damage):
    ref = _tiny_train(None)
    ckpt = tmp_path / "run"
    _tiny_train(ckpt, steps=3)  # a checkpoint at step 3 of a 3-step run ...
    c = ckpt / "checkpoint"
    marker = tmp_path / "pwned"
    if damage == "pickle":  # a crafted pickle that would run code if it were unpickled unsafely
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        (c / "optimizer.pt").write_bytes(pickle.dumps(Evil()))
    elif damage == "state.json":
        (c / "state.json").write_text('{"step": "three"')
    else:
        (c / damage).write_bytes(b"\x00garbage" * 10)
    import json

    st = json.loads((c / "state.json").read_text()) if damage != "state.json" else None
    if st is not None:  # ... made to look like one of the 6-step run at step 3
        from tokenworks.train import TrainConfig

        st["config"] = TrainConfig(steps=6, checkpoint_every=3).fingerprint()
        (c / "state.json").write_text(json.dumps(st))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _tiny_train(ckpt)
    assert any("cannot be read" in str(w.message) and "starts over" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert torch.equal(model.weight, ref.weight) and torch.equal(model.bias, ref.bias)
    assert not marker.exists()


def test_a_damaged_cached_model_falls_back_to_the_committed_asset(tmp_cache, tmp_path):
    """A cache entry whose fingerprint matches but whose weights are garbage is reported and
    skipped: the committed asset loads; without one, the model is retrained."""
    import shutil

    from tokenworks.vision.store import pretrained_tokenizer, train_and_save
    from tokenworks.vision.train import TokenizerTrainConfig

    opts, cfg = {"width": 8, "latent_dim": 4}, TokenizerTrainConfig(steps=1, batch_size=2, warmup=0)
    assets = tmp_path / "no-assets"  # TOKENWORKS_ASSETS of tmp_cache
    train_and_save(assets / "vision" / "p", "patch2d", opts, cfg, dataset="mnist5k", half=False)
    good = load_tensors(assets / "vision" / "p" / "model.safetensors")
    cached = tmp_cache / "models" / "vision" / "p"
    shutil.copytree(assets / "vision" / "p", cached)
    (cached / "model.safetensors").write_bytes((cached / "model.safetensors").read_bytes()[:100])  # truncated
    for _ in range(2):  # and again: the damaged entry never makes a later run crash
        with pytest.warns(UserWarning, match=r"skipping the saved model .*models/vision/p"):
            tok = pretrained_tokenizer("p", "patch2d", opts, cfg, dataset="mnist5k", train_if_missing=False)
        assert all(torch.equal(v, good[k]) for k, v in tok.state_dict().items())
    # no asset: retrained into the cache, replacing the damaged entry
    shutil.rmtree(assets)
    with pytest.warns(UserWarning, match="skipping"):
        tok = pretrained_tokenizer("p", "patch2d", opts, cfg, dataset="mnist5k")
    assert load_tensors(cached / "model.safetensors").keys() == good.keys()
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]
