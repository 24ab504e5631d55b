"""Annealing-KD pieces: Φ(T) values, the per-epoch T sequence, the Φ-scaled MSE, and the two phases in the engine."""

from __future__ import annotations

import pytest
import torch
from kd_core.annealing import AnnealedScale, annealed_mse_term, annealing_phases, check_tau_max, phi
from kd_core.engine import Callback, Distiller, Phase, adamw
from kd_core.errors import ConfigError
from kd_core.objective import Objective, Term
from kd_core.signals import FrozenTeacher
from kd_core.testing import BlobDataset, tiny_mlp


def _progress(epoch: int, batch: int, batches: int, epochs: int) -> float:
    """The progress ``Distiller`` passes at ``batch`` of ``epoch``."""
    return (epoch + batch / batches) / epochs


def test_phi_by_hand() -> None:
    assert phi(10, 10) == pytest.approx(0.1)
    assert phi(5, 10) == pytest.approx(0.6)
    assert phi(1, 10) == pytest.approx(1.0)
    assert phi(1, 1) == 1.0
    with pytest.raises(ConfigError, match="temperature"):
        phi(11, 10)
    with pytest.raises(ConfigError, match="temperature"):
        phi(0.5, 10)


def test_phi_scaled_mse_by_hand_at_t_10_5_1() -> None:
    s = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    t = torch.tensor([[10.0, 20.0], [0.0, -10.0]])
    objective = Objective(annealed_mse_term(tau_max=10, epochs=10))
    # epoch 0: T = 10, Φ = 0.1: the target is exactly s
    # epoch 5: T = 5, Φ = 0.6: target [[6, 12], [0, -6]]; squared errors 25, 100, 0, 25 -> mean 37.5
    # epoch 9: T = 1, Φ = 1.0: squared errors 81, 324, 0, 81 -> mean 121.5
    for epoch, expected in ((0, 0.0), (5, 37.5), (9, 121.5)):
        for batch in (0, 3):  # constant within the epoch
            got = objective({"logits": s}, {"logits": t}, {}, progress=_progress(epoch, batch, 4, 10))
            assert float(got.total) == pytest.approx(expected)
            assert float(got.terms["mse"]) == pytest.approx(expected)


def test_phi_scaled_mse_gradient_is_two_over_n_times_the_residual() -> None:
    torch.manual_seed(0)
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4) * 5
    term = annealed_mse_term(tau_max=4, epochs=4)
    value = term({"logits": s}, {"logits": t}, {}, progress=_progress(1, 0, 1, 4))  # stage 2: Φ = 0.5
    value.backward()
    torch.testing.assert_close(s.grad, 2 * (s.detach() - 0.5 * t) / s.numel())


def test_temperature_sequence_over_phase_one_epochs() -> None:
    assert AnnealedScale(10, 10).temperatures() == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert AnnealedScale(10, 10).values() == pytest.approx([k / 10 for k in range(1, 11)])
    # ⌊8/4⌋ = 2 epochs per temperature
    assert AnnealedScale(4, 8).temperatures() == [4, 4, 3, 3, 2, 2, 1, 1]
    # 10 epochs, τ_max = 4: ⌊10/4⌋ = 2 epochs each, the last stage (T = 1) absorbs the 2 extra epochs
    assert AnnealedScale(4, 10).temperatures() == [4, 4, 3, 3, 2, 2, 1, 1, 1, 1]
    # the reference code would reach Φ = 1.5 here; the cap keeps Φ ≤ 1
    scale = AnnealedScale(10, 15)
    assert scale.temperatures() == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1, 1, 1, 1, 1]
    assert max(scale.values()) == 1.0
    assert AnnealedScale(1, 3).values() == [1.0, 1.0, 1.0]
    # every batch of an epoch sees that epoch's T, including the last batch and progress 1.0
    for epoch, expected in enumerate(AnnealedScale(4, 10).temperatures()):
        for batch in range(7):
            assert AnnealedScale(4, 10).temperature(_progress(epoch, batch, 7, 10)) == expected
    assert AnnealedScale(4, 10).temperature(1.0) == 1


def test_tau_max_below_one_and_short_phase_one_are_refused() -> None:
    for bad in (0, -3, 2.5, True, "10", None):
        with pytest.raises(ConfigError) as err:
            check_tau_max(bad)
        assert err.value.argument == "tau_max"
    with pytest.raises(ConfigError) as err:
        AnnealedScale(0, 5)
    assert err.value.argument == "tau_max"
    for anneal in (True, False):
        with pytest.raises(ConfigError) as err:
            annealing_phases(0, 5, 2, anneal=anneal)
        assert err.value.argument == "tau_max" and "0" in str(err.value)
    with pytest.raises(ConfigError) as err:
        AnnealedScale(10, 9)  # ⌊9/10⌋ = 0 epochs per temperature
    assert err.value.argument == "epochs"


def test_mse_control_has_phi_one_throughout() -> None:
    phases = annealing_phases(10, 3, 2, anneal=False)  # E₁ < τ_max is fine: nothing is annealed
    term = phases[0].objective.terms[0]
    s, t = torch.zeros(2, 3), torch.ones(2, 3)
    for p in (0.0, 0.4, 1.0):
        assert float(term({"logits": s}, {"logits": t}, {}, p)) == pytest.approx(1.0)


