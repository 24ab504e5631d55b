"""A Wav2Lip-style talking-face generator and its compact student.

Face encoder over ``concat(masked target, reference)`` (6 channels): a 7x7 stage at full size, then stride-2
stages down to 3x3 and a valid 3x3 conv to 1x1, every stage's output kept as a skip. Audio encoder over a mel
window to a 1x1 embedding as wide as the face bottleneck. Decoder from the audio embedding: each stage's
output is concatenated with the matching encoder skip (popped from the deepest), up to full size, then conv
-> 1x1 conv -> sigmoid. Widths follow the original's plan (face 16 .. 512 at 96 px, decoder about 4x the skip
at each level, capped at the bottleneck); ``width``/``audio_width`` scale them and ``residuals`` sets the
residual blocks per stage, so a compact student (Nota's compressed Wav2Lip: all residual blocks removed,
widths / 4) is ``build_generator(..., compact=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from kd_core.errors import ConfigError
from kd_core.metrics import count_macs, count_parameters
from torch import nn

from kd_generative.talking.blocks import AudioEncoder, ConvBlock, Residual, UpBlock

__all__ = ["TalkingFaceGenerator", "build_generator", "compression_ratios"]


def _levels(size: int) -> int:
    k = round(math.log2(size / 3)) if size >= 12 else -1
    if k < 2 or 3 * 2**k != size:
        raise ConfigError("size", "3 * 2**k with k >= 2 (12, 24, 48, 96, 192)", size)
    return k


def _stage(block: nn.Module, channels: int, residuals: int) -> nn.Sequential:
    return nn.Sequential(block, *(Residual(channels) for _ in range(residuals)))


class TalkingFaceGenerator(nn.Module):
    """``forward(faces, mels)``: faces ``(B, 6, S, S)`` (masked target + reference) or ``(B, T, 6, S, S)``,
    mels ``(B, 1, 80, 16)`` or ``(B, T, 1, 80, 16)`` -> frames in [0, 1] of the same leading shape."""

    def __init__(self, size: int = 48, width: int = 16, audio_width: int = 32, residuals: int | Sequence[int] = 2,
                 in_channels: int = 6) -> None:
        super().__init__()
        k = _levels(size)
        for name, value in (("width", width), ("audio_width", audio_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, "a channel count >= 1 (a width multiplier must be > 0)", value)
        self.size = size
        count = k + 2  # full size, k halvings (to 3x3), 1x1
        res = [residuals] * count if isinstance(residuals, int) else list(residuals)
        if len(res) != count or any(r < 0 for r in res):
            raise ConfigError("residuals", f"an integer >= 0 or {count} of them (one per encoder stage)", residuals)
        res[0] = min(res[0], 1)
        enc = [width * min(2**i, 2**k) for i in range(k + 1)] + [width * 2**k]
        bottleneck = enc[-1]
        encoder: list[nn.Module] = [_stage(ConvBlock(in_channels, enc[0], 7, 1, 3), enc[0], res[0])]
        for i in range(1, k + 1):
            encoder.append(_stage(ConvBlock(enc[i - 1], enc[i], 3, 2, 1), enc[i], res[i]))
        encoder.append(nn.Sequential(ConvBlock(enc[k], bottleneck, 3, 1, 0),
                                     ConvBlock(bottleneck, bottleneck, 1, 1, 0)))
        self.face_encoder = nn.ModuleList(encoder)
        self.audio_encoder = AudioEncoder(audio_width, bottleneck, max(res[1:], default=0) and 1)
        # decoder: levels 1x1, 3x3, 6x6, ..., S (skips enc[k+1], enc[k], ..., enc[0])
        skips = enc[::-1]
        dec = [min(4 * skips[j], bottleneck) if j > 1 else bottleneck for j in range(len(skips))]
        decoder: list[nn.Module] = [ConvBlock(bottleneck, dec[0], 1, 1, 0)]
        cin = dec[0] + skips[0]
        for j in range(1, len(skips)):
            decoder.append(_stage(UpBlock(cin, dec[j], grow_from_one=j == 1), dec[j], res[len(skips) - 1 - j]))
            cin = dec[j] + skips[j]
        self.decoder = nn.ModuleList(decoder)
        head = max(2 * width, 4)
        self.output = nn.Sequential(ConvBlock(cin, head, 3, 1, 1), nn.Conv2d(head, 3, 1), nn.Sigmoid())

    def forward(self, faces: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """Generate the frames (see the class docstring)."""
        lead = faces.shape[:-3]
        if faces.ndim == 5:
            faces, mels = faces.flatten(0, 1), mels.flatten(0, 1)
        if faces.ndim != 4 or faces.shape[-2:] != (self.size, self.size) or mels.shape[-2:] != (80, 16):
            raise ConfigError("faces/mels", f"(B[, T], 6, {self.size}, {self.size}) and (B[, T], 1, 80, 16)",
                              (tuple(faces.shape), tuple(mels.shape)))
        skips = []
        x = faces
        for stage in self.face_encoder:
            x = stage(x)
            skips.append(x)
        x = self.audio_encoder(mels)
        for stage in self.decoder:
            x = torch.cat([stage(x), skips.pop()], dim=1)
        return self.output(x).reshape(*lead, 3, self.size, self.size)


def build_generator(size: int = 48, compact: bool = False, width: int = 16, audio_width: int = 32,
                    residuals: int = 2) -> TalkingFaceGenerator:
    """The teacher-sized generator, or with ``compact`` the student: no residual blocks, widths / 4."""
    if compact:
        return TalkingFaceGenerator(size, max(width // 4, 1), max(audio_width // 4, 1), 0)
    return TalkingFaceGenerator(size, width, audio_width, residuals)


def compression_ratios(teacher: nn.Module, student: nn.Module, size: int) -> dict[str, float]:
    """Teacher / student parameter and MAC ratios for one frame (MACs by ``kd_core.metrics.count_macs``)."""
    faces, mels = torch.zeros(1, 6, size, size), torch.zeros(1, 1, 80, 16)
    return {"params": count_parameters(teacher) / count_parameters(student),
            "macs": count_macs(teacher, faces, mels) / count_macs(student, faces, mels)}
