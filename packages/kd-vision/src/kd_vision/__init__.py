"""kd-vision: distillation methods for image models, built on kd-core."""

__version__ = "0.1.0"
