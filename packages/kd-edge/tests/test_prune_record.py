"""Pruned models saved as an architecture record plus safetensors reload, with no pickle, to the same outputs
(a cut U-Net: ``tests/test_generative_edge_unet.py`` at the repository root)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from kd_core.errors import CheckpointError, ConfigError
from kd_edge.prune.layers import drop_layers
from kd_edge.prune.record import RECORD, WEIGHTS, build, load_pruned, save_pruned
from kd_edge.prune.structured import prune_channels
from safetensors.torch import load_file


@pytest.fixture
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every unpickling path fail, so a reload that used one would fail too."""
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("pickle was used")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_pruned_cnn_reloads_identically(tmp_path: Path, no_pickle: None) -> None:
    torch.manual_seed(0)
    model = build("kd_edge.models.resnet:build_resnet", widths=[8, 16], blocks_per_stage=[2, 2]).eval()
    x = torch.randn(2, 3, 16, 16)
    drop_layers(model, [1], example_inputs=x)
    prune_channels(model, x, 0.5)
    save_pruned(model, tmp_path / "cnn")
    record = json.loads((tmp_path / "cnn" / RECORD).read_text())
    assert record["builder"] == "kd_edge.models.resnet:build_resnet"
    assert record["edits"] == [{"op": "drop_layers", "container": "blocks", "indices": [1]}]
    assert record["attributes"]["stem.0"] == {"out_channels": 4}
    assert set(load_file(str(tmp_path / "cnn" / WEIGHTS))) == set(model.state_dict())
    again = load_pruned(tmp_path / "cnn")
    assert not again.training
    assert torch.equal(again(x), model(x))


def test_depth_and_head_pruned_bert_reloads_identically(tmp_path: Path, no_pickle: None) -> None:
    transformers = pytest.importorskip("transformers")
    from kd_edge.prune.builders import hf_source

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=4,
                                     intermediate_size=32, max_position_embeddings=16)
    model = hf_source(transformers.BertModel(config, add_pooling_layer=False).eval(), add_pooling_layer=False)
    ids = {"input_ids": torch.randint(0, 40, (2, 6))}
    drop_layers(model, [0], example_inputs=ids)
    prune_channels(model, ids, 0.5)
    save_pruned(model, tmp_path / "bert")
    again = load_pruned(tmp_path / "bert")
    assert again.config.num_hidden_layers == 2
    assert [layer.attention.self.num_attention_heads for layer in again.encoder.layer] == [2, 2]
    assert torch.equal(again(**ids).last_hidden_state, model(**ids).last_hidden_state)


def test_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_pruned(tmp_path / "nowhere")
    assert info.value.argument == "path" and "nowhere" in str(info.value)


def test_untrusted_builder_is_refused(tmp_path: Path) -> None:
    model = build("kd_edge.models.resnet:build_resnet", widths=[4], blocks_per_stage=[1])
    save_pruned(model, tmp_path / "m")
    record = json.loads((tmp_path / "m" / RECORD).read_text())
    record.update(builder="os:system", kwargs={"command": "echo pwned"})
    (tmp_path / "m" / RECORD).write_text(json.dumps(record))
    with pytest.raises(CheckpointError) as info:
        load_pruned(tmp_path / "m")
    assert info.value.argument == "builder"


def test_model_without_builder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        save_pruned(torch.nn.Linear(2, 2), tmp_path / "x")
    assert info.value.argument == "builder"
    assert not (tmp_path / "x").exists()
