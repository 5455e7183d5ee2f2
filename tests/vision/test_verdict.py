"""The verdict rule (bench/verdict.py) on made-up curves whose answer is known both ways."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.verdict import interpolate, judge  # noqa: E402


def test_interpolate_matches_numpy():
    rng = np.random.default_rng(0)
    xs = np.sort(rng.uniform(10, 500, 6))
    ys = rng.normal(size=6)
    for x in rng.uniform(xs[0], xs[-1], 20):
        assert interpolate(list(zip(xs, ys)), float(x)) == pytest.approx(np.interp(x, xs, ys))
        assert interpolate(list(zip(xs, ys)), float(x), log_x=True) == pytest.approx(np.interp(np.log(x), np.log(xs), ys))
    assert math.isnan(interpolate(list(zip(xs, ys)), float(xs[0]) - 1))
    assert math.isnan(interpolate(list(zip(xs, ys)), float(xs[-1]) + 1))


def _control(noise: float = 0.05):
    """PSNR = 10 + 1.5 log2(bits), three seeds at +-noise."""
    return [(b, [10 + 1.5 * math.log2(b) + d for d in (-noise, 0.0, noise)]) for b in (80, 160, 320, 640)]


def test_method_above_the_curve_beyond_the_spread_is_held():
    at = 10 + 1.5 * math.log2(240)  # between two control points: the curve, not a point, decides
    v = judge((240, [at + 0.9, at + 1.0, at + 1.1]), _control(), log_x=True)
    assert v.verdict == "held" and v.gap == pytest.approx(1.0, abs=1e-6) and v.spread == pytest.approx(0.3)


def test_method_below_the_curve_did_not_hold():
    at = 10 + 1.5 * math.log2(240)
    v = judge((240, [at - 1.1, at - 1.0, at - 0.9]), _control(), log_x=True)
    assert v.verdict == "did not hold" and v.gap == pytest.approx(-1.0, abs=1e-6)


def test_beating_the_nearest_point_but_not_the_curve_is_not_held():
    """At 300 bits the method beats the 160-bit control point by far but sits on the curve."""
    at = 10 + 1.5 * math.log2(300)
    v = judge((300, [at - 0.05, at, at + 0.05]), _control(), log_x=True)
    assert v.verdict == "within seed spread"


def test_gap_inside_the_seed_spread_is_not_held():
    at = 10 + 1.5 * math.log2(160)
    v = judge((160, [at - 0.5, at + 0.3, at + 0.8]), _control(), log_x=True)  # mean +0.2, range 1.3
    assert v.verdict == "within seed spread" and v.gap == pytest.approx(0.2, abs=1e-6)


def test_lower_is_better_flips_the_sign():
    """NLL vs PSNR: the control's NLL rises with PSNR; a method with lower NLL at its PSNR holds."""
    control = [(p, [100 + 20 * (p - 18) + d for d in (-1, 0, 1)]) for p in (18.0, 19.0, 20.0)]
    good = judge((19.5, [128, 129, 130]), control, higher_is_better=False)  # curve: 130 at 19.5
    assert good.verdict == "within seed spread"  # gap 1 < spread 2 + 2
    better = judge((19.5, [110, 111, 112]), control, higher_is_better=False)
    assert better.verdict == "held" and better.gap == pytest.approx(19.0)
    worse = judge((19.5, [150, 151, 152]), control, higher_is_better=False)
    assert worse.verdict == "did not hold"


def test_no_verdict_outside_the_range_or_with_one_seed():
    assert judge((1000, [50, 50, 50]), _control(), log_x=True).verdict == "outside the control's range"
    one = judge((240, [30.0]), _control(), log_x=True)
    assert one.verdict == "too few seeds" and one.gap > 0
    assert judge((240, [30.0]), _control(), log_x=True, min_seeds=1).verdict == "held"


def test_bad_input():
    with pytest.raises(ValueError, match="control must hold at least one point"):
        judge((1, [1.0]), [])
    with pytest.raises(ValueError, match="finite"):
        judge((1, [float("nan")]), _control())


def test_outside_the_range_dominance_decides_both_ways():
    """NLL vs PSNR (x = PSNR, higher x better; y = NLL, lower better): a method past the best
    control point with lower NLL dominates it; one short of the worst point with higher NLL is
    dominated; a method past the best point with *higher* NLL gets no verdict (trade-off)."""
    control = [(p, [100 + 20 * (p - 18) + d for d in (-1, 0, 1)]) for p in (18.0, 19.0, 20.0)]  # NLL 100..140
    kw = {"higher_is_better": False, "x_higher_is_better": True}
    dom = judge((21.0, [120, 121, 122]), control, **kw)  # better PSNR than 20 dB and NLL 121 < 140
    assert dom.held and dom.verdict.startswith("held") and dom.gap == pytest.approx(19.0)
    sub = judge((17.5, [110, 111, 112]), control, **kw)  # worse PSNR than 18 dB and NLL 111 > 100
    assert sub.verdict.startswith("did not hold") and sub.gap == pytest.approx(-11.0)
    trade = judge((21.0, [150, 151, 152]), control, **kw)
    assert trade.verdict == "outside the control's range"
    cheap = judge((17.5, [80, 81, 82]), control, **kw)  # worse PSNR but lower NLL: a trade-off too
    assert cheap.verdict == "outside the control's range"
    assert judge((21.0, [121.0]), control, **kw).verdict == "too few seeds"
