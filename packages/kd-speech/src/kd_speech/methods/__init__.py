"""Distillation methods for speech: one module per paper, each registered under ``kd.methods`` (none yet)."""
