"""LAT: reasoning in latent space (continuous thoughts, compressed latent chains) against
chain-of-thought, on tasks with verifiable answers.

    >>> import tokenworks as tw
    >>> r = tw.create("coconut", latent_steps=4)
    >>> out = r.generate(model, prompts, eos_token_id=tok.eos_token_id)   # HF causal LM
    >>> out.tokens, out.stats.forwards, out.stats.latent_steps
"""

from tokenworks.reason.base import ReasonOutput, Reasoner, ReasonStats, answer_of, left_pad
from tokenworks.reason.cot import ChainOfThought, NoChainOfThought
from tokenworks.reason.icot import StepwiseInternalization
from tokenworks.reason.pause import PauseTokens
from tokenworks.reason.coconut import Coconut
from tokenworks.reason.colar import CoLaR, LatentHead, compress

__all__ = [
    "ChainOfThought", "CoLaR", "Coconut", "LatentHead", "NoChainOfThought", "PauseTokens", "ReasonOutput",
    "ReasonStats", "Reasoner", "StepwiseInternalization", "answer_of", "compress", "left_pad",
]  # fmt: skip
