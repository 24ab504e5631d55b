"""Model inversion (DeepInversion, NaturalInversion): priors by hand, synthesis behaviour, and a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from kd_core.errors import ConfigError
from kd_core.recipes import load_recipe
from kd_vision.cli import main
from kd_vision.inversion import (
    BNStatisticsPrior,
    DeepInversion,
    NaturalInversion,
    PriorWeights,
    SyntheticImages,
    frechet_distance,
    inversion_loss,
    synthesize,
    total_variation,
)
from kd_vision.inversion.augment import jitter
from kd_vision.inversion.natural import init_channel_scales
from kd_vision.inversion.priors import bn_statistics_distance
from kd_vision.inversion.pyramid import FeatureTransferPyramid, default_pyramid_taps
from kd_vision.methods.inversion import (
    InversionConfig,
    KDConfig,
    arms,
    compare,
    inversion_for,
    kd_objective,
    transfer_metrics,
)
from kd_vision.models import build_model
from torch import nn

SHAPE = (1, 8, 8)


def bn_teacher(seed: int = 0) -> nn.Module:
    """A tiny BN CNN whose running statistics come from images unlike N(0, 1) noise (no training needed)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, momentum=None), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1, bias=False),
                          nn.BatchNorm2d(6, momentum=None), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 10))
    with torch.no_grad():  # momentum=None: the running statistics are those of this one batch
        model.train()(torch.rand(256, *SHAPE) * 2 + 0.5)
    return model.eval()



def tiny_natural(**overrides) -> NaturalInversion:
    settings = {"iterations": 3, "latent_dim": 8, "generator_width": 8}
    return NaturalInversion(**{**settings, **overrides})


# -- priors, by hand -------------------------------------------------------------------------------------
def test_total_variation_is_the_sum_of_four_directional_l2_norms() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    # right: (1-2, 3-5) -> √5; down: (1-3, 2-5) -> √13; anti-diagonal: 3-2 -> 1; diagonal: 1-5 -> 4
    assert math.isclose(float(total_variation(x)), math.sqrt(5) + math.sqrt(13) + 1 + 4, rel_tol=1e-6)
    assert float(total_variation(torch.full((2, 3, 4, 4), 7.0))) == 0.0


