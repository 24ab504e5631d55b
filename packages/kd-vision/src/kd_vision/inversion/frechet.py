"""Feature Fréchet distance for inverted images: a digits classifier's penultimate features, kd-core's FD.

With the penultimate features of a fixed digits classifier, ``kd_core.frechet.frechet_distance`` stands in for
FID (Heusel et al., NeurIPS 2017), whose Inception weights are not available offline. The math (and the
few-samples path through an n × m SVD) lives in kd-core, shared with kd-generative's image metrics.
"""

from __future__ import annotations

import numpy as np
import torch
from kd_core.frechet import frechet_distance
from kd_core.taps import TapSet
from torch import nn

__all__ = ["frechet_distance", "penultimate_features"]


def penultimate_features(model: nn.Module, images: torch.Tensor, tap: str = "in:fc", batch_size: int = 256
                         ) -> np.ndarray:
    """The ``tap`` features (flattened) of ``model`` in eval mode over ``images`` ``[N, ...]``."""
    taps = TapSet(model, [tap])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start: start + batch_size].to(device)
                out = taps.run(lambda m, x: m(x), model, batch)
                chunks.append(out[tap].flatten(1).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy()
