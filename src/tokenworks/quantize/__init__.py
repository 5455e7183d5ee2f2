"""VIS quantizers: ``quantized, indices, aux_loss = q(x)`` and ``q.indices_to_codes(indices)``.

``kmeans`` is the public Lloyd's k-means for frozen codebooks.

Standard quantizers are thin adapters over ``vector-quantize-pytorch`` (vq, vq_cosine,
vq_kmeans, fsq, lfq, rvq); the papers' own bottlenecks are written here: P20 binary tokens,
P21 RobusTok neighbour perturbation, P06 VAT Gaussian multi-scale residual quantization.
"""

from tokenworks.quantize.base import Quantizer
from tokenworks.quantize.binary import BinaryQuantizer
from tokenworks.quantize.fsq import FSQ
from tokenworks.quantize.lfq import LFQ
from tokenworks.quantize.robustok import RobustVQ
from tokenworks.quantize.rvq import ResidualVQ
from tokenworks.quantize.vat import VariationalMultiScaleQuantizer
from tokenworks.quantize.vq import VQ, CosineVQ, KMeansVQ, kmeans

__all__ = [
    "FSQ",
    "LFQ",
    "VQ",
    "BinaryQuantizer",
    "CosineVQ",
    "KMeansVQ",
    "Quantizer",
    "ResidualVQ",
    "RobustVQ",
    "VariationalMultiScaleQuantizer",
    "kmeans",
]
