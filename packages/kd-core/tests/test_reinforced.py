"""Reinforced multi-teacher selection: state features, the REINFORCE gradient's sign and value, the baseline,
learning which teacher to trust, and a Distiller run with the reward callback."""

from __future__ import annotations

import copy

import pytest
import torch
from kd_core.engine import Distiller, Phase
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import Objective, Term
from kd_core.reinforced import PolicyReward, ReinforcedWeighting, bernoulli_log_prob
from kd_core.signals import Ensemble, FrozenTeacher
from kd_core.testing import BlobDataset, tiny_mlp

TEACHERS = [{"logits": torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])},
            {"logits": torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])}]
BATCH = {"label": torch.tensor([0, 1, 2, 1])}


def _chosen_log_prob(w: ReinforcedWeighting, states: torch.Tensor, actions: torch.Tensor) -> float:
    with torch.no_grad():
        return float(bernoulli_log_prob(w.logits(states), actions).sum())


def test_state_features_by_hand() -> None:
    w = ReinforcedWeighting(2, 3, hidden=0)
    s = w.features(TEACHERS, BATCH)
    assert s.shape == (4, 2, 3 + 1 + 1 + 2) == (4, 2, w.feature_size)
    p = TEACHERS[0]["logits"][0].softmax(-1)
    assert s[0, 0, :3].tolist() == pytest.approx(p.tolist())
    assert float(s[0, 0, 3]) == pytest.approx(-float(p[0].log()))  # teacher 0's CE on gold label 0
    assert float(s[0, 0, 4]) == pytest.approx(float(p.max()))
    assert s[0, 0, 5:].tolist() == [1.0, 0.0] and s[0, 1, 5:].tolist() == [0.0, 1.0]
    assert ReinforcedWeighting(2, 3, use_label=False).features(TEACHERS, {}).shape == (4, 2, 6)


@pytest.mark.parametrize("reward, direction", [(1.0, 1), (-1.0, -1)])
def test_reinforce_step_moves_the_chosen_actions_log_probability_with_the_reward(reward: float,
                                                                                  direction: int) -> None:
    w = ReinforcedWeighting(2, 3, hidden=0, lr=0.05, entropy_bonus=0.0, seed=3)
    w(TEACHERS, BATCH, 0.0)
    states, actions = w._pending[0]
    before = _chosen_log_prob(w, states, actions)
    w.update(reward)
    after = _chosen_log_prob(w, states, actions)
    assert (after - before) * direction > 0


def test_surrogate_gradient_matches_the_hand_formula() -> None:
    # d/dz log π(a) = a − σ(z) for a Bernoulli; the surrogate is −mean_j Σ_k (r − b) log π(a_jk): with a linear
    # policy z = W s + c, ∂/∂c = −(r − b)·mean_j Σ_k (a − σ) and ∂/∂W = −(r − b)·mean_j Σ_k (a − σ) s
    w = ReinforcedWeighting(2, 3, hidden=0, entropy_bonus=0.0, seed=1)
    w(TEACHERS, BATCH, 0.0)
    w.baseline = 0.5
    states, actions = w._pending[0]
    loss = w.surrogate(2.0)
    loss.backward()
    with torch.no_grad():
        sigma = torch.sigmoid(w.logits(states))
    residual = actions - sigma  # [B, T]
    assert float(w.policy.bias.grad) == pytest.approx(float(-1.5 * residual.sum(1).mean()), rel=1e-5)
    expected_w = -1.5 * (residual.unsqueeze(-1) * states).sum(1).mean(0)
    assert w.policy.weight.grad.reshape(-1).tolist() == pytest.approx(expected_w.tolist(), rel=1e-5, abs=1e-7)


