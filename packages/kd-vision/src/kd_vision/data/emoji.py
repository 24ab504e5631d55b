"""Emoji as a CIFAR-like colour set: Noto Color Emoji glyphs rendered at 32x32, labelled by Unicode group.

Built from two Debian packages, nothing downloaded (``apt-get install fonts-noto-color-emoji unicode-data``):

- ``/usr/share/unicode/emoji/emoji-test.txt`` (``unicode-data``) lists every emoji with its group and
  subgroup. The fully-qualified ones are used: 3,655 in 9 groups and 99 subgroups for Emoji 15.0
  (People & Body 2,148, mostly skin-tone variants; Flags 269; Objects 261; Symbols 223; Travel &
  Places 218; Smileys & Emotion 166; Animals & Nature 152; Food & Drink 133; Activities 85).
- ``/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf`` (``fonts-noto-color-emoji``), whose colour
  bitmaps are drawn by Pillow at their native strike (109 pt, a 136x128 glyph) with libraqm shaping,
  so that ZWJ sequences, flags and skin tones become one glyph. Each glyph is drawn on a white
  136x136 canvas, centred vertically, and resized to 32x32 RGB with a Lanczos filter. The same
  Pillow/FreeType build gives bitwise the same pixels every time.

Rendered images are cached as ``images.npy`` (uint8 ``(N, 32, 32, 3)``) under
``$KD_DATA_HOME/emoji/noto-<size>px-<key>/`` (default ``~/.cache/kd``), where ``key`` is a digest of the
rendered emoji list, with a ``manifest.json`` holding the sha256 and shape of the array, the emoji it
holds, and the font it was drawn from. Every load verifies the checksum; a cache that fails it, or was
drawn from another font file, is re-rendered (with a ``RuntimeWarning``). Files are written to a
temporary name and moved into place, so a reader never sees half a file. With a verified cache the
font is not needed; ``emoji-test.txt`` always is (the labels come from it).

Classes are the 9 groups or the 99 subgroups (``classes="group"|"subgroup"``), numbered in the order
of the file; a selection (``skin_tones=False``, ``subgroups=``, ``limit=``, ``min_per_class=``) keeps
only the classes it still holds. :func:`make_emoji_splits` splits *emoji* (never variants of one emoji)
into disjoint, stratified, deterministic train/val/test sets, and can add ``variants - 1`` augmented
copies of every emoji (a small shift, rotation and colour jitter drawn from a generator seeded by the
split seed, the emoji's code points and the variant number).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kd_core.errors import ConfigError, DataError
from torch.utils.data import Dataset

from kd_vision.data.cache import atomic_write, check_int, file_sha256, npy_bytes, sha256_bytes

__all__ = ["EMOJI_FONT", "EMOJI_MEAN", "EMOJI_STD", "EMOJI_TEST", "EmojiDataset", "EmojiEntry", "EmojiSet",
           "emoji_cache_dir", "load_emoji", "make_emoji_splits", "parse_emoji_test", "render_emoji"]

#: ``emoji-test.txt`` from the Debian package ``unicode-data``.
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
#: The colour emoji font from the Debian package ``fonts-noto-color-emoji``.
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")

#: Per-channel mean and std of the 3,655 rendered emoji (pixels in [0, 1]), used to normalise inputs.
EMOJI_MEAN: tuple[float, float, float] = (0.8205, 0.7763, 0.7389)
EMOJI_STD: tuple[float, float, float] = (0.2785, 0.2878, 0.3320)

_FONT_PACKAGE = "fonts-noto-color-emoji"
_DATA_PACKAGE = "unicode-data"
_STRIKE = 109  # the font's only bitmap size, in points; glyphs are 136x128 pixels
_CANVAS = 136
_MANIFEST = "manifest.json"
_FORMAT = 1
_SKIN_TONES = range(0x1F3FB, 0x1F400)  # EMOJI MODIFIER FITZPATRICK TYPE-1-2 ... TYPE-6
_CLASSES = ("group", "subgroup")


@dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified emoji of ``emoji-test.txt``: its code points, group, subgroup and name."""

    codepoints: tuple[int, ...]
    group: str
    subgroup: str
    name: str

    @property
    def text(self) -> str:
        """The emoji as a string."""
        return "".join(chr(c) for c in self.codepoints)

    @property
    def code(self) -> str:
        """The code points in the file's notation, e.g. ``"1F44D 1F3FD"``."""
        return " ".join(f"{c:04X}" for c in self.codepoints)

    @property
    def has_skin_tone(self) -> bool:
        """Whether a Fitzpatrick skin-tone modifier is part of the sequence."""
        return any(c in _SKIN_TONES for c in self.codepoints)


