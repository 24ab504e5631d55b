"""Cross-package chain on the command line: ``kd-edge prune`` (train, prune, fine-tune on real digits), then
``kd-edge quantize`` and ``kd-edge export`` of the pruned model directory it wrote (no pickle anywhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kd_edge.cli import main


def test_prune_then_quantize_then_export_the_pruned_model(tmp_path: Path) -> None:
    pruned, quantized, exported = tmp_path / "prune", tmp_path / "quantize", tmp_path / "export"
    assert main(["prune", "--model", "kd_edge.models.small:build_model", "--model-kwargs", '{"name": "cnn"}',
                 "--digits", "--train-epochs", "3", "--finetune-epochs", "1", "--ratio", "0.5",
                 "--latency-iterations", "2", "--out", str(pruned)]) == 0
    prune_results = json.loads((pruned / "results.json").read_text())
    assert main(["quantize", "--model", str(pruned / "model"), "--mode", "static", "--out", str(quantized)]) == 0
    q = json.loads((quantized / "results.json").read_text())
    # the quantize command reloaded the very model prune saved: same accuracy on the same test digits
    assert q["parity"]["torch_metric"] == pytest.approx(prune_results["accuracy"]["after"])
    assert q["parity"]["passed"] and q["quantized"]["size_bytes"] < q["quantized"]["source_size_bytes"]
    assert {"node_linear"} <= set(q["quantized"]["quantized_layers"])
    assert main(["export", "--model", str(pruned / "model"), "--out", str(exported)]) == 0
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_error"] < 1e-4 and parity["metric_delta"] == 0
    assert (exported / "report.md").is_file()


def test_weights_with_a_pruned_model_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "architecture.json").write_text("{}")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"0")
    assert main(["export", "--model", str(folder), "--weights", str(weights), "--out", str(tmp_path / "run")]) == 2
    assert "--weights" in capsys.readouterr().err and not (tmp_path / "run").exists()
