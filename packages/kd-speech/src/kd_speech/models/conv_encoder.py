"""The convolutional halves of wav2vec / vq-wav2vec: a feature encoder over raw audio and a causal context aggregator.

Schneider, Baevski, Collobert, Auli, "wav2vec: Unsupervised Pre-training for Speech Recognition", Interspeech 2019
(arXiv 1904.05862), and Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech
Representations", ICLR 2020 (arXiv 1910.05453).

``FeatureEncoder`` maps a 16 kHz waveform ``[B, S]`` to features ``[B, C, T]``: a stack of strided 1-D convolutions
(no bias), each followed by a GroupNorm with one group (normalising over channels and time) and an activation. The
wav2vec stack (``WAV2VEC_CONV_LAYERS``: kernels 10, 8, 4, 4, 4, 1, 1, 1 and strides 5, 4, 2, 2, 2, 1, 1, 1, 512
channels) has a total stride of 160 samples (10 ms) and a receptive field of 465 samples (30 ms).

``ContextAggregator`` is a stack of causal convolutions (left padding of ``kernel - 1`` frames), each with a
GroupNorm and an activation and optionally a scaled residual connection.

Module names follow the reference implementation's (``conv_layers.N.0`` is a convolution, ``residual_proj.N``
a 1x1 projection) so that its checkpoints map onto these modules by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from kd_core.errors import ConfigError
from torch import nn

from kd_speech.models._checks import positive_float, positive_int, probability

__all__ = ["WAV2VEC_AGGREGATOR_LAYERS", "WAV2VEC_CONV_LAYERS", "ContextAggregator", "FeatureEncoder",
           "LayerSpec", "activation", "check_layers", "num_frames", "receptive_field", "total_stride"]

#: ``(channels, kernel, stride)`` of one convolution
LayerSpec = tuple[int, int, int]

#: the wav2vec / vq-wav2vec feature encoder: total stride 160, receptive field 465 samples
WAV2VEC_CONV_LAYERS: tuple[LayerSpec, ...] = (
    (512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2), (512, 1, 1), (512, 1, 1), (512, 1, 1))
#: the vq-wav2vec context aggregator: 12 causal layers with kernels 2..13
WAV2VEC_AGGREGATOR_LAYERS: tuple[LayerSpec, ...] = tuple((512, kernel, 1) for kernel in range(2, 14))

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu`` or ``gelu``)."""
    if name not in _ACTIVATIONS:
        raise ConfigError("activation", f"one of {sorted(_ACTIVATIONS)}", name)
    return _ACTIVATIONS[name]()


def check_layers(argument: str, layers: Sequence[Sequence[int]], stride_one: bool = False) -> tuple[LayerSpec, ...]:
    """``layers`` as a tuple of ``(channels, kernel, stride)`` triples of positive integers, or a ``ConfigError``."""
    if isinstance(layers, str | bytes) or not isinstance(layers, Sequence) or not layers:
        raise ConfigError(argument, "a non-empty sequence of (channels, kernel, stride) triples", layers)
    checked = []
    for index, layer in enumerate(layers):
        if (isinstance(layer, str | bytes) or not isinstance(layer, Sequence) or len(layer) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in layer)):
            raise ConfigError(f"{argument}[{index}]", "a (channels, kernel, stride) triple of positive integers", layer)
        if stride_one and layer[2] != 1:
            raise ConfigError(f"{argument}[{index}]", "stride 1 (the aggregator keeps the frame rate)", layer)
        checked.append((int(layer[0]), int(layer[1]), int(layer[2])))
    return tuple(checked)


def total_stride(layers: Sequence[LayerSpec]) -> int:
    """Input samples per output frame: the product of the strides."""
    return math.prod(stride for _, _, stride in layers)


def receptive_field(layers: Sequence[LayerSpec]) -> int:
    """Input samples seen by one output frame."""
    field, jump = 1, 1
    for _, kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def num_frames(layers: Sequence[LayerSpec], num_samples: int) -> int:
    """Output frames of an unpadded strided stack for ``num_samples`` input samples (0 when too short)."""
    length = num_samples
    for _, kernel, stride in layers:
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