@dataclass
class EmojiSet:
    """Rendered emoji: uint8 ``images`` ``(N, S, S, 3)``, int64 ``labels`` ``(N,)``, and what they mean."""

    images: np.ndarray
    labels: np.ndarray
    entries: list[EmojiEntry]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        """How many classes the labels index."""
        return len(self.class_names)


def _missing(what: str, path: Path, package: str) -> DataError:
    return DataError(what, f"the file {path} from the Debian package {package}", f"no file at {path}",
                     hint=f"install it with `apt-get install {package}`")


def parse_emoji_test(path: str | os.PathLike[str] | None = None) -> list[EmojiEntry]:
    """The fully-qualified emoji of ``emoji-test.txt`` (default :data:`EMOJI_TEST`), in file order."""
    path = Path(path) if path is not None else EMOJI_TEST
    if not path.is_file():
        raise _missing("emoji_test", path, _DATA_PACKAGE)
    entries: list[EmojiEntry] = []
    group = subgroup = ""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith("# group:"):
                group = line.partition(":")[2].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.partition(":")[2].strip()
            elif not line.startswith("#") and ";" in line:
                fields, _, comment = line.partition("#")
                codes, _, status = fields.partition(";")
                if status.strip() != "fully-qualified":
                    continue
                try:
                    codepoints = tuple(int(c, 16) for c in codes.split())
                except ValueError as error:
                    raise DataError("emoji_test", "hexadecimal code points before ';'",
                                    f"line {number} of {path}: {line.strip()!r}") from error
                if not codepoints or not group or not subgroup:
                    raise DataError("emoji_test", "entries after '# group:' and '# subgroup:' headers",
                                    f"line {number} of {path}: {line.strip()!r}")
                # the comment reads "<emoji> E<version> <name>"
                name = comment.strip().split(" ", 2)[-1] if comment.strip().count(" ") >= 2 else ""
                entries.append(EmojiEntry(codepoints, group, subgroup, name))
    if not entries:
        raise DataError("emoji_test", "fully-qualified emoji lines", f"none in {path}")
    return entries


def _load_font(font_path: Path) -> Any:
    from PIL import ImageFont, features

    if not font_path.is_file():
        raise _missing("font_path", font_path, _FONT_PACKAGE)
    if not features.check("raqm"):
        raise DataError("Pillow", "a build with libraqm text shaping (for ZWJ sequences, flags and skin tones)",
                        "no raqm support", hint="install libraqm's runtime dependency with "
                        "`apt-get install libfribidi0`, or a Pillow wheel that bundles raqm")
    try:
        return ImageFont.truetype(str(font_path), _STRIKE, layout_engine=ImageFont.Layout.RAQM)
    except OSError as error:
        raise DataError("font_path", f"a colour bitmap font with a {_STRIKE} pt strike (Noto Color Emoji)",
                        f"{font_path} ({error})", hint=f"reinstall it with `apt-get install --reinstall "
                        f"{_FONT_PACKAGE}`") from error


