"""wav2vec's contrastive future-step loss: step-specific predictors, distractor sampling and the binary loss.

Schneider, Baevski, Collobert, Auli, "wav2vec: Unsupervised Pre-training for Speech Recognition", Interspeech 2019
(arXiv 1904.05862), eq. 1, as used by Baevski, Schneider, Auli, "vq-wav2vec", ICLR 2020 (arXiv 1910.05453).

For each step ``k = 1..K`` an affine map ``h_k(c_i) = W_k c_i + b_k`` of the context at frame ``i`` scores the
true (quantized) frame ``z_{i+k}`` against ``N`` distractors ``z̃`` drawn uniformly from the other frames of the
same utterance::

    L_k = -sum_i [ log σ(z_{i+k}ᵀ h_k(c_i)) + sum_{n=1..N} log σ(-z̃_nᵀ h_k(c_i)) ]

(the paper's ``λ E[·]`` with ``λ = N``, estimated by the sum over the ``N`` samples). With ``offset > 1`` step
``k`` predicts frame ``i + offset + k - 1`` instead (the reference code skips frames that share input samples).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from torch import nn

from kd_speech.models._checks import positive_int

__all__ = ["FutureStepPredictor", "future_contrastive_loss", "sample_distractors"]


class FutureStepPredictor(nn.Module):
    """``K`` affine maps from the context ``[B, C, T]`` to predictions ``[B, K, T, D]`` of future frames.

    ``weight`` is ``[K, D, C]`` and ``bias`` ``[K, D]``: ``predictions[b, k, t] = weight[k] @ context[b, :, t]
    + bias[k]``.
    """

    def __init__(self, context_dim: int, target_dim: int, steps: int) -> None:
        super().__init__()
        self.context_dim = positive_int("context_dim", context_dim)
        self.target_dim = positive_int("target_dim", target_dim)
        self.steps = positive_int("prediction_steps", steps)
        self.weight = nn.Parameter(torch.empty(steps, target_dim, context_dim))
        self.bias = nn.Parameter(torch.empty(steps, target_dim))
        bound = 1.0 / math.sqrt(context_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """Predictions ``[B, K, T, D]``."""
        if context.dim() != 3 or context.shape[1] != self.context_dim:
            raise ConfigError("context", f"a tensor [B, {self.context_dim}, T]", tuple(context.shape))
        return torch.einsum("kdc,bct->bktd", self.weight, context) + self.bias[None, :, None, :]


def sample_distractors(batch: int, frames: int, num: int, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Distractor frame indices ``[B, T, N]``: for target frame ``j``, ``N`` draws uniform over the other frames.

    Draws are with replacement and never equal ``j`` itself; they come from the same utterance.
    """
    positive_int("batch", batch)
    positive_int("num_negatives", num)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ConfigError("frames", "at least 2 frames (a distractor must differ from the target)", frames)
    if generator is not None:
        device = generator.device
    draws = torch.randint(0, frames - 1, (batch, frames, num), generator=generator, device=device)
    target = torch.arange(frames, device=draws.device).view(1, frames, 1)
    return draws + (draws >= target).long()


def future_contrastive_loss(predictions: torch.Tensor, targets: torch.Tensor, distractors: torch.Tensor,
                            offset: int = 1, reduction: str = "mean") -> torch.Tensor:
    """The contrastive loss of predictions ``[B, K, T, D]`` against targets ``[B, T, D]``.

    ``distractors`` ``[B, T, N]`` lists, for each target frame, the frames whose targets serve as its
    distractors (``sample_distractors``). Step ``k`` (1-based) pairs the prediction at frame ``i`` with the target
    at ``i + offset + k - 1``; steps that run past the end contribute nothing. ``reduction="sum"`` gives
    ``sum_k L_k``; ``"mean"`` divides it by the number of (utterance, frame, step) predictions.
    """
    if predictions.dim() != 4 or targets.dim() != 3:
        raise ConfigError("predictions, targets", "tensors [B, K, T, D] and [B, T, D]",
                          (tuple(predictions.shape), tuple(targets.shape)))
    batch, steps, frames, width = predictions.shape
    if targets.shape != (batch, frames, width):
        raise ConfigError("targets", f"a tensor {(batch, frames, width)}", tuple(targets.shape))
    if distractors.dim() != 3 or distractors.shape[:2] != (batch, frames):
        raise ConfigError("distractors", f"an index tensor [{batch}, {frames}, N]", tuple(distractors.shape))
    positive_int("offset", offset)
    if reduction not in ("mean", "sum"):
        raise ConfigError("reduction", "'mean' or 'sum'", reduction)
    rows = torch.arange(batch, device=targets.device).view(batch, 1, 1)
    negatives = targets[rows, distractors]  # [B, T, N, D]: the distractors of each target frame
    total = predictions.new_zeros(())
    count = 0
    for k in range(steps):
        shift = offset + k
        if shift >= frames:
            break
        predicted = predictions[:, k, : frames - shift]  # [B, T', D]
        positive = (predicted * targets[:, shift:]).sum(-1)
        negative = torch.einsum("btd,btnd->btn", predicted, negatives[:, shift:])
        total = total - F.logsigmoid(positive).sum() - F.logsigmoid(-negative).sum()
        count += positive.numel()
    if count == 0:
        raise ConfigError("targets", f"more than {offset} frames (one prediction at least)", frames)
    return total / count if reduction == "mean" else total
