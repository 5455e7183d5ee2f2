"""The training loop: reproducible by seed, checkpoints atomically, resumes after a kill."""

import pytest
import torch
from torch import nn

from tokenworks.train import TrainConfig, train


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.Linear(16, 1))
    w = torch.randn(4, 1)

    def batch_fn(step, g):
        x = torch.randn(8, 4, generator=g)
        return x, x @ w

    def loss_fn(m, batch):
        x, y = batch
        return nn.functional.mse_loss(m(x), y)

    return model, loss_fn, batch_fn


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_same_weights_and_loss_goes_down():
    cfg = TrainConfig(steps=60, lr=1e-2, seed=3, checkpoint_every=0)
    runs = []
    for _ in range(2):
        model, loss_fn, batch_fn = _problem()
        res = train(model, loss_fn, batch_fn, cfg)
        runs.append((model, res))
    assert torch.equal(_weights(runs[0][0]), _weights(runs[1][0]))
    hist = [l for _, l in runs[0][1].history]
    assert sum(hist[-10:]) < 0.5 * sum(hist[:10])


class Killed(Exception):
    pass


def test_resume_after_interrupt_gives_the_uninterrupted_result(tmp_path):
    cfg = TrainConfig(steps=40, lr=1e-2, seed=1, checkpoint_every=10, warmup=5)
    ref_model, loss_fn, batch_fn = _problem()
    train(ref_model, loss_fn, batch_fn, cfg)

    model, loss_fn, batch_fn = _problem()

    def dying_loss(m, batch, calls=[0]):
        calls[0] += 1
        if calls[0] == 26:  # killed during step 26: checkpoint at step 20 is on disk
            raise Killed
        return loss_fn(m, batch)

    with pytest.raises(Killed):
        train(model, dying_loss, batch_fn, cfg, ckpt_dir=tmp_path)
    assert (tmp_path / "checkpoint" / "state.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    fresh, loss_fn, batch_fn = _problem()  # a new process: new model object, same init
    res = train(fresh, loss_fn, batch_fn, cfg, ckpt_dir=tmp_path)
    assert res.resumed_from == 20
    assert len(res.history) == 40
    assert torch.equal(_weights(fresh), _weights(ref_model))


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    model, loss_fn, batch_fn = _problem()
    train(model, loss_fn, batch_fn, TrainConfig(steps=5, checkpoint_every=5), ckpt_dir=tmp_path)
    with pytest.raises(ValueError, match="another training config"):
        train(model, loss_fn, batch_fn, TrainConfig(steps=5, lr=0.5, checkpoint_every=5), ckpt_dir=tmp_path)


def test_config_is_validated():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr must be in"):
        TrainConfig(steps=1, lr=0)
    with pytest.raises(ValueError, match="warmup must be <= 3"):
        TrainConfig(steps=3, warmup=5)


def test_non_finite_loss_stops_with_a_clear_error():
    model, _, batch_fn = _problem()
    with pytest.raises(FloatingPointError, match="loss is nan at step 0"):
        train(model, lambda m, b: m(b[0]).sum() * float("nan"), batch_fn, TrainConfig(steps=3))


def test_runs_under_torch_distributed(tmp_path):
    """Under torchrun the loop wraps the model in DDP; one gloo process stands in for it here."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        model, loss_fn, batch_fn = _problem()
        res = train(model, loss_fn, batch_fn, TrainConfig(steps=5, checkpoint_every=5), ckpt_dir=tmp_path / "run")
        assert res.steps == 5 and (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()
    finally:
        dist.destroy_process_group()


def test_param_groups_scale_the_scheduled_learning_rate():
    """Adam's first step moves every weight by lr (the update is m / sqrt(v) = sign(grad)), so a
    group with lr_scale s moves by s * lr and one with lr_scale 0 does not move."""
    torch.manual_seed(0)
    a, b, c = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)
    model = nn.Sequential(a, b, c)
    before = [p.detach().clone() for p in model.parameters()]
    groups = [{"params": list(a.parameters())}, {"params": list(b.parameters()), "lr_scale": 0.25}, {"params": list(c.parameters()), "lr_scale": 0.0}]
    cfg = TrainConfig(steps=1, lr=1e-2, grad_clip=None, checkpoint_every=0)
    train(model, lambda m, x: m(x).pow(2).sum(), lambda step, g: torch.randn(5, 3, generator=g), cfg, params=groups, progress=False)
    moved = [(p.detach() - q).abs() for p, q in zip(model.parameters(), before)]
    for d, scale in zip(moved, (1.0, 1.0, 0.25, 0.25, 0.0, 0.0)):
        assert torch.allclose(d, torch.full_like(d, 1e-2 * scale), atol=1e-6 * max(scale, 1e-3)), (scale, d)