def test_baseline_is_a_moving_average_and_enters_the_advantage() -> None:
    w = ReinforcedWeighting(2, 3, hidden=0, baseline_momentum=0.9, entropy_bonus=0.0)
    twin = copy.deepcopy(w)
    for agent in (w, twin):
        agent(TEACHERS, BATCH, 0.0)
    w.update(1.0)
    assert w.baseline == pytest.approx(0.1) and w.history[0]["baseline"] == 0.0
    # a reward equal to the baseline gives no gradient at all (advantage 0, no entropy bonus)
    twin.baseline = 1.0
    before = [p.clone() for p in twin.policy.parameters()]
    twin.update(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, twin.policy.parameters()))


def test_weights_normalise_over_the_selected_and_fall_back_when_none_is() -> None:
    w = ReinforcedWeighting(2, 3, hidden=0, sample=False)
    with torch.no_grad():
        w.policy.weight.zero_()
        w.policy.weight[0, 5] = 4.0   # one-hot of teacher 0 -> π ≈ 0.98
        w.policy.weight[0, 6] = -4.0  # teacher 1 -> π ≈ 0.02
        w.policy.bias.zero_()
    weights = w(TEACHERS, BATCH, 0.0)
    assert weights.tolist() == [[1.0, 0.0]] * 4 and w.last_selected_any.all()
    with torch.no_grad():
        w.policy.weight[0, 5] = -4.0
    weights = w(TEACHERS, BATCH, 0.0)
    assert weights.tolist() == [[0.5, 0.5]] * 4 and not w.last_selected_any.any()
    kd = Term("kd", kl_divergence, teacher="logits", sample_weight=w.sample_weights)
    student = {"logits": torch.zeros(4, 3)}
    assert float(kd(student, TEACHERS[0], BATCH, 0.0)) == 0.0  # no teacher selected: only CE would apply


def test_sample_weights_keep_the_kd_term_of_samples_that_selected_a_teacher() -> None:
    w = ReinforcedWeighting(2, 3, hidden=0, sample=False)
    with torch.no_grad():
        w.policy.weight.zero_()
        w.policy.weight[0, 4] = 20.0  # the teacher's max probability: select where it is above 0.7
        w.policy.bias.fill_(-14.0)
    w(TEACHERS, BATCH, 0.0)
    # max probabilities: rows 0 and 2 are 0.79 and 0.91 for both teachers, rows 1 and 3 at most 0.58
    mask = w.last_selected_any.float()
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    kd = Term("kd", kl_divergence, teacher="logits", sample_weight=w.sample_weights, temperature=2.0)
    student = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 2.0]])
    per = kl_divergence(student, TEACHERS[1]["logits"], temperature=2.0, reduction="none")
    # Σ_j a_j ℓ_j / B: samples without a teacher count in B but add nothing
    assert float(kd({"logits": student}, TEACHERS[1], BATCH, 0.0)) == pytest.approx(float((mask * per).sum() / 4))
    with pytest.raises(ConfigError, match="sample_weight"):  # a batch of another size: not this batch's selection
        kd({"logits": student[:2]}, {"logits": TEACHERS[1]["logits"][:2]}, {"index": torch.arange(2)}, 0.0)
    with pytest.raises(ConfigError, match="sample_weight"):  # nothing selected yet
        ReinforcedWeighting(2, 3).sample_weights(BATCH, {"logits": student}, None, 0.0)


