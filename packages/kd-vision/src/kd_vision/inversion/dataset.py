"""A set of synthetic images with its labels and provenance, saved as safetensors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from kd_core.errors import ConfigError, DataError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

__all__ = ["SyntheticImages"]


class SyntheticImages(Dataset):
    """Images ``[N, C, H, W]`` (in the teacher's input space) and labels ``[N]``, yielding
    ``{"input", "label"}`` dicts; ``provenance`` records how they were made (method, settings, seed)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, provenance: dict[str, Any] | None = None) -> None:
        if images.ndim != 4:
            raise ConfigError("images", "a tensor [N, C, H, W]", tuple(images.shape))
        if labels.shape != (images.shape[0],):
            raise ConfigError("labels", f"a tensor of shape ({images.shape[0]},)", tuple(labels.shape))
        self.images = images.detach().float().cpu().contiguous()
        self.labels = labels.detach().long().cpu().contiguous()
        self.provenance = dict(provenance or {})

    def __len__(self) -> int:
        """The number of images."""
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """``{"input": [C, H, W] float32, "label": int64 scalar}``."""
        return {"input": self.images[index], "label": self.labels[index]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``images``, ``labels`` and the provenance (JSON metadata) atomically to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"images": self.images, "labels": self.labels}, str(tmp),
                  metadata={"provenance": json.dumps(self.provenance, default=str)})
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SyntheticImages:
        """Read a set written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise DataError("path", "a synthetic-image safetensors file", str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        return cls(tensors["images"], tensors["labels"], json.loads(metadata.get("provenance", "{}")))
