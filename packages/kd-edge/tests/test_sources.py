"""``kd_edge.sources``: builders (trusted before any work), ``--weights`` honoured whatever the data, ``--data``
specs, local Hugging Face directories, and bad sources refused in one line before any run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kd_edge.cli import main
from kd_edge.models.small import build_model
from kd_edge.prune.record import load_pruned
from safetensors.torch import save_file


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "kd-home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _refused(capsys: pytest.CaptureFixture, argv: list[str], out: Path, named: str) -> str:
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {named}:") and err.count("\n") == 1, err
    assert not out.exists()
    return err


def test_an_untrusted_builder_is_refused_before_pruning_and_trusted_it_round_trips(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    package = tmp_path / "src" / "myedgepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "from torch import nn\n\n"
        "def tiny(width: int = 8) -> nn.Module:\n"
        "    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),"
        " nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    argv = ["prune", "--model", "myedgepkg.nets:tiny", "--model-kwargs", '{"width": 8}', "--digits",
            "--train-epochs", "1", "--finetune-epochs", "1", "--latency-iterations", "1"]
    err = _refused(capsys, argv, tmp_path / "untrusted", "--model")
    assert "--trust myedgepkg" in err
    out = tmp_path / "trusted"
    assert main([*argv, "--trust", "myedgepkg", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    model = load_pruned(out / "model", trusted=["myedgepkg"])
    assert sum(p.numel() for p in model.parameters()) == results["after"]["params"]


def test_weights_are_honoured_without_data(tmp_path: Path) -> None:
    """``prune --weights`` loads them whatever the data (the review saw them ignored without --digits)."""
    weights = tmp_path / "cnn.safetensors"
    save_file(build_model("cnn", seed=7).state_dict(), str(weights))
    out = tmp_path / "prune"
    assert main(["prune", "--model", "kd_edge.models.small:build_model", "--model-kwargs", '{"name": "cnn"}',
                 "--weights", str(weights), "--ratio", "0.0", "--latency-iterations", "1", "--out", str(out)]) == 0
    saved = load_pruned(out / "model").state_dict()
    expected = build_model("cnn", seed=7).state_dict()
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    assert build_model("cnn", seed=0).state_dict()["features.0.weight"].ne(expected["features.0.weight"]).any()


def test_tensors_data_spec(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    inputs = torch.randn(60, 1, 8, 8, generator=generator) + labels.view(-1, 1, 1, 1).float()
    file = tmp_path / "data.safetensors"
    save_file({"inputs": inputs, "labels": labels}, str(file))
    out = tmp_path / "export"
    assert main(["export", "--model", "mlp", "--train-epochs", "2", "--data", f"tensors:{file}", "--out",
                 str(out)]) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["samples"] == 9  # 15 % of each class of 20 is the test split


def test_hf_image_classifier(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    config = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=2)
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    for c, colour in enumerate(((200, 20, 20), (20, 20, 200))):
        (tmp_path / "images" / str(c)).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (20, 20), tuple(v + 5 * i for v in colour)).save(tmp_path / "images" / str(c) / f"{i}.png")
    out = tmp_path / "export"
    assert main(["export", "--hf", str(tmp_path / "vit"), "--data", f"imagefolder:{tmp_path / 'images'}",
                 "--out", str(out)]) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"]
    config = json.loads((out / "results.json").read_text())
    assert config["export"]["input_names"] == ["input"]


def test_hf_sequence_classifier_on_token_ids(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2, pad_token_id=0)
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(tmp_path / "bert")
    labels = torch.arange(40) % 2
    ids = torch.randint(1, 40, (40, 8), generator=torch.Generator().manual_seed(0))
    ids[:, 6:] = 0  # padding
    save_file({"inputs": ids, "labels": labels}, str(tmp_path / "tokens.safetensors"))
    out = tmp_path / "export"
    assert main(["export", "--hf", str(tmp_path / "bert"), "--data", f"tensors:{tmp_path / 'tokens.safetensors'}",
                 "--out", str(out)]) == 0
    assert json.loads((out / "parity.json").read_text())["passed"]


def test_bad_sources_are_one_line_errors_before_any_run_directory(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "not-a-run").mkdir()
    _refused(capsys, ["export", "--run", str(tmp_path / "not-a-run")], tmp_path / "a", "--run")
    weights = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(weights))
    _refused(capsys, ["export", "--run", str(tmp_path / "not-a-run"), "--weights", str(weights)], tmp_path / "b",
             "--weights")
    _refused(capsys, ["export", "--hf", str(tmp_path / "not-a-run")], tmp_path / "c", "--hf")
    _refused(capsys, ["quantize", "--model", "mlp", "--data", "csv:x.csv"], tmp_path / "d", "--data")
    _refused(capsys, ["quantize", "--model", "mlp", "--data", f"imagefolder:{tmp_path / 'none'}"], tmp_path / "e",
             "--data")
    _refused(capsys, ["export", "--model", "mlp", "--arm", "kd"], tmp_path / "f", "--arm")
    _refused(capsys, ["export", "--model", "mlp", "--weights", str(weights)], tmp_path / "g", "--weights")


def test_a_quantized_onnx_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "q"
    assert main(["quantize", "--model", "mlp", "--train-epochs", "0", "--mode", "dynamic", "--out", str(out)]) == 0
    err = _refused(capsys, ["bench", "--onnx", str(out / "model.int8-dynamic.onnx")], tmp_path / "b", "--onnx")
    assert "already quantized" in err
