"""Labelled data from a user's files, for every domain that reads images or tensors: ``imagefolder:DIR``
(torchvision's ``ImageFolder``, one sub-folder per class) and ``tensors:FILE`` (``.safetensors`` or ``.npz``
holding ``inputs`` and ``labels``). Items are ``{"input", "label"}`` dicts.

A folder holding ``train/`` and ``val/`` (and optionally ``test/``) is used as split; otherwise the items are
split deterministically (``stratified_split``). Images are loaded as RGB, resized to ``size`` × ``size`` and
scaled to [-1, 1]. torchvision is imported only for image folders (kd-vision requires it; kd-edge does not).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from kd_core.errors import ConfigError
from kd_core.task import stratified_split

__all__ = ["LabelledItems", "folder_fingerprint", "image_folder", "image_folder_splits", "read_tensors",
           "tensor_splits"]


class LabelledItems(Dataset):
    """``{"input", "label"}`` dicts from tensors, or from a dataset of ``(input, label)`` pairs."""

    def __init__(self, base: Any = None, inputs: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None) -> None:
        self.base, self.inputs, self.labels = base, inputs, labels

    def __len__(self) -> int:
        return len(self.labels) if self.labels is not None else len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.labels is not None:
            return {"input": self.inputs[index], "label": self.labels[index]}
        image, label = self.base[index]
        return {"input": image, "label": torch.tensor(int(label), dtype=torch.int64)}


def image_folder(directory: Path, size: int, argument: str) -> Any:
    """A torchvision ``ImageFolder`` of RGB images resized to ``size`` and scaled to [-1, 1]; a folder that is
    missing, empty or of one class is a ``ConfigError`` naming ``argument``, and so is a missing torchvision."""
    try:
        from torchvision import datasets, transforms
    except ImportError:
        raise ConfigError(argument, "torchvision installed, to read image folders (pip install torchvision, or "
                          "kd-vision, which requires it)", "not installed") from None

    transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                    transforms.Normalize([0.5] * 3, [0.5] * 3)])
    try:
        folder = datasets.ImageFolder(str(directory), transform=transform)
    except (FileNotFoundError, OSError) as err:
        raise ConfigError(argument, "a folder with one sub-folder of images per class", str(directory),
                          hint=str(err).splitlines()[0]) from None
    if len(folder.classes) < 2:
        raise ConfigError(argument, "images of at least 2 classes (one sub-folder per class)",
                          f"{len(folder.classes)} class(es) in {directory}")
    return folder


def image_folder_splits(root: Path, size: int, val_fraction: float, test_fraction: float,
                        argument: str) -> tuple[dict[str, Dataset], list[str]]:
    """``train``/``val``/``test`` datasets of an image folder and its class names (see the module doc)."""
    if not root.is_dir():
        raise ConfigError(argument, "an existing folder of images", str(root))
    if (root / "train").is_dir() and (root / "val").is_dir():
        folders = {split: image_folder(root / split, size, f"{argument} ({split}/)")
                   for split in ("train", "val", "test") if (root / split).is_dir()}
        classes = folders["train"].classes
        for split, folder in folders.items():
            if folder.classes != classes:
                raise ConfigError(argument, f"the same classes in every split ({classes})",
                                  f"{split}/: {folder.classes}")
        splits: dict[str, Dataset] = {split: LabelledItems(folder) for split, folder in folders.items()}
        splits.setdefault("test", splits["val"])
        return splits, list(classes)
    folder = image_folder(root, size, argument)
    positions = stratified_split(np.asarray(folder.targets), val_fraction, test_fraction, argument)
    items = LabelledItems(folder)
    return {k: Subset(items, v.tolist()) for k, v in positions.items()}, list(folder.classes)


def read_tensors(path: Path, argument: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` of a ``.safetensors``/``.npz`` file: float inputs ``[N, ...]``, int64 labels ``[N]``
    of at least two classes; anything else is a ``ConfigError`` naming ``argument``."""
    if not path.is_file() or path.suffix not in (".safetensors", ".npz"):
        raise ConfigError(argument, "an existing .safetensors or .npz file with 'inputs' and 'labels'", str(path))
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: torch.from_numpy(archive[k]) for k in archive.files}
        else:
            from safetensors.torch import load_file

            arrays = load_file(str(path))
    except Exception as err:  # an unreadable file is a bad spec, said in one line
        raise ConfigError(argument, "a readable .safetensors or .npz file", str(path),
                          hint=str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    if "inputs" not in arrays or "labels" not in arrays:
        raise ConfigError(argument, "a file holding 'inputs' and 'labels'", f"{path}: keys {sorted(arrays)}")
    inputs, labels = arrays["inputs"].float(), arrays["labels"]
    if labels.ndim != 1 or labels.is_floating_point() or len(labels) != len(inputs) or inputs.ndim < 2:
        raise ConfigError(argument, "inputs [N, ...] and integer labels [N]",
                          f"inputs {tuple(inputs.shape)}, labels {tuple(labels.shape)} {labels.dtype}")
    if len(torch.unique(labels)) < 2:
        raise ConfigError(argument, "labels of at least 2 classes", f"{len(torch.unique(labels))} class(es)")
    return inputs, labels.long()


def tensor_splits(path: Path, val_fraction: float, test_fraction: float,
                  argument: str) -> tuple[dict[str, Dataset], list[str], tuple[int, ...]]:
    """``train``/``val``/``test`` datasets of a tensors file, its class names and one input's shape."""
    inputs, labels = read_tensors(path, argument)
    positions = stratified_split(labels.numpy(), val_fraction, test_fraction, argument)
    items = LabelledItems(inputs=inputs, labels=labels)
    classes = [str(c) for c in range(int(labels.max()) + 1)]
    return {k: Subset(items, v.tolist()) for k, v in positions.items()}, classes, tuple(inputs.shape[1:])


def folder_fingerprint(root: Path) -> str:
    """A short digest of a folder's file names and sizes (what a cache keyed on the folder depends on)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    listing = "\n".join(f"{p.relative_to(root)}:{p.stat().st_size}" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]
