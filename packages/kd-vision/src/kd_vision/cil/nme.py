"""iCaRL's nearest-mean-of-exemplars classifier (Rebuffi et al., "iCaRL: Incremental Classifier and
Representation Learning", CVPR 2017) over a trained network's embedding.

The embedding is the input of the network's last ``nn.Linear`` (its penultimate features), L2-normalised.
Each class's prototype is the mean of its exemplars' normalised embeddings, normalised again; an image is
assigned to the class whose prototype is nearest (squared Euclidean distance). ``NearestMeanClassifier``
returns ``−distance²`` as logits, so argmax, accuracy and the seen-class mask work as for a softmax head;
classes without exemplars get :data:`kd_vision.cil.heads.MASKED_LOGIT`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_vision.cil.heads import MASKED_LOGIT

__all__ = ["NearestMeanClassifier", "last_linear", "nearest_mean_logits", "normalised_class_means"]


def last_linear(net: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` among ``net``'s modules (its classifier head)."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("train.model", "a network whose classifier head is an nn.Linear (for the NME classifier)",
                          type(net).__name__)
    return linears[-1]


@contextmanager
def _captured_embedding(net: nn.Module) -> Iterator[list[torch.Tensor]]:
    """While open, every forward of ``net`` appends the input of its last linear layer to the yielded list."""
    seen: list[torch.Tensor] = []
    handle = last_linear(net).register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


def embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net``'s L2-normalised penultimate features ``[B, D]`` for the images ``x``."""
    with _captured_embedding(net) as seen:
        net(x)
    return F.normalize(seen[-1].flatten(1), dim=1)


def normalised_class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the mean of the (already normalised) ``features`` of its samples, normalised: ``(means [C, D],
    known [C])``; a class without samples has a zero mean and ``known`` False."""
    means = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    known = torch.zeros(num_classes, dtype=torch.bool, device=features.device)
    for c in labels.unique().tolist():
        means[c] = F.normalize(features[labels == c].mean(0), dim=0)
        known[c] = True
    return means, known


def nearest_mean_logits(features: torch.Tensor, means: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``−‖features − means[c]‖²`` for each class c; classes not ``known`` get ``MASKED_LOGIT``."""
    distances = (features[:, None, :] - means[None, :, :]).pow(2).sum(-1)
    return (-distances).masked_fill(~known, MASKED_LOGIT)


class NearestMeanClassifier(nn.Module):
    """``net`` classified by the nearest mean of its exemplars' embeddings (buffers ``means``, ``known``, so a
    checkpoint carries the prototypes); ``fit_means`` computes them from an exemplar dataset."""

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.net = net
        dim = last_linear(net).in_features
        self.register_buffer("means", torch.zeros(num_classes, dim))
        self.register_buffer("known", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def fit_means(self, exemplars: Dataset, batch_size: int = 256) -> NearestMeanClassifier:
        """Set the prototypes from ``exemplars`` (items ``{"input", "label"}``), with ``net`` in eval mode."""
        was_training = self.net.training
        self.net.eval()
        device = self.means.device
        features, labels = [], []
        for batch in DataLoader(exemplars, batch_size=batch_size):
            features.append(embed(self.net, batch["input"].to(device)))
            labels.append(torch.as_tensor(batch["label"]).to(device))
        self.net.train(was_training)
        if not features:
            raise ConfigError("exemplars", "at least one exemplar to compute class means from", 0)
        means, known = normalised_class_means(torch.cat(features), torch.cat(labels), len(self.known))
        self.means.copy_(means)
        self.known.copy_(known)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NME logits ``[B, num_classes]``: minus the squared distance to each class's prototype."""
        return nearest_mean_logits(embed(self.net, x), self.means, self.known)
