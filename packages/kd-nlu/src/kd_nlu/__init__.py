"""kd-nlu: distillation methods for language understanding, built on kd-core."""

__version__ = "0.1.0"