def test_bn_statistics_distance_by_hand_and_the_prior_reads_the_layer_input() -> None:
    # channel 0 values (1, 3): mean 2, biased var 1; channel 1 values (0, 4): mean 2, var 4
    x = torch.tensor([[1.0, 0.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    mean, var = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0])
    # ‖(2, 0)‖ + ‖(0, 3)‖ = 5
    assert math.isclose(float(bn_statistics_distance(x, mean, var)), 5.0, rel_tol=1e-6)

    bn = nn.BatchNorm2d(2)
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    with torch.no_grad():
        bn.weight.fill_(3.0)  # the output's statistics differ: only the input gives 5
        bn.bias.fill_(-1.0)
    model = nn.Sequential(nn.Identity(), bn).eval()
    prior = BNStatisticsPrior(model)
    with prior.capture() as per_layer:
        model(x)
    assert list(per_layer) == ["1"]
    assert math.isclose(float(prior.loss()), 5.0, rel_tol=1e-6)
    assert not bn._forward_hooks  # hooks are open only inside capture()


def test_inversion_loss_weights_each_term() -> None:
    torch.manual_seed(0)
    logits, labels, x = torch.randn(4, 10), torch.tensor([0, 1, 2, 3]), torch.randn(4, 1, 5, 5)
    bn = torch.tensor(2.0)
    terms = inversion_loss(logits, labels, x, bn, PriorWeights(bn=3.0, tv=0.5, l2=0.25))
    ce = float(torch.nn.functional.cross_entropy(logits, labels))
    expected = ce + 3.0 * 2.0 + 0.5 * float(total_variation(x)) + 0.25 * float(x.norm())
    assert math.isclose(float(terms["total"]), expected, rel_tol=1e-6)
    with pytest.raises(ConfigError, match=r"weights\.tv"):
        PriorWeights(tv=-1.0)


def test_frechet_distance_of_one_dimensional_gaussians_is_mean_and_std_gaps() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, (400, 1)), rng.normal(-1.0, 0.5, (300, 1))
    # 1-D: (μa − μb)² + σa² + σb² − 2σaσb = (μa − μb)² + (σa − σb)²
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert math.isclose(frechet_distance(a, b), expected, rel_tol=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # several dimensions: the same as the textbook formula with scipy's general matrix square root
    x, y = rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4)), rng.normal(size=(60, 4)) + 0.3
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    textbook = (((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(cx + cy)
                - 2 * np.trace(np.real(scipy.linalg.sqrtm(cx @ cy))))
    assert math.isclose(frechet_distance(x, y), textbook, rel_tol=1e-6)
    # fewer samples than dimensions: the n × m sample product gives the same value as the D × D covariances
    x, y = rng.normal(size=(12, 40)) @ rng.normal(size=(40, 40)), rng.normal(size=(15, 40)) + 0.3
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(scipy.linalg.sqrtm(cx) @ cy @ scipy.linalg.sqrtm(cx))
    textbook = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(cx + cy) - 2 * np.trace(np.real(root))
    assert math.isclose(frechet_distance(x, y), textbook, rel_tol=1e-6)


def test_jitter_rolls_and_flips_without_changing_values() -> None:
    torch.manual_seed(0)
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    assert torch.equal(jitter(x, 0, flip=False), x)
    moved = [jitter(x, 2) for _ in range(20)]
    assert any(not torch.equal(m, x) for m in moved)
    assert all(torch.equal(m.flatten(1).sort(1).values, x.flatten(1).sort(1).values) for m in moved)


# -- synthesis behaviour ---------------------------------------------------------------------------------
def _bn_loss(teacher: nn.Module, images: torch.Tensor) -> float:
    prior = BNStatisticsPrior(teacher)
    with torch.no_grad(), prior.capture():
        teacher(images)
    return float(prior.loss())


@pytest.mark.parametrize("make", [lambda n: DeepInversion(iterations=n, weights=PriorWeights(tv=0.0, l2=0.0)),
                                  lambda n: tiny_natural(iterations=n, weights=PriorWeights(tv=0.0, l2=0.0))],
                         ids=["deep", "natural"])
def test_a_few_inversion_steps_lower_the_bn_statistics_loss(make) -> None:
    teacher = bn_teacher()

    def images(iterations: int) -> torch.Tensor:  # the same seed: the same starting point
        return synthesize(make(iterations), teacher, num_classes=10, image_shape=SHAPE, images_per_class=2,
                          batch_size=20, seed=0).images

    start, after = images(1), images(40)  # one iteration keeps the (un-jittered) starting images
    assert after.shape == (20, *SHAPE)
    assert _bn_loss(teacher, after) < 0.8 * _bn_loss(teacher, start)


def test_teacher_bn_running_stats_weights_and_mode_survive_synthesis() -> None:
    teacher = bn_teacher().train()  # a train-mode BN would update its running stats on every forward
    teacher[0].weight.requires_grad_(True)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    for inverter in (DeepInversion(iterations=3), tiny_natural()):
        synthesize(inverter, teacher, num_classes=10, image_shape=SHAPE, images_per_class=1, batch_size=10)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running_mean/var, num_batches_tracked too
    assert teacher.training and teacher[1].training  # mode given back as it came
    assert all(p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_the_generator_is_fresh_for_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    inverter = tiny_natural(iterations=2)
    created = []
    original = NaturalInversion.fresh_modules

    def spy(self, *args, **kwargs):
        modules = original(self, *args, **kwargs)
        created.append((modules, {k: v.clone() for k, v in modules.generator.state_dict().items()},
                        modules.alpha.detach().clone()))
        return modules

    monkeypatch.setattr(NaturalInversion, "fresh_modules", spy)
    synthetic = synthesize(inverter, bn_teacher(), num_classes=10, image_shape=SHAPE, images_per_class=2,
                           batch_size=10, seed=0)
    assert len(synthetic) == 20 and len(created) == 2
    (first, first_init, first_alpha), (second, second_init, second_alpha) = created
    assert first.generator is not second.generator and first.ftp is not second.ftp
    assert not torch.equal(first_init["linear.weight"], second_init["linear.weight"])
    assert not torch.equal(first_alpha, second_alpha)
    # the second batch starts from its own initialisation, not from where the first one ended
    assert not torch.equal(first.generator.linear.weight.detach(), second_init["linear.weight"])


def test_acs_scales_have_one_entry_per_image_and_channel_drawn_from_n_5_1() -> None:
    torch.manual_seed(0)
    alpha = init_channel_scales(2000, 3)
    assert alpha.shape == (2000, 3, 1, 1) and alpha.requires_grad and alpha.is_leaf
    assert abs(float(alpha.detach().mean()) - 5.0) < 0.1 and abs(float(alpha.detach().std()) - 1.0) < 0.1
    modules = tiny_natural().fresh_modules(6, SHAPE, 10, [4, 6], torch.device("cpu"))
    assert modules.alpha.shape == (6, 1, 1, 1)  # one-channel digits: ACS scales each image's intensity
    assert tiny_natural(use_acs=False).fresh_modules(6, SHAPE, 10, [4], torch.device("cpu")).alpha is None


def test_ftp_reads_the_teachers_multi_scale_maps_and_returns_a_bounded_image() -> None:
    teacher = build_model("teacher-cnn")
    taps = default_pyramid_taps(teacher, torch.zeros(2, *SHAPE))
    assert taps == ["features.1", "features.5"]  # the last BN at 8x8, then at 4x4
    ftp = FeatureTransferPyramid([48, 96], 1)
    out = ftp(torch.randn(3, *SHAPE), [torch.randn(3, 48, 8, 8), torch.randn(3, 96, 4, 4)])
    assert out.shape == (3, *SHAPE) and float(out.detach().abs().max()) <= 1.0


def test_a_teacher_without_batchnorm_is_refused_before_synthesis() -> None:
    no_bn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))
    for inverter in (DeepInversion(iterations=1), tiny_natural()):
        with pytest.raises(ConfigError) as err:
            synthesize(inverter, no_bn, num_classes=10, image_shape=SHAPE, images_per_class=1, batch_size=10)
        assert err.value.argument == "teacher" and err.value.expected == "a model with BatchNorm layers"


def test_synthetic_images_round_trip_through_safetensors(tmp_path: Path) -> None:
    images, labels = torch.randn(4, *SHAPE), torch.tensor([0, 1, 2, 3])
    path = SyntheticImages(images, labels, {"method": "x", "seed": 3}).save(tmp_path / "s.safetensors")
    loaded = SyntheticImages.load(path)
    assert torch.equal(loaded.images, images) and torch.equal(loaded.labels, labels)
    assert loaded.provenance == {"method": "x", "seed": 3} and loaded[2]["label"] == 2


# -- the recipes: arms on a Study -------------------------------------------------------------------------
TINY = ["--set", "data.train_size=100", "--set", "data.val_size=20", "--set", "data.test_size=50",
        "--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "seeds=[0,1]",
        "--set", "synthesis.images_per_class=2", "--set", "synthesis.batch_size=20",
        "--set", "synthesis.iterations=2", "--set", "natural.latent_dim=8", "--set", "natural.generator_width=8",
        "--set", "latency_iterations=0", "--device", "cpu"]
ALL_ARMS = ["--set", "arms=[natural-inversion,generator-only,deep-inversion,real-kd,scratch]"]


def no_bn_teacher(num_classes: int = 10) -> nn.Module:
    """A teacher the BN prior cannot invert (imported by the CLI as test_inversion:no_bn_teacher)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))


def _config(**changes) -> InversionConfig:
    return InversionConfig.model_validate({"name": "t", **changes})


def test_the_kd_objective_by_hand() -> None:
    student, teacher, labels = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]]), torch.tensor([1])
    kd, ce = kd_objective(KDConfig(temperature=2.0, ce_weight=0.5)).terms
    assert (kd.name, ce.name, kd.weight(0.0), ce.weight(0.0)) == ("kd", "ce", 1.0, 0.5)
    p, q = torch.softmax(teacher / 2, -1), torch.softmax(student / 2, -1)
    by_hand = 4.0 * float((p * (p / q).log()).sum())  # T² · KL(p_T ‖ p_S)
    assert math.isclose(float(kd({"logits": student}, {"logits": teacher}, {}, 0.0)), by_hand, rel_tol=1e-5)
    ce_by_hand = -math.log(1 / (math.e + 1 + math.exp(-1)))  # CE of logits (1, 0, -1) at class 1
    assert math.isclose(float(ce({"logits": student}, None, {"label": labels}, 0.0)), ce_by_hand, rel_tol=1e-5)
    assert [t.name for t in kd_objective(KDConfig()).terms] == ["kd"]  # data-free: no CE by default


def test_transfer_metrics_of_the_test_set_itself() -> None:
    teacher = build_model("teacher-cnn").eval()
    torch.manual_seed(0)
    images, labels = torch.randn(30, *SHAPE), torch.arange(30) % 10
    test = SyntheticImages(images, labels)
    metrics = transfer_metrics(teacher, test, test, "in:fc")
    assert metrics["fd_transfer_vs_test"] == pytest.approx(0.0, abs=1e-6)
    agree = float((teacher(images).argmax(-1) == labels).float().mean())
    assert metrics["teacher_accuracy_on_transfer"] == pytest.approx(agree)


def test_arms_roles_inverters_and_comparisons() -> None:
    config = _config(arms=["natural-inversion", "generator-only", "deep-inversion", "real-kd", "scratch"])
    built = arms(config, None)
    assert {n: a.role for n, a in built.items()} == {"natural-inversion": "variant", "generator-only": "baseline",
                                                     "deep-inversion": "baseline", "real-kd": "kd",
                                                     "scratch": "scratch"}
    assert all(a.fit is not None for n, a in built.items() if n != "scratch") and built["scratch"].fit is None
    assert compare(config, built) == [("real-kd", "scratch"), ("natural-inversion", "generator-only"),
                                      ("natural-inversion", "deep-inversion"), ("generator-only", "deep-inversion"),
                                      ("real-kd", "natural-inversion")]
    full, ablation = inversion_for(config, "natural-inversion"), inversion_for(config, "generator-only")
    assert full.use_ftp and full.use_acs and not ablation.use_ftp and not ablation.use_acs
    deep_pixels = inversion_for(config, "deep-inversion")
    assert isinstance(deep_pixels, DeepInversion) and deep_pixels.lr == 0.05
    deep = _config(method="deep-inversion", arms=["deep-inversion", "real-kd"])
    assert arms(deep, None)["deep-inversion"].role == "variant"
    assert compare(deep, arms(deep, None)) == [("real-kd", "deep-inversion")]
    with pytest.raises(ValueError, match="own arm"):
        _config(method="deep-inversion", arms=["natural-inversion"])
    with pytest.raises(ValueError, match="repeat"):
        _config(arms=["natural-inversion", "natural-inversion"])


def test_both_recipes_validate() -> None:
    method, config = load_recipe("deep-inversion", ["synthesis.iterations=7"], domain="vision")
    assert method.name == "deep-inversion" and config.synthesis.iterations == 7 and config.kd.temperature == 4.0
    assert config.arms == ["deep-inversion", "real-kd"] and config.deep.lr == 0.05
    method, config = load_recipe("natural-inversion", [], domain="vision")
    assert config.arms == ["natural-inversion", "generator-only", "deep-inversion", "real-kd"]
    assert (config.natural.lr_generator, config.natural.lr_ftp, config.natural.lr_acs) == (1e-3, 5e-4, 5e-2)
    assert config.data.source == "sklearn8x8" and config.synthesis.jitter == 1 and not config.synthesis.flip


def test_tiny_study_of_every_arm_writes_results_comparisons_and_synthetic_sets(tmp_path: Path,
                                                                              data_home: Path) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "natural-inversion", "--out", str(out), *TINY, *ALL_ARMS]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["natural-inversion", "generator-only", "deep-inversion", "real-kd", "scratch"]
    assert results["task"]["headline"] == "accuracy" and results["seeds"] == [0, 1]
    for name, arm in results["arms"].items():
        for seed in ("0", "1"):
            metrics = arm["seeds"][seed]
            assert set(metrics) >= {"accuracy", "ece", "nll"}
            if name == "scratch":
                assert "fd_transfer_vs_test" not in metrics
            else:
                assert metrics["fd_transfer_vs_test"] >= 0.0 and 0.0 <= metrics["teacher_accuracy_on_transfer"] <= 1
                assert ("synthesis_loss" in metrics) == (name != "real-kd")
    # every comparison is the paired per-seed difference of the arms' test accuracies, in points
    pairs = [(c["a"], c["b"]) for c in results["comparisons"]]
    assert pairs == [("real-kd", "scratch"), ("natural-inversion", "generator-only"),
                     ("natural-inversion", "deep-inversion"), ("generator-only", "deep-inversion"),
                     ("real-kd", "natural-inversion")]
    for c in results["comparisons"]:
        a, b = (results["arms"][x]["seeds"] for x in (c["a"], c["b"]))
        expected = [100 * (a[s]["accuracy"] - b[s]["accuracy"]) for s in ("0", "1")]
        assert c["differences"] == pytest.approx(expected) and c["n"] == 2
    # one synthetic set per inversion arm and seed, 2 per class, made by that arm's synthesis
    for name in ("natural-inversion", "generator-only", "deep-inversion"):
        for seed in (0, 1):
            (path,) = (out / "synthetic").glob(f"{name}-seed{seed}-*.safetensors")
            synthetic = SyntheticImages.load(path)
            assert synthetic.images.shape == (20, *SHAPE) and synthetic.labels.tolist() == list(range(10)) * 2
            assert synthetic.provenance["method"] == name and synthetic.provenance["seed"] == seed
            assert synthetic.provenance["settings"].get("use_ftp", False) == (name == "natural-inversion")
            assert (out / "plots" / f"synthetic-{name}-seed{seed}.png").read_bytes()[:4] == b"\x89PNG"
    # the inversion students trained on their 20 synthetic images (one batch per epoch), real-kd on 100 (two)
    steps = {name: [json.loads(line) for line in (out / f"{name}-seed0" / "metrics.jsonl").read_text().splitlines()]
             for name in ("natural-inversion", "real-kd")}
    assert max(r["step"] for r in steps["natural-inversion"]) == 1 and max(r["step"] for r in steps["real-kd"]) == 2
    report = (out / "report.md").read_text()
    for needle in ("**Plain KD against scratch**", "**natural-inversion**", "**generator-only**", "fd_transfer_vs_test",
                   "never see a real train image"):
        assert needle in report
    assert (out / "natural-inversion-seed1" / "checkpoints" / "final.safetensors").is_file()


def test_a_resumed_study_reuses_its_synthetic_sets(tmp_path: Path, data_home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    args = ["distill", "--recipe", "deep-inversion", "--out", str(out), *TINY, "--set", "seeds=[0]"]
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())["arms"]["deep-inversion"]["seeds"]["0"]

    def refuse(*args, **kwargs):
        raise AssertionError("synthesised again")

    monkeypatch.setattr("kd_vision.methods.inversion.synthesize", refuse)
    assert main([*args, "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())["arms"]["deep-inversion"]["seeds"]["0"]
    assert again == pytest.approx(first)


def test_a_teacher_without_batchnorm_is_refused_before_any_run(tmp_path: Path, data_home: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    out = tmp_path / "r"
    args = ["distill", "--recipe", "natural-inversion", "--out", str(out), "--trust", "test_inversion",
            "--set", "teacher.model=test_inversion:no_bn_teacher", "--set", "data.test_size=50"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "teacher.model" in err and "BatchNorm" in err
    assert not out.exists() and not (data_home / "teachers").exists()  # nothing trained, not even the teacher


def test_a_bad_override_names_the_field(tmp_path: Path, data_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["distill", "--recipe", "deep-inversion", "--out", str(tmp_path / "r"), "--set", "synthesis.use_ftp=true"]
    assert main(args) == 2
    assert "synthesis.use_ftp" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
