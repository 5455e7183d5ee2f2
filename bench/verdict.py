"""The verdict rule of the benchmark suites: a claim is judged on the control's curve, against
the seed spread.

A claim "method beats control at equal rate" (PSNR at equal bits, NLL at equal PSNR, ...) is
judged by interpolating the *control's curve* at the method's rate, not against one control
point:

    gap = sign * (y_method - control_curve(x_method))

with ``sign = +1`` when higher y is better, ``-1`` when lower is better; the curve is linear
in ``x`` (or in ``log x`` with ``log_x=True``) between the control's points and is not
extrapolated beyond them. A method outside the control's x range is judged by dominance over
the nearest end point, when ``x_higher_is_better`` says which x side is better (PSNR on an
NLL-vs-PSNR curve): beyond the best end point (better x) *and* better y than it by more than
the spread -> held; short of the worst end point (worse x) *and* worse y than it by more than
the spread -> did not hold; anything else outside the range gets no verdict.
The method's point is the mean over its seeds; the uncertainty is the seed spread

    spread = range(method seeds) + range(control seeds at the interpolation points)

(``range`` = max - min; with one seed the range is 0, so one-seed rows can say "held"
only if the caller asks for at least ``min_seeds`` seeds, which it should: the default is 3).
The verdict is ``held`` when ``gap > spread``, ``did not hold`` when ``gap < -spread``
(the control is better beyond noise) and ``within seed spread`` otherwise; ``too few seeds``
and ``outside the control's range`` say why no verdict was computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Verdict", "interpolate", "judge"]

HELD, NOT_HELD, TIE, FEW, OUTSIDE = "held", "did not hold", "within seed spread", "too few seeds", "outside the control's range"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    gap: float  # signed so that > 0 favours the method (nan when not computed)
    spread: float
    control_at_x: float
    x: float
    y: float

    @property
    def held(self) -> bool:
        return self.verdict.startswith(HELD)

    def text(self, unit: str = "") -> str:
        if math.isnan(self.gap):
            return self.verdict
        return f"{self.verdict} (gap {self.gap:+.2f}{unit} vs seed spread {self.spread:.2f}{unit})"


def _check_points(name: str, pts: Sequence[Sequence[float]]) -> list[tuple[float, list[float]]]:
    out = []
    for p in pts:
        if len(p) != 2:
            raise ValueError(f"{name} must be (x, ys) pairs, got {p!r}")
        x, ys = p
        ys = [float(v) for v in (ys if isinstance(ys, (list, tuple)) else [ys])]
        if not ys or not all(math.isfinite(v) for v in ys) or not math.isfinite(float(x)):
            raise ValueError(f"{name} must hold finite numbers, got {p!r}")
        out.append((float(x), ys))
    if not out:
        raise ValueError(f"{name} must hold at least one point")
    return sorted(out, key=lambda p: p[0])


def interpolate(curve: Sequence[tuple[float, float]], x: float, *, log_x: bool = False) -> float:
    """y of the piecewise-linear curve through ``curve`` (x, y) points at ``x``; nan outside
    [min x, max x]. Points with equal x are averaged."""
    pts: dict[float, list[float]] = {}
    for cx, cy in curve:
        pts.setdefault(float(cx), []).append(float(cy))
    xs = sorted(pts)
    ys = [sum(pts[v]) / len(pts[v]) for v in xs]
    f = math.log if log_x else (lambda v: v)
    if not xs or x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return float("nan")
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 - 1e-9 <= x <= x1 + 1e-9:
            t = 0.0 if x1 == x0 else (f(x) - f(x0)) / (f(x1) - f(x0))
            return y0 + min(max(t, 0.0), 1.0) * (y1 - y0)
    return ys[0]


def _seeds_at(pts: list[tuple[float, list[float]]], x: float) -> float:
    """Seed range of the control at x: the larger range of the two bracketing points."""
    xs = [p[0] for p in pts]
    lo = max([i for i, v in enumerate(xs) if v <= x + 1e-9], default=0)
    hi = min([i for i, v in enumerate(xs) if v >= x - 1e-9], default=len(xs) - 1)
    return max(max(pts[i][1]) - min(pts[i][1]) for i in {lo, hi})


def judge(method: Sequence[float] | tuple[float, Sequence[float]], control: Sequence[tuple[float, Sequence[float] | float]], *,
          higher_is_better: bool = True, log_x: bool = False, min_seeds: int = 3, x: float | None = None,
          x_higher_is_better: bool | None = None) -> Verdict:  # fmt: skip
    """Judge ``method`` = (x, [y per seed]) against the control's curve [(x, [y per seed]), ...].

    ``min_seeds``: the method and every control point used must have at least this many seeds,
    else the verdict is "too few seeds" (the gap is still reported).
    """
    (mx, mys), = _check_points("method", [method])
    if x is not None:
        mx = float(x)
    pts = _check_points("control", control)
    y = sum(mys) / len(mys)
    sign = 1.0 if higher_is_better else -1.0
    at = interpolate([(px, sum(ys) / len(ys)) for px, ys in pts], mx, log_x=log_x)
    if math.isnan(at):
        if x_higher_is_better is None:
            return Verdict(OUTSIDE, float("nan"), float("nan"), at, mx, y)
        lo, hi = pts[0], pts[-1]
        best, worst = (hi, lo) if x_higher_is_better else (lo, hi)
        beyond_best = mx > hi[0] if x_higher_is_better else mx < lo[0]
        end = best if beyond_best else worst
        end_y = sum(end[1]) / len(end[1])
        gap = sign * (y - end_y)
        spread = (max(mys) - min(mys)) + (max(end[1]) - min(end[1]))
        if len(mys) < min_seeds or len(end[1]) < min_seeds:
            return Verdict(FEW, gap, spread, end_y, mx, y)
        if beyond_best and gap > spread:
            return Verdict(HELD + " (dominates the control's best point)", gap, spread, end_y, mx, y)
        if not beyond_best and gap < -spread:
            return Verdict(NOT_HELD + " (dominated by the control's worst point)", gap, spread, end_y, mx, y)
        return Verdict(OUTSIDE, gap, spread, end_y, mx, y)
    gap = sign * (y - at)
    spread = (max(mys) - min(mys)) + _seeds_at(pts, mx)
    xs = [p[0] for p in pts]
    used = [p for p in pts if p[0] in {max([v for v in xs if v <= mx + 1e-9], default=xs[0]), min([v for v in xs if v >= mx - 1e-9], default=xs[-1])}]
    if len(mys) < min_seeds or any(len(p[1]) < min_seeds for p in used):
        return Verdict(FEW, gap, spread, at, mx, y)
    if gap > spread:
        return Verdict(HELD, gap, spread, at, mx, y)
    if gap < -spread:
        return Verdict(NOT_HELD, gap, spread, at, mx, y)
    return Verdict(TIE, gap, spread, at, mx, y)
