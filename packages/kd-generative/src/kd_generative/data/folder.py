"""A user's own pairs: folder A (inputs) and folder B (targets) whose images match by file name.

Every problem is found before any pixel is decoded for training, and raised as a :class:`kd_core.errors`
exception naming the argument, what was expected and what was found: a missing folder or one without images,
names present on one side only, two files of one name stem in a folder, an empty or unreadable file, a pair
whose A and B sizes differ, a ``size`` larger than the smallest image or not a multiple of ``multiple``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kd_core.errors import ConfigError, DataError

from kd_generative.data.paired import PairSplit, check_dtype, to_tensor

__all__ = ["FITS", "image_files", "read_folder_pairs"]

#: How an image is brought to ``size``: ``resize`` scales its shorter side to ``size`` and cuts the centre;
#: ``crop`` cuts the centre without scaling.
FITS: tuple[str, ...] = ("resize", "crop")
_RESAMPLE = ("lanczos", "nearest")
_FEW = 5


def image_files(folder: str | Path, argument: str) -> dict[str, Path]:
    """The image files of ``folder`` by name stem (extensions Pillow registers; hidden files ignored)."""
    from PIL import Image

    path = Path(folder)
    if not path.is_dir():
        raise DataError(argument, "an existing folder of images", str(path))
    extensions = {e.lower() for e in Image.registered_extensions()}
    files: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        if file.name.startswith(".") or not file.is_file() or file.suffix.lower() not in extensions:
            continue
        if file.stem in files:
            raise DataError(argument, "one image per file name (stem)", f"{files[file.stem].name} and {file.name}")
        files[file.stem] = file
    if not files:
        raise DataError(argument, "a folder holding images Pillow reads (.png, .jpg, ...)",
                        f"no image files in {path}")
    return files


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_FEW])
    return f"{len(names)} ({shown}{', ...' if len(names) > _FEW else ''})"


def _image_size(file: Path, argument: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    if file.stat().st_size == 0:
        raise DataError(f"{argument} file {file.name}", "a non-empty image file", "0 bytes")
    try:
        with Image.open(file) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"{argument} file {file.name}", "an image Pillow can read",
                        f"{type(error).__name__}: {error}") from error


def _decode(file: Path, argument: str, mode: str, size: int, fit: str, resample: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as image:
            image = image.convert(mode)
    except (OSError, ValueError) as error:
        raise DataError(f"{argument} file {file.name}", "an image Pillow can read",
                        f"{type(error).__name__}: {error}") from error
    if fit == "resize":
        width, height = image.size
        scale = size / min(width, height)
        shape = (max(size, round(width * scale)), max(size, round(height * scale)))
        method = Image.Resampling.NEAREST if resample == "nearest" else Image.Resampling.LANCZOS
        image = image.resize(shape, method)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", value)
    return int(value)


def read_folder_pairs(dir_a: str | Path, dir_b: str | Path, size: int, multiple: int = 1, *, in_channels: int = 3,
                      fit: str = "resize", input_resample: str = "lanczos", dtype: str = "float32") -> PairSplit:
    """The pairs of ``dir_a`` (inputs) and ``dir_b`` (targets), matched by file name without extension.

    Each image is brought to ``size`` x ``size`` by ``fit`` (:data:`FITS`; A and B the same way; never
    enlarged, so ``size`` must not exceed any image's shorter side) and must be a multiple of ``multiple``
    (a U-Net of depth d needs 2**d). Inputs become ``in_channels`` (1: grey, 3: RGB) channels, targets RGB;
    ``input_resample="nearest"`` keeps label maps' colours exact when resizing. Pairs come sorted by name,
    as ``float32`` in [-1, 1] or ``uint8`` (``dtype``).
    """
    size = _check_int("size", size, 1)
    multiple = _check_int("multiple", multiple, 1)
    if size % multiple:
        raise ConfigError("size", f"a multiple of {multiple} (multiple={multiple})", size)
    if in_channels not in (1, 3):
        raise ConfigError("in_channels", "1 (grey inputs) or 3 (RGB inputs)", in_channels)
    if fit not in FITS:
        raise ConfigError("fit", f"one of {', '.join(FITS)}", fit)
    if input_resample not in _RESAMPLE:
        raise ConfigError("input_resample", f"one of {', '.join(_RESAMPLE)}", input_resample)
    check_dtype(dtype)
    files_a, files_b = image_files(dir_a, "dir_a"), image_files(dir_b, "dir_b")
    only_a, only_b = sorted(files_a.keys() - files_b.keys()), sorted(files_b.keys() - files_a.keys())
    if only_a or only_b:
        raise DataError("dir_a, dir_b", "the same file names in both folders (extensions may differ)",
                        f"only in dir_a: {_listing(only_a)}; only in dir_b: {_listing(only_b)}")
    names = sorted(files_a)
    smallest: tuple[int, str] | None = None
    for name in names:
        size_a, size_b = _image_size(files_a[name], "dir_a"), _image_size(files_b[name], "dir_b")
        if size_a != size_b:
            raise DataError(f"pair {name!r}", "A and B images of the same size",
                            f"A {size_a[0]}x{size_a[1]}, B {size_b[0]}x{size_b[1]}")
        if smallest is None or min(size_a) < smallest[0]:
            smallest = (min(size_a), f"{name}, {size_a[0]}x{size_a[1]}")
    assert smallest is not None
    if size > smallest[0]:
        raise ConfigError("size", f"at most {smallest[0]}, the shorter side of the smallest image "
                          f"({smallest[1]}; images are not enlarged)", size)
    mode = "L" if in_channels == 1 else "RGB"
    inputs = np.stack([_decode(files_a[n], "dir_a", mode, size, fit, input_resample) for n in names])
    targets = np.stack([_decode(files_b[n], "dir_b", "RGB", size, fit, "lanczos") for n in names])
    return PairSplit(to_tensor(inputs, dtype), to_tensor(targets, dtype), tuple(names))
