"""``kd-speech rescore --nbest|--lattice --lm LM``: a toy run on an audio folder (espeak-ng speech, val rows to tune
on), fixed weights that must pick the acoustically best hypothesis, the real cards recordings, and every bad input
refused in one line that names it, before any run directory."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from kd_speech.cli import main

SENTENCES = ["turn the lights on", "turn off the music", "switch on the lamp", "lights off in the kitchen",
             "turn the heat up in the bedroom", "play the music"]
CARDS = Path("/usr/share/pocketsphinx/test/data/cards")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("kd-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KD_DATA_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny word LM trained on command sentences (a few seconds)."""
    from kd_speech.asr.lm import LMSize, TrainConfig, train_lm

    folder = tmp_path_factory.mktemp("lm") / "commands-lm"
    texts = [*SENTENCES, "turn on the lights in the kitchen", "the music is on"] * 3
    train_lm(texts, LMSize(32, 1, 2, 16, 0.0), TrainConfig(epochs=4, lr=1e-2, batch_size=8)).save(folder)
    return folder


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four espeak-ng utterances: two val rows, two test rows."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/setup.sh installs it as root)")
    from kd_speech.data.synth import Voice, synthesize

    folder = tmp_path_factory.mktemp("audio")
    rows = ["file,transcript,split"]
    for i, (text, split) in enumerate(zip(SENTENCES[:4], ["val", "val", "test", ""], strict=True)):
        wave = synthesize(text, Voice("espeak", "en-us+m3", speed=150, pitch=50))
        soundfile.write(folder / f"u{i}.wav", wave.numpy(), 16_000)
        rows.append(f"u{i}.wav,{text},{split}")
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_a_folder_is_rescored_with_weights_tuned_on_its_val_rows(home, lm_dir, audio, tmp_path, capsys) -> None:
    from kd_speech.asr.decoded import DecodeSettings, decode_utterances
    from kd_speech.data import read_audio_folder

    out = tmp_path / "tuned"
    assert main(["rescore", "--nbest", "--lm", str(lm_dir), "--data", f"folder:{audio}", "--out", str(out)]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["tuned"] and results["data"]["val_utterances"] == 2 and results["data"]["test_utterances"] == 2
    wer = results["wer"]
    assert wer["test_oracle"] <= min(wer["test_after"], wer["test_before"], wer["test_ngram"])
    rows = _rows(out / "utterances.csv")
    assert [r["reference"] for r in rows] == SENTENCES[2:4]
    words = sum(len(r["reference"].split()) for r in rows)
    assert sum(int(r["errors before"]) for r in rows) / words == pytest.approx(wer["test_before"])
    assert sum(int(r["errors after"]) for r in rows) / words == pytest.approx(wer["test_after"])
    from kd_speech.methods.lm_distill import TuneSection

    assert results["weights"]["lm_weight"] in TuneSection().lm_weights
    report = (out / "report.md").read_text()
    assert "Weights tuned on folder" in report and (out / "plots" / "wer.png").stat().st_size > 1000

    # λ = 0: the acoustic score alone decides, whatever the LM says (the decodes come from the cache now)
    fixed = tmp_path / "acoustic"
    assert main(["rescore", "--nbest", "--lm", str(lm_dir), "--data", f"folder:{audio}", "--lm-weight", "0",
                 "--interpolation", "1", "--word-penalty", "0", "--out", str(fixed)]) == 0
    test_rows = [u for u in read_audio_folder(audio) if u.split != "val"]
    decodes, note = decode_utterances(test_rows, DecodeSettings())
    assert note.startswith("read from the cache")
    expected = [max(d.nbest.hypotheses, key=lambda h: h.acoustic).text for d in decodes]
    assert [r["rescored"] for r in _rows(fixed / "utterances.csv")] == expected
    assert not json.loads((fixed / "results.json").read_text())["tuned"]


@pytest.mark.skipif(not CARDS.is_dir(), reason="Debian's pocketsphinx-testdata is absent")
def test_real_recordings_with_lattices_and_given_weights(home, lm_dir, tmp_path) -> None:
    out = tmp_path / "cards"
    assert main(["rescore", "--lattice", "--lm", str(lm_dir), "--data", "testdata:cards", "--lm-weight", "6.5",
                 "--interpolation", "0", "--word-penalty", "0", "--hypotheses", "5", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["test_utterances"] == 5 and results["decode"]["lattice_paths"] == 5
    rows = _rows(out / "utterances.csv")
    assert rows[0]["reference"] == "ten of clubs" and len(rows) == 5
    assert results["wer"]["test_oracle"] <= results["wer"]["test_after"]


def _write_csv(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.csv").write_text(text)
    return folder


def _tone(path: Path, rate: int = 16_000) -> Path:
    soundfile.write(path, (0.2 * np.sin(np.arange(rate // 4) * 0.05)).astype(np.float32), rate)
    return path


def _bad_inputs(root: Path, lm_dir: Path) -> list[tuple[list[str], str]]:
    """(extra argv, what the error must name) for each bad input; every case gives all three weights."""
    ok = _write_csv(root / "ok", "file,transcript\na.wav,turn the lights on\n")
    _tone(ok / "a.wav")
    empty = _write_csv(root / "empty-transcript", "file,transcript\na.wav,turn the lights on\nb.wav,\n")
    _tone(empty / "a.wav"), _tone(empty / "b.wav")
    missing = _write_csv(root / "missing-file", "file,transcript\na.wav,turn the lights on\nnope.wav,lights off\n")
    _tone(missing / "a.wav")
    zero = _write_csv(root / "zero-length", "file,transcript\nz.wav,lights off\n")
    (zero / "z.wav").write_bytes(b"")
    garbage = _write_csv(root / "garbage", "file,transcript\ng.wav,lights off\n")
    (garbage / "g.wav").write_bytes(bytes(range(256)) * 8)
    slow = _write_csv(root / "8khz", "file,transcript\ns.wav,lights off\n")
    _tone(slow / "s.wav", 8_000)
    intents = _write_csv(root / "intents", "file,intent\na.wav,activate_lights\n")
    _tone(intents / "a.wav")
    train_only = _write_csv(root / "train-only", "file,transcript,split\na.wav,lights on,train\n")
    _tone(train_only / "a.wav")
    broken_lm = root / "broken-lm"
    shutil.copytree(lm_dir, broken_lm)
    (broken_lm / "vocab.json").write_text("{not json")
    unfinished = root / "unfinished-run"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("recipe:\n  method: lm-distill\n")
    lm = ["--lm", str(lm_dir)]
    data = ["--data", f"folder:{ok}"]
    return [
        (["--lm", str(root / "no-such-lm"), *data], "--lm"),
        (["--lm", str(ok), *data], "--lm"),  # a folder, but not an LM
        (["--lm", str(broken_lm), *data], "--lm"),
        (["--lm", str(unfinished), *data], "--lm"),  # an lm-distill run that saved no LM
        ([*lm, "--lm-name", "teacher", *data], "--lm-name"),  # --lm-name needs a run directory
        ([*lm, "--data", f"folder:{empty}"], "b.wav"),
        ([*lm, "--data", f"folder:{missing}"], "nope.wav"),
        ([*lm, "--data", f"folder:{zero}"], "z.wav"),
        ([*lm, "--data", f"folder:{garbage}"], "g.wav"),
        ([*lm, "--data", f"folder:{slow}", "--no-resample"], "s.wav"),
        ([*lm, "--data", f"folder:{intents}"], "--data"),
        ([*lm, "--data", f"folder:{train_only}"], "--data"),
        ([*lm, "--data", f"folder:{root / 'nowhere'}"], "--data"),
        ([*lm, "--data", f"folder:{ok}/other.csv"], "--data"),
        ([*lm, "--data", "imagefolder:x"], "--data"),
        ([*lm, *data, "--val-data", "testdata:nope"], "--val-data"),
        ([*lm, *data, "--interpolation", "1.5"], "--interpolation"),
        ([*lm, *data, "--hypotheses", "0"], "--hypotheses"),
        ([*lm, *data, "--device", "tpu"], "device"),
    ]


def test_every_bad_input_is_refused_in_one_line_before_any_run(lm_dir, tmp_path, capsys) -> None:
    weights = {"--lm-weight": "1", "--interpolation": "0.5", "--word-penalty": "0"}
    for extra, named in _bad_inputs(tmp_path / "inputs", lm_dir):
        out = tmp_path / "never"
        argv = ["rescore", "--nbest", *extra, *(x for k, v in weights.items() if k not in extra for x in (k, v)),
                "--out", str(out)]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], (argv, err)
        assert not out.exists(), argv


def test_missing_pocketsphinx_names_the_package(lm_dir, tmp_path, monkeypatch, capsys) -> None:
    folder = _write_csv(tmp_path / "ok", "file,transcript\na.wav,turn the lights on\n")
    _tone(folder / "a.wav")
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    assert main(["rescore", "--lattice", "--lm", str(lm_dir), "--data", f"folder:{folder}", "--lm-weight", "1",
                 "--interpolation", "1", "--word-penalty", "0", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: pocketsphinx") and "pip install pocketsphinx" in err
    assert not (tmp_path / "never").exists()
