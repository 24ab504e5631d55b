"""Adversarial training on the one loop: the discriminator signal, its loss, the generator term, resume."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core import Backend, Callback, Distiller, FrozenTeacher, Objective, Phase, Term
from kd_core.engine import adamw
from kd_core.errors import ConfigError
from kd_core.gan import DiscriminatorSignal, GeneratorAdversarialLoss, gan_loss
from kd_core.losses import l1
from kd_core.signals import default_forward
from torch import nn
from torch.utils.data import Dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: tiny models on a shared 2-core machine run fastest that way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Pairs(Dataset):
    """``{"input": x, "target": A x + 1}`` for 4-d ``x`` (a tiny paired regression set)."""

    def __init__(self, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(size, 4, generator=g)
        self.targets = self.inputs @ torch.randn(4, 4, generator=g) + 1.0

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input": self.inputs[i], "target": self.targets[i]}


class CondD(nn.Module):
    """A conditional discriminator ``D(c, y)`` with a BatchNorm (its buffers must resume too)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.2), nn.Linear(8, 1))

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], dim=1))


def test_gan_loss_by_hand() -> None:
    zeros = torch.zeros(3, 1)
    assert gan_loss(zeros, True).item() == pytest.approx(math.log(2))
    assert gan_loss(zeros, False).item() == pytest.approx(math.log(2))
    logits = torch.tensor([2.0, -1.0])
    assert gan_loss(logits, True).item() == pytest.approx(
        (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2)
    assert gan_loss(logits, True, "lsgan").item() == pytest.approx(((2 - 1) ** 2 + (-1 - 1) ** 2) / 2)
    assert gan_loss(logits, False, "lsgan").item() == pytest.approx((4 + 1) / 2)
    with pytest.raises(ConfigError, match="mode"):
        gan_loss(logits, True, "wasserstein")


def test_discriminator_loss_decreases_on_separable_real_and_fake() -> None:
    torch.manual_seed(0)
    signal = DiscriminatorSignal(nn.Linear(4, 1), condition=None,
                                 optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    signal.bind([], default_forward)
    real, fake = torch.randn(16, 4) + 2.0, torch.randn(16, 4) - 2.0
    losses = []
    for _ in range(30):
        result = signal.loss({}, {"logits": fake}, {"target": real}, 0.0)
        losses.append(result.total.item())
        result.total.backward()
        signal.optimizer.step()
        signal.optimizer.zero_grad()
    assert losses[-1] < 0.25 * losses[0]
    assert set(result.terms) == {"discriminator/real", "discriminator/fake"}


def test_the_generator_term_trains_the_generator_only_and_the_discriminator_loss_the_discriminator_only() -> None:
    torch.manual_seed(0)
    generator, discriminator = nn.Linear(4, 4), CondD()
    signal = DiscriminatorSignal(discriminator)
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    fake = generator(x)
    signal.generator_loss()(fake, condition=x).backward()
    assert all(p.grad is None for p in discriminator.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    generator.zero_grad(set_to_none=True)
    # the engine hands the signal the student's outputs detached; even undetached, the signal detaches them
    signal.loss({}, {"logits": generator(x)}, {"input": x, "target": y}, 0.0).total.backward()
    assert all(p.grad is None for p in generator.parameters())
    assert all(p.grad is not None for p in discriminator.parameters())


def test_a_term_built_on_the_generator_loss_checks_its_keywords() -> None:
    loss = GeneratorAdversarialLoss(CondD())
    Term("gan", loss, inputs={"condition": "input"})
    with pytest.raises(ConfigError, match=r"gan\.inputs\.cond"):
        Term("gan", loss, inputs={"cond": "input"})


def test_missing_batch_keys_are_named() -> None:
    signal = DiscriminatorSignal(CondD())
    signal.bind([], default_forward)
    with pytest.raises(ConfigError, match="real"):
        signal.loss({}, {"logits": torch.zeros(2, 4)}, {"input": torch.zeros(2, 4)}, 0.0)
    with pytest.raises(ConfigError, match="condition"):
        signal.loss({}, {"logits": torch.zeros(2, 4)}, {"target": torch.zeros(2, 4)}, 0.0)


def _fit(out, callbacks=(), resume=False, teacher=False):
    torch.manual_seed(0)
    student, discriminator = nn.Linear(4, 4), CondD(seed=1)
    inner = FrozenTeacher(nn.Linear(4, 4)) if teacher else None
    signal = DiscriminatorSignal(discriminator, inner)
    terms = [Term("l1", l1, target="target", weight=10.0),
             Term("gan", signal.generator_loss(), inputs={"condition": "input"})]
    if teacher:
        terms.append(Term("out", l1, teacher="logits"))
    distiller = Distiller(student, [Phase("gan", Objective(*terms), epochs=3, optimizer=adamw(1e-2))],
                          teacher=signal, backend=Backend("cpu"), batch_size=8, callbacks=callbacks,
                          progress=False)
    result = distiller.fit(Pairs(), out=out, resume=resume)
    return student, discriminator, signal, result


def test_distiller_steps_the_discriminator_and_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    class Crash(Callback):
        def on_step_end(self, distiller, logs):
            if distiller.global_step == 6:  # inside epoch 2, after epoch 1's checkpoint
                raise RuntimeError("simulated crash")

    before = CondD(seed=1).state_dict()
    whole_student, whole_d, whole_signal, _ = _fit(tmp_path / "whole")
    assert any(not torch.equal(before[k], v) for k, v in whole_d.state_dict().items())  # the discriminator trained
    logged = (tmp_path / "whole" / "metrics.jsonl").read_text()
    assert "teacher_loss/discriminator/real" in logged and "loss/gan" in logged
    with pytest.raises(RuntimeError, match="simulated"):
        _fit(tmp_path / "split", callbacks=[Crash()])
    student, discriminator, signal, _ = _fit(tmp_path / "split", resume=True)
    for a, b in ((whole_student, student), (whole_d, discriminator)):
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y)
    saved, resumed = whole_signal.optimizer.state_dict()["state"], signal.optimizer.state_dict()["state"]
    for key in saved:
        assert torch.equal(saved[key]["exp_avg"], resumed[key]["exp_avg"])


def test_a_wrapped_teacher_serves_its_taps_and_stays_frozen(tmp_path) -> None:
    _, _, signal, _ = _fit(tmp_path / "run", teacher=True)
    assert set(signal.trainable()) == {"discriminator"} and set(signal.modules()) == {"model"}
    assert all(not p.requires_grad for p in signal.inner.model.parameters())
    assert len(signal.optimizers()) == 1
