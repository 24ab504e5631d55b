"""A user's own speech data: a folder of audio files and a CSV naming them, validated before any training.

The CSV has a header with ``file`` (a path relative to the folder) and ``transcript`` and/or ``intent``;
optional ``speaker`` and ``split`` (``train``/``val``/``test``) columns are kept. Files may be any format
soundfile reads, at any sample rate (resampled to 16 kHz when read; with ``resample=False`` another rate is
an error). Every problem is a one-line ``ConfigError`` naming the input, found up front: a missing CSV or
column, files that do not exist, an empty transcript or intent, an unreadable or zero-length audio file.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from kd_core.errors import ConfigError

from kd_speech.data.audio import SAMPLE_RATE, Utterance, audio_info

__all__ = ["LABEL_COLUMNS", "read_audio_folder"]

LABEL_COLUMNS: tuple[str, ...] = ("transcript", "intent")
_SPLITS = ("train", "val", "test")


def _find_csv(directory: Path, csv_path: str | os.PathLike | None) -> Path:
    if csv_path is not None:
        path = Path(csv_path)
        path = path if path.is_absolute() else directory / path
        if not path.is_file():
            raise ConfigError("csv", "an existing CSV file of file,transcript/intent rows", str(path))
        return path
    found = sorted(directory.glob("*.csv"))
    if len(found) != 1:
        raise ConfigError(f"{directory} csv", "exactly one .csv file in the folder (or name it with csv=...)",
                          [p.name for p in found])
    return found[0]


def read_audio_folder(directory: str | os.PathLike, csv_path: str | os.PathLike | None = None, *,
                      resample: bool = True, target: int = SAMPLE_RATE) -> list[Utterance]:
    """The rows of the folder's CSV as ``Utterance`` records, every file and label checked first.

    ``csv_path``: the CSV (relative to the folder, or absolute); default: the folder's only ``.csv`` file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError("audio folder", "an existing folder of audio files with a CSV", str(directory))
    path = _find_csv(directory, csv_path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(str(path), "a readable UTF-8 CSV file", f"{type(error).__name__}: {error}") from None
    labels = [c for c in LABEL_COLUMNS if c in columns]
    if "file" not in columns or not labels:
        raise ConfigError(f"{path} header", "a 'file' column and a 'transcript' and/or 'intent' column", columns)
    if not rows:
        raise ConfigError(str(path), "at least one row under the header", "no rows")
    missing = [(n, row["file"]) for n, row in enumerate(rows, 2)
               if not row["file"] or not (directory / row["file"]).is_file()]
    if missing:
        shown = ", ".join(f"line {n}: {name or '(empty)'}" for n, name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ConfigError(f"{path} file", f"audio files that exist under {directory}",
                          f"{len(missing)} missing ({shown}{more})")
    utterances = []
    for number, row in enumerate(rows, 2):
        for column in labels:
            if not row[column]:
                raise ConfigError(f"{path} line {number} {column}", f"a non-empty {column}", row[column],
                                  hint=f"for {row['file']}")
        split = row.get("split", "")
        if split and split not in _SPLITS:
            raise ConfigError(f"{path} line {number} split", f"empty or one of {_SPLITS}", split)
        frames, rate = audio_info(directory / row["file"], target=target, resample=resample)
        utterances.append(Utterance(directory / row["file"], row.get("transcript", ""), row.get("intent") or None,
                                    row.get("speaker", ""), split,
                                    info={"line": number, "frames": frames, "sample_rate": rate}))
    return utterances
