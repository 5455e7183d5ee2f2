import json
import os

import pytest
import torch

from tokenworks.checks import check_choice, check_float, check_int, check_int_list, check_tensor
from tokenworks.io import atomic_dir, atomic_write_json, load_json, load_tensors, save_tensors


def test_checks_name_the_argument():
    with pytest.raises(ValueError, match=r"steps must be >= 1, got 0"):
        check_int("steps", 0, min=1)
    with pytest.raises(TypeError, match="steps must be an integer"):
        check_int("steps", 1.5)
    with pytest.raises(TypeError, match="flag must be an integer"):
        check_int("flag", True)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        check_float("rate", 1.5, min=0, max=1)
    with pytest.raises(ValueError, match=r"lr must be in \(0"):
        check_float("lr", 0.0, min=0, min_open=True)
    with pytest.raises(ValueError, match="mode must be one of"):
        check_choice("mode", "c", ("a", "b"))
    with pytest.raises(ValueError, match=r"levels\[1\] must be >= 3"):
        check_int_list("levels", [4, 2], min=3)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\)"):
        check_tensor("x", torch.zeros(2, 4), shape=(None, 3))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        check_tensor("x", torch.zeros(2, dtype=torch.long), floating=True)


def test_atomic_json_and_tensors_round_trip(tmp_path):
    atomic_write_json(tmp_path / "a" / "x.json", {"k": [1, 2]})
    assert load_json(tmp_path / "a" / "x.json") == {"k": [1, 2]}
    w = torch.randn(3, 4)
    tied = {"a": w, "b": w}  # shared storage is allowed (cloned on save)
    save_tensors(tmp_path / "w.safetensors", tied)
    back = load_tensors(tmp_path / "w.safetensors")
    assert torch.equal(back["a"], w) and torch.equal(back["b"], w)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_atomic_dir_keeps_the_old_version_when_writing_fails(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as d:
        (d / "v.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "v.txt").write_text("2")
            raise RuntimeError("killed")
    assert (target / "v.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_dir(target) as d:
        (d / "v.txt").write_text("3")
    assert (target / "v.txt").read_text() == "3"