class FeatureEncoder(nn.Module):
    """Raw waveform ``[B, S]`` (or ``[B, 1, S]``) to features ``[B, C, T]`` with ``T = num_frames(S)``.

    Each block ``conv_layers.N`` is ``Conv1d`` (no bias) → ``Dropout`` → ``GroupNorm(1, C)`` → activation.
    ``skip_connections`` adds a (subsampled) residual where the channel count is unchanged, scaled by
    ``sqrt(residual_scale)``; ``log_compression`` applies ``log(1 + |x|)`` to the output (wav2vec's option).
    """

    def __init__(self, layers: Sequence[Sequence[int]] = WAV2VEC_CONV_LAYERS, dropout: float = 0.0,
                 activation_name: str = "relu", log_compression: bool = False, skip_connections: bool = False,
                 residual_scale: float = 0.5) -> None:
        super().__init__()
        self.layers = check_layers("conv_layers", layers)
        probability("dropout", dropout)
        positive_float("residual_scale", residual_scale)
        self.log_compression = bool(log_compression)
        self.skip_connections = bool(skip_connections)
        self.residual_scale = math.sqrt(residual_scale)
        self.conv_layers = nn.ModuleList()
        in_channels = 1
        for channels, kernel, stride in self.layers:
            self.conv_layers.append(nn.Sequential(
                nn.Conv1d(in_channels, channels, kernel, stride=stride, bias=False),
                nn.Dropout(dropout),
                nn.GroupNorm(1, channels),
                activation(activation_name),
            ))
            in_channels = channels
        #: channels of the output features
        self.out_channels = in_channels

    @property
    def stride(self) -> int:
        """Input samples per output frame."""
        return total_stride(self.layers)

    @property
    def receptive_field(self) -> int:
        """Input samples seen by one output frame."""
        return receptive_field(self.layers)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` input samples."""
        return num_frames(self.layers, num_samples)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Features ``[B, C, T]`` of a batch of waveforms."""
        if wave.dim() == 2:
            wave = wave.unsqueeze(1)
        if wave.dim() != 3 or wave.shape[1] != 1:
            raise ConfigError("wave", "a batch of mono waveforms [B, S] or [B, 1, S]", tuple(wave.shape))
        if wave.shape[-1] < self.receptive_field:
            raise ConfigError("wave", f"at least {self.receptive_field} samples (one frame)", wave.shape[-1])
        x = wave
        for block in self.conv_layers:
            residual = x
            x = block(x)
            if self.skip_connections and x.shape[1] == residual.shape[1]:
                step = max(residual.shape[-1] // x.shape[-1], 1)
                x = (x + residual[..., ::step][..., :x.shape[-1]]) * self.residual_scale
        if self.log_compression:
            x = torch.log1p(x.abs())
        return x


class ContextAggregator(nn.Module):
    """Causal convolutions over features ``[B, C_in, T]`` giving a context ``[B, C, T]`` (same length).

    Block ``conv_layers.N`` is a left pad of ``kernel - 1`` frames (replicating the first frame, or zeros with
    ``zero_pad``) → ``Conv1d`` → ``Dropout`` → ``GroupNorm(1, C)`` → activation, so frame ``t`` of the output
    only sees frames ``<= t``. With ``skip_connections`` each block adds its input (through the 1x1 projection
    ``residual_proj.N`` where the channel count changes) and scales the sum by ``sqrt(residual_scale)``.
    """

    def __init__(self, in_channels: int, layers: Sequence[Sequence[int]] = WAV2VEC_AGGREGATOR_LAYERS,
                 dropout: float = 0.0, activation_name: str = "relu", skip_connections: bool = True,
                 residual_scale: float = 0.5, conv_bias: bool = True, zero_pad: bool = False) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        self.layers = check_layers("aggregator_layers", layers, stride_one=True)
        probability("dropout", dropout)
        positive_float("residual_scale", residual_scale)
        self.skip_connections = bool(skip_connections)
        self.residual_scale = math.sqrt(residual_scale)
        self.conv_layers = nn.ModuleList()
        self.residual_proj = nn.ModuleList()
        channels_in = in_channels
        for channels, kernel, stride in self.layers:
            pad = nn.ConstantPad1d((kernel - 1, 0), 0.0) if zero_pad else nn.ReplicationPad1d((kernel - 1, 0))
            self.conv_layers.append(nn.Sequential(
                pad,
                nn.Conv1d(channels_in, channels, kernel, stride=stride, bias=conv_bias),
                nn.Dropout(dropout),
                nn.GroupNorm(1, channels),
                activation(activation_name),
            ))
            if self.skip_connections and channels_in != channels:
                self.residual_proj.append(nn.Conv1d(channels_in, channels, 1, bias=False))
            else:
                self.residual_proj.append(nn.Identity())
            channels_in = channels
        #: channels of the context
        self.out_channels = channels_in

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Context ``[B, C, T]`` of features ``[B, C_in, T]``."""
        x = features
        for block, project in zip(self.conv_layers, self.residual_proj):
            residual = x
            x = block(x)
            if self.skip_connections:
                x = (x + project(residual)) * self.residual_scale
        return x

