"""The plateau layer: where per-layer validation accuracy stops improving (Park & Park, arXiv:2306.07061).

Rule (our reading of the paper's step 3, which prunes above the layer where validation accuracy converges
and gives no formula): ``ℓ* = min { ℓ : acc_ℓ ≥ max_ℓ' acc_ℓ' − ε }``, the lowest layer whose
validation accuracy is within ``tolerance`` (ε, a fraction: 0.005 is half an accuracy point) of the best
layer's. It needs no gold label distributions. The distillation source is ``ℓ_d = max(1, ℓ* − offset)``:
when ``ℓ*`` is layer 1 there is nothing below it and the plateau layer distils itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kd_core.errors import ConfigError


def plateau_layer(accuracies: Sequence[float], tolerance: float = 0.005) -> int:
    """The 1-based lowest layer whose accuracy is within ``tolerance`` of the best layer's."""
    values = [float(a) for a in accuracies]
    if not values or not all(math.isfinite(a) for a in values):
        raise ConfigError("accuracies", "one finite validation accuracy per layer", list(accuracies))
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < 1:
        raise ConfigError("tolerance", "an accuracy tolerance in [0, 1) (0.005 = half a point)", tolerance)
    best = max(values)
    return next(i + 1 for i, a in enumerate(values) if a >= best - tolerance - 1e-12)


def distillation_layer(plateau: int, offset: int = 1) -> int:
    """``max(1, plateau − offset)``: the lower layer whose distribution is distilled into the pruned model."""
    if isinstance(plateau, bool) or not isinstance(plateau, int) or plateau < 1:
        raise ConfigError("plateau", "a 1-based layer index ≥ 1", plateau)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError("offset", "an integer ≥ 0 (layers below the plateau layer)", offset)
    return max(1, plateau - offset)
