"""The synthesized command set: deterministic, split by voice, cached; a missing synthesizer names its package."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from kd_core.errors import DataError, KDError
from kd_speech.data.builder import (
    CommandSetConfig,
    build_command_set,
    choose_voices,
    command_set_dir,
    plan_utterances,
    split_voices,
)
from kd_speech.data.commands import command
from kd_speech.data.dataset import SpeechDataset, collate_audio
from kd_speech.data.synth import Voice, require_synthesizer, synthesize

HAVE_SYNTHESIZERS = shutil.which("espeak-ng") is not None and shutil.which("flite") is not None
needs_synthesizers = pytest.mark.skipif(not HAVE_SYNTHESIZERS, reason="espeak-ng or flite is not installed "
                                        "(apt-get install espeak-ng flite)")
TINY = CommandSetConfig(seed=3, voices=3, flite_voices=1, intents=4)


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    yield tmp_path_factory.mktemp("home-a"), tmp_path_factory.mktemp("home-b")


def _build(home: Path, config: CommandSetConfig, **kwargs: object):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KD_DATA_HOME", str(home))
        return build_command_set(config, progress=False, **kwargs)


@needs_synthesizers
def test_same_config_twice_gives_identical_manifest_and_audio(homes: tuple[Path, Path]) -> None:
    first, second = (_build(home, TINY) for home in homes)
    assert first.directory != second.directory
    assert (first.directory / "manifest.jsonl").read_bytes() == (second.directory / "manifest.jsonl").read_bytes()
    checksums = [json.loads((s.directory / "manifest.json").read_text())["files"] for s in (first, second)]
    assert checksums[0] == checksums[1]
    assert len(first.utterances) == TINY.size == 12
    rows = [json.loads(line) for line in (first.directory / "manifest.jsonl").read_text().splitlines()]
    assert set(rows[0]) >= {"file", "transcript", "intent", "action", "object", "location", "synthesizer", "voice",
                            "speed", "pitch", "stretch", "split"}
    assert first.classes == tuple(c.intent for c in TINY.commands)
    info = sf.info(str(first.utterances[0].path))
    assert info.samplerate == 16000 and info.channels == 1 and info.frames > 1600


@needs_synthesizers
def test_cached_set_is_reused_and_a_damaged_file_rebuilds(homes: tuple[Path, Path]) -> None:
    built = _build(homes[0], TINY)
    manifest = (built.directory / "manifest.json").stat().st_mtime_ns
    again = _build(homes[0], TINY)
    assert (again.directory / "manifest.json").stat().st_mtime_ns == manifest
    assert [u.path for u in again.utterances] == [u.path for u in built.utterances]
    audio = built.utterances[0].path
    original = audio.read_bytes()
    audio.write_bytes(b"damaged")
    repaired = _build(homes[0], TINY)
    assert repaired.utterances[0].path.read_bytes() == original


@needs_synthesizers
def test_splits_share_no_voice(homes: tuple[Path, Path]) -> None:
    built = _build(homes[0], TINY)
    train, val, test = (built.voices(s) for s in ("train", "val", "test"))
    assert train and val and test
    assert not train & test and not train & val and not val & test
    assert all(u.speaker.startswith(("espeak:", "flite:")) for u in built.utterances)
    dataset = SpeechDataset(built.split("test"), classes=built.classes)
    batch = collate_audio([dataset[0], dataset[1]])
    assert batch["audio"].shape[0] == 2 and batch["label"].tolist() == [dataset.label(0), dataset.label(1)]
    assert batch["transcript"][0] in command(built.split("test")[0].intent).phrasings


def test_voice_split_is_disjoint_deterministic_and_covers_each_synthesizer() -> None:
    config = CommandSetConfig(seed=11, voices=16, flite_voices=4, val_voices=2, test_voices=4)
    voices = choose_voices(config)
    assert len({v.identity for v in voices}) == 16
    assert sum(v.synthesizer == "flite" for v in voices) == 4
    splits = split_voices(voices, 2, 4, seed=11)
    assert splits == split_voices(choose_voices(config), 2, 4, seed=11)
    assert sorted(splits.values()).count("test") == 4 and sorted(splits.values()).count("val") == 2
    train = {i for i, s in splits.items() if s == "train"}
    assert {i.split(":")[0] for i in train} == {"espeak", "flite"}
    plan = plan_utterances(config)
    assert plan == plan_utterances(config) and len(plan) == config.size
    assert {p.voice.identity for p in plan if p.split == "test"}.isdisjoint(
        {p.voice.identity for p in plan if p.split == "train"})
    assert plan_utterances(CommandSetConfig(seed=12)) != plan_utterances(CommandSetConfig(seed=11))
    assert command_set_dir(config) != command_set_dir(CommandSetConfig(seed=12))


@pytest.mark.parametrize(("synthesizer", "package"), [("espeak", "espeak-ng"), ("flite", "flite")])
def test_missing_synthesizer_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               synthesizer: str, package: str) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match=f"apt-get install {package}") as error:
        require_synthesizer(synthesizer)
    assert "\n" not in str(error.value)
    with pytest.raises(KDError, match=r"apt-get install (espeak-ng|flite)"):
        build_command_set(CommandSetConfig(flite_voices=1 if synthesizer == "flite" else 0), progress=False)
    assert not (tmp_path / "home").exists()


def test_bad_config_and_voice_are_kd_errors() -> None:
    with pytest.raises(KDError, match="val_voices"):
        CommandSetConfig(voices=3, val_voices=1, test_voices=2)
    with pytest.raises(KDError, match="utterances_per_intent"):
        CommandSetConfig(utterances_per_intent=9)
    with pytest.raises(KDError, match="voice"):
        Voice("flite", "kal")
    with pytest.raises(KDError, match="voice"):
        Voice("espeak", "en-us+zz")


@needs_synthesizers
def test_synthesis_gives_16k_speech_from_both_synthesizers() -> None:
    for voice in (Voice("espeak", "en-gb-x-rp+f3", speed=170, pitch=60), Voice("flite", "slt", stretch=1.1)):
        waveform = synthesize("turn on the lights", voice)
        assert waveform.ndim == 1 and waveform.dtype.is_floating_point
        assert 0.5 < waveform.numel() / 16000 < 4.0
        assert float(waveform.abs().max()) > 0.05
    slow = synthesize("turn on the lights", Voice("flite", "slt", stretch=1.3))
    fast = synthesize("turn on the lights", Voice("flite", "slt", stretch=0.8))
    assert slow.numel() > fast.numel()
    with pytest.raises(KDError, match="text"):
        synthesize("   ", Voice("espeak", "en-us"))
