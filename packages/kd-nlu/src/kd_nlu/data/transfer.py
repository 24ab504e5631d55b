"""Unlabelled transfer text (for general distillation and augmentation): fortunes and WordNet examples.

Sources, both Debian packages read from their installed files (nothing downloads):

- ``fortunes`` + ``fortunes-min`` (BSD-style): ``/usr/share/games/fortunes/<topic>``, items separated by
  lines holding ``%``, latin-1. Backspace overstriking is removed and whitespace collapsed. Topics with
  edgy jokes or no prose (``EXCLUDED_TOPICS``) are skipped, and so are items shorter than ``min_words`` or
  longer than ``max_words`` words, or less than 60% letters (ASCII art, tables).
- ``wordnet-base``: the quoted example sentences of the glosses (``kd_nlu.data.glosses.examples``).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from pathlib import Path

from kd_core.errors import ConfigError, DataError

from kd_nlu.data.glosses import examples, load_synsets

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_PACKAGES = ("fortunes", "fortunes-min")
EXCLUDED_TOPICS = frozenset({"ascii-art", "drugs", "ethnic", "men-women", "translate-me"})
SOURCES = ("fortunes", "glosses")

_OVERSTRIKE = re.compile(r"[^\x08]\x08")
_SEPARATOR = re.compile(r"(?m)^%\s*$")


def _clean(text: str) -> str:
    """Undo backspace overstriking (``___\\b\\b\\bword`` underlines ``word``), collapse whitespace."""
    while True:
        stripped = _OVERSTRIKE.sub("", text)
        if stripped == text:
            break
        text = stripped
    return " ".join(text.replace("\x08", "").split())


def _usable(text: str, min_words: int, max_words: int) -> bool:
    words = len(text.split())
    letters = sum(ch.isalpha() for ch in text)
    return min_words <= words <= max_words and letters >= 0.6 * len(text.replace(" ", ""))


def fortunes(directory: Path | None = None, min_words: int = 3, max_words: int = 64) -> dict[str, list[str]]:
    """Topic -> its usable fortunes (cleaned), for every topic file not in ``EXCLUDED_TOPICS``."""
    folder = Path(directory) if directory is not None else FORTUNES_DIR
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.is_symlink() and not p.suffix)
    if not files:
        raise DataError("fortune files", f"topic files under {folder} (Debian packages {FORTUNES_PACKAGES})",
                        "missing", hint=f"install them with `apt-get install {' '.join(FORTUNES_PACKAGES)}` "
                                        "(tools/setup.sh does, as root)")
    topics = {}
    for path in files:
        if path.name in EXCLUDED_TOPICS:
            continue
        items = (_clean(item) for item in _SEPARATOR.split(path.read_text(encoding="latin-1")))
        topics[path.name] = [item for item in items if _usable(item, min_words, max_words)]
    return topics


def gloss_examples(min_words: int = 3, max_words: int = 64) -> list[str]:
    """The distinct quoted example sentences of the WordNet glosses, in WordNet order."""
    found = dict.fromkeys(e for s in load_synsets() if '"' in s.gloss for e in examples(s.gloss)
                          if _usable(e, min_words, max_words))
    return list(found)


@functools.lru_cache(maxsize=4)
def _pool(sources: tuple[str, ...], min_words: int, max_words: int) -> tuple[str, ...]:
    """Distinct sentences of ``sources`` in source order (kept for the process: the files are read-only)."""
    pool: list[str] = []
    if "fortunes" in sources:
        pool += [t for items in fortunes(min_words=min_words, max_words=max_words).values() for t in items]
    if "glosses" in sources:
        pool += gloss_examples(min_words, max_words)
    return tuple(dict.fromkeys(pool))


def unlabelled_texts(limit: int | None = None, seed: int = 0, sources: Sequence[str] = SOURCES,
                     min_words: int = 3, max_words: int = 64) -> list[str]:
    """Distinct transfer sentences from ``sources``, shuffled with ``seed``; the first ``limit`` of them."""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise ConfigError("sources", f"a non-empty subset of {list(SOURCES)}", list(sources))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("limit", "an integer >= 1 or None", limit)
    if not 1 <= min_words <= max_words:
        raise ConfigError("min_words, max_words", "1 <= min_words <= max_words", (min_words, max_words))
    pool = list(_pool(tuple(sorted(set(sources))), min_words, max_words))
    if limit is not None and limit > len(pool):
        raise ConfigError("limit", f"at most the {len(pool)} available sentences of {list(sources)}", limit)
    random.Random(seed).shuffle(pool)
    return pool if limit is None else pool[:limit]


def read_text_file(path: str | Path, argument: str = "text_file", limit: int | None = None, seed: int = 0
                   ) -> list[str]:
    """Distinct non-blank lines of a UTF-8 text file (one sentence per line), shuffled with ``seed``.

    A missing, unreadable or empty file (no non-blank line) is a ``ConfigError`` naming ``argument``.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(argument, "an existing text file, one sentence per line", str(file))
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(argument, "a readable UTF-8 text file", f"{file} ({error})") from error
    texts = list(dict.fromkeys(" ".join(line.split()) for line in lines if line.strip()))
    if not texts:
        raise ConfigError(argument, "a text file with at least one non-blank line", f"{file} (empty)")
    random.Random(seed).shuffle(texts)
    return texts if limit is None else texts[:limit]
