"""Data-free image synthesis by model inversion: DeepInversion and NaturalInversion.

- ``priors``: the BN-statistics prior (hooks on every BatchNorm layer), total variation, L2;
- ``loss``: CE + w_bn·BN + w_tv·TV + w_l2·‖x‖₂;
- ``augment``: jitter (roll ±2 px) and flips;
- ``deep``: DeepInversion (Yin et al., CVPR 2020, arXiv:1912.08795), pixels optimised directly;
- ``generator``, ``pyramid``, ``natural``: NaturalInversion (Kim et al., AAAI 2022, arXiv:2306.16661),
  a fresh one-to-one generator per batch, the Feature Transfer Pyramid, Adaptive Channel Scaling;
- ``synthesis``: the driver (class-balanced batches, frozen eval-mode teacher, progress bar);
- ``dataset``: the synthetic set (safetensors, with provenance); ``frechet``: feature Fréchet distance;
  ``grid``: a PNG grid of images.
"""

from kd_vision.inversion.dataset import SyntheticImages
from kd_vision.inversion.deep import DeepInversion
from kd_vision.inversion.frechet import frechet_distance, penultimate_features
from kd_vision.inversion.loss import PriorWeights, inversion_loss
from kd_vision.inversion.natural import NaturalInversion
from kd_vision.inversion.priors import BNStatisticsPrior, l2_prior, require_batchnorm, total_variation
from kd_vision.inversion.synthesis import synthesize

__all__ = ["BNStatisticsPrior", "DeepInversion", "NaturalInversion", "PriorWeights", "SyntheticImages",
           "frechet_distance", "inversion_loss", "l2_prior", "penultimate_features", "require_batchnorm",
           "synthesize", "total_variation"]