def test_phases_are_mse_to_teacher_then_label_ce() -> None:
    first, second = annealing_phases(5, 10, 4)
    assert (first.name, first.epochs, first.restore_best) == ("phase1", 10, True)
    assert (second.name, second.epochs, second.restore_best) == ("phase2", 4, False)
    assert first.objective.needs_teacher and not second.objective.needs_teacher
    assert [t.name for t in first.objective.terms] == ["mse"] and first.objective.terms[0].target is None
    assert second.objective.terms[0].target == "label"


def test_engine_steps_phi_per_epoch(tmp_path) -> None:
    """The Φ the loss receives at each optimizer step, through ``Distiller``: one value per epoch."""
    seen: list[float] = []

    def recording_mse(student: torch.Tensor, teacher: torch.Tensor, scale: float) -> torch.Tensor:
        seen.append(scale)
        return ((student - scale * teacher) ** 2).mean()

    term = Term("mse", recording_mse, teacher="logits", scale=AnnealedScale(4, 6))
    distiller = Distiller(tiny_mlp(seed=1), [Phase("phase1", Objective(term), epochs=6)],
                          teacher=FrozenTeacher(tiny_mlp(seed=2)), batch_size=8)
    distiller.fit(BlobDataset(size=32), out=tmp_path / "run")
    per_epoch = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]  # ⌊6/4⌋ = 1 epoch each; the last stage takes the remainder
    assert seen == [phi_value for phi_value in per_epoch for _ in range(4)]


class _Spy(Callback):
    """Snapshots the student after each epoch and when each phase starts."""

    def __init__(self) -> None:
        self.after_epoch: list[dict[str, torch.Tensor]] = []
        self.at_phase_start: dict[str, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, distiller: Distiller, logs: dict[str, float]) -> None:
        self.after_epoch.append({k: v.clone() for k, v in distiller.student.state_dict().items()})

    def on_phase_start(self, distiller: Distiller, phase: Phase, total_steps: int) -> None:
        self.at_phase_start[phase.name] = {k: v.clone() for k, v in distiller.student.state_dict().items()}


def test_phase_two_starts_from_best_phase_one_weights_with_a_fresh_optimizer(tmp_path) -> None:
    made: list[tuple[str, torch.optim.Optimizer]] = []

    def recording(tag: str, lr: float):
        def factory(params):
            optimizer = adamw(lr)(params)
            made.append((tag, optimizer))
            return optimizer
        return factory

    scores = iter([0.2, 0.9, 0.5, 0.1, 0.3, 0.4])  # phase I's best is its 2nd epoch (of 4)

    def evaluator(model, batches, forward):
        list(batches)
        return {"accuracy": next(scores)}

    spy = _Spy()
    phases = annealing_phases(2, 4, 2, phase1_optimizer=recording("p1", 0.05), phase2_optimizer=recording("p2", 0.01))
    distiller = Distiller(tiny_mlp(seed=1), phases, teacher=FrozenTeacher(tiny_mlp(seed=2)), batch_size=8,
                          evaluator=evaluator, callbacks=[spy])
    distiller.fit(BlobDataset(size=32), BlobDataset(size=16, seed=1), out=tmp_path / "run")

    start = spy.at_phase_start["phase2"]
    best, last = spy.after_epoch[1], spy.after_epoch[3]
    for key in start:
        torch.testing.assert_close(start[key], best[key])
    assert any(not torch.equal(best[k], last[k]) for k in best)  # so restoring really changed the weights

    phase1_opts = [o for tag, o in made if tag == "p1"]
    phase2_opts = [o for tag, o in made if tag == "p2"]
    used = phase2_opts[-1]  # the engine also builds one to checkpoint the next phase's start; the last one trains
    assert all(used is not o for o in phase1_opts)
    assert used.param_groups[0]["lr"] == 0.01 and phase1_opts[0].param_groups[0]["lr"] == 0.05
    assert len(used.state) > 0  # it did train phase II
    steps = {int(s["step"]) for s in used.state.values()}
    assert steps == {2 * 4}  # 2 epochs x 4 batches: no Adam moments carried over from phase I's 16 steps


def test_shared_arms_roles_phases_and_comparisons() -> None:
    from kd_core.annealing import AnnealingSettings, annealing_arms, annealing_compare

    settings = AnnealingSettings(tau_max=2, phase1_epochs=4, phase2_epochs=1, lr=1e-2, temperature=3.0, alpha=0.8)
    arms = annealing_arms(settings, ["annealing-kd", "mse-kd", "hinton-kd", "scratch"], batch_size=8,
                          signal=lambda teacher, workdir: None)
    assert {n: a.role for n, a in arms.items()} == {"annealing-kd": "variant", "mse-kd": "baseline",
                                                   "hinton-kd": "kd", "scratch": "scratch"}
    assert arms["scratch"].signal is None and arms["hinton-kd"].signal is not None
    assert [p.epochs for p in arms["annealing-kd"].phases()] == [4, 1] and arms["scratch"].phases()[0].epochs == 5
    kd = arms["hinton-kd"].phases()[0].objective.terms
    assert (kd[0].weight.value, kd[0].options["temperature"], kd[1].weight.value) == (0.8, 3.0, pytest.approx(0.2))
    assert annealing_compare("mse-kd", ["mse-kd", "hinton-kd", "scratch"]) == [
        ("hinton-kd", "scratch"), ("mse-kd", "hinton-kd"), ("mse-kd", "scratch")]
    assert "T per phase-I epoch: [2, 2, 1, 1]" in settings.notes()
    with pytest.raises(ConfigError, match="arms"):
        annealing_arms(settings, ["annealing-kd", "typo"], batch_size=8)
