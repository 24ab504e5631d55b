"""Recipe sections of the talking-face task (Wav2Lip-style lip sync on :mod:`kd_generative.talking` data) and
the checks that refuse bad settings, naming the field, before any data is built or anything trains.

Prajwal, Mukhopadhyay, Namboodiri and Jawahar, "A Lip Sync Expert Is All You Need for Speech to Lip Generation
In the Wild" (Wav2Lip), ACM MM 2020: the generator, its expert lip-sync discriminator and the sync weight 0.03.
"""

from __future__ import annotations

from typing import Annotated

from kd_core.errors import ConfigError
from kd_core.recipes import Section
from pydantic import Field

__all__ = ["ExpertConfig", "TalkingData", "TalkingTeacher", "check_sizes", "check_width_multiplier"]

#: Sizes every part supports: the generator and the expert need 3 * 2**k; SSIM needs a lower half >= 11 rows.
SIZES = (24, 48, 96, 192)


class TalkingData(Section):
    """The talking-face data (:class:`kd_generative.talking.dataset.TalkingConfig`).

    ``size``: frame side (24, 48, 96 or 192; Wav2Lip: 96); ``sentences``: indices into the sentence list
    (``None``: all 24; sentences 0, 6, 12, ... are test, 1, 7, ... validation); ``voices``: the synthesizer
    voices; ``test_voices``: voices held out for the test split (train and val use the others; empty: every
    split uses every voice); ``faces_per_utterance``; ``stride``: frames between training windows;
    ``eval_stride``: between val/test windows; ``drift``: head drift (pixels at 48 px); ``seed``: drift tracks.
    """

    size: int = 48
    sentences: list[int] | None = None
    voices: Annotated[list[str], Field(min_length=2)] = Field(
        default_factory=lambda: ["flite/slt", "flite/rms", "espeak-ng/en-us+f3", "flite/awb"])
    test_voices: list[str] = Field(default_factory=lambda: ["flite/awb"])
    faces_per_utterance: Annotated[int, Field(ge=1)] = 2
    stride: Annotated[int, Field(ge=1)] = 2
    eval_stride: Annotated[int, Field(ge=1)] = 5
    drift: Annotated[float, Field(ge=0)] = 0.5
    seed: Annotated[int, Field(ge=0)] = 0


class TalkingTeacher(Section):
    """The full-size generator (residual blocks, full widths) trained here with ``L1 + sync · L_sync``: face
    encoder base ``width``, audio encoder base ``audio_width``, ``residuals`` blocks per stage (Wav2Lip at 96 px:
    16, 32, 1-3); ``epochs`` of Adam ``lr`` (β1 0.5) in batches of ``batch_size`` windows."""

    width: int = 16
    audio_width: int = 32
    residuals: Annotated[int, Field(ge=0)] = 2
    epochs: Annotated[int, Field(ge=1)] = 2
    lr: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: Annotated[int, Field(ge=1)] = 16
    sync: Annotated[float, Field(ge=0)] = 0.03


class ExpertConfig(Section):
    """The SyncNet-style expert (:mod:`kd_generative.talking.expert`), trained once on the train split and
    cached: ``steps`` of Adam, widths and embedding size. ``seed`` trains the expert behind the sync loss;
    ``eval_seed`` a second one, on the same data, that scores LSE-D/LSE-C (None: the same expert), so that the
    lip-sync scores do not come from the network the students were trained against."""

    steps: Annotated[int, Field(ge=1)] = 400
    width: Annotated[int, Field(ge=1)] = 16
    audio_width: Annotated[int, Field(ge=1)] = 16
    embed: Annotated[int, Field(ge=1)] = 64
    seed: Annotated[int, Field(ge=0)] = 0
    eval_seed: Annotated[int, Field(ge=0)] | None = 1


def check_sizes(data: TalkingData, teacher: TalkingTeacher) -> None:
    """Refuse a frame size no generator/expert supports and non-positive teacher widths (``ConfigError``)."""
    size = data.size
    if isinstance(size, bool) or not isinstance(size, int) or size not in SIZES:
        raise ConfigError("data.size", f"one of {list(SIZES)} (3 * 2**k px, the generator halves the side to 3x3; "
                          "24 px or more for the expert and SSIM)", size)
    for name in ("width", "audio_width"):
        value = getattr(teacher, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"teacher.{name}", "a channel count >= 1", value)
    unknown = [v for v in data.test_voices if v not in data.voices]
    if unknown:
        raise ConfigError("data.test_voices", f"voices among data.voices {data.voices}", unknown)
    if len(data.test_voices) >= len(data.voices):
        raise ConfigError("data.test_voices", "fewer voices than data.voices (train needs one)", data.test_voices)


def check_width_multiplier(value: float, argument: str = "student.width_multiplier") -> float:
    """``value`` if it is a number in (0, 1] (the student's share of the teacher's widths), else ``ConfigError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(argument, "a number in (0, 1] (0.25: Nota's compact Wav2Lip, widths / 4)", value)
    return float(value)
