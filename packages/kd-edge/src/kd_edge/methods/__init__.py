"""Distillation methods for edge deployment: one module per paper, each registered under ``kd.methods``."""
