"""The train/val/test splits of an image-to-image task, from the built-in paired sets or a user's folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from kd_core.datacache import file_sha256
from kd_core.errors import ConfigError, KDError
from kd_core.task import Splits

from kd_generative.data import build_pairs, read_folder_pairs
from kd_generative.data.folder import FITS, image_files
from kd_generative.data.paired import PairSplit
from kd_generative.tasks.config import PairedData, folder_dirs

__all__ = ["paired_splits", "split_pairs"]


def _take(split: PairSplit, positions: list[int]) -> PairSplit:
    index = torch.tensor(positions, dtype=torch.long)
    return PairSplit(split.inputs[index], split.targets[index], tuple(split.sources[i] for i in positions))


def _capped(split: PairSplit, size: int | None) -> PairSplit:
    return split if size is None or size >= len(split) else _take(split, list(range(size)))


def split_pairs(pairs: PairSplit, val_fraction: float, test_fraction: float, seed: int, argument: str
                ) -> dict[str, PairSplit]:
    """``pairs`` cut into train/val/test by a permutation seeded by ``seed``; val and test get at least 2 pairs
    each (a Fréchet distance needs 2 images) and train at least 1, else a ``ConfigError`` naming ``argument``."""
    n = len(pairs)
    n_test, n_val = max(2, round(n * test_fraction)), max(2, round(n * val_fraction))
    if n < n_test + n_val + 1:
        raise ConfigError(argument, f"at least {n_test + n_val + 1} pairs (2 for val, 2 for test, 1 for train)",
                          f"{n} pairs")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return {"test": _take(pairs, sorted(order[:n_test])), "val": _take(pairs, sorted(order[n_test:n_test + n_val])),
            "train": _take(pairs, sorted(order[n_test + n_val:]))}


_FIELDS = {"sources": "data.photos", "size": "data.size", "crops": "data.crops", "frame_step": "data.frame_step",
           "dir_a": "data.source (A_DIR)", "dir_b": "data.source (B_DIR)", "dir_a, dir_b": "data.source"}


def _renamed(err: KDError) -> KDError:
    """``err`` naming the recipe field behind the data builder's argument (``sources`` -> ``data.photos``)."""
    argument = next((f"{field}{err.argument[len(name):]}" for name, field in _FIELDS.items()
                     if err.argument == name or err.argument.startswith(f"{name} ")), err.argument)
    return type(err)(argument, err.expected, err.received, hint=err.hint)


def _folder_fingerprint(dir_a: str, dir_b: str) -> dict[str, Any]:
    files = {side: image_files(path, f"data.source ({side})") for side, path in (("A", dir_a), ("B", dir_b))}
    return {side: {name: file_sha256(path)[:16] for name, path in found.items()} for side, found in files.items()}


def paired_splits(data: PairedData, multiple: int) -> tuple[Splits, str, dict[str, Any], int]:
    """The splits of ``data`` (sizes divisible by ``multiple``), a description, the cache key of the data and the
    input channels. Errors name the recipe field (``data.source``, ``data.size``, ...)."""
    dirs = folder_dirs(data.source)
    if data.size % multiple:
        raise ConfigError("data.size", f"a multiple of {multiple} (2**depth of the generators)", data.size)
    if dirs is None:
        try:
            built = build_pairs(data.source, data.size, data.crop_seed, crops=data.crops, sources=data.photos,
                                frame_step=data.frame_step, multiple=multiple)
        except KDError as err:
            raise _renamed(err) from None
        parts = built.splits
        what = f"{data.source} → photo pairs, {data.size}×{data.size}, cut from offline photos"
        key: dict[str, Any] = {"source": data.source, "manifest": built.manifest["key"]}
    else:
        if data.fit not in FITS:
            raise ConfigError("data.fit", f"one of {', '.join(FITS)}", data.fit)
        if data.in_channels not in (1, 3):
            raise ConfigError("data.in_channels", "1 (grey inputs) or 3 (RGB inputs)", data.in_channels)
        try:
            pairs = read_folder_pairs(dirs[0], dirs[1], data.size, multiple, in_channels=data.in_channels,
                                      fit=data.fit)
        except KDError as err:
            raise _renamed(err) from None
        parts = split_pairs(pairs, data.val_fraction, data.test_fraction, data.split_seed, "data.source")
        what = f"pairs from {Path(dirs[0]).name} → {Path(dirs[1]).name}, {data.size}×{data.size}"
        key = {"source": "folder", "files": _folder_fingerprint(*dirs), "size": data.size, "fit": data.fit,
               "in_channels": data.in_channels, "split": [data.val_fraction, data.test_fraction, data.split_seed]}
    caps = {"train": data.train_size, "val": data.val_size, "test": data.test_size}
    capped = {name: _capped(split, caps[name]) for name, split in parts.items()}
    for name in ("val", "test"):
        if len(capped[name]) < 2:
            raise ConfigError("data.source", f"at least 2 {name} pairs (a Fréchet distance needs 2 images)",
                              len(capped[name]), hint="more photos, crops or images")
    key["caps"] = caps
    splits = Splits(capped["train"], capped["val"], capped["test"])
    return splits, what, key, int(capped["train"].inputs.shape[1])
