"""Distillation methods for generative models: one module per paper, each registered under ``kd.methods``."""
