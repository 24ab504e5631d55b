"""kd-speech: distillation methods for speech, built on kd-core."""

__version__ = "0.1.0"
