"""Architectures for kd-vision: plain ``torch.nn`` modules, built by name with ``build_model``."""

from kd_vision.models.cnn import MODELS, DigitCNN, build_model, student_cnn, teacher_cnn

__all__ = ["MODELS", "DigitCNN", "build_model", "student_cnn", "teacher_cnn"]
