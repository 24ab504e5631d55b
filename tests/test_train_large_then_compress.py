"""Train large, then compress (S24), the CNN side study, CI-sized: the mechanics of
``tools/repro/train_large_compress_cnn.py``.

Two tiny CNNs on real digits at equal training FLOPs, channel-pruned and INT8-quantized through ONNX Runtime:
the test checks the pipeline (equal compute, smaller compressed files, accuracy recorded for every point, the
plot written, pruned models reloaded from their record), not the paper's result.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from kd_edge.models.small import SmallCNN

ROOT = Path(__file__).resolve().parents[1]
REPRO = ROOT / "tools" / "repro"


@pytest.fixture(scope="module")
def recipe():
    """The repro script as a module (it imports ``repro_common`` from its own folder)."""
    sys.path.insert(0, str(REPRO))
    try:
        spec = importlib.util.spec_from_file_location("train_large_compress_cnn",
                                                      REPRO / "train_large_compress_cnn.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(REPRO))


@pytest.fixture(scope="module")
def result(recipe, tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tlc")
    bases = {"wide": (16, 32, 32), "narrow": (8, 16, 16)}
    return recipe.run_experiment([0], bases, reference_epochs=1, ratios=[0.5], finetune_epochs=1,
                                 plot_path=folder / "plot.png", test_size=300, work=folder)


def test_flop_count_matches_a_hand_count(recipe) -> None:
    # one 3x3 conv 1->2 on 8x8 (padding 1), then global pool and Linear 2->10; batch 4.
    model = SmallCNN(widths=(2,))
    x, y = torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    conv_macs, linear_macs = 2 * 9 * 64, 2 * 10
    # forward 2·MACs each; backward: the conv needs only its weight gradient (its input is the data), the
    # Linear its weight and its input gradient: 2·MACs each.
    assert recipe.step_flops_per_sample(model, x, y) == 2 * conv_macs * 2 + 2 * linear_macs * 3
    assert all(p.grad is None for p in model.parameters())


def test_equal_compute_epochs_by_hand(recipe) -> None:
    assert recipe.equal_compute_epochs({"wide": 16.0, "narrow": 1.0}, "wide", 3) == {"wide": 3, "narrow": 48}
    assert recipe.equal_compute_epochs({"wide": 10.0, "narrow": 4.0}, "wide", 1) == {"wide": 1, "narrow": 2}


def test_equal_training_compute_within_tolerance(result) -> None:
    training = result["seeds"][0]["training"]
    wide, narrow = training["wide"], training["narrow"]
    assert narrow["epochs"] > wide["epochs"] and narrow["steps"] > wide["steps"]
    # whole epochs: the narrow model's budget is off by at most half of one of its epochs
    assert abs(narrow["train_flops"] / wide["train_flops"] - 1) <= 0.5 / narrow["epochs"] + 1e-9
    assert narrow["flops_per_sample_step"] < wide["flops_per_sample_step"] / 3  # widths /2: about /4
    assert len(narrow["curve"]) == narrow["epochs"]


def test_every_point_has_accuracy_and_compression_shrinks_the_wide_model(result) -> None:
    points = result["seeds"][0]["points"]
    assert {(p["model"], p["compression"]) for p in points} == {
        (m, c) for m in ("wide", "narrow") for c in ("none", "int8", "prune0.5", "prune0.5+int8")}
    for point in points:
        assert 0.0 <= point["accuracy"] <= 1.0 and point["bytes"] > 0
    training = result["seeds"][0]["training"]
    for model in ("wide", "narrow"):  # ORT's FP32 accuracy = PyTorch's after the last epoch (<= 1 test image off)
        fp32 = next(p for p in points if p["model"] == model and p["compression"] == "none")
        assert abs(fp32["accuracy"] - training[model]["curve"][-1]["accuracy"]) <= 1 / 300 + 1e-9
    wide = {p["compression"]: p for p in points if p["model"] == "wide"}
    for compression in ("int8", "prune0.5", "prune0.5+int8"):
        assert wide[compression]["bytes"] < wide["none"]["bytes"]
    assert wide["prune0.5+int8"]["bytes"] < wide["prune0.5"]["bytes"]
    assert wide["prune0.5"]["params"] < 0.4 * wide["none"]["params"]  # half the channels: about a quarter
    narrow = {p["compression"]: p for p in points if p["model"] == "narrow"}
    for compression in ("int8", "prune0.5", "prune0.5+int8"):
        assert narrow[compression]["bytes"] < narrow["none"]["bytes"]


def test_pruned_models_reload_from_their_record(result) -> None:
    reloads = result["seeds"][0]["reloads"]
    assert [r["model"] for r in reloads] == ["wide", "narrow"]
    assert all(r["max_abs_diff"] <= 1e-6 for r in reloads)


def test_plot_and_verdicts(result) -> None:
    plot = Path(result["plot"])
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = result["rows"]
    assert len(rows) == 8 and all(r["accuracy_std"] == 0.0 for r in rows)  # one seed
    names = [what for what, _, _ in result["verdicts"]]
    assert any(n.startswith("(i) per step") for n in names) and any(n.startswith("(ii)") for n in names)


def test_results_page_names_the_command_and_the_plot(recipe, result, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    recipe.write_doc(page, result, "python tools/repro/train_large_compress_cnn.py --seeds 0", 0.1)
    text = page.read_text()
    assert "python tools/repro/train_large_compress_cnn.py --seeds 0" in text
    assert "](plot.png)" in text and "**Reading.**" in text
    assert text.count("| wide | prune0.5+int8 |") == 1 and "## Did the paper's direction hold?" in text


def test_dominated_share_by_hand(recipe) -> None:
    rows = [{"model": "big", "compression": "a", "bytes": 10, "accuracy": 0.9},
            {"model": "small", "compression": "x", "bytes": 12, "accuracy": 0.8},   # dominated by a
            {"model": "small", "compression": "y", "bytes": 8, "accuracy": 0.7}]    # nothing that small
    assert recipe.dominated_share(rows, "big", "small") == (0.5, ["x"])
