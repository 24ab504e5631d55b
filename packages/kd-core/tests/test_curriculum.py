"""Curriculum expert selection (CES-KD): routing by difficulty quantile, its schedule, ties and the KD target."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from kd_core.curriculum import CurriculumSelection, cross_entropy_difficulty, difficulty_quantiles
from kd_core.engine import Distiller, Phase
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import Objective, Term
from kd_core.schedules import Linear
from kd_core.signals import Ensemble, FrozenTeacher
from kd_core.testing import BlobDataset, tiny_mlp


class _Const:
    """A teacher signal that always returns the same logits."""

    trainable = False

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def bind(self, taps, forward) -> None:
        pass

    def __call__(self, batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        return {"logits": self.logits}


def _ramp(n: int = 100, k: int = 3, **options) -> CurriculumSelection:
    """Difficulty = sample id (id 0 easiest, id n-1 hardest); γ from 4 down to 1."""
    return CurriculumSelection({i: float(i) for i in range(n)}, k, Linear(4.0, 1.0), **options)


def test_shares_follow_the_hand_computed_strata_early_and_late() -> None:
    # u = (r + 0.5)/100, k = floor(3·u^γ). γ = 4: expert 0 while u < 3^(-1/4) = 0.7598 (r <= 75),
    # expert 1 while u < (2/3)^(1/4) = 0.9036 (r <= 89), else expert 2. γ = 1: cuts at r <= 32 and r <= 66.
    sel = _ramp()
    assert sel.shares(0.0) == pytest.approx([0.76, 0.14, 0.10])
    assert sel.shares(1.0) == pytest.approx([0.33, 0.34, 0.33])  # uniform-ish strata at the end
    ids = torch.arange(100)
    assert sel.select(ids, 0.0)[[0, 75, 76, 89, 90, 99]].tolist() == [0, 0, 1, 1, 2, 2]
    assert sel.select(ids, 1.0)[[32, 33, 66, 67]].tolist() == [0, 1, 1, 2]


def test_hard_samples_reach_large_experts_only_as_training_advances() -> None:
    sel = _ramp()
    hardest = torch.arange(60, 100)  # the hardest 40 %: on the small expert 16/40, then 4/40 (γ=2.5), then 0
    small_share = [float((sel.select(hardest, p) == 0).double().mean()) for p in (0.0, 0.5, 1.0)]
    assert small_share == pytest.approx([0.4, 0.1, 0.0])
    mean_expert = [float(sel.select(torch.arange(100), p).double().mean()) for p in (0.0, 0.5, 1.0)]
    assert mean_expert[0] < mean_expert[1] < mean_expert[2]
    # at every progress, harder never means a smaller expert (the routing is monotone in difficulty)
    for p in (0.0, 0.3, 0.7, 1.0):
        chosen = sel.select(torch.arange(100), p)
        assert bool((chosen[1:] >= chosen[:-1]).all())


def test_anti_curriculum_routes_hard_samples_to_small_experts() -> None:
    sel, anti = _ramp(), _ramp(reverse=True)
    ids = torch.arange(100)
    for p in (0.0, 0.5, 1.0):
        # u_anti(i) = 1 - (r_i + 0.5)/N = u(N - 1 - i): the mirror image of the curriculum
        assert anti.select(ids, p).tolist() == sel.select(ids.flip(0), p).tolist()
        assert anti.shares(p) == pytest.approx(sel.shares(p))
    assert anti.select([99], 1.0).item() == 0 and anti.select([0], 1.0).item() == 2
    hardest = torch.arange(90, 100)
    assert float(anti.select(hardest, 1.0).double().mean()) < float(sel.select(hardest, 1.0).double().mean())


def test_ensemble_output_is_the_selected_experts_logits_and_the_kd_term_sees_them() -> None:
    torch.manual_seed(0)
    experts = [torch.randn(3, 4) for _ in range(3)]
    ids = torch.tensor([10, 3, 7])
    # difficulty: id 3 easiest, 7 middle, 10 hardest -> u = 5/6, 1/6, 3/6 for the batch order [10, 3, 7]
    sel = CurriculumSelection({3: 0.1, 7: 0.5, 10: 0.9}, 3, Linear(4.0, 1.0))
    ensemble = Ensemble([_Const(e) for e in experts], sel)
    batch = {"index": ids, "label": torch.tensor([0, 1, 2])}

    late = ensemble(batch, progress=1.0)["logits"]  # γ = 1: floor(3u) = 2, 0, 1
    assert torch.equal(late, torch.stack([experts[2][0], experts[0][1], experts[1][2]]))
    assert ensemble.last_weights.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    early = ensemble(batch, progress=0.0)["logits"]  # γ = 4: floor(3u^4) = floor(1.447), 0, floor(0.1875)
    assert torch.equal(early, torch.stack([experts[1][0], experts[0][1], experts[0][2]]))

    student = torch.randn(3, 4)
    objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.9, temperature=4.0),
                          Term("ce", cross_entropy, target="label", weight=0.1))
    got = objective({"logits": student}, {"logits": late}, batch).terms["kd"]
    teacher_rows = torch.stack([experts[2][0], experts[0][1], experts[1][2]])
    p_t = torch.softmax(teacher_rows / 4, -1)
    by_hand = 16 * (p_t * (p_t.log() - torch.log_softmax(student / 4, -1))).sum(-1).mean()
    assert math.isclose(float(got), float(by_hand), rel_tol=1e-5)


def test_ties_are_broken_by_a_seeded_shuffle_reproducibly() -> None:
    scores = {i: 0.0 for i in range(40)} | {i: 1.0 for i in range(40, 50)}
    q0 = difficulty_quantiles(scores, seed=0)
    assert q0 == difficulty_quantiles(dict(reversed(list(scores.items()))), seed=0)  # order-free
    q1 = difficulty_quantiles(scores, seed=1)
    assert q0 != q1  # another seed, another order among the 40 tied samples
    for q in (q0, q1):
        assert sorted(q.values()) == pytest.approx([(r + 0.5) / 50 for r in range(50)])
        assert min(q[i] for i in range(40, 50)) > max(q[i] for i in range(40))  # strict order kept
    tied = list(range(40))
    assert [q0[i] for i in tied] != sorted(q0[i] for i in tied)  # not simply id order
    a = CurriculumSelection(scores, 4, 1.0, seed=3)
    b = CurriculumSelection(scores, 4, 1.0, seed=3)
    assert a.select(range(50), 0.5).tolist() == b.select(range(50), 0.5).tolist()


def test_bad_pools_schedules_and_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="experts") as err:
        CurriculumSelection({0: 1.0}, 0, 1.0)
    assert err.value.argument == "experts"
    with pytest.raises(ConfigError, match="gamma_schedule"):
        CurriculumSelection({0: 1.0}, 2, Linear(1.0, -1.0))
    with pytest.raises(ConfigError, match="difficulty"):
        CurriculumSelection({}, 2, 1.0)
    with pytest.raises(ConfigError, match="finite"):
        CurriculumSelection({0: float("nan")}, 2, 1.0)
    sel = CurriculumSelection([0.1, 0.2], 2, 1.0)
    with pytest.raises(ConfigError, match=r"unscored ids \[5\]"):
        sel.select([0, 5], 0.0)
    with pytest.raises(ConfigError, match="2 expert outputs"):
        Ensemble([_Const(torch.zeros(2, 3))] * 3, sel)({"index": torch.tensor([0, 1])})
    with pytest.raises(ConfigError, match="index"):
        Ensemble([_Const(torch.zeros(2, 3))] * 2, sel)({"input": torch.zeros(2)})


def test_cross_entropy_difficulty_is_the_per_sample_loss() -> None:
    model = tiny_mlp(features=8, classes=3)
    data = BlobDataset(size=10)
    batch = {"input": data.inputs, "label": data.labels, "index": torch.arange(100, 110)}
    scores = cross_entropy_difficulty(model, [batch])
    expected = torch.nn.functional.cross_entropy(model(data.inputs), data.labels, reduction="none")
    assert list(scores) == list(range(100, 110))
    assert torch.allclose(torch.tensor(list(scores.values())), expected.detach(), atol=1e-6)


def test_a_distiller_trains_against_a_curriculum_ensemble(tmp_path: Path) -> None:
    data = BlobDataset(size=48)
    experts = [tiny_mlp(hidden=h, seed=h) for h in (2, 4, 16)]
    sel = CurriculumSelection({i: float(i % 7) for i in range(48)}, 3, Linear(4.0, 1.0))
    ensemble = Ensemble([FrozenTeacher(e) for e in experts], sel)
    objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.9, temperature=4.0),
                          Term("ce", cross_entropy, target="label", weight=0.1))
    student = tiny_mlp(hidden=4, seed=9)
    Distiller(student, [Phase("p", objective, epochs=1)], teacher=ensemble, batch_size=16).fit(
        data, None, out=tmp_path / "run")
    assert sel.last_selection is not None and sel.last_selection.shape == (16,)
    assert ensemble.last_weights.shape == (16, 3) and bool((ensemble.last_weights.sum(-1) == 1).all())
