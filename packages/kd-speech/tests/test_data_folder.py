"""A user's audio folder + CSV: read at any sample rate, and each bad input a one-line KDError naming it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from kd_core.errors import KDError
from kd_speech.data.audio import read_audio
from kd_speech.data.dataset import SpeechDataset, collate_audio
from kd_speech.data.features import LogMel
from kd_speech.data.folder import read_audio_folder


def _write(path: Path, rate: int, seconds: float) -> None:
    t = np.arange(int(rate * seconds)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "clips").mkdir()
    _write(tmp_path / "clips" / "a.wav", 8000, 0.5)
    _write(tmp_path / "b.flac", 44100, 0.25)
    _write(tmp_path / "c.wav", 16000, 0.3)
    (tmp_path / "data.csv").write_text("file,transcript,intent\nclips/a.wav,lights on,activate_lights_none\n"
                                       "b.flac,lights off,deactivate_lights_none\nc.wav,lamp on,activate_lamp_none\n")
    return tmp_path


def _fails(folder: Path, *needles: str, **kwargs: object) -> None:
    with pytest.raises(KDError) as error:
        read_audio_folder(folder, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_a_valid_folder_reads_at_any_sample_rate(folder: Path) -> None:
    utterances = read_audio_folder(folder)
    assert [u.transcript for u in utterances] == ["lights on", "lights off", "lamp on"]
    assert [u.info["sample_rate"] for u in utterances] == [8000, 44100, 16000]
    lengths = [read_audio(u.path).numel() for u in utterances]
    assert lengths == [8000, 4000, 4800]
    dataset = SpeechDataset(utterances, transform=LogMel(n_mels=40))
    assert dataset.classes == ("activate_lamp_none", "activate_lights_none", "deactivate_lights_none")
    batch = collate_audio([dataset[i] for i in range(len(dataset))])
    assert batch["audio"].shape == (3, 8000)
    assert batch["lengths"].tolist() == lengths
    assert float(batch["audio"][1, 4000:].abs().sum()) == 0.0
    assert batch["label"].tolist() == [1, 2, 0]
    assert batch["features"].shape[0] == 3 and batch["features"].shape[2] == 40
    assert batch["transcript"] == ["lights on", "lights off", "lamp on"]


def test_missing_file_is_named(folder: Path) -> None:
    (folder / "b.flac").unlink()
    _fails(folder, "data.csv", "b.flac", "1 missing")


def test_empty_transcript_is_named(folder: Path) -> None:
    (folder / "data.csv").write_text("file,transcript\nclips/a.wav,lights on\nc.wav,  \n")
    _fails(folder, "data.csv line 3 transcript", "c.wav")


def test_zero_length_audio_is_named(folder: Path) -> None:
    sf.write(str(folder / "c.wav"), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    _fails(folder, "c.wav", "zero-length")


def test_unreadable_audio_is_named(folder: Path) -> None:
    (folder / "c.wav").write_bytes(b"not audio at all")
    _fails(folder, "c.wav", "unreadable")
    (folder / "c.wav").write_bytes(b"")
    _fails(folder, "c.wav")


def test_unexpected_sample_rate_is_an_error_only_without_resampling(folder: Path) -> None:
    _fails(folder, "a.wav", "8000 Hz", "resampling is turned off", resample=False)
    with pytest.raises(KDError, match="44100 Hz"):
        read_audio(folder / "b.flac", resample=False)
    assert read_audio(folder / "c.wav", resample=False).numel() == 4800


def test_header_and_csv_problems_are_named(folder: Path) -> None:
    (folder / "data.csv").write_text("path,label\nc.wav,x\n")
    _fails(folder, "header", "'file' column")
    _fails(folder, "csv", "elsewhere.csv", csv_path="elsewhere.csv")
    _fails(folder / "nope", "audio folder")
    (folder / "extra.csv").write_text("file,intent\n")
    _fails(folder, "exactly one .csv")


def test_intent_only_csv_and_a_dataset_with_fixed_classes(folder: Path) -> None:
    (folder / "data.csv").write_text("file,intent,speaker,split\nc.wav,activate_lamp_none,alice,test\n")
    (utterance,) = read_audio_folder(folder)
    assert (utterance.transcript, utterance.intent, utterance.speaker, utterance.split) == (
        "", "activate_lamp_none", "alice", "test")
    dataset = SpeechDataset([utterance], classes=["x", "activate_lamp_none"])
    item = dataset[0]
    assert item["label"] == 1 and item["audio"].dtype == torch.float32 and item["audio"].ndim == 1
    with pytest.raises(KDError, match="intent"):
        SpeechDataset([utterance], classes=["x"])