def render_emoji(text: str, font: Any, size: int = 32) -> np.ndarray:
    """Draw ``text`` with ``font`` (a Pillow FreeType font) as a uint8 RGB array ``(size, size, 3)``."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (_CANVAS, _CANVAS), "white")
    ImageDraw.Draw(canvas).text((0, (_CANVAS - 128) // 2), text, font=font, embedded_color=True)
    return np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8).copy()


def _renderer(font_path: Path, size: int) -> Callable[[list[EmojiEntry]], np.ndarray]:
    """A function that renders entries into a ``(N, size, size, 3)`` array (the font loads once)."""
    font = _load_font(font_path)

    def render(entries: list[EmojiEntry]) -> np.ndarray:
        images = np.empty((len(entries), size, size, 3), dtype=np.uint8)
        for i, entry in enumerate(entries):
            images[i] = render_emoji(entry.text, font, size)
        return images

    return render


# ------------------------------------------------------------------------------------------------
# cache (the same scheme as kd_vision.data.digits, whose helpers are private to that module)


def emoji_cache_dir(entries: Sequence[EmojiEntry], size: int = 32) -> Path:
    """Where the rendering of ``entries`` at ``size`` px is cached: ``$KD_DATA_HOME/emoji/noto-<size>px-<key>``."""
    home = os.environ.get("KD_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "kd")
    key = hashlib.sha256("\n".join(e.code for e in entries).encode()).hexdigest()[:16]
    return Path(home) / "emoji" / f"noto-{size}px-{key}"








def _font_record(font_path: Path, sha256: str | None = None) -> dict[str, Any]:
    stat = font_path.stat()
    return {"font_file": str(font_path), "font_sha256": sha256 or file_sha256(font_path),
            "font_size": stat.st_size, "font_mtime_ns": stat.st_mtime_ns}


def _write_cache(directory: Path, entries: list[EmojiEntry], size: int, font_path: Path, images: np.ndarray,
                 ) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = npy_bytes(images)
    atomic_write(directory / "images.npy", data)
    manifest = {"format": _FORMAT, "size": size, "strike": _STRIKE, **_font_record(font_path),
                "codes": [e.code for e in entries],
                "files": {"images.npy": {"shape": list(images.shape), "dtype": str(images.dtype),
                                         "sha256": sha256_bytes(data)}}}
    # the manifest goes last: until it is in place, the array beside it is not trusted
    atomic_write(directory / _MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def _font_unchanged(manifest: dict[str, Any], font_path: Path) -> bool:
    """Whether ``font_path`` is the font the cache was drawn from (same stat, else same sha256)."""
    stat = font_path.stat()
    if stat.st_size == manifest.get("font_size") and stat.st_mtime_ns == manifest.get("font_mtime_ns"):
        return True
    return file_sha256(font_path) == manifest.get("font_sha256")


def _read_cache(directory: Path, entries: list[EmojiEntry], size: int, font_path: Path,
                ) -> tuple[np.ndarray | None, str]:
    """The cached images when the manifest verifies, else ``None`` and why (``""`` when simply absent)."""
    manifest_path = directory / _MANIFEST
    if not manifest_path.is_file():
        return None, ""
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != _FORMAT or manifest.get("size") != size:
            return None, "its manifest is from another format or size"
        if manifest.get("codes") != [e.code for e in entries]:
            return None, "it holds other emoji"
        entry = manifest["files"]["images.npy"]
        data = (directory / "images.npy").read_bytes()
        if sha256_bytes(data) != entry["sha256"]:
            return None, "images.npy does not match its sha256 in the manifest"
        images = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"it could not be read ({type(error).__name__}: {error})"
    if images.dtype != np.uint8 or images.shape != (len(entries), size, size, 3):
        return None, "images.npy does not have the expected dtype and shape"
    if font_path.is_file() and not _font_unchanged(manifest, font_path):
        return None, "the font changed since the cache was rendered"
    return images, ""


# ------------------------------------------------------------------------------------------------
# selection and loading




def _select(entries: list[EmojiEntry], classes: str, skin_tones: bool, subgroups: Sequence[str] | None,
            limit: int | None, min_per_class: int) -> list[EmojiEntry]:
    if not skin_tones:
        entries = [e for e in entries if not e.has_skin_tone]
    if subgroups is not None:
        if isinstance(subgroups, str):
            raise ConfigError("subgroups", "a list of subgroup names", subgroups)
        known = {e.subgroup for e in entries}
        unknown = [s for s in subgroups if s not in known]
        if unknown:
            raise ConfigError("subgroups", "subgroup names of emoji-test.txt (e.g. 'face-smiling')", unknown,
                              hint=f"known: {', '.join(sorted(known))}")
        wanted = set(subgroups)
        entries = [e for e in entries if e.subgroup in wanted]
    if limit is not None:
        entries = entries[:limit]
    if min_per_class > 1:
        counts: dict[str, int] = {}
        for e in entries:
            counts[getattr(e, classes)] = counts.get(getattr(e, classes), 0) + 1
        entries = [e for e in entries if counts[getattr(e, classes)] >= min_per_class]
    if not entries:
        raise ConfigError("selection", "at least one emoji", "none left after skin_tones, subgroups, limit and "
                          "min_per_class")
    return entries


def load_emoji(classes: str = "subgroup", *, skin_tones: bool = True, subgroups: Sequence[str] | None = None,
               limit: int | None = None, min_per_class: int = 1, size: int = 32,
               font_path: str | os.PathLike[str] | None = None,
               emoji_test: str | os.PathLike[str] | None = None) -> EmojiSet:
    """Render (or read from the cache) the selected emoji and label them by ``classes``.

    Selection, in this order: drop skin-tone variants unless ``skin_tones``; keep only ``subgroups``
    (names such as ``"face-smiling"``) when given; keep the first ``limit``; drop classes with fewer
    than ``min_per_class`` emoji. Labels number the classes that remain, in file order. Raises
    :class:`DataError` naming the Debian package when the font (needed only without a verified
    cache) or ``emoji-test.txt`` is missing.
    """
    if classes not in _CLASSES:
        raise ConfigError("classes", f"one of {', '.join(repr(c) for c in _CLASSES)}", classes)
    limit = None if limit is None else check_int("limit", limit, 1)
    min_per_class = check_int("min_per_class", min_per_class, 1)
    size = check_int("size", size, 8)
    if not isinstance(skin_tones, bool):
        raise ConfigError("skin_tones", "True or False", skin_tones)
    font = Path(font_path) if font_path is not None else EMOJI_FONT
    every = parse_emoji_test(emoji_test)
    entries = _select(every, classes, skin_tones, subgroups, limit, min_per_class)
    directory = emoji_cache_dir(entries, size)
    images, problem = _read_cache(directory, entries, size, font)
    if images is None and len(entries) < len(every):
        # a subset is taken from a verified cache of every emoji when there is one, without rendering
        everything, _ = _read_cache(emoji_cache_dir(every, size), every, size, font)
        if everything is not None:
            position = {e.code: i for i, e in enumerate(every)}
            return _labelled(everything[[position[e.code] for e in entries]], entries, classes)
    if images is None:
        if not font.is_file():
            raise _missing("font_path", font, _FONT_PACKAGE)
        if problem:
            warnings.warn(f"emoji cache {directory} failed verification ({problem}); rendering it again",
                          RuntimeWarning, stacklevel=2)
        images = _renderer(font, size)(entries)
        try:
            _write_cache(directory, entries, size, font, images)
        except OSError as error:
            warnings.warn(f"could not write the emoji cache to {directory} ({error}); the next load renders "
                          "again", RuntimeWarning, stacklevel=2)
    return _labelled(images, entries, classes)


def _labelled(images: np.ndarray, entries: list[EmojiEntry], classes: str) -> EmojiSet:
    """Number the classes of ``entries`` in order of appearance and label each image."""
    names = list(dict.fromkeys(getattr(e, classes) for e in entries))
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[getattr(e, classes)] for e in entries], dtype=np.int64)
    return EmojiSet(images=images, labels=labels, entries=entries, class_names=names)


# ------------------------------------------------------------------------------------------------
# dataset, augmentation and splits


def _augment(image: np.ndarray, entry: EmojiEntry, variant: int, seed: int) -> np.ndarray:
    """A small random shift (up to 2 px), rotation (up to 15 degrees) and colour jitter of ``image``.

    The generator is seeded by ``seed``, the emoji's code points and ``variant``, so a variant looks
    the same in every process, whatever the order items are read in.
    """
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(np.random.SeedSequence([seed, variant, *entry.codepoints]))
    angle = float(rng.uniform(-15.0, 15.0))
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    brightness, contrast, saturation = (float(v) for v in rng.uniform(0.8, 1.2, size=3))
    picture = Image.fromarray(image, "RGB")
    picture = picture.rotate(angle, resample=Image.Resampling.BILINEAR, translate=(dx, dy),
                             fillcolor=(255, 255, 255))
    picture = ImageEnhance.Brightness(picture).enhance(brightness)
    picture = ImageEnhance.Contrast(picture).enhance(contrast)
    picture = ImageEnhance.Color(picture).enhance(saturation)
    return np.asarray(picture, dtype=np.uint8)


class EmojiDataset(Dataset):
    """Emoji images selected by ``indices``, each in ``variants`` versions, as ``{"input", "label"}`` dicts.

    ``input`` is float32 ``[3, S, S]``: pixels in [0, 1] normalised by :data:`EMOJI_MEAN` and
    :data:`EMOJI_STD`. ``label`` is an int64 scalar. Item ``k`` is emoji ``indices[k // variants]``
    in version ``k % variants``; version 0 is the rendering itself, the others are deterministic
    augmentations (seeded by ``seed``).
    """

    def __init__(self, data: EmojiSet, indices: np.ndarray | None = None, variants: int = 1, seed: int = 0) -> None:
        indices = np.arange(len(data.labels)) if indices is None else np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or (indices.size and (indices.min() < 0 or indices.max() >= len(data.labels))):
            raise ConfigError("indices", f"a 1-D array of positions in [0, {len(data.labels) - 1}]", indices)
        self.data = data
        self.indices = indices
        self.variants = check_int("variants", variants, 1)
        self.seed = check_int("seed", seed, 0)
        self._mean = torch.tensor(EMOJI_MEAN, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(EMOJI_STD, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        """Selected emoji times variants."""
        return len(self.indices) * self.variants

    def image(self, index: int) -> np.ndarray:
        """Item ``index`` as a uint8 ``(S, S, 3)`` array (before normalisation)."""
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        position, variant = divmod(index % len(self), self.variants)
        emoji = int(self.indices[position])
        image = self.data.images[emoji]
        return image if variant == 0 else _augment(image, self.data.entries[emoji], variant, self.seed)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """``{"input": [3, S, S] float32, "label": int64 scalar}``."""
        pixels = torch.tensor(self.image(index), dtype=torch.float32).permute(2, 0, 1).div_(255.0)
        emoji = int(self.indices[(index % len(self)) // self.variants])
        return {"input": (pixels - self._mean) / self._std,
                "label": torch.tensor(int(self.data.labels[emoji]), dtype=torch.int64)}

    @property
    def targets(self) -> np.ndarray:
        """The label of every item, in order."""
        return np.repeat(self.data.labels[self.indices], self.variants)

    @property
    def num_classes(self) -> int:
        """How many classes the labels index (those of the whole set, not only of this split)."""
        return self.data.num_classes


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ConfigError(name, "a fraction in [0, 1)", value)
    return float(value)


def make_emoji_splits(classes: str = "subgroup", *, val_fraction: float = 0.15, test_fraction: float = 0.15,
                      variants: int = 1, seed: int = 0, skin_tones: bool = True,
                      subgroups: Sequence[str] | None = None, limit: int | None = None, min_per_class: int = 1,
                      font_path: str | os.PathLike[str] | None = None,
                      emoji_test: str | os.PathLike[str] | None = None) -> dict[str, EmojiDataset]:
    """Disjoint, stratified, deterministic ``"train"``, ``"val"`` and ``"test"`` splits of the emoji.

    Emoji (not their variants) are split: within each class, ``round(n * test_fraction)`` go to test
    and ``round(n * val_fraction)`` to val, always leaving at least one for train (a class of one
    emoji is train-only). Every split has ``variants`` items per emoji (see :class:`EmojiDataset`),
    so ``variants=8`` gives 8x the samples. The same arguments always give the same items in the
    same shuffled order. The other arguments select emoji as in :func:`load_emoji`.
    """
    val_fraction = _fraction("val_fraction", val_fraction)
    test_fraction = _fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError("val_fraction + test_fraction", "less than 1 (train needs emoji too)",
                          val_fraction + test_fraction)
    seed = check_int("seed", seed, 0)
    variants = check_int("variants", variants, 1)
    data = load_emoji(classes, skin_tones=skin_tones, subgroups=subgroups, limit=limit,
                      min_per_class=min_per_class, font_path=font_path, emoji_test=emoji_test)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in range(data.num_classes):
        members = rng.permutation(np.flatnonzero(data.labels == label))
        n = len(members)
        n_test = min(int(np.floor(n * test_fraction + 0.5)), n - 1)
        n_val = min(int(np.floor(n * val_fraction + 0.5)), n - 1 - n_test)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    return {split: EmojiDataset(data, rng.permutation(np.concatenate(chunks)).astype(np.int64), variants, seed)
            for split, chunks in parts.items()}
