"""vq-wav2vec: a convolutional encoder, a grouped quantizer, a causal aggregator and the contrastive loss.

Baevski, Schneider, Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453).

``VqWav2Vec(config)`` maps raw 16 kHz audio ``[B, S]`` to dense features ``z`` (one frame per 160 samples with
the wav2vec encoder), quantizes them (``config.quantizer``: ``"gumbel"`` or ``"kmeans"``, ``G`` groups of ``V``
codewords), aggregates the quantized frames into a causal context ``c`` and, in ``forward``, returns the
contrastive loss of predicting the next ``K`` quantized frames from ``c`` (plus the quantizer's own loss).

``tokens(wave)`` gives the discrete tokens that feed a BERT: one id per frame, the group indices combined as
``sum_g i_g * V**(G-1-g)`` in ``[0, V**G)`` (``num_tokens``), or the ``[B, T, G]`` indices with
``combine=False``. ``VqWav2VecConfig.tiny()`` is a 64-channel model that trains in seconds on a CPU.

Submodules are named as in the reference implementation (``feature_extractor``, ``vector_quantizer``,
``feature_aggregator``) so that its checkpoints load by name (:mod:`kd_speech.models.fairseq_vq_wav2vec`);
the future-step maps are ``predictor``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from kd_core.errors import ConfigError
from torch import nn

from kd_speech.models._checks import non_negative_float, positive_float, positive_int, probability
from kd_speech.models.codebook import combine_indices
from kd_speech.models.contrastive import FutureStepPredictor, future_contrastive_loss, sample_distractors
from kd_speech.models.conv_encoder import (
    WAV2VEC_AGGREGATOR_LAYERS,
    WAV2VEC_CONV_LAYERS,
    ContextAggregator,
    FeatureEncoder,
    LayerSpec,
    check_layers,
    num_frames,
    receptive_field,
    total_stride,
)
from kd_speech.models.quantizers import GumbelQuantizer, KMeansQuantizer, QuantizerOutput, check_temperature

__all__ = ["QUANTIZERS", "VqWav2Vec", "VqWav2VecConfig", "VqWav2VecOutput"]

QUANTIZERS = ("gumbel", "kmeans")

_TINY: dict[str, Any] = {
    "conv_layers": ((64, 10, 5), (64, 8, 4), (64, 4, 4), (64, 4, 2)),
    "aggregator_layers": ((64, 2, 1), (64, 3, 1), (64, 4, 1)),
    "num_vars": 16,
    "prediction_steps": 4,
    "num_negatives": 4,
}


@dataclass(frozen=True)
class VqWav2VecConfig:
    """Every size and switch of a vq-wav2vec model; the defaults are the paper's (ReLU, 8 steps, 10 distractors).

    ``conv_layers`` / ``aggregator_layers`` are ``(channels, kernel, stride)`` triples (aggregator strides must be
    1). ``vq_dim`` (Gumbel only; k-means quantizes in the encoder's width) defaults to the encoder's channels.
    ``temperature`` is the Gumbel ``(start, floor, decay per update)``; ``gamma`` the k-means commitment weight.
    ``prediction_offset`` is the frame distance of step 1 (1 in the paper). ``quantizer_loss_weight`` scales the
    quantizer's loss in the total; ``diversity_weight`` is an optional Gumbel codebook-diversity penalty (0 in
    the paper).
    """

    conv_layers: tuple[LayerSpec, ...] = WAV2VEC_CONV_LAYERS
    aggregator_layers: tuple[LayerSpec, ...] = WAV2VEC_AGGREGATOR_LAYERS
    quantizer: str = "gumbel"
    groups: int = 2
    num_vars: int = 320
    vq_dim: int | None = None
    combine_groups: bool = False
    weight_proj_depth: int = 1
    weight_proj_factor: int = 2
    temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995)
    gamma: float = 0.25
    prediction_steps: int = 8
    num_negatives: int = 10
    prediction_offset: int = 1
    activation: str = "relu"
    log_compression: bool = False
    skip_connections_feat: bool = False
    skip_connections_agg: bool = True
    residual_scale: float = 0.5
    aggregator_bias: bool = True
    zero_pad: bool = False
    dropout: float = 0.0
    dropout_features: float = 0.0
    dropout_agg: float = 0.0
    quantizer_loss_weight: float = 1.0
    diversity_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "conv_layers", check_layers("conv_layers", self.conv_layers))
        object.__setattr__(self, "aggregator_layers",
                           check_layers("aggregator_layers", self.aggregator_layers, stride_one=True))
        if self.quantizer not in QUANTIZERS:
            raise ConfigError("quantizer", f"one of {QUANTIZERS}", self.quantizer)
        for name in ("groups", "num_vars", "weight_proj_depth", "weight_proj_factor", "prediction_steps",
                     "num_negatives", "prediction_offset"):
            positive_int(name, getattr(self, name))
        if self.num_vars < 2:
            raise ConfigError("num_vars", "at least 2 codewords per group", self.num_vars)
        width = self.conv_layers[-1][0]
        if self.vq_dim is not None:
            positive_int("vq_dim", self.vq_dim)
            if self.quantizer == "kmeans" and self.vq_dim != width:
                raise ConfigError("vq_dim", f"None or the encoder's width ({width}) for k-means", self.vq_dim)
        if (self.vq_dim or width) % self.groups:
            raise ConfigError("groups", f"a divisor of the quantized width ({self.vq_dim or width})", self.groups)
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        non_negative_float("gamma", self.gamma)
        if self.activation not in ("relu", "gelu"):
            raise ConfigError("activation", "'relu' or 'gelu'", self.activation)
        positive_float("residual_scale", self.residual_scale)
        for name in ("dropout", "dropout_features", "dropout_agg"):
            probability(name, getattr(self, name))
        non_negative_float("quantizer_loss_weight", self.quantizer_loss_weight)
        non_negative_float("diversity_weight", self.diversity_weight)

    @classmethod
    def tiny(cls, **overrides: Any) -> VqWav2VecConfig:
        """A 64-channel model (4 encoder layers, stride 160; 3 aggregator layers; 2 x 16 codewords)."""
        return cls(**{**_TINY, **overrides})

    @property
    def stride(self) -> int:
        """Input samples per frame (160 for the wav2vec encoder)."""
        return total_stride(self.conv_layers)

    @property
    def receptive_field(self) -> int:
        """Input samples seen by one frame of ``z``."""
        return receptive_field(self.conv_layers)

    def num_frames(self, num_samples: int) -> int:
        """Frames of ``z`` for ``num_samples`` samples."""
        return num_frames(self.conv_layers, num_samples)

    def min_samples(self) -> int:
        """The shortest input that gives one contrastive prediction (``prediction_offset + 1`` frames)."""
        return self.receptive_field + self.prediction_offset * self.stride

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), for JSON or YAML."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VqWav2VecConfig:
        """The config written by ``to_dict``; an unknown key is a ``ConfigError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError("config", f"keys among {sorted(names)}", unknown)
        values = dict(values)
        for key in ("conv_layers", "aggregator_layers"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(tuple(layer) for layer in values[key])
        if isinstance(values.get("temperature"), list):
            values["temperature"] = tuple(values["temperature"])
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class VqWav2VecOutput:
    """What ``VqWav2Vec.forward`` returns.

    ``loss = contrastive + quantizer_loss_weight * quantizer_loss``; ``features`` the encoder output ``z``
    ``[B, C, T]``; ``quantized`` ``ẑ`` ``[B, D, T]``; ``context`` ``c`` ``[B, C', T]``; ``indices`` ``[B, T, G]``;
    ``code_perplexity`` / ``prob_perplexity`` from the quantizer; ``temperature`` the Gumbel temperature (None
    for k-means).
    """

    loss: torch.Tensor
    contrastive: torch.Tensor
    quantizer_loss: torch.Tensor
    features: torch.Tensor
    quantized: torch.Tensor
    context: torch.Tensor
    indices: torch.Tensor
    code_perplexity: torch.Tensor
    prob_perplexity: torch.Tensor
    temperature: float | None


class VqWav2Vec(nn.Module):
    """The vq-wav2vec model of ``config`` (see the module docstring)."""

    def __init__(self, config: VqWav2VecConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = VqWav2VecConfig()
        if not isinstance(config, VqWav2VecConfig):
            raise ConfigError("config", "a VqWav2VecConfig", type(config).__name__)
        self.config = config
        self.feature_extractor = FeatureEncoder(
            config.conv_layers, dropout=config.dropout, activation_name=config.activation,
            log_compression=config.log_compression, skip_connections=config.skip_connections_feat,
            residual_scale=config.residual_scale)
        width = self.feature_extractor.out_channels
        self.vector_quantizer: GumbelQuantizer | KMeansQuantizer
        if config.quantizer == "gumbel":
            self.vector_quantizer = GumbelQuantizer(
                width, num_vars=config.num_vars, groups=config.groups, vq_dim=config.vq_dim,
                combine_groups=config.combine_groups, weight_proj_depth=config.weight_proj_depth,
                weight_proj_factor=config.weight_proj_factor, temperature=config.temperature,
                activation_name=config.activation, diversity_weight=config.diversity_weight)
        else:
            self.vector_quantizer = KMeansQuantizer(width, num_vars=config.num_vars, groups=config.groups,
                                                    combine_groups=config.combine_groups, gamma=config.gamma)
        quantized_dim = self.vector_quantizer.vq_dim
        self.dropout_feats = nn.Dropout(config.dropout_features)
        self.feature_aggregator = ContextAggregator(
            quantized_dim, config.aggregator_layers, dropout=config.dropout, activation_name=config.activation,
            skip_connections=config.skip_connections_agg, residual_scale=config.residual_scale,
            conv_bias=config.aggregator_bias, zero_pad=config.zero_pad)
        self.dropout_agg = nn.Dropout(config.dropout_agg)
        self.predictor = FutureStepPredictor(self.feature_aggregator.out_channels, quantized_dim,
                                             config.prediction_steps)

    @property
    def stride(self) -> int:
        """Input samples per frame."""
        return self.config.stride

    @property
    def num_tokens(self) -> int:
        """Distinct combined token ids: ``num_vars ** groups``."""
        return self.config.num_vars ** self.config.groups

    def num_frames(self, num_samples: int) -> int:
        """Frames (and tokens) for ``num_samples`` samples."""
        return self.config.num_frames(num_samples)

    def set_num_updates(self, num_updates: int) -> None:
        """Tell the quantizer how many optimizer updates were made (anneals the Gumbel temperature)."""
        if isinstance(self.vector_quantizer, GumbelQuantizer):
            self.vector_quantizer.set_num_updates(num_updates)

    def quantize(self, wave: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """``(z, quantizer output)`` of a batch of waveforms ``[B, S]``."""
        features = self.feature_extractor(wave)
        return features, self.vector_quantizer(features)

    def forward(self, wave: torch.Tensor, generator: torch.Generator | None = None) -> VqWav2VecOutput:
        """Encode, quantize, aggregate and score future frames of waveforms ``[B, S]``.

        Distractors are drawn with ``generator`` (the global generator when None).
        """
        features, quantized = self.quantize(wave)
        context = self.dropout_agg(self.feature_aggregator(self.dropout_feats(quantized.quantized)))
        predictions = self.predictor(context)
        targets = quantized.quantized.transpose(1, 2)
        batch, frames = targets.shape[:2]
        if frames <= self.config.prediction_offset:
            raise ConfigError("wave", f"at least {self.config.min_samples()} samples "
                              f"({self.config.prediction_offset + 1} frames)", wave.shape[-1])
        distractors = sample_distractors(batch, frames, self.config.num_negatives, generator=generator,
                                         device=targets.device)
        contrastive = future_contrastive_loss(predictions, targets, distractors, offset=self.config.prediction_offset)
        loss = contrastive + self.config.quantizer_loss_weight * quantized.loss
        temperature = (self.vector_quantizer.temperature if isinstance(self.vector_quantizer, GumbelQuantizer)
                       else None)
        return VqWav2VecOutput(loss=loss, contrastive=contrastive, quantizer_loss=quantized.loss,
                               features=features, quantized=quantized.quantized, context=context,
                               indices=quantized.indices, code_perplexity=quantized.code_perplexity,
                               prob_perplexity=quantized.prob_perplexity, temperature=temperature)

    @torch.no_grad()
    def indices(self, wave: torch.Tensor) -> torch.Tensor:
        """Deterministic codeword indices ``[B, T, G]`` (no Gumbel noise, in any mode)."""
        return self.vector_quantizer.indices(self.feature_extractor(_batch(wave)))

    @torch.no_grad()
    def tokens(self, wave: torch.Tensor, combine: bool = True) -> torch.Tensor:
        """Discrete tokens of waveforms ``[B, S]`` (or one ``[S]``): ``[B, T]`` combined ids, or ``[B, T, G]``.

        A combined id is ``sum_g i_g * num_vars**(G-1-g)``, in ``[0, num_tokens)``.
        """
        single = wave.dim() == 1
        indices = self.indices(wave)
        out = combine_indices(indices, self.config.num_vars) if combine else indices
        return out[0] if single else out


def _batch(wave: torch.Tensor) -> torch.Tensor:
    if not isinstance(wave, torch.Tensor):
        raise ConfigError("wave", "a torch.Tensor [S] or [B, S]", type(wave).__name__)
    return wave.unsqueeze(0) if wave.dim() == 1 else wave

