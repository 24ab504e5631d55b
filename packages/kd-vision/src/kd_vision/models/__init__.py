"""Architectures for kd-vision: plain ``torch.nn`` modules, built by name with ``build_model``.

``build_model`` and ``available_models`` are the registry's (:mod:`kd_vision.models.registry`): the
digit CNNs, the CIFAR-style ResNets/WRNs/VGGs and every torchvision classifier as ``tv:<name>``.
``MODELS`` is the registry's table of fixed names (``tv:`` names are resolved on demand).
"""

from kd_vision.models.cifar import CIFAR_MODELS, STAGE_TAPS, CifarResNet, CifarVGG, WideResNet
from kd_vision.models.cnn import DigitCNN, student_cnn, teacher_cnn
from kd_vision.models.registry import MODELS, available_models, build_model

__all__ = ["CIFAR_MODELS", "MODELS", "STAGE_TAPS", "CifarResNet", "CifarVGG", "DigitCNN", "WideResNet",
           "available_models", "build_model", "student_cnn", "teacher_cnn"]
