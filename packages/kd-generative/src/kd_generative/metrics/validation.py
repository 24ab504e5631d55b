"""Input checks shared by the image metrics: 4-D image batches inside a declared value range.

Every failure is a ``kd_core.errors.ConfigError`` naming the argument, what was expected and what came.
"""

from __future__ import annotations

from typing import Any

import torch
from kd_core.errors import ConfigError

__all__ = ["DataRange", "check_data_range", "check_image_pair", "check_images", "check_reduction", "to_unit_rgb"]

DataRange = tuple[float, float]
"""(low, high): the values images may take, e.g. (-1.0, 1.0) for tanh / diffusion outputs, (0.0, 1.0)."""


def check_data_range(data_range: Any) -> DataRange:
    """``data_range`` as a ``(low, high)`` pair of floats with ``high > low``."""
    try:
        low, high = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise ConfigError("data_range", "a (low, high) pair such as (-1.0, 1.0) or (0.0, 1.0)", data_range) from None
    if not (high > low) or not torch.isfinite(torch.tensor([low, high])).all():
        raise ConfigError("data_range", "finite (low, high) with high > low", data_range)
    return low, high


def check_reduction(reduction: str) -> str:
    """``reduction`` when it is ``"mean"`` or ``"none"``."""
    if reduction not in ("mean", "none"):
        raise ConfigError("reduction", "'mean' or 'none'", reduction)
    return reduction


def check_images(images: Any, argument: str, data_range: DataRange, channels: tuple[int, ...] | None = None,
                 min_size: int = 1) -> torch.Tensor:
    """``images`` as a floating tensor ``[N, C, H, W]`` (N ≥ 1) whose finite values lie in ``data_range``.

    Integer tensors become float32; ``channels`` (when given) lists the allowed C; H and W must be ≥ ``min_size``.
    """
    if not isinstance(images, torch.Tensor):
        raise ConfigError(argument, "a torch.Tensor [N, C, H, W]", type(images).__name__)
    if images.ndim != 4 or images.shape[0] < 1:
        raise ConfigError(argument, "a batch of images [N, C, H, W] with N >= 1", tuple(images.shape))
    if channels is not None and images.shape[1] not in channels:
        raise ConfigError(f"{argument}.shape[1]", f"{' or '.join(map(str, channels))} channels "
                          "(RGB, or grey which is repeated to RGB)", images.shape[1])
    if min(images.shape[2:]) < min_size:
        raise ConfigError(f"{argument}.shape[2:]", f"height and width >= {min_size}", tuple(images.shape[2:]))
    if not images.is_floating_point() or images.dtype in (torch.float16, torch.bfloat16):
        images = images.float()
    if not torch.isfinite(images).all():
        raise ConfigError(argument, "finite values", "NaN or infinite values")
    low, high = data_range
    lowest, highest = float(images.min()), float(images.max())
    slack = 1e-6 * (high - low)  # rounding from a conversion, not a wrong range
    if lowest < low - slack or highest > high + slack:
        raise ConfigError(argument, f"values in data_range [{low:g}, {high:g}]", f"[{lowest:g}, {highest:g}]",
                          hint="pass the range the images use as data_range, or clamp them")
    return images


def check_image_pair(images: Any, reference: Any, data_range: Any, min_size: int = 1,
                     names: tuple[str, str] = ("images", "reference"), channels: tuple[int, ...] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, DataRange]:
    """Both batches checked by ``check_images`` and of one shape; returns them and the checked ``data_range``."""
    data_range = check_data_range(data_range)
    x = check_images(images, names[0], data_range, channels, min_size)
    y = check_images(reference, names[1], data_range, channels, min_size)
    if x.shape != y.shape:
        raise ConfigError(names[1], f"the shape of {names[0]}, {tuple(x.shape)}", tuple(y.shape))
    if x.device != y.device:
        raise ConfigError(names[1], f"tensors on {names[0]}'s device, {x.device}", str(y.device))
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype), data_range


def to_unit_rgb(images: torch.Tensor, data_range: DataRange) -> torch.Tensor:
    """Checked images mapped from ``data_range`` to [0, 1]; one channel repeated to three."""
    low, high = data_range
    images = ((images - low) / (high - low)).clamp(0.0, 1.0)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
