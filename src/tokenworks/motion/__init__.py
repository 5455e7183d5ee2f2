"""Motion as tokens: a motion tokenizer over real motion capture and generators over its tokens.

- :mod:`tokenworks.motion.tokenizer` (VIS): 1-D conv encoder/decoder over time, 4x temporal
  downsampling, a quantizer from :mod:`tokenworks.quantize` (FSQ by default); MPJPE.
- :mod:`tokenworks.motion.classifier`: the motion feature extractor behind ``fd_local`` and the
  label accuracy of generated motions.
- :mod:`tokenworks.motion.base` (GEN): the generator interface (``generate(labels, lengths=,
  steps=, seed=) -> GenerationResult``) and shared mechanics; one module per method:
  ``ar`` (T2M-GPT-style baseline), ``mmm`` (P16), ``bamm`` (P15), ``m2dm`` (P41).
- :mod:`tokenworks.motion.train`: training commands and the cached / committed models.

Data: :mod:`tokenworks.data.motion` (CMU BVH + DeepMimic clips on one 15-joint skeleton).
"""

from tokenworks.motion.ar import ARGenerator
from tokenworks.motion.bamm import BAMMGenerator, hybrid_mask
from tokenworks.motion.base import GenerationResult, MotionGenerator
from tokenworks.motion.classifier import ClassifierConfig, MotionClassifier
from tokenworks.motion.m2dm import M2DMGenerator, code_importance, mask_probability, masking_times
from tokenworks.motion.mmm import MMMGenerator, edit_mask
from tokenworks.motion.tokenizer import MotionTokenizer, TokenizerConfig, mpjpe

__all__ = [
    "ARGenerator",
    "BAMMGenerator",
    "ClassifierConfig",
    "GenerationResult",
    "M2DMGenerator",
    "MMMGenerator",
    "MotionClassifier",
    "MotionGenerator",
    "MotionTokenizer",
    "TokenizerConfig",
    "code_importance",
    "edit_mask",
    "hybrid_mask",
    "mask_probability",
    "masking_times",
    "mpjpe",
]
