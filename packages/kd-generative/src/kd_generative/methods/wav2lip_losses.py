"""Wav2Lip's training pieces on kd-core's loop: the expert sync loss and a visual-quality discriminator.

Prajwal, Mukhopadhyay, Namboodiri and Jawahar, "A Lip Sync Expert Is All You Need for Speech to Lip Generation
In the Wild", ACM MM 2020. The sync loss feeds the lower halves of the T generated frames of a window, stacked on
channels, and the window's mel to a frozen, pretrained SyncNet-style expert, and takes the binary cross-entropy
of its in-sync probability (the cosine of the two embeddings) against "in sync": ``L_sync = −log P_sync``.
Wav2Lip weighs it 0.03 and its visual-quality discriminator 0.07 (the L1 term gets the remaining 0.9).

The discriminator here is the Pix2Pix PatchGAN (``kd_generative.models.patchgan``) over the lower half of every
frame, conditioned on the lower half of the frame's reference (same face, another mouth shape): the PatchGAN
needs a condition, and the reference carries identity without the mouth. Wav2Lip's own discriminator is an
unconditional CNN on the lower half; both judge only the generated region.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from kd_core.gan import DiscriminatorSignal
from kd_core.objective import Term
from kd_core.signals import Signal
from torch import nn

from kd_generative.methods.pix2pix import adam
from kd_generative.models.patchgan import build_patchgan, min_input_size
from kd_generative.talking.dataset import lower_half
from kd_generative.talking.expert import SyncExpert, sync_probability

__all__ = ["LowerHalfCritic", "SyncLoss", "check_critic", "critic_signal", "sync_term"]

#: Wav2Lip's default weights of the sync loss and of the visual-quality discriminator (L1: 1 − both).
WAV2LIP_SYNC, WAV2LIP_GAN = 0.03, 0.07


class SyncLoss:
    """``−log P_sync(lower halves of frames, mel)``, mean over the batch, with a frozen ``expert``.

    Called as a term's loss with the generated frames ``(B, T, 3, S, S)`` and ``mel`` ``(B, 1, 80, 16)``. A
    plain callable, not an ``nn.Module``: the objective must not train (or checkpoint) the expert. The expert
    follows the frames to their device."""

    def __init__(self, expert: SyncExpert) -> None:
        if not isinstance(expert, nn.Module):
            raise ConfigError("expert", "a SyncExpert", type(expert).__name__)
        self.expert = expert.eval()
        for p in self.expert.parameters():
            p.requires_grad_(False)

    def __call__(self, frames: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """The sync loss of ``frames`` against ``mel``."""
        if frames.ndim != 5 or frames.shape[1] != self.expert.frames:
            raise ConfigError("frames", f"(B, {self.expert.frames}, 3, S, S) generated windows", tuple(frames.shape))
        if next(self.expert.parameters()).device != frames.device:
            self.expert.to(frames.device)
        face = self.expert.embed_face(lower_half(frames).flatten(1, 2).float())
        audio = self.expert.embed_audio(mel.float())
        p = sync_probability(face, audio)
        return F.binary_cross_entropy(p, torch.ones_like(p))


def sync_term(expert: SyncExpert, weight: float, name: str = "sync") -> Term:
    """``weight · L_sync`` on the student's frames and the batch's ``mel``."""
    return Term(name, SyncLoss(expert), student="logits", inputs={"mel": "mel"}, weight=weight)


class LowerHalfCritic(nn.Module):
    """A PatchGAN on the lower half of every frame, conditioned on the lower half of its reference frame.

    ``forward(condition, image)``: ``condition`` the generator input ``(B[, T], 6, S, S)`` (its channels 3-5 are
    the reference), ``image`` real or generated frames ``(B[, T], 3, S, S)``; returns patch logits per frame."""

    def __init__(self, base: int = 16, n_layers: int = 2) -> None:
        super().__init__()
        self.patchgan = build_patchgan(3, 3, base=base, n_layers=n_layers)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Patch logits of the lower halves."""
        reference = condition[..., 3:6, :, :]
        if image.ndim == 5:
            image, reference = image.flatten(0, 1), reference.flatten(0, 1)
        return self.patchgan(lower_half(reference), lower_half(image))


def check_critic(size: int, n_layers: int) -> None:
    """Refuse a PatchGAN whose ``n_layers`` needs more rows than a lower half of ``size`` has (``ConfigError``)."""
    need = min_input_size(n_layers)
    if size // 2 < need:
        raise ConfigError("gan.n_layers", f"a PatchGAN that fits the lower half ({size // 2} rows at data.size = "
                          f"{size}; these n_layers need {need})", n_layers)


def critic_signal(base: int, n_layers: int, lr: float, beta1: float, mode: str,
                  teacher: Signal | None = None) -> DiscriminatorSignal:
    """A :class:`LowerHalfCritic` held and stepped by ``kd_core.gan.DiscriminatorSignal`` (Adam ``lr``, β1),
    real images from the batch's ``target``, conditioned on its ``input``, wrapping ``teacher`` (or nothing)."""
    return DiscriminatorSignal(LowerHalfCritic(base, n_layers), teacher, optimizer=adam(lr, beta1), real="target",
                               condition="input", mode=mode)
