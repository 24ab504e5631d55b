"""``kd-edge export|quantize|bench`` write a run directory with a report, plot and JSON; bad input exits 2
with the option named; the ``prune`` hook plugs in a command module when one is installed."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest
from kd_edge.cli import main


def _run_files(run: Path) -> None:
    assert (run / "report.md").is_file() and (run / "plots" / "size_accuracy_latency.png").stat().st_size > 1000
    assert (run / "results.json").is_file() and (run / "config.yaml").is_file()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "export"
    assert main(["export", "--model", "mlp", "--train-epochs", "2", "--out", str(run)]) == 0
    return run


def test_export_writes_model_parity_and_report(exported: Path) -> None:
    _run_files(exported)
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_error"] < 1e-4 and parity["torch_metric"] > 0.5
    results = json.loads((exported / "results.json").read_text())
    assert results["export"]["exporter"] == "dynamo"
    assert {row["name"] for row in results["latency"]} == {"pytorch", "ort-fp32"}
    report = (exported / "report.md").read_text()
    assert "Parity" in report and "dynamo" in report
    assert (exported / "checkpoints" / "student.safetensors").is_file()


def test_quantize_an_onnx_file_static(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "q"
    assert main(["quantize", "--onnx", str(exported / "model.onnx"), "--mode", "static", "--out", str(run)]) == 0
    assert f"report: {run / 'report.md'}" in capsys.readouterr().out
    _run_files(run)
    results = json.loads((run / "results.json").read_text())
    assert results["quantized"]["mode"] == "static-int8" and results["quantized"]["size_ratio"] < 0.35
    assert len(results["quantized"]["quantized_layers"]) == 3


def test_quantize_mixed_with_weights(exported: Path, tmp_path: Path) -> None:
    run = tmp_path / "m"
    weights = exported / "checkpoints" / "student.safetensors"
    assert main(["quantize", "--model", "mlp", "--weights", str(weights), "--mode", "mixed", "--k", "1",
                 "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    ranked_first = results["sensitivity"]["layers"][0]["node"]
    assert results["quantized"]["excluded"] == [ranked_first]
    assert results["quantized"]["mode"] == "mixed-int8-fp16"  # FP16 is the default for the kept layers
    assert (run / "model.mixed-k1-fp16.onnx").is_file()
    assert sum(results["kernel_types"].values()) == 3  # what ORT really ran, recorded for the report
    report = (run / "report.md").read_text()
    assert "Per-layer INT8 sensitivity" in report and "kept in FP16" in report


def test_bench_times_every_candidate(exported: Path, tmp_path: Path) -> None:
    run = tmp_path / "b"
    assert main(["bench", "--onnx", str(exported / "model.onnx"), "--batch-sizes", "1,4", "--iterations", "3",
                 "--warmup", "1", "--out", str(run)]) == 0
    _run_files(run)
    results = json.loads((run / "results.json").read_text())
    assert results["mixed"]["keep"] == "fp16" and results["mixed"]["mode"] == "mixed-int8-fp16"
    assert results["int8_ops"] == ["Conv", "ConvTranspose", "Gemm", "MatMul"]  # --int8-ops all
    rows = results["latency"]
    assert {(r["name"], r["batch_size"]) for r in rows} == {
        (n, b) for n in ("ort-fp32", "ort-int8-dynamic", "ort-int8", "ort-mixed-k1") for b in (1, 4)}
    # throughput reads as a whole number of samples per second (no "4925.4000")
    table = (run / "report.md").read_text().split("samples/s", 1)[1]
    cell = table.splitlines()[2].split("|")[-3].strip()
    assert cell.replace(",", "").isdigit(), cell


@pytest.mark.parametrize(("argv", "named"), [
    (["quantize", "--onnx", "no/such/model.onnx"], "--onnx"),
    (["bench", "--onnx", "no/such/model.onnx"], "--onnx"),
    (["export", "--model", "mlp", "--weights", "no/such.safetensors"], "--weights"),
    (["export", "--model", "resnet9000"], "--model"),
    (["quantize", "--model", "mlp", "--mode", "mixed", "--k", "-1"], "--k"),
    (["quantize", "--model", "mlp", "--calibration-size", "0"], "--calibration-size"),
])
def test_bad_input_exits_2_naming_the_option(argv: list[str], named: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    assert f"error: {named}:" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_k_beyond_the_layers_is_refused(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", "--onnx", str(exported / "model.onnx"), "--mode", "mixed", "--k", "9",
                 "--out", str(tmp_path / "r")]) == 2
    assert "error: k:" in capsys.readouterr().err


def test_prune_hook(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = []
    command = types.ModuleType("kd_edge.prune.command")
    command.__spec__ = importlib.machinery.ModuleSpec("kd_edge.prune.command", None)
    command.add_arguments = lambda parser: parser.add_argument("--ratio", type=float)
    command.run = lambda args: calls.append(args.ratio) or 0
    package = types.ModuleType("kd_edge.prune")
    package.__spec__ = importlib.machinery.ModuleSpec("kd_edge.prune", None, is_package=True)
    package.__path__ = []
    monkeypatch.setitem(sys.modules, "kd_edge.prune", package)
    monkeypatch.setitem(sys.modules, "kd_edge.prune.command", command)
    assert main(["prune", "--ratio", "0.5"]) == 0 and calls == [0.5]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "prune" in capsys.readouterr().out


def test_help_lists_the_edge_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("distill", "recipes", "eval", "export", "quantize", "bench"))


def test_cli_model_names_match_the_builders() -> None:
    from kd_edge.cli import MODEL_NAMES
    from kd_edge.models.small import model_names

    assert list(MODEL_NAMES) == model_names()


def test_demo_data_is_the_real_digits() -> None:
    from kd_edge.data.digits import demo_data

    data = demo_data(calibration_size=16, test_size=100)
    assert data.source == "sklearn digits 8x8"
    assert len(data.train_y) + len(data.test_y) == 1797 and sorted(set(data.test_y.tolist())) == list(range(10))
    assert data.calib_x.shape == (16, 1, 8, 8)
    assert abs(float(data.train_x.mean())) < 1e-4  # standardised with the train split's statistics
