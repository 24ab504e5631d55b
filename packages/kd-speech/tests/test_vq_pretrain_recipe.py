"""The ``vq-wav2vec-pretrain`` recipe (Baevski, Schneider & Auli, ICLR 2020, arXiv 1910.05453): toy runs through the
CLI on an audio folder and on synthesized commands, codebook usage above a floor, crash and resume, the step-wise
trainer against ``pretrain_vq_wav2vec``, and bad input named in one line."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from kd_core.checkpoint import load_state, save_state
from kd_core.recipes import load_recipe
from kd_speech.cli import main
from kd_speech.methods.vq_wav2vec_pretrain import load_model
from kd_speech.models import VqWav2Vec, VqWav2VecConfig, pretrain_vq_wav2vec
from kd_speech.models.vq_pretrain import VqPretrainer


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these models are tiny, and on a shared machine two threads mostly wait for each other
    (a toy step took 1.2 s with two threads against 17 ms with one under a load of 5 on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TOY = ("train.steps=8", "train.batch_size=2", "train.crop=4000", "train.usage_every=4", "train.checkpoint_every=5")


def chords(count: int, seconds: float, rate: int, seed: int = 0) -> list[np.ndarray]:
    """Utterances of 75-150 ms segments, each a two-tone chord from a small inventory, plus a little noise."""
    rng = np.random.default_rng(seed)
    inventory = rng.integers(150, 3000, size=(12, 2))
    samples, out = int(seconds * rate), []
    for _ in range(count):
        pieces, total = [], 0
        while total < samples:
            low, high = inventory[rng.integers(0, len(inventory))]
            t = np.arange(int(rng.integers(int(0.075 * rate), int(0.15 * rate)))) / rate
            pieces.append(0.5 * np.sin(2 * math.pi * low * t) + 0.3 * np.sin(2 * math.pi * high * t))
            total += len(t)
        out.append((np.concatenate(pieces)[:samples] + 0.05 * rng.standard_normal(samples)).astype(np.float32))
    return out


def audio_folder(root: Path, count: int = 8, rate: int = 22050, seconds: float = 1.0, split: bool = False) -> Path:
    """A folder of WAV files at ``rate`` and ``list.csv`` naming them (with a split column if ``split``)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["file,transcript" + (",split" if split else "")]
    for i, wave in enumerate(chords(count, seconds, rate)):
        sf.write(root / f"u{i}.wav", wave, rate)
        rows.append(f"u{i}.wav,utterance {i}" + (f",{'val' if i % 4 == 3 else 'train'}" if split else ""))
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root


def distill(out: Path, *sets: str, extra: tuple[str, ...] = ()) -> int:
    return main(["distill", "--recipe", "vq-wav2vec-pretrain", "--device", "cpu", "--out", str(out), *extra,
                 *(x for s in sets for x in ("--set", s))])


def test_toy_run_on_a_folder_writes_report_plots_and_a_reloadable_model(tmp_path, capsys) -> None:
    folder = audio_folder(tmp_path / "audio", rate=22050)
    out = tmp_path / "run"
    assert distill(out, f"data.source=folder:{folder}", *TOY) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "vq-wav2vec pre-training" in report and "Contrastive loss" in report and "distinct tokens" in report
    for name in ("loss.png", "codebook_usage.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["utterances"] == {"train": 7, "val": 1}  # val_fraction 0.1 of 8, at least one
    assert {r["step"] for r in results["usage_history"]} == {0, 4, 8}
    train = results["tokens"]["train"]
    assert train["frames"] == 7 * VqWav2Vec(VqWav2VecConfig.tiny()).num_frames(16000)  # resampled to 16 kHz
    assert 1 <= train["distinct"] <= 256 and "unseen_in_train" in results["tokens"]["val"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "update"] == list(range(1, 9))
    model = load_model(out)
    wave = torch.from_numpy(chords(1, 0.5, 16000, seed=5)[0])
    assert model.tokens(wave).shape == (model.num_frames(8000),)
    assert load_model(out / "model.safetensors").tokens(wave).equal(model.tokens(wave))
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    assert f"train/distinct_tokens: {train['distinct']}" in capsys.readouterr().out


def _needs_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("espeak-ng is missing on CI (tools/setup.sh installs it)")
        pytest.skip("espeak-ng is not installed (tools/setup.sh installs it as root)")


def test_toy_run_on_synthesized_commands(tmp_path, monkeypatch) -> None:
    _needs_espeak()
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    assert distill(out, "data.voices=3", "data.flite_voices=0", "data.intents=2", "data.per_intent=1",
                   "data.test_voices=1", "model.quantizer=kmeans", *TOY) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["utterances"] == {"train": 2, "val": 2, "test": 2}
    assert set(results["tokens"]) == {"train", "val", "test"}
    assert "synthesized spoken commands" in (out / "report.md").read_text()


@pytest.mark.parametrize(("quantizer", "floor"), [("gumbel", 0.5), ("kmeans", 0.3)])
def test_codebook_usage_stays_above_a_floor(tmp_path, quantizer: str, floor: float) -> None:
    """The recipe's model settings on a toy folder: a collapsed codebook uses 1-3 of 16 codewords per group."""
    folder = audio_folder(tmp_path / "audio", count=8, rate=16000, split=True)
    out = tmp_path / "run"
    assert distill(out, f"data.source=folder:{folder}", f"model.quantizer={quantizer}", "train.steps=20",
                   "train.batch_size=4", "train.crop=4000", "train.usage_every=10", "train.checkpoint_every=20",
                   extra=("--seed", "0")) == 0
    tokens = json.loads((out / "results.json").read_text())["tokens"]
    used = tokens["train"]["fraction_used"]
    assert min(used) >= floor, used
    assert tokens["train"]["distinct"] >= 8


def test_a_run_killed_midway_and_resumed_ends_with_the_same_weights(tmp_path, monkeypatch) -> None:
    folder = audio_folder(tmp_path / "audio", count=6, rate=16000)
    settings = (f"data.source=folder:{folder}", "train.steps=9", "train.batch_size=2", "train.crop=3000",
                "train.usage_every=3", "train.checkpoint_every=4")
    assert distill(tmp_path / "whole", *settings) == 0
    real = VqPretrainer.train_step

    def dies_at_step_7(self: VqPretrainer):
        if self.step == 6:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(VqPretrainer, "train_step", dies_at_step_7)
    assert distill(tmp_path / "killed", *settings) == 130
    assert load_state(tmp_path / "killed" / "checkpoints" / "last.safetensors")["trainer"]["step"] == 4
    monkeypatch.setattr(VqPretrainer, "train_step", real)
    assert main(["distill", "--recipe", "vq-wav2vec-pretrain", "--out", str(tmp_path / "killed"), "--resume"]) == 0
    whole, resumed = load_model(tmp_path / "whole"), load_model(tmp_path / "killed")
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    steps = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["kind"] == "update"] == list(range(1, 10))  # steps 5-6 not twice
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("whole", "killed"))
    assert a["tokens"] == b["tokens"] and a["usage_history"] == b["usage_history"]


