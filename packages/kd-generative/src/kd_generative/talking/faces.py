"""Real face images for the talking-face data, each with where its mouth is, split by identity.

- ``skimage/astronaut``: the face of scikit-image's ``astronaut`` photo (public domain, NASA).
- ``lfw/NN``: the 100 real faces of ``skimage.data.lfw_subset()`` (25x25 grey crops of Labeled Faces in the
  Wild), upscaled; the index stands for the identity (LFW repeats some people, so identity splits are by
  image).
- ``opencv/messi5``: the face in opencv-doc's ``messi5.jpg`` (only where the Debian package is installed).

Crop boxes are fixed squares placing the mouth at about 3/4 of the height (checked against scikit-image's
LBP frontal-face cascade, which finds the astronaut's face at rows 66-162, columns 174-270, and Messi's at
rows 97-128, columns 230-261).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from kd_core.errors import ConfigError, DataError

__all__ = ["FACE_SPECS", "Face", "FaceSpec", "face_split", "load_faces"]


@dataclass(frozen=True)
class FaceSpec:
    """Where a face comes from: its ``name``, crop box ``(top, left, side)`` in the source image (``None`` =
    the whole image) and mouth centre row, column and half-width as fractions of the crop side."""

    name: str
    box: tuple[int, int, int] | None
    mouth: tuple[float, float, float]


@dataclass(frozen=True)
class Face:
    """A face crop resized to ``size``: ``image`` uint8 ``(size, size, 3)`` and ``mouth`` fractions."""

    name: str
    image: np.ndarray
    mouth: tuple[float, float, float]


_LFW_MOUTH = (0.78, 0.5, 0.14)

#: Every face source (lfw_subset's first 100 images are faces, the rest are not).
FACE_SPECS: tuple[FaceSpec, ...] = (
    FaceSpec("skimage/astronaut", (45, 157, 130), (0.75, 0.5, 0.125)),
    FaceSpec("opencv/messi5", (85, 219, 52), (0.75, 0.5, 0.11)),
    *(FaceSpec(f"lfw/{i:02d}", None, _LFW_MOUTH) for i in range(100)),
)


def face_split(name: str) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a face: the astronaut and every tenth LFW face (0, 10, ...)
    are test identities, Messi and LFW 1, 11, ... are validation, the rest train."""
    if name == "skimage/astronaut":
        return "test"
    if name == "opencv/messi5":
        return "val"
    index = int(name.split("/")[1])
    return {0: "test", 1: "val"}.get(index % 10, "train")


def _source(spec: FaceSpec, opencv_dir: str | None) -> np.ndarray | None:
    import skimage.data

    if spec.name == "skimage/astronaut":
        return skimage.data.astronaut()
    if spec.name.startswith("lfw/"):
        grey = skimage.data.lfw_subset()[int(spec.name.split("/")[1])]
        return np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    from PIL import Image

    from kd_generative.data.photos import opencv_data_dir

    try:
        path = opencv_data_dir(opencv_dir) / "messi5.jpg"
    except DataError:
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_faces(size: int, names: Sequence[str] | None = None, opencv_dir: str | None = None) -> list[Face]:
    """The faces named (default: all available; Messi is skipped when opencv-doc is missing), cropped and
    resized (bicubic) to ``size`` x ``size``. A name asked for explicitly must be available."""
    from PIL import Image

    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError("size", "an integer >= 8", size)
    specs = {s.name: s for s in FACE_SPECS}
    wanted = list(specs) if names is None else list(names)
    unknown = [n for n in wanted if n not in specs]
    if unknown:
        raise ConfigError("faces", "names from FACE_SPECS (skimage/astronaut, opencv/messi5, lfw/00..lfw/99)",
                          unknown)
    faces = []
    for name in wanted:
        spec = specs[name]
        pixels = _source(spec, opencv_dir)
        if pixels is None:
            if names is not None:
                raise DataError("faces", f"{name} (opencv-doc's messi5.jpg)", "opencv-doc not installed",
                                hint="apt-get install opencv-doc")
            continue
        if spec.box is not None:
            top, left, side = spec.box
            pixels = pixels[top:top + side, left:left + side]
        image = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC)
        faces.append(Face(name, np.asarray(image, dtype=np.uint8).copy(), spec.mouth))
    return faces
