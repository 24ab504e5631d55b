"""Distillation methods for generative models: one module per paper, registered under ``kd.methods`` (none yet)."""
