"""The unet-inner / unet-global studies: their settings checked before any data, the missing-plugin error, the
sensitivity bookkeeping by hand, and one tiny run of the whole study (pruned students that really train)."""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path

import pytest
import torch
from kd_core.checkpoint import load_weights
from kd_core.errors import ConfigError, RecipeError
from kd_core.plugins import PluginError
from kd_core.recipes import RunContext, load_recipe
from kd_core.structure import UNetLevel, UNetStructure
from kd_core.unet_pruning import GROUP
from kd_generative.cli import main
from kd_generative.methods.unet_prune import UNetGlobalConfig, UNetInnerConfig, check_config, needed_plugins, task
from kd_generative.methods.unet_prune_report import placed_rows, pruning_rows, sensitivity_ratios

PHOTOS = "[skimage/chelsea,skimage/coffee,skimage/rocket]"
TINY = ["data.size=16", "data.crops=2", f"data.photos={PHOTOS}", "teacher.depth=3", "teacher.base=8",
        "teacher.epochs=1", "teacher.batch_size=4", "gan.n_layers=1", "finetune.epochs=1", "finetune.batch_size=4",
        "metrics.feature_steps=2", "metrics.grid_rows=2", "seeds=[0]", "latency_iterations=0", "inner.levels=2",
        "cut.levels=1", "cut.calibration=4", "sensitivity.inputs=4", "global_pruning.tolerance=0.1"]


def _config(recipe: str = "unet-inner", *extra: str) -> UNetInnerConfig | UNetGlobalConfig:
    """The shipped recipe with the tiny overrides (validated like ``--set``)."""
    return load_recipe(recipe, [*TINY, *extra], domain="generative")[1]  # type: ignore[return-value]


def test_shipped_recipes_and_their_defaults() -> None:
    inner = load_recipe("unet-inner", domain="generative")[1]
    assert isinstance(inner, UNetInnerConfig)
    assert inner.arms == ["inner", "cut", "global"] and inner.inner.ratio == 0.75 and inner.inner.levels == 3
    assert inner.teacher.depth == 5 and inner.cut.levels == 2 and inner.global_pruning.params_fraction is None
    assert inner.headline == "frechet" and inner.seeds == [0, 1, 2]
    assert needed_plugins(inner) == ["sensitivity", "inner", "cut", "global"]
    glob = load_recipe("unet-global", domain="generative")[1]
    assert isinstance(glob, UNetGlobalConfig) and glob.arms == ["global"]
    assert glob.global_pruning.params_fraction == 0.14 and needed_plugins(glob) == ["global"]
    # global pruning matched to the inner arm needs the inner plugin even when the inner arm does not run
    assert needed_plugins(UNetGlobalConfig(global_pruning={"params_fraction": None})) == ["inner", "global"]


@pytest.mark.parametrize(("override", "field"), [("inner.ratio=1.0", "inner.ratio"), ("inner.ratio=0", "inner.ratio"),
                                                 ("arms=[inner, prune-all]", "arms"), ("arms=[inner, inner]", "arms"),
                                                 ("sensitivity.ratios=[0.5, 1.0]", "sensitivity.ratios.1"),
                                                 ("finetune.rec=0", "finetune")])
def test_bad_settings_name_their_field(override: str, field: str) -> None:
    extra = [override, "finetune.output=0"] if field == "finetune" else [override]
    with pytest.raises(RecipeError) as info:
        _config("unet-inner", *extra)
    assert info.value.argument == field


@pytest.mark.parametrize(("override", "field"), [("inner.levels=3", "inner.levels"), ("cut.levels=3", "cut.levels")])
def test_levels_beyond_the_teachers_depth_fail_before_any_data(override: str, field: str, data_home: Path) -> None:
    config = _config("unet-inner", override)  # teacher.depth = 3: at most 2 levels
    with pytest.raises(ConfigError) as info:
        task(config, RunContext(out=data_home / "run"))
    assert info.value.argument == field and "[1, 2]" in str(info.value)
    assert not data_home.exists()  # no data built, nothing trained


def test_unused_levels_are_not_checked() -> None:
    check_config(_config("unet-global", "inner.levels=3", "cut.levels=3"))  # no inner, cut or scan: both unused
    with pytest.raises(ConfigError):  # global pruning matched to the inner arm reads inner.levels
        check_config(_config("unet-global", "inner.levels=3", "global_pruning.params_fraction=null"))


