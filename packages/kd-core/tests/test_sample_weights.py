"""DCS per-sample corrective weights: the boosting update by hand, the cap, the weighted terms and a Distiller run."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.engine import Distiller, Phase
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import Objective, Term
from kd_core.sample_weights import CorrectiveWeights, _normalise, boosting_step, discordance
from kd_core.signals import FrozenTeacher
from kd_core.testing import BlobDataset, tiny_mlp


def _logits(classes: list[int], width: int = 3) -> torch.Tensor:
    """Logits whose argmax is each given class."""
    return torch.nn.functional.one_hot(torch.tensor(classes), width).float() * 5.0


def test_boosting_step_by_hand() -> None:
    # eps = 1/4, alpha = ½ ln 3, the discordant sample's weight × sqrt(3)
    w, eps, alpha = boosting_step(torch.ones(4, dtype=torch.float64), torch.tensor([1.0, 0, 0, 0]))
    assert eps == pytest.approx(0.25) and alpha == pytest.approx(0.5 * math.log(3))
    assert w.tolist() == pytest.approx([math.sqrt(3), 1, 1, 1])
    # weights enter eps: w = [3, 1], d = [0, 1] -> eps = 1/4 again
    _, eps, _ = boosting_step(torch.tensor([3.0, 1.0]), torch.tensor([0.0, 1.0]))
    assert eps == pytest.approx(0.25)
    # clipping: perfect agreement changes nothing; total disagreement gives alpha ~ 0 (eps clipped below 0.5)
    w, eps, alpha = boosting_step(torch.ones(3), torch.zeros(3))
    assert eps == pytest.approx(1e-6) and w.tolist() == [1, 1, 1]
    w, eps, alpha = boosting_step(torch.ones(3), torch.ones(3))
    assert eps == pytest.approx(0.5 - 1e-6) and 0 < alpha < 1e-5 and w.tolist() == pytest.approx([1, 1, 1], abs=1e-5)


def test_corrective_weights_update_one_batch_by_hand() -> None:
    dcs = CorrectiveWeights(6)
    rate = dcs.observe(_logits([0, 1, 2]), _logits([0, 2, 2]), torch.tensor([0, 2, 4]))  # sample 2 disagrees
    assert float(rate) == pytest.approx(1 / 3)
    record = dcs.apply()
    # eps = 1/3, alpha = ½ ln 2: w_2 = sqrt(2), then all six renormalised to mean 1
    assert record["epsilon"] == pytest.approx(1 / 3) and record["alpha"] == pytest.approx(0.5 * math.log(2))
    total = 5 + math.sqrt(2)
    expected = [6 / total] * 6
    expected[2] = 6 * math.sqrt(2) / total
    assert dcs.weights.tolist() == pytest.approx(expected)
    assert float(dcs.weights.mean()) == pytest.approx(1.0)
    assert dcs.apply() is None  # nothing pending: no update


def test_cap_and_soft_discordance() -> None:
    # [100, 1, 1, 1] capped at 2x the mean: the big one is set to 2, the rest share the remaining mass
    assert _normalise(torch.tensor([100.0, 1, 1, 1], dtype=torch.float64), 2.0).tolist() == \
        pytest.approx([2, 2 / 3, 2 / 3, 2 / 3])
    assert _normalise(torch.tensor([1.0, 3.0]), 10.0).tolist() == pytest.approx([0.5, 1.5])
    same = torch.tensor([[1.0, 2.0, 3.0]])
    assert float(discordance(same, same, soft=True)) == pytest.approx(0.0)
    # p_s = [0.5, 0.5], p_t = [1, 0] (nearly): ½ (0.5 + 0.5) = 0.5
    assert float(discordance(torch.zeros(1, 2), torch.tensor([[30.0, 0.0]]), soft=True)) == pytest.approx(0.5)


def test_weighted_terms_divide_by_the_sum_of_weights() -> None:
    dcs = CorrectiveWeights(4)
    dcs.weights = torch.tensor([1.0, 3.0, 0.5, 0.5], dtype=torch.float64)
    batch = {"index": torch.tensor([0, 1]), "label": torch.tensor([0, 0])}
    # the provider scales the batch's weights to sum to B: [1, 3] -> [0.5, 1.5]
    assert dcs(batch, {}, None, 0.0).tolist() == pytest.approx([0.5, 1.5])
    student, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), batch["label"]
    per = torch.nn.functional.cross_entropy(student, labels, reduction="none")
    ce = Term("ce", cross_entropy, target="label", sample_weight=dcs)
    assert float(ce({"logits": student}, None, batch, 0.0)) == pytest.approx(float((per[0] + 3 * per[1]) / 4))
    teacher = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    kl = kl_divergence(student, teacher, temperature=2.0, reduction="none")
    kd = Term("kd", kl_divergence, teacher="logits", sample_weight=dcs, temperature=2.0)
    assert float(kd({"logits": student}, {"logits": teacher}, batch, 0.0)) == \
        pytest.approx(float((kl[0] + 3 * kl[1]) / 4))


def test_observer_term_records_the_batch_ids_and_an_unobserved_run_is_an_error() -> None:
    dcs = CorrectiveWeights(5)
    objective = Objective(Term("ce", cross_entropy, target="label", sample_weight=dcs), dcs.observer())
    batch = {"index": torch.tensor([3, 1, 4]), "label": torch.tensor([0, 1, 2])}
    result = objective({"logits": _logits([0, 1, 2])}, {"logits": _logits([0, 0, 2])}, batch)
    assert float(result.terms["discordance"]) == pytest.approx(1 / 3)
    assert dcs.apply()["epsilon"] == pytest.approx(1 / 3)
    # sample 1 (the batch's second row) disagreed: w_1 = sqrt(2), then all five renormalised to mean 1
    expected = torch.tensor([1.0, math.sqrt(2), 1.0, 1.0, 1.0])
    assert dcs.weights.tolist() == pytest.approx((expected * 5 / expected.sum()).tolist())
    # weights given to a term with nothing observed: the weights would never change
    Objective(Term("ce", cross_entropy, target="label", sample_weight=dcs))({"logits": _logits([0, 1, 2])}, None,
                                                                           batch)
    with pytest.raises(ConfigError, match="observer"):
        dcs.apply()


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="num_samples"):
        CorrectiveWeights(0)
    with pytest.raises(ConfigError, match="every"):
        CorrectiveWeights(3, every="batch")
    with pytest.raises(ConfigError, match="cap"):
        CorrectiveWeights(3, cap=0.5)
    dcs = CorrectiveWeights(3)
    with pytest.raises(ConfigError, match="index"):
        dcs({"label": torch.tensor([0])}, {}, None, 0.0)
    with pytest.raises(ConfigError, match="sample ids"):
        dcs({"index": torch.tensor([5])}, {}, None, 0.0)
    with pytest.raises(ConfigError, match="sample ids"):
        dcs.observe(_logits([0]), _logits([1]), torch.tensor([-1]))


@pytest.mark.parametrize("every", ["step", "epoch"])
def test_distiller_run_boosts_discordant_samples(tmp_path, every: str) -> None:
    data = BlobDataset(size=48, features=8, classes=3, seed=1, noise=2.0)
    teacher = tiny_mlp(seed=5)  # an untrained teacher: student and teacher disagree on many samples
    dcs = CorrectiveWeights(len(data), every=every)
    objective = Objective(
        Term("kd", kl_divergence, teacher="logits", weight=0.5, sample_weight=dcs, temperature=2.0),
        Term("ce", cross_entropy, target="label", weight=0.5, sample_weight=dcs),
        dcs.observer(),
    )
    distiller = Distiller(tiny_mlp(seed=0), [Phase("train", objective, epochs=2)], teacher=FrozenTeacher(teacher),
                          callbacks=[dcs], batch_size=16)
    distiller.fit(data, out=tmp_path / "run")
    assert len(dcs.history) == (6 if every == "step" else 2)
    assert float(dcs.weights.mean()) == pytest.approx(1.0)
    assert all(0 < r["epsilon"] < 0.5 for r in dcs.history)
    # after the last update, samples the final student and teacher disagree on weigh more on average
    with torch.no_grad():
        x = data.inputs
        d = discordance(distiller.student(x), teacher(x)).bool()
    assert d.any() and (~d).any()
    assert float(dcs.weights[d].mean()) > float(dcs.weights[~d].mean())


def test_resumed_run_keeps_the_weights_and_equals_an_uninterrupted_run(tmp_path) -> None:
    from kd_core.engine import Callback

    class Crash(Callback):
        def on_step_end(self, distiller, logs):
            if distiller.global_step == 5:  # inside epoch 2, after epoch 1's checkpoint
                raise RuntimeError("simulated crash")

    def run(out: str, crash: bool = False, resume: bool = False):
        data = BlobDataset(size=48, features=8, classes=3, seed=1, noise=2.0)
        dcs = CorrectiveWeights(len(data))
        objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.5, sample_weight=dcs,
                                   temperature=2.0),
                              Term("ce", cross_entropy, target="label", weight=0.5, sample_weight=dcs),
                              dcs.observer())
        student = tiny_mlp(seed=0)
        Distiller(student, [Phase("train", objective, epochs=3)], teacher=FrozenTeacher(tiny_mlp(seed=5)),
                  callbacks=[dcs, *([Crash()] if crash else [])], batch_size=16).fit(data, out=tmp_path / out,
                                                                                      resume=resume)
        return student, dcs

    whole, whole_dcs = run("whole")
    with pytest.raises(RuntimeError, match="simulated"):
        run("split", crash=True)
    resumed, resumed_dcs = run("split", resume=True)
    assert len(resumed_dcs.history) == 9  # the 3 updates before the checkpoint came back from it
    assert torch.equal(whole_dcs.weights, resumed_dcs.weights)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
