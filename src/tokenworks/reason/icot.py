"""Baseline: iCoT, stepwise internalization of the chain of thought (Deng et al. 2024).

Baseline (not one of the index's papers): starting from the CoT model, training removes the
chain's leading steps stage by stage (stage ``k``: the first ``k`` steps are gone, nothing
replaces them) with the optimizer reset per stage, until the model answers directly; it is
Coconut's curriculum without thoughts, the control that shows what the thoughts add. At
inference it decodes tokens only (whatever steps it still writes, then the answer).
Deviations: steps are removed whole (the paper removes a number of tokens per epoch), and no
"removal smoothing" or optimizer-reset tricks beyond the per-stage reset.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenworks.reason.cot import _TokensOnly
from tokenworks.registry import register

__all__ = ["StepwiseInternalization"]


@register("icot", family="LAT", cite="Deng et al. 2024, stepwise internalization (iCoT)")
@dataclass(kw_only=True)
class StepwiseInternalization(_TokensOnly):
    """Baseline: the iCoT model decodes tokens only; its chain was internalized in training."""