def test_the_stepwise_trainer_is_pretrain_vq_wav2vec_and_resumes_from_its_state(tmp_path) -> None:
    waves = chords(5, 0.4, 16000)
    settings = {"batch_size": 2, "crop": 3000, "seed": 3}

    def fresh() -> VqWav2Vec:
        torch.manual_seed(0)
        return VqWav2Vec(VqWav2VecConfig.tiny())

    reference = fresh()
    result = pretrain_vq_wav2vec(reference, waves, 7, **settings)
    first = VqPretrainer(fresh(), waves, **settings)
    losses = [first.train_step().loss for _ in range(4)]
    save_state(first.state_dict(), tmp_path / "state.safetensors")
    torch.rand(3)  # the caller's random draws between steps change nothing
    second = VqPretrainer(fresh(), waves, **settings)
    second.load_state_dict(load_state(tmp_path / "state.safetensors"))
    losses += [second.train_step().loss for _ in range(3)]
    assert losses == result.losses
    second.finish()
    for a, b in zip(reference.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# --- bad input ---------------------------------------------------------------------------------------------------


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_a_missing_data_folder_is_named_and_leaves_no_run(tmp_path, capsys) -> None:
    missing = tmp_path / "no-such-folder"
    assert distill(tmp_path / "run", f"data.source=folder:{missing}") == 2
    line = _one_error_line(capsys)
    assert "data.source" in line and str(missing) in line
    assert not (tmp_path / "run").exists()


def test_a_csv_naming_missing_files_is_named_and_leaves_no_run(tmp_path, capsys) -> None:
    folder = audio_folder(tmp_path / "audio", count=3)
    (folder / "list.csv").write_text("file,transcript\nu0.wav,a\nnope.wav,b\nu2.wav,c\ngone.flac,d\n")
    assert distill(tmp_path / "run", f"data.source=folder:{folder}") == 2
    line = _one_error_line(capsys)
    assert "data.source" in line and "list.csv" in line and "nope.wav" in line and "gone.flac" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("setting", "named"), [
    ("data.csv=other.csv", "data.csv"),
    ("data.source=imagefolder:x", "data.source"),
    ("model.groups=3", "model.groups"),
    ("model.quantizer=rvq", "model.quantizer"),
    ("train.crop=100", "train.crop"),
    ("train.steps=0", "train.steps"),
    ("data.flite_voices=9", "data.flite_voices"),
])
def test_bad_fields_are_named(tmp_path, capsys, setting: str, named: str) -> None:
    folder = audio_folder(tmp_path / "audio", count=2)
    assert distill(tmp_path / "run", f"data.source=folder:{folder}", setting) == 2
    assert named in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_too_short_audio_and_other_precisions_are_refused(tmp_path, capsys) -> None:
    folder = audio_folder(tmp_path / "audio", count=2)
    sf.write(folder / "u1.wav", np.zeros(300, dtype=np.float32), 22050)
    assert distill(tmp_path / "run", f"data.source=folder:{folder}") == 2
    assert "u1.wav" in _one_error_line(capsys)
    audio_folder(folder, count=2)
    assert distill(tmp_path / "run", f"data.source=folder:{folder}", extra=("--precision", "bf16")) == 2
    assert "--precision" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_split_column_without_train_rows_is_refused(tmp_path, capsys) -> None:
    folder = audio_folder(tmp_path / "audio", count=2)
    (folder / "list.csv").write_text("file,transcript,split\nu0.wav,a,val\nu1.wav,b,test\n")
    assert distill(tmp_path / "run", f"data.source=folder:{folder}") == 2
    line = _one_error_line(capsys)
    assert "data.source" in line and "train" in line
    assert not (tmp_path / "run").exists()


def test_the_recipe_validates_with_its_defaults() -> None:
    method, config = load_recipe("vq-wav2vec-pretrain", domain="speech")
    assert method.name == "vq-wav2vec-pretrain" and config.model.quantizer in ("gumbel", "kmeans")
    assert config.data.source == "commands"
