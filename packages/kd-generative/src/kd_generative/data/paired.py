"""Containers for image-to-image pairs: one split (:class:`PairSplit`) and a built set (:class:`PairedImages`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kd_core.errors import ConfigError
from torch.utils.data import Dataset

__all__ = ["DTYPES", "SPLITS", "PairSplit", "PairedImages", "check_dtype", "to_tensor"]

#: The split names, in order.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The tensor types pairs come as: ``float32`` in [-1, 1] (Pix2Pix's tanh range) or raw ``uint8``.
DTYPES: tuple[str, ...] = ("float32", "uint8")


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`DTYPES`, else a :class:`ConfigError`."""
    if dtype not in DTYPES:
        raise ConfigError("dtype", f"one of {', '.join(DTYPES)}", dtype)
    return dtype


def to_tensor(images: np.ndarray, dtype: str = "float32") -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` as a tensor: ``float32`` maps 0..255 to -1..1, ``uint8`` keeps them."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if check_dtype(dtype) == "uint8":
        return tensor
    return tensor.to(torch.float32).div_(127.5).sub_(1.0)


@dataclass(frozen=True)
class PairSplit(Dataset):
    """Aligned pairs: ``inputs`` ``(N, C, H, W)``, ``targets`` ``(N, 3, H, W)``, and the source of each pair.

    Item ``i`` is ``{"input": inputs[i], "target": targets[i]}``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    sources: tuple[str, ...]

    def __len__(self) -> int:
        """How many pairs."""
        return int(self.inputs.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """Pair ``index`` as ``{"input": (C, H, W), "target": (3, H, W)}``."""
        return {"input": self.inputs[index], "target": self.targets[index]}


@dataclass(frozen=True)
class PairedImages:
    """A built paired set: the ``train``/``val``/``test`` splits, how it was made and its cache manifest.

    ``manifest`` is the parsed ``manifest.json`` of the cache (the key every option went into, and each
    file's SHA-256); ``from_cache`` says whether this call read the cache rather than building it.
    """

    direction: str
    size: int
    train: PairSplit
    val: PairSplit
    test: PairSplit
    manifest: dict[str, Any]
    directory: Path
    from_cache: bool = field(default=False, compare=False)

    @property
    def splits(self) -> dict[str, PairSplit]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def in_channels(self) -> int:
        """Channels of the inputs (1 for edges and grey, 3 for masks)."""
        return int(self.train.inputs.shape[1])
