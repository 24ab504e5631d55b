"""Distillation methods for language understanding: one module per paper, each registered under ``kd.methods``."""
