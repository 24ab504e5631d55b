"""Recipe sections of an image-to-image task: the paired data, the U-Net generators and the PatchGAN.

``data.source`` is a direction of the built-in paired sets (``edges``, ``grey``, ``mask``: each to the colour
photo, :func:`kd_generative.data.build_pairs`) or ``folder:A_DIR,B_DIR`` (a user's inputs in A and targets in
B, matched by file name, :func:`kd_generative.data.read_folder_pairs`).
"""

from __future__ import annotations

from typing import Annotated

from kd_core.recipes import Section
from pydantic import Field, field_validator

from kd_generative.data.maps import DIRECTIONS

__all__ = ["GanConfig", "GeneratorConfig", "PairedData", "folder_dirs"]

FOLDER = "folder"


def folder_dirs(source: str) -> tuple[str, str] | None:
    """``(A_DIR, B_DIR)`` of a ``folder:A_DIR,B_DIR`` source, None for a built-in direction."""
    scheme, _, rest = source.partition(":")
    if scheme != FOLDER:
        return None
    a, _, b = rest.partition(",")
    return a.strip(), b.strip()


class PairedData(Section):
    """Where the pairs come from and how they are cut.

    - Built-in sets: ``size`` (crop side), ``crops`` per photo, ``crop_seed`` (crop positions), ``photos`` (a
      subset of :func:`kd_generative.data.list_sources` names, default all), ``frame_step``.
    - Folders: ``size`` and ``fit`` (``resize`` or ``crop``), ``in_channels`` (1 or 3), and a deterministic
      split by ``val_fraction``/``test_fraction`` (seed ``split_seed``).
    - Both: ``train_size``/``val_size``/``test_size`` cap the splits (first items).
    """

    source: str = "edges"
    size: Annotated[int, Field(ge=16)] = 32
    crops: Annotated[int, Field(ge=1)] = 8
    crop_seed: Annotated[int, Field(ge=0)] = 0
    photos: list[str] | None = None
    frame_step: Annotated[int, Field(ge=1)] | None = None
    fit: str = "resize"
    in_channels: Annotated[int, Field(ge=1, le=3)] = 3
    val_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    test_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    split_seed: Annotated[int, Field(ge=0)] = 0
    train_size: Annotated[int, Field(gt=0)] | None = None
    val_size: Annotated[int, Field(gt=1)] | None = None
    test_size: Annotated[int, Field(gt=1)] | None = None

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        dirs = folder_dirs(value)
        if value not in DIRECTIONS and (dirs is None or not all(dirs)):
            raise ValueError(f"one of {list(DIRECTIONS)} or 'folder:A_DIR,B_DIR', received {value!r}")
        return value


class GeneratorConfig(Section):
    """A Pix2Pix U-Net (:func:`kd_generative.models.build_unet`): ``depth`` levels of widths
    ``base · min(2^i, max_mult)``, decoder dropout on the innermost ``dropout_levels`` levels."""

    depth: Annotated[int, Field(ge=1, le=10)] = 5
    base: Annotated[int, Field(ge=1)] = 32
    max_mult: Annotated[int, Field(ge=1)] = 8
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5
    dropout_levels: Annotated[int, Field(ge=0)] = 3


class GanConfig(Section):
    """The PatchGAN discriminator (:func:`kd_generative.models.build_patchgan`) and its optimizer: Adam with
    ``lr`` and betas (``beta1``, 0.999); ``mode`` ``vanilla`` (BCE, Pix2Pix) or ``lsgan``."""

    base: Annotated[int, Field(ge=1)] = 16
    n_layers: Annotated[int, Field(ge=1, le=6)] = 2
    lr: Annotated[float, Field(gt=0)] = 2e-4
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5
    mode: str = "vanilla"

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        from kd_core.gan import GAN_MODES

        if value not in GAN_MODES:
            raise ValueError(f"one of {list(GAN_MODES)}, received {value!r}")
        return value