def test_policy_learns_to_select_the_reliable_teacher() -> None:
    # teacher 0 is always right, teacher 1 always wrong; each instance is rewarded +1 per reliable teacher it
    # selected and −1 per unreliable one: REINFORCE should push π(0) up and π(1) down
    good = {"logits": torch.nn.functional.one_hot(BATCH["label"], 3).float() * 3}
    bad = {"logits": torch.nn.functional.one_hot((BATCH["label"] + 1) % 3, 3).float() * 3}
    w = ReinforcedWeighting(2, 3, hidden=8, lr=0.05, seed=0)
    start = w.probabilities([good, bad], BATCH).mean(0)
    for _ in range(150):
        w([good, bad], BATCH, 0.0)
        actions = w._pending[-1][1]
        w.update(actions[:, 0] - actions[:, 1])
    end = w.probabilities([good, bad], BATCH).mean(0)
    assert float(end[0]) > 0.9 > float(start[0]) and float(end[1]) < 0.1 < float(start[1])
    rates = w.selection_rates()
    assert float(rates[:, 0].mean()) > float(rates[:, 1].mean())


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        ReinforcedWeighting(2, 1)
    with pytest.raises(ConfigError, match="lr"):
        ReinforcedWeighting(2, 3, lr=0)
    w = ReinforcedWeighting(3, 3)
    with pytest.raises(ConfigError, match="teachers"):
        w(TEACHERS, BATCH, 0.0)
    w = ReinforcedWeighting(2, 3)
    with pytest.raises(ConfigError, match="label"):
        w(TEACHERS, {}, 0.0)
    w(TEACHERS, BATCH, 0.0)
    with pytest.raises(ConfigError, match="reward"):
        w.update(torch.ones(3))
    with pytest.raises(ConfigError, match="kind"):
        PolicyReward(w, kind="accuracy")
    with pytest.raises(ConfigError, match="dev"):
        PolicyReward(w)


def test_distiller_run_delivers_a_reward_after_every_step(tmp_path) -> None:
    data = BlobDataset(size=48, features=8, classes=3, seed=2)
    dev = BlobDataset(size=24, features=8, classes=3, seed=2)
    teachers = [FrozenTeacher(tiny_mlp(seed=s)) for s in (10, 11)]
    weighting = ReinforcedWeighting(2, 3, hidden=8, lr=1e-2, warmup_steps=2)
    objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.5,
                               sample_weight=weighting.sample_weights, temperature=2.0),
                          Term("ce", cross_entropy, target="label", weight=0.5))
    reward = PolicyReward(weighting, dev=dev)
    policy_before = [p.clone() for p in weighting.policy.parameters()]
    Distiller(tiny_mlp(seed=0), [Phase("train", objective, epochs=2)], teacher=Ensemble(teachers, weighting),
              callbacks=[reward], batch_size=16).fit(data, out=tmp_path / "run")
    assert weighting.steps == 6 and len(weighting.history) == 4  # two warm-up steps train no policy
    assert not all(torch.equal(a, b) for a, b in zip(policy_before, weighting.policy.parameters()))
    assert all(torch.isfinite(torch.tensor(h["reward"])) for h in weighting.history)


def test_resumed_run_keeps_the_policy_and_equals_an_uninterrupted_run(tmp_path) -> None:
    from kd_core.engine import Callback

    class Crash(Callback):
        def on_step_end(self, distiller, logs):
            if distiller.global_step == 5:  # inside epoch 2, after epoch 1's checkpoint
                raise RuntimeError("simulated crash")

    def run(out: str, crash: bool = False, resume: bool = False):
        data = BlobDataset(size=48, features=8, classes=3, seed=2)
        dev = BlobDataset(size=24, features=8, classes=3, seed=2)
        weighting = ReinforcedWeighting(2, 3, hidden=8, lr=1e-2, warmup_steps=1)
        objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.5,
                                   sample_weight=weighting.sample_weights, temperature=2.0),
                              Term("ce", cross_entropy, target="label", weight=0.5))
        student = tiny_mlp(seed=0)
        Distiller(student, [Phase("train", objective, epochs=3)],
                  teacher=Ensemble([FrozenTeacher(tiny_mlp(seed=s)) for s in (10, 11)], weighting),
                  callbacks=[PolicyReward(weighting, dev=dev), *([Crash()] if crash else [])],
                  batch_size=16).fit(data, out=tmp_path / out, resume=resume)
        return student, weighting

    whole, whole_w = run("whole")
    with pytest.raises(RuntimeError, match="simulated"):
        run("split", crash=True)
    resumed, resumed_w = run("split", resume=True)
    assert resumed_w.steps == 9 and resumed_w.history == whole_w.history
    for a, b in zip([*whole.state_dict().values(), *whole_w.policy.state_dict().values()],
                    [*resumed.state_dict().values(), *resumed_w.policy.state_dict().values()]):
        assert torch.equal(a, b)
