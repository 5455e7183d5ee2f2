"""GEN: image generation over the tokens of :mod:`tokenworks.vision` tokenizers.

- :mod:`~tokenworks.generate.base`: the interface (``generate(labels, steps=, seed=) ->
  GenerationResult``, aligned with :mod:`tokenworks.motion.base`), classifier-free guidance,
  the shared transformer, save/load.
- discrete ids: ``raster-ar`` (baseline, a Llama token prior), ``maskgit`` (baseline),
  ``enat`` (P07);
- continuous latents (:mod:`~tokenworks.generate.latents`): ``mar`` (baseline, flow head),
  ``himar`` (P25), ``xar`` (P32);
- ``dit`` (baseline: a flow-matching DiT over continuous latents) with a switchable attention
  variant from :mod:`~tokenworks.generate.attention` (``full-attention``, ``window-attention``,
  ``pt-dit`` P01, ``fit`` P03);
- :mod:`~tokenworks.generate.flow`: the small flow-matching head and its Euler sampler;
- :mod:`~tokenworks.generate.train`: training commands and the committed generators.
"""

from tokenworks.generate import attention
from tokenworks.generate.ar import RasterAR
from tokenworks.generate.dit import DiT
from tokenworks.generate.base import GenerationResult, ImageGenerator, check_labels, check_steps
from tokenworks.generate.enat import ENAT
from tokenworks.generate.flow import FlowHead, euler, gmm_velocity
from tokenworks.generate.himar import HiMAR
from tokenworks.generate.mar import MAR
from tokenworks.generate.maskgit import MaskGIT, mask_schedule
from tokenworks.generate.xar import XAR

__all__ = [
    "DiT", "ENAT", "MAR", "XAR", "FlowHead", "GenerationResult", "HiMAR", "ImageGenerator", "MaskGIT", "RasterAR",
    "attention", "check_labels", "check_steps", "euler", "gmm_velocity", "mask_schedule",
]  # fmt: skip
