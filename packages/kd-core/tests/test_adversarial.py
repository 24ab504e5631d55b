"""Adversarial training through Distiller's forward hook: perturbed inputs in training steps only."""

from __future__ import annotations

import pytest
import torch
from kd_core import Distiller, Objective, Phase, Term
from kd_core.adversarial import AdversarialForward, eval_mode
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.signals import FrozenTeacher, default_forward
from kd_core.testing import BlobDataset, tiny_mlp
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a shared 2-core machine, two threads make these tiny models many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_eval_mode_restores_each_submodule_mode() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5))
    model.train()
    model[2].eval()  # a submodule someone froze on purpose stays frozen
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[0].training and model[1].training and not model[2].training


def test_forward_perturbs_only_in_training_mode_with_gradients() -> None:
    model = tiny_mlp(features=4, classes=3)
    seen: list[torch.Tensor] = []

    def perturb(m: nn.Module, batch) -> torch.Tensor:
        return batch["input"] + 1.0

    forward = AdversarialForward(perturb)
    x = torch.zeros(5, 4)

    def recording(m: nn.Module, batch) -> torch.Tensor:
        seen.append(batch["input"])
        return m(batch["input"])

    forward.base = recording
    model.train()
    forward(model, {"input": x})
    with torch.no_grad():
        forward(model, {"input": x})  # a probe without gradients: clean
    model.eval()
    forward(model, {"input": x})  # validation: clean
    assert torch.equal(seen[0], x + 1.0)
    assert torch.equal(seen[1], x) and torch.equal(seen[2], x)


def test_a_perturbation_of_the_wrong_shape_or_a_missing_key_is_refused() -> None:
    model = tiny_mlp(features=4, classes=3).train()
    with pytest.raises(ConfigError, match="perturb"):
        AdversarialForward(lambda m, b: b["input"][:1])(model, {"input": torch.zeros(3, 4)})
    with pytest.raises(ConfigError, match="key"):
        AdversarialForward(lambda m, b: b["x"], key="x")(model, {"input": torch.zeros(3, 4)})
    with pytest.raises(ConfigError, match="perturb"):
        AdversarialForward("not callable")  # type: ignore[arg-type]


def test_distiller_trains_on_perturbed_inputs_while_the_teacher_and_validation_see_clean_ones(tmp_path) -> None:
    train, val = BlobDataset(size=24, features=4, seed=0), BlobDataset(size=8, features=4, seed=1)
    student, teacher = tiny_mlp(features=4, seed=0), tiny_mlp(features=4, seed=1)
    calls = {"perturb": 0}
    teacher_inputs: list[torch.Tensor] = []

    def perturb(model: nn.Module, batch) -> torch.Tensor:
        calls["perturb"] += 1
        assert not model.training  # a perturbation is built in eval mode by convention; check we can see it
        return batch["input"] + 100.0

    def teacher_forward(model: nn.Module, batch) -> torch.Tensor:
        teacher_inputs.append(batch["input"])
        return default_forward(model, batch)

    class EvalPerturb:
        def __call__(self, model: nn.Module, batch) -> torch.Tensor:
            with eval_mode(model):
                return perturb(model, batch)

    objective = Objective(Term("kd", kl_divergence, teacher="logits", temperature=2.0),
                          Term("ce", cross_entropy, target="label"))
    distiller = Distiller(student, phases=[Phase("p", objective, epochs=2)], batch_size=8,
                          teacher=FrozenTeacher(teacher, forward=teacher_forward),
                          forward=AdversarialForward(EvalPerturb()))
    result = distiller.fit(train, val, out=tmp_path / "run")
    assert calls["perturb"] == 2 * 3  # every training batch, never validation or the shape probe
    assert all(x.abs().max() < 50 for x in teacher_inputs)  # the teacher never saw the +100 inputs
    assert len(result.history) == 2
