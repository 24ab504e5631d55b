"""Build the spoken command set deterministically, split by voice, and cache it with a manifest.

``CommandSetConfig`` fixes everything: the seed, how many voices (espeak-ng and flite), how many phrasings of
each intent every voice speaks, how many voices go to validation and test. The seed picks the voices (an
espeak accent+variant with its own speed and pitch, or a flite voice with its own duration stretch), each
utterance's phrasing and a small per-utterance jitter of speed, pitch or stretch. Splits are by voice:
train, val and test share no voice, so test voices are unseen (train gets a voice of every synthesizer first).

The audio (16-bit FLAC or WAV at 16 kHz) and ``manifest.jsonl`` (one JSON line per utterance: file,
transcript, intent, action, object, location, synthesizer, voice, speed, pitch, stretch, split, samples) and
``info.json`` (config, classes, voices, synthesizer versions) are stored with ``kd_core.datacache`` under
``$KD_DATA_HOME/speech-commands/<digest of the config>/``; a later build with the same config loads them after
checking every checksum. Building the same config twice gives byte-identical files.

Size: ``voices × intents × utterances_per_intent`` utterances. The default (4 voices × 31 intents × 1) is
124 utterances, a few seconds of synthesis; ``CommandSetConfig(voices=40, utterances_per_intent=4)`` gives
4,960.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kd_core import datacache
from kd_core.errors import ConfigError, DataError

from kd_speech.data.audio import SAMPLE_RATE, Utterance, encode_audio
from kd_speech.data.commands import COMMANDS, Command
from kd_speech.data.synth import (
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FLITE_VOICES,
    Voice,
    synthesize,
    synthesizer_version,
)

__all__ = ["SPLITS", "CommandSet", "CommandSetConfig", "PlannedUtterance", "build_command_set", "choose_voices",
           "command_set_dir", "plan_utterances", "split_voices"]

FORMAT = 1
CACHE_NAME = "speech-commands"
MANIFEST = "manifest.jsonl"
INFO = "info.json"
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class CommandSetConfig:
    """What a command set is built from (every field goes into the cache key).

    ``voices``: distinct voices, ``flite_voices`` of them flite (at most 4), the rest espeak-ng;
    ``utterances_per_intent``: distinct phrasings of each intent that every voice speaks (1–6);
    ``intents``: the first k intents of ``COMMANDS`` (``None``: all 31); ``val_voices``/``test_voices``:
    voices held out for validation and test; ``fmt``: ``"flac"`` or ``"wav"`` (16-bit PCM either way).
    """

    seed: int = 0
    voices: int = 4
    flite_voices: int = 1
    utterances_per_intent: int = 1
    intents: int | None = None
    val_voices: int = 1
    test_voices: int = 1
    fmt: str = "flac"

    def __post_init__(self) -> None:
        def integer(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(name, f"an integer in [{low}, {high}]", value)

        integer("seed", -(2**63), 2**63 - 1)
        integer("voices", 3, len(ESPEAK_ACCENTS) * len(ESPEAK_VARIANTS) + len(FLITE_VOICES))
        integer("flite_voices", 0, min(len(FLITE_VOICES), self.voices))
        integer("utterances_per_intent", 1, min(len(c.phrasings) for c in COMMANDS))
        integer("val_voices", 1, self.voices)
        integer("test_voices", 1, self.voices)
        if self.intents is not None:
            integer("intents", 2, len(COMMANDS))
        if self.val_voices + self.test_voices >= self.voices:
            raise ConfigError("val_voices + test_voices", f"fewer than voices ({self.voices}), leaving train voices",
                              self.val_voices + self.test_voices)
        if self.voices - self.flite_voices > len(ESPEAK_ACCENTS) * len(ESPEAK_VARIANTS):
            raise ConfigError("voices", f"at most {len(ESPEAK_ACCENTS) * len(ESPEAK_VARIANTS)} espeak voices",
                              self.voices - self.flite_voices)
        if self.fmt not in ("flac", "wav"):
            raise ConfigError("fmt", "'flac' or 'wav'", self.fmt)

    @property
    def commands(self) -> tuple[Command, ...]:
        """The commands (intents) this set covers."""
        return COMMANDS if self.intents is None else COMMANDS[: self.intents]

    @property
    def size(self) -> int:
        """The number of utterances the set holds."""
        return self.voices * len(self.commands) * self.utterances_per_intent


@dataclass(frozen=True)
class PlannedUtterance:
    """One utterance to synthesize: its file name, text, intent, voice settings and split."""

    file: str
    command: Command
    transcript: str
    voice: Voice
    split: str


def choose_voices(config: CommandSetConfig) -> list[Voice]:
    """The config's voices, drawn from the seed: espeak accent+variant personas first, then flite voices."""
    rng = random.Random(f"kd-speech-voices:{config.seed}")
    pool = [f"{accent}+{variant}" for accent in ESPEAK_ACCENTS for variant in ESPEAK_VARIANTS]
    voices = [Voice("espeak", name, speed=rng.randint(130, 190), pitch=rng.randint(30, 70))
              for name in rng.sample(pool, config.voices - config.flite_voices)]
    voices += [Voice("flite", name, stretch=round(rng.uniform(0.9, 1.15), 2))
               for name in rng.sample(FLITE_VOICES, config.flite_voices)]
    return voices


