"""``kd-generative`` answers ``--help`` and ``recipes``."""

from __future__ import annotations

import pytest
from kd_generative.cli import main


def test_help_names_distill(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: kd-generative" in out
    assert "distill" in out


def test_recipes_lists_and_succeeds() -> None:
    assert main(["recipes"]) == 0


def test_help_names_prune_and_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "prune" in out and "data" in out


def test_prune_refuses_a_recipe_that_does_not_prune(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["prune", "--recipe", "pix2pix-compact", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--recipe" in err and "unet-inner" in err and "pix2pix-compact" in err
    assert not (tmp_path / "run").exists()


def test_data_build_writes_counts_and_baselines(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grey pairs at 16 px from two scikit-image photos: the report lists the splits and the trivial baselines,
    and the input-copy baseline of a grey input beats the mean colour (the grey copy carries the scene)."""
    import json

    from kd_generative.data import build_pairs

    monkeypatch.setattr("kd_generative.data.build_pairs", lambda *a, **k: build_pairs(*a, sources=["skimage"], **k))
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    assert main(["data", "build", "--direction", "grey", "--size", "16", "--crops", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())["grey"]
    assert results["counts"]["train"] > 0 and results["counts"]["test"] > 0
    baselines = results["baselines"]
    assert baselines["input copy"]["psnr"] > baselines["mean colour"]["psnr"]
    report = (out / "report.md").read_text()
    assert "Trivial baselines" in report and (out / "plots" / "grey.png").is_file()


def test_data_build_refuses_bad_crops(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["data", "build", "--crops", "0", "--out", str(tmp_path / "run")]) == 2
    assert "--crops" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_data_build_refuses_an_odd_talking_size(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["data", "build", "--set", "talking", "--size", "13", "--out", str(tmp_path / "run")]) == 2
    assert "--size" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
