"""The kv-cache suite's own machinery: kvpress presses held to the budget like our policies,
and a loud failure if kvpress changes the private hook the bench overrides."""

import math
import sys
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache

from kv_models import tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
kv_cache = pytest.importorskip("bench.suites.kv_cache")
kvpress = pytest.importorskip("kvpress")


def test_ahead_is_the_largest_safe_keep():
    """Brute force: the largest k such that k + d <= ceil(b (seen + d)) for every d in 0..lag."""
    for b in (0.1, 0.25, 0.5, 0.75):
        for seen in (7, 40, 333):
            for lag in (0, 1, 5, 15):
                k = kv_cache._ahead(b, seen, lag)
                ok = [j for j in range(1, seen + 1) if all(j + d <= math.ceil(b * (seen + d)) for d in range(lag + 1))]
                assert k == max(ok + [1])


def test_kvpress_override_fails_loudly_when_kvpress_changes(monkeypatch):
    kv_cache._check_kvpress_target_hook()  # the installed kvpress: fine
    monkeypatch.delattr(kvpress.DecodingPress, "_resolve_target_size")
    with pytest.raises(RuntimeError, match="_resolve_target_size"):
        kv_cache._check_kvpress_target_hook()
    monkeypatch.undo()
    monkeypatch.setattr(kvpress.DecodingPress, "forward_hook", lambda self, *a, **k: None)  # no longer calls it
    with pytest.raises(RuntimeError, match="forward_hook"):
        kv_cache._check_kvpress_target_hook()


@pytest.mark.parametrize("cls_name", ["StreamingLLMPress", "TOVAPress"])
def test_streaming_kvpress_presses_hold_the_budget_at_every_step(cls_name):
    """Prefill press + kvpress's DecodingPress with the bench's fraction target: the cache after
    every forward holds at most ceil(budget x seen) tokens in every layer."""
    model = tiny_model("llama", layers=2, seed=21)
    budget, prompt, T = 0.25, 40, 90
    press = kv_cache._press(cls_name, budget, streaming=True, prompt_len=prompt)
    x = torch.randint(2, 96, (1, T))
    cache = DynamicCache(config=model.config)
    compressed = False
    with press(model), torch.no_grad():
        for t in range(prompt, T + 1):
            ids = x[:, :prompt] if t == prompt else x[:, t - 1 : t]
            pos = torch.arange(t - ids.shape[1], t)
            model(input_ids=ids, past_key_values=cache, cache_position=pos, position_ids=pos[None])
            held = max(layer.keys.shape[2] for layer in cache.layers)
            assert held <= math.ceil(budget * t), (t, held)
            compressed |= held < t
    assert compressed


def test_speed_targets_are_judged_both_ways_on_made_up_ratios():
    t = kv_cache._speed_targets
    assert t("full", 2048, 0.96, "cpu").startswith("met") and t("full", 2048, 0.94, "cuda").startswith("missed")
    assert t("full", 2048, 0.96, "cpu").endswith("(CPU figure)") and not t("full", 2048, 0.96, "cuda").endswith("(CPU figure)")
    assert t("tidal_decode", 8192, 1.01, "cuda").startswith("met") and t("tidal_decode", 8192, 0.99, "cuda").startswith("missed")
    assert t("tidal_decode", 2048, 0.5, "cuda") == "n.a."  # not long context
    assert t("h2o", 32768, 1.5, "cuda").startswith("met") and t("h2o", 32768, 1.49, "cuda").startswith("missed")
    assert t("h2o", 8192, 3.0, "cuda") == "n.a."  # the eviction target is at 32k
