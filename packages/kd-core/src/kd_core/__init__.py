"""kd-core: the shared engine of the kd toolkit (losses, taps, signals, schedules, objective, engine).

Names are imported lazily, so ``import kd_core.cli`` (and every domain CLI's ``--help``) does not
pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "kd_core.backends": ["Backend"],
    "kd_core.engine": ["Callback", "Distiller", "FitResult", "Phase", "adamw", "cosine_lr", "sgd"],
    "kd_core.errors": ["CacheError", "CheckpointError", "ConfigError", "DataError", "KDError",
                       "NonFiniteLossError", "RecipeError", "RunDirError", "TapError"],
    "kd_core.losses": ["HiddenMSE", "attention_loss", "balanced_kl", "cross_entropy", "hidden_mse", "info_nce",
                       "kl_divergence", "l1", "logit_mse", "soft_cross_entropy"],
    "kd_core.objective": ["Objective", "ObjectiveResult", "SampleWeights", "Term"],
    "kd_core.signals": ["CachedTeacher", "Ensemble", "FixedWeighting", "FrozenTeacher", "TrainableTeacher",
                        "UniformWeighting", "Weighting"],
    "kd_core.stats": ["PairedComparison", "paired_difference"],
    "kd_core.study": ["Arm", "ArmRun", "Study", "StudyResult", "TrainSpec", "supervised_phases"],
    "kd_core.taps": ["TapSet", "resolve", "unwrap"],
    "kd_core.task": ["Splits", "Task"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'kd_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
