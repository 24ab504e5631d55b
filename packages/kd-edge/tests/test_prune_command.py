"""``kd-edge prune``: the run directory, its report, and bad arguments refused before any work."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from kd_core.errors import CheckpointError, ConfigError, KDError
from kd_edge.prune.command import add_arguments, run
from kd_edge.prune.record import load_pruned


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kd-edge prune")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def _model_args(out: Path, *extra: str) -> argparse.Namespace:
    return _args("--model", "kd_edge.models.resnet:build_resnet", "--model-kwargs",
                 '{"in_channels": 1, "classes": 4, "widths": [8, 16], "blocks_per_stage": [1, 1]}',
                 "--latency-iterations", "3", "--out", str(out), *extra)


def test_channels_run_writes_report_results_plot_and_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert run(_model_args(out, "--method", "channels", "--ratio", "0.5", "--input-shape", "1,1,16,16")) == 0
    printed = capsys.readouterr().out
    assert f"run directory: {out}" in printed and f"report: {out / 'report.md'}" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["after"]["params"] < results["before"]["params"]
    assert results["summary"]["params_after"] == results["after"]["params"]
    assert results["example_input"]["shape"] == [1, 1, 16, 16]
    report = (out / "report.md").read_text()
    assert "params" in report and "p50 (ms)" in report and "plots/size_latency.png" in report
    assert (out / "plots" / "size_latency.png").stat().st_size > 0
    model = load_pruned(out / "model")
    assert sum(p.numel() for p in model.parameters()) == results["after"]["params"]
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 4)


@pytest.mark.parametrize("method", ["unet-inner", "unet-cut"])
def test_unet_methods_need_a_model_that_describes_its_unet(tmp_path: Path, method: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        run(_model_args(out, "--method", method))
    assert info.value.argument == "--model" and "unet_structure" in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize(("extra", "error", "argument"), [
    (("--method", "channels", "--ratio", "1.0"), ConfigError, "--ratio"),
    (("--method", "channels", "--ratio", "-0.2"), ConfigError, "--ratio"),
    (("--method", "layers",), ConfigError, "--layers"),
    (("--method", "layers", "--layers", "x"), ConfigError, "--layers"),
    (("--method", "layers", "--layers", "0,9", "--container", "blocks"), ConfigError, "layers"),
    (("--model-kwargs", "[1]",), ConfigError, "--model-kwargs"),
])
def test_bad_arguments_refused_before_a_run_directory(tmp_path: Path, extra: tuple[str, ...],
                                                      error: type[KDError], argument: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(error) as info:
        run(_model_args(out, *extra))
    assert info.value.argument == argument
    assert not out.exists()


def test_missing_model_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(CheckpointError) as info:
        run(_args("--model", str(missing), "--out", str(tmp_path / "run")))
    assert info.value.argument == "--model" and str(missing) in str(info.value)
    assert not (tmp_path / "run").exists()


def test_digits_run_reports_accuracy_before_and_after_in_the_plot_and_table(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = _args("--model", "kd_edge.models.small:build_model", "--model-kwargs", '{"name": "cnn"}', "--digits",
                 "--train-epochs", "3", "--finetune-epochs", "1", "--ratio", "0.5", "--latency-iterations", "2",
                 "--out", str(out))
    assert run(args) == 0
    results = json.loads((out / "results.json").read_text())
    accuracy = results["accuracy"]
    assert accuracy["before"] > 0.5  # trained on real digits: far above the 10% of chance
    assert results["before"]["accuracy"] == accuracy["before"] and results["after"]["accuracy"] == accuracy["after"]
    assert accuracy["after"] >= accuracy["after pruning"] - 0.05  # fine-tuning does not make it worse
    assert results["example_input"]["shape"] == [1, 1, 8, 8]
    report = (out / "report.md").read_text()
    assert "accuracy %" in report and "Test accuracy (sklearn digits 8x8" in report and "distillation" in report
    model = load_pruned(out / "model")
    from kd_edge.data.digits import demo_data

    data = demo_data()
    with torch.no_grad():
        reloaded = float((model(data.test_x).argmax(-1) == data.test_y).double().mean())
    assert reloaded == pytest.approx(accuracy["after"])  # the saved model is the fine-tuned one


def test_digits_needs_a_digit_classifier(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run(_model_args(tmp_path / "run", "--digits"))
    assert info.value.argument == "--digits" and not (tmp_path / "run").exists()
