"""A user's audio folder as the ``slu-two-stage`` study's data: read, checked, split and fingerprinted.

The folder (``data.source: folder:DIR`` or ``folder:DIR/FILE.csv``) is read with
:func:`kd_speech.data.read_audio_folder` (any sample rate, resampled to 16 kHz) and must carry both a
``transcript`` (the text teacher reads it) and an ``intent`` (the heads predict it) for every row. Splits come from
the CSV's ``split`` column, else whole speakers are held out, else a random split stratified by intent
(:func:`split_folder`). Every problem is a one-line ``ConfigError`` naming ``data.source``, raised before anything
trains.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kd_core.errors import ConfigError

from kd_speech.data import Utterance

if TYPE_CHECKING:
    from kd_speech.tasks import SpeechCommandsData

__all__ = ["SpeechFolder", "read_speech_folder", "split_folder"]

_SPLITS = ("train", "val", "test")

_HOW = {"split column": "split by the CSV's split column",
        "speaker": "split by speaker: the val and test speakers are unseen in training",
        "random": "split at random, stratified by intent (data.seed)"}


@dataclass
class SpeechFolder:
    """A user's audio folder read for the task: its utterances per split, the intents (the sorted train
    intents), how it was split (``"split column"``, ``"speaker"`` or ``"random"``) and a fingerprint of its
    content (the CSV's bytes, each file's path, size and modification time)."""

    directory: Path
    csv: Path
    splits: dict[str, list[Utterance]]
    classes: tuple[str, ...]
    split_by: str
    fingerprint: str

    def key(self) -> dict[str, Any]:
        """What the cache keys hold instead of the command set: the folder, its CSV and the fingerprint."""
        return {"path": str(self.directory.resolve()), "csv": self.csv.name, "fingerprint": self.fingerprint}

    def describe(self, extra: str = "") -> str:
        """What the data are, for the report: the CSV, utterances per split, how they were split, the intents
        (``extra``: more to say inside the parentheses)."""
        counts = " / ".join(f"{len(self.splits[s])} {s}" for s in _SPLITS)
        total = sum(len(items) for items in self.splits.values())
        return (f"the audio folder {self.csv} ({total} utterances: {counts}, {_HOW[self.split_by]}; "
                f"{len(self.classes)} intents{'; ' + extra if extra else ''})")


def _folder_error(err: ConfigError) -> ConfigError:
    """A ``read_audio_folder`` error renamed to the recipe field (``data.source``), with what it named."""
    argument = "data.source" if err.argument == "audio folder" else f"data.source ({err.argument})"
    return ConfigError(argument, err.expected, err.received, hint=err.hint)


def _spread(held: Sequence[int], test: int) -> tuple[list[int], list[int]]:
    """``held`` dealt into ``test`` items for test and the rest for val, evenly along it."""
    n = len(held)
    to_test = [(j + 1) * test // n > j * test // n for j in range(n)]
    return [i for i, t in zip(held, to_test, strict=True) if t], [i for i, t in zip(held, to_test, strict=True)
                                                                   if not t]


def split_folder(utterances: Sequence[Utterance], data: SpeechCommandsData) -> tuple[dict[str, list[Utterance]], str]:
    """A folder's utterances by split and how they were split, deterministic for ``data.seed``:

    - ``"split column"`` when any row has a ``split`` (``train``/``val``/``test``; an empty cell is train);
    - else ``"speaker"`` when any row has a ``speaker``: ``data.held_out()`` of the speakers (at least one each,
      drawn with ``data.seed``) are the val and the test speakers, whole; rows without a speaker are train;
    - else ``"random"``: ``data.held_out()`` of the utterances, stratified by intent (each intent's utterances
      shuffled, one always kept for train, the rest taken round-robin over the intents).

    Every split must be non-empty (a ``ConfigError`` naming ``data.source`` otherwise)."""
    val, test = data.held_out()
    rng = random.Random(f"kd-speech-slu-folder:{data.seed}")
    if any(u.split for u in utterances):
        how = "split column"
        splits = {s: [u for u in utterances if (u.split or "train") == s] for s in _SPLITS}
        expected = "train, val and test rows in the CSV's split column (an empty cell is train)"
    elif any(u.speaker for u in utterances):
        how = "speaker"
        speakers = sorted({u.speaker for u in utterances if u.speaker})
        rng.shuffle(speakers)
        n_test, n_val = max(1, round(test * len(speakers))), max(1, round(val * len(speakers)))
        if n_test + n_val >= len(speakers):
            raise ConfigError("data.source", f"at least {n_test + n_val + 1} speakers ({n_val} held out for val and "
                              f"{n_test} for test, data.val_voices / data.voices and data.test_voices / data.voices, "
                              "and one left to train on)", f"{len(speakers)} speakers in {data.source}",
                              hint="add a split column (train/val/test) to the CSV")
        side = {**dict.fromkeys(speakers[:n_test], "test"), **dict.fromkeys(speakers[n_test:n_test + n_val], "val")}
        splits = {s: [u for u in utterances if side.get(u.speaker, "train") == s] for s in _SPLITS}
        expected = "val and test speakers with utterances"
    else:
        how = "random"
        by_intent: dict[str, list[int]] = {}
        for i, u in enumerate(utterances):
            by_intent.setdefault(str(u.intent), []).append(i)
        queues = []
        for intent in sorted(by_intent):
            items = list(by_intent[intent])
            rng.shuffle(items)
            queues.append(items[1:])  # the first stays in train: every intent has a train utterance
        rng.shuffle(queues)
        candidates = [q[r] for r in range(max(map(len, queues), default=0)) for q in queues if r < len(q)]
        n_test = max(1, round(test * len(utterances)))
        held = candidates[:n_test + max(1, round(val * len(utterances)))]
        chosen_test, chosen_val = _spread(held, min(n_test, max(0, len(held) - 1)) if held else 0)
        side = {**dict.fromkeys(chosen_test, "test"), **dict.fromkeys(chosen_val, "val")}
        splits = {s: [u for i, u in enumerate(utterances) if side.get(i, "train") == s] for s in _SPLITS}
        expected = ("utterances enough to hold out val and test ones (data.val_voices / data.voices and "
                    "data.test_voices / data.voices of them, one of each intent kept for train)")
    empty = [s for s in _SPLITS if not splits[s]]
    if empty:
        counts = ", ".join(f"{len(splits[s])} {s}" for s in _SPLITS)
        raise ConfigError("data.source", expected, f"no {' or '.join(empty)} utterances in {data.source} ({counts})",
                          hint="" if how == "split column" else "add a split column (train/val/test) to the CSV")
    return splits, how


def _fingerprint(csv_path: Path, utterances: Sequence[Utterance]) -> str:
    """A digest of the CSV's bytes and each listed file's path, size and modification time."""
    h = hashlib.sha256(csv_path.read_bytes())
    for u in utterances:
        stat = u.path.stat()
        h.update(f"\n{u.path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def read_speech_folder(data: SpeechCommandsData, min_samples: int = 1) -> SpeechFolder:
    """The folder of ``data.source`` (``folder:DIR`` or ``folder:DIR/FILE.csv``) read and checked before anything
    trains: every file readable and at least ``min_samples`` long at 16 kHz, both a ``transcript`` and an
    ``intent`` column, the splits of :func:`split_folder`, and no val or test intent that the train split lacks.
    Every problem is a one-line ``ConfigError`` naming ``data.source``."""
    from kd_speech.commands.rescore import parse_data
    from kd_speech.data import SAMPLE_RATE, read_audio_folder

    if data.folder is None:
        raise ConfigError("data.source", "folder:DIR or folder:DIR/FILE.csv", data.source)
    spec = parse_data(f"folder:{data.folder}", "data.source")
    try:
        utterances = read_audio_folder(spec.detail, spec.csv)
    except ConfigError as err:
        raise _folder_error(err) from None
    directory = Path(spec.detail)
    csv_path = directory / spec.csv if spec.csv else sorted(directory.glob("*.csv"))[0]  # (it found just one)
    missing = [c for c in ("transcript", "intent") if any(not getattr(u, c) for u in utterances)]
    if missing:
        raise ConfigError("data.source", "a CSV with 'file', 'transcript' and 'intent' columns (the text teacher "
                          "reads the transcripts, the heads predict the intents)",
                          f"{csv_path} without {' and '.join(repr(c) for c in missing)}")
    for u in utterances:
        samples = u.info["frames"] * SAMPLE_RATE // u.info["sample_rate"]
        if samples < min_samples:
            raise ConfigError(f"data.source ({u.path})", f"audio of at least {min_samples} samples at 16 kHz (the "
                              "speech tokenizer's receptive field)", f"{samples} samples",
                              hint=f"line {u.info['line']} of {csv_path}")
    splits, how = split_folder(utterances, data)
    classes = tuple(sorted({str(u.intent) for u in splits["train"]}))
    for split in ("val", "test"):
        unseen = [u for u in splits[split] if u.intent not in classes]
        if unseen:
            u = unseen[0]
            raise ConfigError("data.source", f"{split} intents that the train split has (the heads predict the "
                              "train intents)", f"intent {u.intent!r} in {split} but in no train row",
                              hint=f"line {u.info['line']} of {csv_path}"
                                   + (f" and {len(unseen) - 1} more {split} rows" if len(unseen) > 1 else ""))
    return SpeechFolder(directory, csv_path, splits, classes, how, _fingerprint(csv_path, utterances))
