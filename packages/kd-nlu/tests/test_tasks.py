"""Your own texts and Hugging Face models: a CSV read through `datasets`, a local `hf:DIR` teacher with its
tokenizer, a small BERT student saved with `save_pretrained` (class names kept), and bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from kd_core import Backend
from kd_core.errors import ConfigError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import Objective, Term
from kd_core.study import Arm, Study, TrainSpec, supervised_phases
from kd_nlu.models.student import student_config
from kd_nlu.models.teacher import load_tokenizer, minilm_path
from kd_nlu.tasks import TextData, TextModel, read_table, text_task

ROWS = [("the cat sat on the mat", "animal"), ("a dog barked at night", "animal"), ("birds sing at dawn", "animal"),
        ("the horse ran fast", "animal"), ("fish swim in the sea", "animal"), ("cows eat grass", "animal"),
        ("stocks fell sharply today", "money"), ("the bank raised rates", "money"),
        ("prices rose this year", "money"), ("the market closed higher", "money"), ("bonds lost value", "money"),
        ("he paid the invoice", "money")]


def write_csv(path: Path, rows: list[tuple[str, str]] = ROWS, header: str = "sentence,topic") -> Path:
    path.write_text(header + "\n" + "\n".join(f'"{t}",{y}' for t, y in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def hf_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT classifier saved with save_pretrained, with MiniLM's tokenizer."""
    from transformers import AutoConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("hf") / "teacher"
    base = AutoConfig.from_pretrained(str(minilm_path()), local_files_only=True)
    torch.manual_seed(0)
    config = student_config(base, layers=2, hidden=64, intermediate=128, heads=4, num_labels=2)
    config.id2label, config.label2id = {0: "animal", 1: "money"}, {"animal": 0, "money": 1}
    BertForSequenceClassification(config).save_pretrained(folder)
    load_tokenizer().save_pretrained(folder)
    return folder


def test_csv_columns_and_labels(tmp_path: Path) -> None:
    texts, labels, names, _ = read_table(TextData(source=f"csv:{write_csv(tmp_path / 'd.csv')}",
                                                  text_column="sentence", label_column="topic"))
    assert names == ["animal", "money"] and labels.tolist() == [0] * 6 + [1] * 6 and texts[0] == ROWS[0][0]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "label": int(y == "money")}) for t, y in ROWS))
    assert read_table(TextData(source=f"jsonl:{jsonl}"))[2] == ["0", "1"]


def test_a_csv_without_the_named_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_table(TextData(source=f"csv:{write_csv(tmp_path / 'd.csv')}", text_column="text"))
    assert info.value.argument == "data.text_column" and "sentence" in str(info.value)
    with pytest.raises(ConfigError, match=r"data\.label_column"):
        read_table(TextData(source=f"csv:{write_csv(tmp_path / 'o.csv', [(t, 'x') for t, _ in ROWS])}",
                            text_column="sentence", label_column="topic"))
    with pytest.raises(ConfigError, match=r"data\.source"):
        read_table(TextData(source=f"csv:{tmp_path / 'missing.csv'}"))


def test_a_hugging_face_directory_without_a_tokenizer_is_refused(tmp_path: Path, hf_teacher: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((hf_teacher / name).read_bytes())
    with pytest.raises(ConfigError) as info:
        text_task(TextData(source=f"csv:{write_csv(tmp_path / 'd.csv')}", text_column="sentence",
                           label_column="topic"), TextModel(model=f"hf:{bare}"), TextModel(model="small"))
    assert info.value.argument == "teacher.model" and "tokenizer" in str(info.value)


def test_distil_a_hugging_face_teacher_into_a_small_student_on_a_csv(tmp_path: Path, hf_teacher: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    data = TextData(source=f"csv:{write_csv(tmp_path / 'd.csv')}", text_column="sentence", label_column="topic",
                    max_length=16, val_fraction=0.2, test_fraction=0.2)
    task = text_task(data, TextModel(model=f"hf:{hf_teacher}"),
                     TextModel(model="small", layers=1, hidden=32, intermediate=64))
    assert task.teacher_trained  # its classifier carries these labels: used as it is
    train = TrainSpec(epochs=1, lr=1e-3, batch_size=4)
    arms = {"kd": Arm(lambda: train.phases(Objective(
                Term("kd", kl_divergence, teacher="logits", weight=0.5, temperature=2.0),
                Term("ce", cross_entropy, target="label", weight=0.5))), role="kd", batch_size=4),
            "scratch": Arm(lambda: supervised_phases(train), role="scratch", batch_size=4)}
    result = Study(task, arms, seeds=[0], title="CSV", backend=Backend(device="cpu"),
                   latency_iterations=0).run(tmp_path / "run")
    assert "given with its weights" in result.results["teacher"]["source"]
    saved = tmp_path / "run" / "kd-seed0" / "model"
    config = json.loads((saved / "config.json").read_text())
    assert config["id2label"] == {"0": "animal", "1": "money"}  # class names, not LABEL_0
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(str(saved), local_files_only=True)
    assert reloaded.config.num_hidden_layers == 1


def test_glosses_are_a_built_in_source() -> None:
    task = text_task(TextData(train_size=64, val_size=16, test_size=16, gloss_classes=4, max_length=16),
                     TextModel(), TextModel(model="small", layers=1, hidden=32, intermediate=64))
    assert task.name == "glosses" and len(task.class_names) == 4 and not task.teacher_trained
    assert len(task.data.train) == 64 and task.example_batch(2)["input_ids"].shape[0] == 2


def test_a_teacher_can_be_early_stopped_on_val_nll() -> None:
    from kd_nlu.tasks import TextModel
    from pydantic import ValidationError

    spec = TextModel(epochs=20, best_on="nll").train_spec()
    assert (spec.epochs, spec.best_on, spec.monitor()) == (20, "nll", {"monitor": "val/nll", "mode": "min"})
    assert TextModel().train_spec().best_on is None
    with pytest.raises(ValidationError, match="best_on"):
        TextModel(best_on="bleu")