def split_voices(voices: Sequence[Voice], val: int, test: int, seed: int) -> dict[str, str]:
    """Voice identity -> ``"train"``/``"val"``/``"test"``: disjoint, train filled first and evenly per synthesizer."""
    rng = random.Random(f"kd-speech-split:{seed}")
    groups: dict[str, list[Voice]] = {}
    for voice in voices:
        groups.setdefault(voice.synthesizer, []).append(voice)
    keyed = []
    for rank, (_, group) in enumerate(sorted(groups.items())):
        shuffled = list(group)
        rng.shuffle(shuffled)
        keyed += [(position / len(shuffled), rank, voice.identity) for position, voice in enumerate(shuffled)]
    order = [identity for *_, identity in sorted(keyed)]
    train = len(order) - val - test
    return {identity: "train" if i < train else "val" if i < train + val else "test" for i, identity in
            enumerate(order)}


def _jitter(voice: Voice, rng: random.Random) -> Voice:
    if voice.synthesizer == "espeak":
        return Voice("espeak", voice.name, speed=voice.speed + rng.randint(-10, 10),
                     pitch=min(99, max(0, voice.pitch + rng.randint(-8, 8))))
    return Voice("flite", voice.name, stretch=round(voice.stretch + rng.uniform(-0.05, 0.05), 2))


def plan_utterances(config: CommandSetConfig) -> list[PlannedUtterance]:
    """Every utterance of the set, in a fixed order (voice, then intent, then phrasing)."""
    voices = choose_voices(config)
    splits = split_voices(voices, config.val_voices, config.test_voices, config.seed)
    plan: list[PlannedUtterance] = []
    for voice in voices:
        for command in config.commands:
            rng = random.Random(f"kd-speech-utterance:{config.seed}:{voice.identity}:{command.intent}")
            for phrasing in rng.sample(command.phrasings, config.utterances_per_intent):
                plan.append(PlannedUtterance(f"{len(plan):06d}.{config.fmt}", command, phrasing,
                                             _jitter(voice, rng), splits[voice.identity]))
    return plan


def _row(item: PlannedUtterance, samples: int) -> dict[str, Any]:
    voice = item.voice
    espeak = voice.synthesizer == "espeak"
    return {"file": item.file, "transcript": item.transcript, "intent": item.command.intent,
            "action": item.command.action, "object": item.command.object, "location": item.command.location,
            "synthesizer": voice.synthesizer, "voice": voice.name, "speed": voice.speed if espeak else None,
            "pitch": voice.pitch if espeak else None, "stretch": None if espeak else voice.stretch,
            "split": item.split, "samples": samples}


