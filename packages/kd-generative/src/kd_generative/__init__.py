"""kd-generative: distillation methods for generative models, built on kd-core."""

__version__ = "0.1.0"
