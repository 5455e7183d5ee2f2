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
from tokenworks.reason.hrpo import HRPO, HybridGate, grpo_advantages
from tokenworks.reason.system15 import DepthExit, StepGate, System15
from tokenworks.reason.cache_aug import CacheCoprocessor
from tokenworks.reason.lcm import ConceptModel

__all__ = [
    "CacheCoprocessor", "ChainOfThought", "CoLaR", "Coconut", "ConceptModel", "DepthExit", "HRPO", "HybridGate", "LatentHead", "NoChainOfThought", "PauseTokens", "ReasonOutput",
    "ReasonStats", "Reasoner", "StepGate", "StepwiseInternalization", "System15", "answer_of", "compress", "grpo_advantages", "left_pad",
]  # fmt: skip
