"""Cross-package chain on the command line: a ``kd-vision distill`` run directory feeds ``kd-edge`` unchanged.

``kd-edge prune --run RUN`` (fine-tuned by distillation from the unpruned student) -> ``kd-edge quantize`` of the
pruned model (static INT8) -> ``kd-edge export`` (ONNX) -> ``kd-edge bench``, for the demo's student and for a
``tv:resnet18`` student on an ``imagefolder:`` set; and the pruned-digits chain with no run directory. Every
CLI runs in-process through its ``main(argv)``; no pickle anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from kd_edge.cli import main
from PIL import Image

FAST = ["--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "seeds=[0]",
        "--set", "latency_iterations=1", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread_private_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread (tiny models on a shared machine) and a private ``KD_DATA_HOME``."""
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "kd-home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _distill(out: Path, *sets: str) -> Path:
    from kd_vision.cli import main as vision

    argv = ["distill", "--recipe", "hinton-kd", "--out", str(out), *FAST]
    for value in sets:
        argv += ["--set", value]
    assert vision(argv) == 0
    return out


def _image_folder(root: Path, per_class: int = 8) -> Path:
    """Small noisy PNGs of three colours, one sub-folder per class."""
    rng = np.random.default_rng(0)
    for name, colour in {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _chain(run: Path, tmp_path: Path) -> dict[str, dict]:
    """prune --run -> quantize (static INT8) -> export -> bench; returns every command's results.json."""
    pruned, quantized, exported, bench = (tmp_path / n for n in ("prune", "quantize", "export", "bench"))
    assert main(["prune", "--run", str(run), "--ratio", "0.5", "--finetune-epochs", "1", "--latency-iterations", "2",
                 "--out", str(pruned)]) == 0
    assert main(["quantize", "--model", str(pruned / "model"), "--mode", "static", "--out", str(quantized)]) == 0
    assert main(["export", "--model", str(pruned / "model"), "--out", str(exported)]) == 0
    assert main(["bench", "--onnx", str(exported / "model.onnx"), "--data", str(run), "--batch-sizes", "1",
                 "--iterations", "2", "--warmup", "1", "--out", str(bench)]) == 0
    results = {name: json.loads((path / "results.json").read_text())
               for name, path in (("prune", pruned), ("quantize", quantized), ("export", exported),
                                  ("bench", bench))}
    # the pruned model was fine-tuned by distillation from the unpruned student through kd-core's Distiller
    finetune = [json.loads(line) for line in (pruned / "finetune" / "metrics.jsonl").read_text().splitlines()]
    assert any("kd" in key for row in finetune for key in row), "the fine-tuning logged no KD term"
    record = json.loads((pruned / "model" / "architecture.json").read_text())
    assert record["builder"] == "kd_edge.sources:run_student" and record["extra"]["data"]["kind"] == "run"
    prune = results["prune"]
    assert prune["after"]["params"] < prune["before"]["params"]
    # quantize, export and bench reloaded the very model prune saved, on the run's test split
    after = prune["accuracy"]["after"]
    assert results["quantize"]["parity"]["torch_metric"] == pytest.approx(after)
    assert results["export"]["parity"]["passed"] and results["export"]["parity"]["torch_metric"] == pytest.approx(after)
    assert results["quantize"]["quantized"]["mode"] == "static-int8"
    assert results["quantize"]["quantized"]["size_bytes"] < results["quantize"]["quantized"]["source_size_bytes"]
    assert results["bench"]["accuracy"]["ort-fp32"] == pytest.approx(100 * after, abs=0.01)  # rounded to 0.01
    assert {"ort-fp32", "ort-int8", "ort-int8-dynamic"} <= {row["name"] for row in results["bench"]["latency"]}
    return results


def test_demo_student_prune_int8_onnx_bench(tmp_path: Path) -> None:
    """The demo's hinton-kd student (28x28 MNIST) through the whole chain, and its run straight into export."""
    run = _distill(tmp_path / "run", "data.train_size=60", "data.val_size=30", "data.test_size=60")
    _chain(run, tmp_path)
    exported = tmp_path / "export-run"
    assert main(["export", "--run", str(run), "--out", str(exported)]) == 0
    study = json.loads((run / "results.json").read_text())
    kd = study["arms"]["kd"]["seeds"]["0"]["accuracy"]
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["passed"] and parity["torch_metric"] == pytest.approx(kd)  # the run's kd student, its test split


@pytest.mark.slow
def test_resnet18_student_on_an_image_folder(tmp_path: Path) -> None:
    """A tv:resnet18 teacher and student on a user's image folder (16x16), then the same chain."""
    root = _image_folder(tmp_path / "images")
    run = _distill(tmp_path / "run", f"data.source=imagefolder:{root}", "data.image_size=16",
                   "teacher.model=tv:resnet18", "student.model=tv:resnet18")
    results = _chain(run, tmp_path)
    assert results["prune"]["before"]["params"] > 10_000_000  # a real resnet18 with a 3-class head
    assert "image folder" in results["prune"]["data"]


def test_resnet18_builder_on_an_image_folder(tmp_path: Path) -> None:
    """The fast twin of the test above: ``torchvision.models:resnet18`` as a builder on ``--data imagefolder:``
    through prune (a few epochs of training first, then distillation) -> quantize -> bench."""
    root = _image_folder(tmp_path / "images")
    pruned, quantized, bench = tmp_path / "prune", tmp_path / "quantize", tmp_path / "bench"
    assert main(["prune", "--model", "torchvision.models:resnet18", "--model-kwargs", '{"num_classes": 3}',
                 "--data", f"imagefolder:{root}", "--image-size", "16", "--train-epochs", "1", "--finetune-epochs",
                 "1", "--ratio", "0.75", "--latency-iterations", "1", "--out", str(pruned)]) == 0
    prune = json.loads((pruned / "results.json").read_text())
    assert prune["example_input"]["shape"] == [1, 3, 16, 16] and "image folder" in prune["data"]
    assert main(["quantize", "--model", str(pruned / "model"), "--mode", "dynamic", "--out", str(quantized)]) == 0
    q = json.loads((quantized / "results.json").read_text())
    assert q["parity"]["torch_metric"] == pytest.approx(prune["accuracy"]["after"])
    assert main(["bench", "--onnx", str(quantized / "model.onnx"), "--data", f"imagefolder:{root}",
                 "--image-size", "16", "--batch-sizes", "1", "--iterations", "2", "--warmup", "1", "--k", "0",
                 "--out", str(bench)]) == 0


def test_an_onnx_input_that_does_not_fit_the_data_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An 8x8-digit ONNX model with 16x16 RGB images: one line naming --onnx, what was expected and what was
    received, exit 2, before any training; an existing run directory is left as it was."""
    exported = tmp_path / "export"
    assert main(["export", "--model", "mlp", "--train-epochs", "0", "--out", str(exported)]) == 0
    root = _image_folder(tmp_path / "images", per_class=4)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    for out in (tmp_path / "new", taken):
        capsys.readouterr()
        assert main(["quantize", "--onnx", str(exported / "model.onnx"), "--data", f"imagefolder:{root}",
                     "--image-size", "16", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --onnx:") and err.count("\n") == 1
        assert "expected an input of per-sample shape [3, 16, 16]" in err and "[1, 8, 8]" in err
    assert not (tmp_path / "new").exists() and [p.name for p in taken.iterdir()] == ["keep.txt"]


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


def test_a_text_run_feeds_export_quantize_and_bench(tmp_path: Path) -> None:
    """``kd-nlu distill --recipe tinybert-task`` on a CSV with a local Hugging Face teacher: its run directory
    feeds ``kd-edge export|quantize|bench`` unchanged (the student takes float token ids, padded to one length)."""
    from kd_nlu.cli import main as nlu
    from kd_nlu.testing import toy_study_files

    run = tmp_path / "text-run"
    assert nlu(["distill", "--recipe", "tinybert-task", "--out", str(run), "--device", "cpu",
                *toy_study_files(tmp_path / "toy"), "--set", "student.epochs=2", "--set", "intermediate.epochs=1",
                "--set", "augment.copies=0"]) == 0
    exported, quantized, bench = tmp_path / "export", tmp_path / "quantize", tmp_path / "bench"
    assert main(["export", "--run", str(run), "--out", str(exported)]) == 0
    assert main(["quantize", "--run", str(run), "--mode", "dynamic", "--out", str(quantized)]) == 0
    assert main(["bench", "--run", str(run), "--iterations", "2", "--warmup", "1", "--batch-sizes", "1",
                 "--threads", "1", "--k", "1", "--out", str(bench)]) == 0
    student = json.loads((run / "results.json").read_text())["arms"]["kd"]["seeds"]["0"]["accuracy"]
    scored = json.loads((exported / "results.json").read_text())
    assert (exported / "model.onnx").is_file() and (quantized / "model.int8-dynamic.onnx").is_file()
    text = json.dumps(scored)
    assert f"{100 * student:.2f}" in text or f"{student:.4f}" in text or str(round(100 * student, 2)) in text
