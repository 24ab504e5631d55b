"""Per-layer probes: each layer's pooled hidden state, read through kd-core taps, and a linear classifier on it.

Park & Park (ACL 2023, arXiv:2306.07061), step 2: put a classifier on every layer of a fine-tuned
encoder and record each layer's validation accuracy (and, where human distributions exist, its JSD).
The encoder stays frozen: features are read once, in eval mode, with ``kd_core.taps.TapSet`` on the
layer outputs (``bert.encoder.layer.{i}``); the probes are then trained on those features through
``Distiller`` (one cross-entropy term per probe, each probe reading its own tap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from kd_core.backends import Backend
from kd_core.engine import Distiller, Phase, adamw
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy
from kd_core.objective import Objective, Term
from kd_core.taps import TapSet
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kd_nlu.ambiguity.heads import Pooling, ProbeHead, pool
from kd_nlu.ambiguity.layers import layer_paths
from kd_nlu.data.text import encoder_forward


@torch.no_grad()
def layer_features(model: nn.Module, dataset: Dataset, collate: Callable[[list[Any]], Any],
                   pooling: Pooling = "cls", batch_size: int = 128,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Pooled hidden states of every encoder layer, ``[N, L, H]`` (layer 1 first), in eval mode."""
    paths = layer_paths(model)
    taps = TapSet(model, paths)
    was_training = model.training
    model.eval()
    chunks = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out = taps.run(encoder_forward, model, batch)
        mask = batch.get("attention_mask")
        chunks.append(torch.stack([pool(out[p], mask, pooling) for p in paths], dim=1).float().cpu())
    model.train(was_training)
    return torch.cat(chunks)


class FeatureDataset(Dataset):
    """Cached per-layer features ``[N, L, H]`` with labels, as ``{"input", "label"}`` samples."""

    def __init__(self, features: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if features.dim() != 3 or len(features) != len(labels):
            raise ConfigError("features", f"a tensor [N, L, H] with one row per label ({len(labels)})",
                              tuple(features.shape))
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input": self.features[index], "label": self.labels[index]}


class ProbeBank(nn.Module):
    """One ``ProbeHead`` per layer; ``forward([N, L, H]) -> [N, L, C]`` (probe ℓ reads layer ℓ's features)."""

    def __init__(self, n_layers: int, hidden_size: int, num_labels: int, pooling: Pooling = "cls") -> None:
        super().__init__()
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ConfigError("n_layers", "a positive integer", n_layers)
        self.heads = nn.ModuleList(ProbeHead(hidden_size, num_labels, pooling) for _ in range(n_layers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Every probe's logits on its own layer's features."""
        if features.dim() != 3 or features.shape[1] != len(self.heads):
            raise ConfigError("features", f"a tensor [N, {len(self.heads)}, H]", tuple(features.shape))
        return torch.stack([head.classify(features[:, i]) for i, head in enumerate(self.heads)], dim=1)


def probe_objective(n_layers: int) -> Objective:
    """Cross-entropy of every probe on the labels, each term reading its probe's tap (``heads.{i}.linear``)."""
    return Objective(*(Term(f"probe{i + 1}", cross_entropy, student=f"heads.{i}.linear", target="label")
                       for i in range(n_layers)))


def train_probes(bank: ProbeBank, train: FeatureDataset, out: Path, *, epochs: int, lr: float, batch_size: int,
                 seed: int, backend: Backend | None = None, callbacks: Sequence[Any] = ()) -> ProbeBank:
    """Train every probe on frozen features through ``Distiller`` (AdamW, ``epochs`` epochs); return the bank."""
    phase = Phase("probes", probe_objective(len(bank.heads)), epochs=epochs, optimizer=adamw(lr))
    distiller = Distiller(bank, phases=[phase], backend=backend or Backend(device="cpu"), batch_size=batch_size,
                          seed=seed, callbacks=callbacks)
    distiller.fit(train, None, out=out, config={"role": "probes", "seed": seed})
    return bank.cpu()


@torch.no_grad()
def probe_logits(bank: ProbeBank, features: torch.Tensor) -> torch.Tensor:
    """Every probe's logits ``[N, L, C]`` on ``features`` (eval mode, CPU)."""
    bank = bank.cpu().eval()
    return bank(features.cpu())


def layer_accuracies(logits: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> list[float]:
    """Accuracy of each layer's probe from logits ``[N, L, C]``."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    return (logits.argmax(-1) == labels[:, None]).double().mean(0).tolist()