def test_without_kd_edge_the_study_names_the_plugin_and_the_install(data_home: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.entry_points

    def without_pruning(**kwargs: str) -> object:
        return [] if kwargs.get("group") == GROUP else real(**kwargs)

    monkeypatch.setattr(metadata, "entry_points", without_pruning)
    method, config = load_recipe("unet-inner", TINY, domain="generative")  # the recipe itself still loads
    with pytest.raises(PluginError) as info:
        method.build(config).run(RunContext(out=tmp_path / "run"))
    message = str(info.value)
    assert "'sensitivity'" in message and GROUP in message and "pip install kd-edge" in message
    assert not (tmp_path / "run").exists() and not data_home.exists()  # before any data or training


def test_sensitivity_rows_by_hand() -> None:
    structure = UNetStructure(tuple(UNetLevel(f"down.{i}", f"up.{i}") for i in range(3)))
    scores = {"down.0.0": 8.0, "down.1.1": 4.0, "down.2.1": 1.0, "up.2.1": 2.0, "up.1.1": 6.0, "head": 9.0}
    rows = [{"layer": layer, "ratio": 0.5, "score": s, "params_kept": 0.9} for layer, s in scores.items()]
    placed = placed_rows(rows, structure)
    assert [(r["layer"], r["index"], r["level"], r["side"]) for r in placed] == [
        ("down.0.0", 0, 0, "encoder"), ("down.1.1", 1, 1, "encoder"), ("down.2.1", 2, 2, "encoder"),
        ("up.2.1", 3, 2, "decoder"), ("up.1.1", 4, 1, "decoder")]  # "head" lies outside the levels
    assert sensitivity_ratios(placed, depth=3, inner_levels=1) == {0.5: pytest.approx((1 + 2) / 2 / ((8 + 4 + 6) / 3))}
    assert sensitivity_ratios(placed, depth=3, inner_levels=2) == {0.5: pytest.approx((4 + 1 + 2 + 6) / 4 / 8)}
    assert math.isnan(sensitivity_ratios(placed[2:4], depth=3, inner_levels=1)[0.5])  # no outer layer


def test_pruning_rows_compare_sizes_with_the_matched_arm() -> None:
    results = {"teacher": {"cost": {"params": 1000, "macs": 4000}},
               "arms": {"inner": {"cost": {"params": 100, "macs": 2000}},
                        "global": {"cost": {"params": 102, "macs": 1000}}}}
    summaries = {"inner": {"params": 100, "method": "unet-inner", "settings": {"ratio": 0.0, "levels": 2,
                                                                              "layer_ratios": {"a": 0.75}}},
                 "global": {"params": 102, "method": "global-to-params", "settings": {"ratio": 0.61234567}}}
    rows = {r["arm"]: r for r in pruning_rows(results, summaries, "inner")}
    assert rows["inner"]["× fewer params"] == "10.0" and rows["global"]["× fewer MACs"] == "4.0"
    assert rows["global"]["vs inner params"] == "+2.0%" and rows["inner"]["vs inner params"] == "+0.0%"
    assert "[0.75]" in rows["inner"]["pruning"] and "0.6123" in rows["global"]["pruning"]
    assert all("vs inner params" not in row for row in pruning_rows(results, summaries, None))  # nothing matched


def test_a_tiny_study_prunes_scans_fine_tunes_and_reports(tmp_path: Path, data_home: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "unet-inner", "--out", str(out),
                 *(arg for s in TINY for arg in ("--set", s))]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["arms"]) == {"inner", "cut", "global"}
    assert results["task"]["headline"] == "frechet" and not results["task"]["higher_is_better"]
    teacher, params = results["teacher"]["cost"]["params"], {a: v["cost"]["params"] for a, v in results["arms"].items()}
    assert all(p < teacher for p in params.values())
    assert abs(params["global"] - params["inner"]) <= 0.1 * params["inner"]  # matched within the tolerance
    assert results["pruning"]["cut"]["settings"]["depth_after"] == 2
    assert {(c["a"], c["b"]) for c in results["comparisons"]} == {("inner", "global"), ("cut", "global")}
    scan = results["sensitivity"]
    assert {r["ratio"] for r in scan["rows"]} == {0.5, 0.75} and len(scan["rows"]) == 2 * 5  # 5 prunable layers
    assert all(math.isfinite(v) for v in scan["inner_outer_ratio"].values())
    report = (out / "report.md").read_text()
    assert "inner/outer sensitivity ratio" in report and "plots/sensitivity.png" in report
    assert "Pruned students" in report and "Image quality (test split)" in report
    assert (out / "plots" / "sensitivity.png").is_file() and (out / "plots" / "samples.png").is_file()
    # the pruned students trained (a frozen copy of the study's frozen teacher would not have moved)
    config = _config()
    prepared = task(config, RunContext(out=out)).extras["unet_pruning"]
    for arm in ("inner", "cut"):
        trained = load_weights(prepared.student(arm), out / f"{arm}-seed0" / "checkpoints" / "final.safetensors")
        start = prepared.model(arm)
        assert all(p.requires_grad for p in prepared.student(arm).parameters())
        assert not all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), start.state_dict().values(),
                                                         strict=True))
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0  # the saved students reload into their pruned architectures
    assert "cut/seed0/frechet" in capsys.readouterr().out
