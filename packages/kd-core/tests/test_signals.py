"""Teacher signals: frozen, trainable, cached (full and top-k logits) and ensembles with weightings."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import CacheError, CheckpointError, ConfigError
from kd_core.losses import HiddenMSE, kl_divergence, logit_mse
from kd_core.objective import Objective, Term
from kd_core.signals import (
    CachedTeacher,
    Ensemble,
    FixedWeighting,
    FrozenTeacher,
    Signal,
    TrainableTeacher,
    UniformWeighting,
    default_forward,
)
from torch import nn


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1.3e-6) -> None:
    """``torch.testing.assert_close`` without its slow first import (it pulls in torch.distributed)."""
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), f"{actual} != {expected}"

FEATURES, CLASSES = 6, 5


def _model(seed: int = 0, hidden: int = 8) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))


def _batches(n: int = 12, size: int = 4, augment_seed: bool = False) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(123)
    inputs = torch.randn(n, FEATURES, generator=generator) * 3
    batches = []
    for start in range(0, n, size):
        index = torch.arange(start, min(start + size, n))
        batch = {"input": inputs[index], "index": index}
        if augment_seed:
            batch["aug_seed"] = torch.full_like(index, 7)
        batches.append(batch)
    return batches


def _kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    return kl_divergence(student_logits, teacher_logits, temperature=1.0)


# -- FrozenTeacher ---------------------------------------------------------------------------------

def test_frozen_teacher_outputs_work_in_a_student_backward_pass():
    teacher_model = _model(0).train()
    teacher = FrozenTeacher(teacher_model)
    assert not teacher_model.training
    assert all(not p.requires_grad for p in teacher_model.parameters())
    student = _model(1)
    batch = _batches()[0]
    out = teacher(batch)
    assert set(out) == {"logits"}
    assert not out["logits"].is_inference()
    assert not out["logits"].requires_grad
    assert_close(out["logits"], teacher_model(batch["input"]))
    loss = _kd(student(batch["input"]), out["logits"])
    # an inference tensor saved for backward would raise here
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher_model.parameters())
    # also usable where the loss saves the teacher tensor itself for backward (MSE on logits)
    logit_mse(student(batch["input"]), out["logits"]).backward()


def test_frozen_teacher_binds_taps_and_stays_in_eval():
    model = _model(0)
    teacher = FrozenTeacher(model)
    teacher.bind(["logits", "1"], default_forward)
    model.train()  # something else flipped it; the teacher puts it back
    out = teacher(_batches()[0])
    assert set(out) == {"logits", "1"}
    assert not model.training
    assert (out["1"] >= 0).all()  # the ReLU's output
    with pytest.raises(ConfigError, match="teacher"):
        FrozenTeacher("not a model")  # type: ignore[arg-type]


# -- CachedTeacher ---------------------------------------------------------------------------------

def test_cached_teacher_full_logits_match_frozen(tmp_path):
    batches = _batches()
    frozen = FrozenTeacher(_model(0))
    cache = CachedTeacher(FrozenTeacher(_model(0)), tmp_path / "cache")
    assert not cache.exists()
    seen: list[int] = []
    cache.build(batches, progress=seen.append)
    assert cache.exists()
    assert seen == [4, 8, 12]
    student = _model(1)
    # serve in another order than built, and from a fresh object (reads the disk)
    fresh = CachedTeacher(FrozenTeacher(_model(0)), tmp_path / "cache")
    for batch in reversed(batches):
        s = student(batch["input"])
        expected = _kd(s, frozen(batch)["logits"])
        got = _kd(s, fresh(batch)["logits"])
        assert abs(got.item() - expected.item()) <= 1e-6
        assert_close(fresh(batch)["logits"], frozen(batch)["logits"], atol=1e-6, rtol=0)
    # a batch mixing samples of different build batches
    mixed = {"input": torch.cat([batches[0]["input"][:1], batches[2]["input"][2:]]),
             "index": torch.tensor([0, 10, 11])}
    assert_close(fresh(mixed)["logits"], frozen(mixed)["logits"], atol=1e-6, rtol=0)


def test_cached_teacher_top_k(tmp_path):
    batches = _batches()
    frozen = FrozenTeacher(_model(0))
    k = 2
    cache = CachedTeacher(FrozenTeacher(_model(0)), tmp_path / "topk", top_k=k)
    cache.build(batches)
    for batch in batches:
        served = cache(batch)["logits"]
        assert served.shape == (len(batch["index"]), CLASSES)
        p_served = served.exp()
        # the reconstructed distribution sums to 1 (served values are log-probabilities)
        assert_close(p_served.sum(-1), torch.ones(len(served)), atol=1e-5, rtol=0)
        assert_close(torch.softmax(served, -1), p_served, atol=1e-6, rtol=0)
        p_true = torch.softmax(frozen(batch)["logits"], -1)
        top_p, top_i = p_true.topk(k, -1)
        # the top-k probabilities are exact ...
        assert_close(p_served.gather(-1, top_i), top_p, atol=1e-6, rtol=0)
        # ... and the rest of the mass is spread evenly over the other classes
        rest = (1 - top_p.sum(-1, keepdim=True)) / (CLASSES - k)
        others = p_served.scatter(-1, top_i, float("nan"))
        others = others[~others.isnan()].reshape(len(served), CLASSES - k)
        assert_close(others, rest.expand_as(others), atol=1e-6, rtol=0)
    # a cache built with top_k is refused by a reader expecting full logits
    with pytest.raises(CacheError, match="top_k"):
        CachedTeacher(FrozenTeacher(_model(0)), tmp_path / "topk")(batches[0])
    with pytest.raises(ConfigError, match="top_k"):
        CachedTeacher(frozen, tmp_path / "x", top_k=0)


def test_cached_teacher_refuses_another_augmentation(tmp_path):
    batches = _batches(augment_seed=True)
    CachedTeacher(FrozenTeacher(_model(0)), tmp_path, augmentation={"flip": True, "crop": 4}).build(batches)
    # the same setting, keys in another order: served
    same = CachedTeacher(FrozenTeacher(_model(0)), tmp_path, augmentation={"crop": 4, "flip": True})
    assert same(batches[0])["logits"].shape == (4, CLASSES)
    other = CachedTeacher(FrozenTeacher(_model(0)), tmp_path, augmentation={"flip": False, "crop": 4})
    with pytest.raises(CacheError, match="augmentation") as info:
        other(batches[0])
    assert info.value.argument == "augmentation"
    # the augmentation seed is part of the key: another view of the same sample is not cached
    view = dict(batches[0], aug_seed=torch.full((4,), 8))
    with pytest.raises(CacheError, match="cached"):
        same(view)


def test_cached_teacher_refuses_unknown_ids_and_missing_ids(tmp_path):
    batches = _batches()
    cache = CachedTeacher(FrozenTeacher(_model(0)), tmp_path)
    cache.build(batches)
    unknown = {"input": torch.randn(2, FEATURES), "index": torch.tensor([3, 99])}
    with pytest.raises(CacheError, match="99"):
        cache(unknown)
    with pytest.raises(CacheError, match="index"):
        cache({"input": torch.randn(2, FEATURES)})
    with pytest.raises(CacheError, match="batches"):
        CachedTeacher(FrozenTeacher(_model(0)), tmp_path / "empty").build([])


def test_half_written_cache_counts_as_absent(tmp_path):
    cache = CachedTeacher(FrozenTeacher(_model(0)), tmp_path)
    cache.build(_batches())
    (tmp_path / "meta.json").unlink()  # the manifest is written last: without it the cache is incomplete
    fresh = CachedTeacher(FrozenTeacher(_model(0)), tmp_path)
    assert not fresh.exists()
    with pytest.raises(CacheError, match="build"):
        fresh(_batches()[0])


def test_interrupted_rebuild_never_pairs_old_manifest_with_new_data(tmp_path, monkeypatch):
    """A rebuild that dies after writing the data but before the manifest must not look complete."""
    import kd_core.signals as signals

    CachedTeacher(FrozenTeacher(_model(0)), tmp_path, augmentation="a").build(_batches())
    real_replace = signals.os.replace

    def dying_replace(src, dst):
        if str(dst).endswith("meta.json"):
            raise OSError("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(signals.os, "replace", dying_replace)
    with pytest.raises(CacheError, match="killed"):  # a kd error naming the file, not a bare OSError
        CachedTeacher(FrozenTeacher(_model(1)), tmp_path, augmentation="a").build(_batches())
    monkeypatch.undo()
    stale = CachedTeacher(FrozenTeacher(_model(0)), tmp_path, augmentation="a")
    assert not stale.exists()
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_cache_of_another_format_is_refused(tmp_path):
    import json

    cache = CachedTeacher(FrozenTeacher(_model(0)), tmp_path)
    cache.build(_batches())
    meta = json.loads(cache.meta_path.read_text())
    meta["format"] = CachedTeacher.FORMAT + 1
    cache.meta_path.write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="format"):
        CachedTeacher(FrozenTeacher(_model(0)), tmp_path)(_batches()[0])


def test_cached_teacher_caches_feature_taps(tmp_path):
    model = _model(0)
    cache = CachedTeacher(FrozenTeacher(model), tmp_path, top_k=2)
    cache.bind(["1"], default_forward)
    cache.build(_batches())
    batch = _batches()[1]
    out = cache(batch)
    assert set(out) == {"logits", "1"}
    assert_close(out["1"], torch.relu(model[0](batch["input"])), atol=1e-6, rtol=0)
    # asking for a tap the cache lacks is refused
    reader = CachedTeacher(FrozenTeacher(_model(0)), tmp_path, top_k=2)
    reader.bind(["0"], default_forward)
    with pytest.raises(CacheError, match="taps"):
        reader(batch)


# -- Ensemble and weightings -----------------------------------------------------------------------

class _Const(Signal):
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value
        self.bound = None

    def bind(self, taps, forward):
        self.bound = list(taps)

    def __call__(self, batch, progress=0.0):
        return {"logits": self.value.clone()}


def test_ensemble_uniform_and_fixed_weightings():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    b = torch.tensor([[5.0, -2.0, 1.0], [4.0, 8.0, 0.0]])
    uniform = Ensemble([_Const(a), _Const(b)], UniformWeighting())
    assert_close(uniform({})["logits"], (a + b) / 2)
    assert_close(uniform.last_weights, torch.tensor([0.5, 0.5]))
    assert uniform.trainable() == {} and uniform.optimizers() == [] and uniform.modules() == {}
    fixed = Ensemble([_Const(a), _Const(b)], FixedWeighting([3, 1]))
    # weighted mean: (3a + 1b) / 4; e.g. first entry (3·1 + 5) / 4 = 2
    out = fixed({})["logits"]
    assert_close(out, (3 * a + b) / 4)
    assert out[0, 0].item() == pytest.approx(2.0)
    # the default weighting is uniform; bind reaches every member
    members = [_Const(a), _Const(b), _Const(b)]
    default = Ensemble(members)
    default.bind(["logits", "x"], default_forward)
    assert all(m.bound == ["logits", "x"] for m in members)
    assert_close(default({})["logits"], (a + 2 * b) / 3)


def test_ensemble_per_sample_weights():
    a, b = torch.zeros(2, 3), torch.ones(2, 3) * 6

    class PerSample:
        def __call__(self, outputs, batch, progress):
            return torch.tensor([[1.0, 0.0], [0.5, 0.5]])

        def update(self, reward):
            pass

    out = Ensemble([_Const(a), _Const(b)], PerSample())({})["logits"]
    assert_close(out, torch.tensor([[0.0] * 3, [3.0] * 3]))


@pytest.mark.parametrize("weights", [[-1, 2], [], [0, 0], [float("nan"), 1], [float("inf"), 1]])
def test_fixed_weighting_rejects_bad_weights(weights):
    with pytest.raises(ConfigError, match="weights"):
        FixedWeighting(weights)


def test_fixed_weighting_count_must_match_teachers():
    with pytest.raises(ConfigError, match="one weight per teacher"):
        Ensemble([_Const(torch.zeros(1, 2))], FixedWeighting([1, 1]))({})
    with pytest.raises(ConfigError, match="teachers"):
        Ensemble([])


# -- TrainableTeacher ------------------------------------------------------------------------------

def test_trainable_teacher_bind_builds_an_optimizer():
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU(), nn.Linear(8, CLASSES))
    projection = HiddenMSE(8, 8)
    objective = Objective(Term("kd", kl_divergence, student="logits", teacher="logits"),
                          Term("hid", projection, student="1", teacher="1"))
    teacher = TrainableTeacher(model, objective, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    assert teacher.optimizers() == [] and teacher.optimizer is None
    assert teacher.trainable() == {"model": model, "objective": objective} and teacher.modules() == {"model": model}
    teacher.bind(["logits"], default_forward)
    assert isinstance(teacher.optimizer, torch.optim.SGD)
    optimized = {id(p) for group in teacher.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in [*model.parameters(), *projection.parameters()]}
    model.eval()
    out = teacher(_batches()[0])
    assert model.training
    assert set(out) == {"logits", "1"}
    assert out["logits"].requires_grad  # trained, so not detached
    # the default optimizer is AdamW
    default = TrainableTeacher(_model(2), Objective(Term("ce", kl_divergence, teacher="logits")))
    default.bind(["logits"], default_forward)
    assert isinstance(default.optimizer, torch.optim.AdamW)
    assert teacher.optimizers() == [teacher.optimizer]
    ensemble = Ensemble([_Const(torch.zeros(1, 2)), default])
    assert ensemble.trainable() == {"1.model": default.model, "1.objective": default.objective}
    assert ensemble.optimizers() == [default.optimizer] and ensemble.evaluated() == {"teacher1": default.model}
    assert math.isclose(default.optimizer.param_groups[0]["lr"], 1e-3)


def test_a_signal_state_round_trips_its_modules_and_optimizers_and_rejects_another_layout():
    def teacher(seed: int) -> TrainableTeacher:
        signal = TrainableTeacher(_model(seed), Objective(Term("kd", kl_divergence, teacher="logits"),
                                                          Term("hid", HiddenMSE(8, 8), student="1", teacher="1")))
        signal.bind(["logits", "1"], default_forward)
        return signal

    trained = teacher(0)
    batch = _batches()[0]
    out = trained(batch)
    result = trained.loss(out, {k: v.detach() + 1 for k, v in out.items()}, batch, 0.0)
    assert set(result.terms) == {"kd", "hid"}
    result.total.backward()
    trained.optimizer.step()
    fresh = teacher(1)
    fresh.load_state_dict(trained.state_dict())
    for a, b in zip([*trained.model.parameters(), *trained.objective.parameters()],
                    [*fresh.model.parameters(), *fresh.objective.parameters()], strict=True):
        assert torch.equal(a, b)
    assert fresh.optimizer.state_dict()["state"].keys() == trained.optimizer.state_dict()["state"].keys() != set()
    frozen = FrozenTeacher(_model(0))
    assert frozen.state_dict() == {"modules": {}, "optimizers": []}
    with pytest.raises(CheckpointError, match="signal state"):
        frozen.load_state_dict(trained.state_dict())


def test_an_ensemble_sums_its_members_own_losses_each_on_its_own_outputs():
    members = [TrainableTeacher(_model(s), Objective(Term("mse", logit_mse, teacher="logits"))) for s in (0, 1)]
    ensemble = Ensemble([*members, _Const(torch.zeros(4, CLASSES))])
    ensemble.bind(["logits"], default_forward)
    batch = _batches()[0]
    ensemble(batch)
    target = {"logits": torch.zeros(4, CLASSES)}
    result = ensemble.loss({}, target, batch, 0.0)
    by_hand = [logit_mse(m.model(batch["input"]), target["logits"]) for m in members]
    assert set(result.terms) == {"0.mse", "1.mse"}
    assert_close(result.total, by_hand[0] + by_hand[1])
    frozen = Ensemble([FrozenTeacher(_model(0))])
    frozen.bind(["logits"], default_forward)
    assert frozen.loss(frozen(batch), target, batch, 0.0) is None
