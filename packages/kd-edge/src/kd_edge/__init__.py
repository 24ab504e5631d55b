"""kd-edge: distillation methods for edge deployment, built on kd-core."""

__version__ = "0.1.0"
