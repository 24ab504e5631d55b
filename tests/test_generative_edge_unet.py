"""kd-generative's Pix2Pix U-Net through kd-edge's U-Net pruning, wired only here: kd-edge reads the generator
through the structure it describes (``kd_core.structure``), never by importing kd-generative."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from kd_core.structure import unet_structure
from kd_edge.prune.command import add_arguments, run
from kd_edge.prune.record import RECORD, build, load_pruned, save_pruned
from kd_edge.prune.structured import prune_channels
from kd_edge.prune.unet_cut import cut_inner_layers, layer_sensitivity, prune_inner_layers

BUILDER = "kd_generative.models.unet:build_unet"
SMALL = {"in_channels": 1, "out_channels": 1, "depth": 4, "base": 8}


def _generator(**kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(BUILDER, **{**SMALL, **kwargs}).eval()


def _mean_at(model: torch.nn.Module, path: str, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = model.get_submodule(path).register_forward_hook(lambda _m, _a, out: seen.append(out))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0].mean(dim=(0, 2, 3))


def test_channel_pruning_keeps_the_generators_concat_skips_consistent() -> None:
    model = _generator()
    x = torch.randn(2, 1, 32, 32)
    summary = prune_channels(model, x, 0.5)
    for level in range(model.depth - 1):
        skip = model.down[level][1 if level else 0].out_channels
        assert model.up[level][1].in_channels == skip + model.up[level + 1][1].out_channels
    assert model(x).shape == x.shape and summary.params_after < summary.params_before


def test_inner_pruning_and_sensitivity_on_the_generator() -> None:
    model = _generator()
    x = torch.randn(2, 1, 32, 32)
    rows = layer_sensitivity(model, x, ratios=(0.5,), layers=["down.1.1", "up.3.1"])
    assert [row["layer"] for row in rows] == ["down.1.1", "up.3.1"] and all(row["score"] > 0 for row in rows)
    summary = prune_inner_layers(model, x, ratio=0.5, levels=2)
    assert summary.settings["pruned_layers"] == ["down.2.1", "up.2.1", "down.3.1", "up.3.1"]
    assert model.down[3][1].out_channels == 32 and model.down[1][1].out_channels == 16
    assert model(x).shape == x.shape


def test_cut_generator_folds_its_branch_and_reloads_identically(tmp_path: Path) -> None:
    model = _generator(depth=5)  # decoders 2, 3 and 4 end in Dropout, as in the paper
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():  # a removed branch whose output takes both signs, mostly negative
        model.up[3][2].bias.fill_(-0.5)
    prune_channels(model, x, 0.25)
    cut, summary = cut_inner_layers(model, levels=2, example_inputs=x)
    assert cut.depth == 3 and unet_structure(cut).depth == 3 and model.depth == 5
    assert summary.settings["reconnected"] == "up.2.1"
    assert cut.up[2][1].in_channels == cut.down[2][1].out_channels  # the new innermost reads its skip only
    torch.testing.assert_close(_mean_at(cut, "up.2.1", x), _mean_at(model, "up.2.1", x), atol=1e-5, rtol=1e-5)
    assert cut(torch.randn(1, 1, 8, 8)).shape == (1, 1, 8, 8)  # divisibility 2**3 now
    save_pruned(cut, tmp_path / "cut")
    record = json.loads((tmp_path / "cut" / RECORD).read_text())
    assert record["builder"] == BUILDER and record["kwargs"]["depth"] == 5
    assert record["edits"] == [{"op": "cut_inner_levels", "paths": ["down.4", "up.4", "down.3", "up.3"]}]
    again = load_pruned(tmp_path / "cut")
    assert again.depth == 3 and torch.equal(again(x), cut.eval()(x))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kd-edge prune")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_prune_cli_chains_inner_pruning_and_a_cut_on_the_generator(tmp_path: Path) -> None:
    first = _args("--model", BUILDER, "--model-kwargs", json.dumps(SMALL), "--method", "unet-inner", "--ratio", "0.5",
                  "--levels", "1", "--latency-iterations", "2", "--out", str(tmp_path / "first"))
    assert run(first) == 0
    second = _args("--model", str(tmp_path / "first" / "model"), "--method", "unet-cut", "--latency-iterations", "2",
                   "--out", str(tmp_path / "second"))
    assert run(second) == 0
    before = json.loads((tmp_path / "first" / "results.json").read_text())
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert before["example_input"]["shape"] == [1, 1, 32, 32]  # the generator's input_shape
    assert results["before"]["params"] == before["after"]["params"]
    assert results["summary"]["settings"]["depth_after"] == 3
    assert load_pruned(tmp_path / "second" / "model").depth == 3


def test_prune_cli_refuses_a_cut_deeper_than_the_generator(tmp_path: Path) -> None:
    from kd_core.errors import ConfigError

    args = _args("--model", BUILDER, "--model-kwargs", json.dumps(SMALL), "--method", "unet-cut", "--levels", "4",
                 "--out", str(tmp_path / "run"))
    with pytest.raises(ConfigError) as info:
        run(args)
    assert info.value.argument == "--levels" and not (tmp_path / "run").exists()
