"""The DeepSpeech2-style intent head over speech-BERT hidden states.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105), after Amodei et al., "Deep Speech 2" (ICML 2016, arXiv 1512.02595). The hidden
states ``[B, T, D]`` are read as a one-channel image ``[B, 1, D, T]`` (features x time, as in DeepSpeech2); then

- two convolutions with ``conv_channels`` (32) channels, kernels (feature x time) 41 x 11 and 21 x 11, strides
  (2, 2) and (2, 1), "same"-style padding (half the kernel), each followed by batch norm and ``Hardtanh(0, 20)``;
  frames past each sequence's length are zeroed after every layer (the reference's ``MaskConv``);
- bidirectional LSTM layers (5 of 768 in the paper) whose two directions are summed, run packed so padding is
  never read;
- max-pooling over the valid frames only, then a linear layer to the intents.

Padding frames therefore never change the output in eval mode. In training mode the batch norm's statistics
include the zeroed padding frames, as in the reference; pass ``batch_norm=False`` for exact padding invariance
there too. The reference's batch norm between LSTM layers is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from kd_core.errors import ConfigError
from torch import nn

from kd_speech.models._checks import positive_int

__all__ = ["DS2Head", "lengths_from_mask"]

PAPER_KERNELS = ((41, 11), (21, 11))
PAPER_STRIDES = ((2, 2), (2, 1))


def lengths_from_mask(attention_mask: torch.Tensor | None, batch: int, frames: int,
                      device: torch.device | None = None) -> torch.Tensor:
    """Each row's number of valid frames from a right-padded ``[B, T]`` mask (all ``T`` without a mask)."""
    if attention_mask is None:
        return torch.full((batch,), frames, dtype=torch.long, device=device)
    if tuple(attention_mask.shape) != (batch, frames):
        raise ConfigError("attention_mask", f"a mask of shape {(batch, frames)}", tuple(attention_mask.shape))
    mask = attention_mask.bool()
    lengths = mask.sum(1)
    prefix = torch.arange(frames, device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(prefix, mask):
        raise ConfigError("attention_mask", "a right-padded mask (ones, then zeros)", "a mask with gaps",
                          hint="pad sequences at the end")
    if batch and int(lengths.min()) < 1:
        raise ConfigError("attention_mask", "at least one valid frame per sequence", int(lengths.min()))
    return lengths


def _pairs(argument: str, value: Sequence[Sequence[int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        pairs = tuple((int(a), int(b)) for a, b in value)
    except (TypeError, ValueError):
        raise ConfigError(argument, "two (feature, time) pairs of positive integers", value) from None
    if len(pairs) != 2 or any(v < 1 for pair in pairs for v in pair):
        raise ConfigError(argument, "two (feature, time) pairs of positive integers", value)
    return pairs  # type: ignore[return-value]


def _out_size(size: torch.Tensor | int, kernel: int, stride: int, padding: int) -> torch.Tensor | int:
    return (size + 2 * padding - kernel) // stride + 1


class DS2Head(nn.Module):
    """DeepSpeech2-style conv + BiLSTM intent classifier over hidden states ``[B, T, in_dim]`` (module docstring).

    ``kernels`` and ``strides`` are two ``(feature, time)`` pairs (the paper's by default); ``lstm_hidden`` and
    ``lstm_layers`` default to the paper's 768 and 5.
    """

    def __init__(self, in_dim: int, num_classes: int, conv_channels: int = 32, lstm_hidden: int = 768,
                 lstm_layers: int = 5, kernels: Sequence[Sequence[int]] = PAPER_KERNELS,
                 strides: Sequence[Sequence[int]] = PAPER_STRIDES, batch_norm: bool = True) -> None:
        super().__init__()
        self.in_dim = positive_int("in_dim", in_dim)
        self.num_classes = positive_int("num_classes", num_classes)
        positive_int("conv_channels", conv_channels)
        positive_int("lstm_hidden", lstm_hidden)
        positive_int("lstm_layers", lstm_layers)
        kernel_pairs, stride_pairs = _pairs("kernels", kernels), _pairs("strides", strides)
        layers: list[nn.Module] = []
        features, channels = in_dim, 1
        for kernel, stride in zip(kernel_pairs, stride_pairs):
            padding = (kernel[0] // 2, kernel[1] // 2)
            layers.append(nn.Conv2d(channels, conv_channels, kernel_size=kernel, stride=stride, padding=padding))
            if batch_norm:
                layers.append(nn.BatchNorm2d(conv_channels))
            layers.append(nn.Hardtanh(0.0, 20.0))
            features = int(_out_size(features, kernel[0], stride[0], padding[0]))
            if features < 1:
                raise ConfigError("kernels", f"kernels that leave features of in_dim={in_dim}", kernels)
            channels = conv_channels
        self.conv = nn.Sequential(*layers)
        self.rnn_input = conv_channels * features
        self.lstms = nn.ModuleList(
            nn.LSTM(self.rnn_input if i == 0 else lstm_hidden, lstm_hidden, batch_first=True, bidirectional=True)
            for i in range(lstm_layers))
        self.classifier = nn.Linear(lstm_hidden, num_classes)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frame counts after the convolutions' time strides."""
        for module in self.conv:
            if isinstance(module, nn.Conv2d):
                lengths = _out_size(lengths, module.kernel_size[1], module.stride[1], module.padding[1])
        return lengths

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The max-pooled ``[B, lstm_hidden]`` utterance vector before the classifier."""
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.shape[-1] != self.in_dim:
            received = tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else hidden
            raise ConfigError("hidden", f"hidden states [B, T, {self.in_dim}]", received)
        batch, frames, _ = hidden.shape
        lengths = lengths_from_mask(attention_mask, batch, frames, hidden.device)
        x = hidden.masked_fill(~_frame_mask(lengths, frames)[:, :, None], 0.0)
        x = x.transpose(1, 2).unsqueeze(1)  # [B, 1, D, T]
        for module in self.conv:
            x = module(x)
            if isinstance(module, nn.Conv2d):
                lengths = _out_size(lengths, module.kernel_size[1], module.stride[1], module.padding[1])
            x = x.masked_fill(~_frame_mask(lengths, x.shape[-1])[:, None, None, :], 0.0)
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).transpose(1, 2)  # [B, T', C*F]
        cpu_lengths = lengths.cpu()
        for lstm in self.lstms:
            packed = nn.utils.rnn.pack_padded_sequence(x, cpu_lengths, batch_first=True, enforce_sorted=False)
            out, _ = lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
            x = out.view(b, t, 2, -1).sum(2)  # the two directions summed
        x = x.masked_fill(~_frame_mask(lengths, t)[:, :, None], float("-inf"))
        return x.max(1).values

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Intent logits ``[B, num_classes]`` of hidden states ``[B, T, in_dim]`` (right-padded per the mask)."""
        return self.classifier(self.pooled(hidden, attention_mask))


def _frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]