@dataclass
class CommandSet:
    """A built command set: its folder, utterances (with splits), class names and build information."""

    directory: Path
    utterances: list[Utterance]
    classes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Utterance]:
        """The utterances of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in SPLITS:
            raise ConfigError("split", f"one of {SPLITS}", name)
        return [u for u in self.utterances if u.split == name]

    def voices(self, name: str) -> set[str]:
        """The voice identities (``"espeak:en-us+f3"``, ``"flite:slt"``) of one split."""
        return {u.speaker for u in self.split(name)}

    @classmethod
    def from_directory(cls, directory: Path, files: dict[str, bytes] | None = None) -> CommandSet:
        """Read a built set from its folder (``files``: its contents when already loaded)."""
        def read(name: str) -> bytes:
            return files[name] if files is not None else (directory / name).read_bytes()

        try:
            info = json.loads(read(INFO))
            rows = [json.loads(line) for line in read(MANIFEST).decode().splitlines() if line.strip()]
        except (OSError, KeyError, ValueError) as error:
            raise DataError(str(directory), "a built command set (manifest.jsonl and info.json)",
                            f"{type(error).__name__}: {error}") from None
        utterances = [Utterance(directory / row["file"], row["transcript"], row["intent"],
                                f"{row['synthesizer']}:{row['voice']}", row["split"], info=row) for row in rows]
        return cls(directory, utterances, tuple(info["classes"]), info)


def _key(config: CommandSetConfig) -> dict[str, Any]:
    commands = [[c.action, c.object, c.location, list(c.phrasings)] for c in config.commands]
    return {"format": FORMAT, "sample_rate": SAMPLE_RATE, "config": asdict(config),
            "commands": datacache.sha256_bytes(json.dumps(commands).encode())}


def command_set_dir(config: CommandSetConfig) -> Path:
    """Where a config's set is cached: ``$KD_DATA_HOME/speech-commands/<digest>``."""
    return datacache.data_home() / CACHE_NAME / datacache.digest(**_key(config))


def build_command_set(config: CommandSetConfig | None = None, *, rebuild: bool = False, workers: int | None = None,
                      progress: bool = True) -> CommandSet:
    """The command set of ``config``: loaded from the cache when it verifies, else synthesized and cached.

    ``workers``: synthesizer processes at once (default: the CPU count); ``progress``: show a progress bar
    (plain lines without a terminal). A missing synthesizer is a ``DataError`` naming its package, raised
    before anything is synthesized.
    """
    config = config or CommandSetConfig()
    key = _key(config)
    directory = command_set_dir(config)
    if not rebuild and (files := datacache.load(directory, key)) is not None:
        return CommandSet.from_directory(directory, files)
    plan = plan_utterances(config)
    synthesizers = sorted({item.voice.synthesizer for item in plan})
    versions = {name: synthesizer_version(name) for name in synthesizers}  # each missing one fails here, first

    def make(item: PlannedUtterance) -> tuple[bytes, int]:
        waveform = synthesize(item.transcript, item.voice)
        return encode_audio(waveform, SAMPLE_RATE, config.fmt), int(waveform.numel())

    results = _run_all(make, plan, workers, progress)
    files = {item.file: data for item, (data, _) in zip(plan, results)}
    rows = [_row(item, samples) for item, (_, samples) in zip(plan, results)]
    voices = choose_voices(config)
    splits = split_voices(voices, config.val_voices, config.test_voices, config.seed)
    info = {"format": FORMAT, "config": asdict(config), "sample_rate": SAMPLE_RATE,
            "classes": [c.intent for c in config.commands], "synthesizers": versions,
            "voices": [{**asdict(v), "identity": v.identity, "split": splits[v.identity]} for v in voices],
            "utterances": {s: sum(r["split"] == s for r in rows) for s in SPLITS}}
    files[MANIFEST] = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()
    files[INFO] = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    datacache.store(directory, key, files)
    return CommandSet.from_directory(directory, files)


def _run_all(make: Any, plan: list[PlannedUtterance], workers: int | None, progress: bool) -> list[tuple[bytes, int]]:
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if not progress:
            return list(pool.map(make, plan))
        from kd_core.progress import progress_bar

        results = []
        with progress_bar() as bar:
            task = bar.add_task("synthesizing commands", total=len(plan), info=f"{workers} workers")
            for result in pool.map(make, plan):
                results.append(result)
                bar.advance(task)
        return results
