"""Tied weights (one tensor under two names, as in language models) save and reload, in weights files, in
checkpoints and through a whole Distiller run."""

from __future__ import annotations

import torch
from kd_core import Distiller, Objective, Phase, Term
from kd_core.checkpoint import load_state, load_weights, save_state, save_weights
from kd_core.losses import cross_entropy
from torch import nn


class TiedToy(nn.Module):
    """Embedding and output projection sharing one matrix, plus a view of another parameter's storage."""

    def __init__(self, vocab: int = 6, width: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.out = nn.Linear(width, vocab, bias=False)
        self.out.weight = self.embed.weight  # tied
        self.register_buffer("first_row", self.embed.weight.data[0])  # a different view of the same storage

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(tokens).mean(1))


def test_tied_weights_save_once_and_reload_tied(tmp_path) -> None:
    torch.manual_seed(0)
    model = TiedToy()
    save_weights(model, tmp_path / "w.safetensors")
    fresh = TiedToy()
    load_weights(fresh, tmp_path / "w.safetensors")
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert fresh.out.weight is fresh.embed.weight  # still one parameter
    assert torch.equal(fresh.first_row, model.embed.weight[0])


def test_checkpoint_state_with_tied_tensors_round_trips(tmp_path) -> None:
    model = TiedToy()
    state = {"student": model.state_dict(), "step": 3}
    save_state(state, tmp_path / "c.safetensors")
    back = load_state(tmp_path / "c.safetensors")
    assert back["step"] == 3 and set(back["student"]) == set(state["student"])
    for name, tensor in state["student"].items():
        assert torch.equal(back["student"][name], tensor)


def test_a_distiller_run_checkpoints_a_tied_model(tmp_path) -> None:
    data = [{"input": torch.randint(0, 6, (5,)), "label": torch.tensor(i % 6)} for i in range(24)]
    model = TiedToy()
    objective = Objective(Term("ce", cross_entropy, target="label"))
    Distiller(model, [Phase("p", objective, epochs=2)], batch_size=8).fit(data, out=tmp_path / "run")
    reloaded = load_weights(TiedToy(), tmp_path / "run" / "checkpoints" / "final.safetensors")
    assert torch.equal(reloaded.embed.weight, model.embed.weight)
    resumed = load_state(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert torch.equal(resumed["student"]["out.weight"], model.out.weight.detach())
