"""Unlabelled transfer text (for general distillation and augmentation): fortunes and WordNet examples.

The sentences come from kd-core's shared reader of Debian text, ``kd_core.text_corpora`` (fortunes +
fortunes-min, and the quoted example sentences of the ``wordnet-base`` glosses); this module keeps kd-nlu's names
for them (``fortunes``, ``gloss_examples``, ``unlabelled_texts`` with sources ``fortunes`` and ``glosses``) and
adds ``read_text_file`` for a user's own text.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from kd_core.errors import ConfigError
from kd_core.text_corpora import (
    EXCLUDED_TOPICS,
    FORTUNES_DIR,
    FORTUNES_PACKAGES,
    fortunes,
    gloss_sentences,
    real_sentences,
)

__all__ = ["EXCLUDED_TOPICS", "FORTUNES_DIR", "FORTUNES_PACKAGES", "SOURCES", "fortunes", "gloss_examples",
           "read_text_file", "unlabelled_texts"]

SOURCES = ("fortunes", "glosses")
#: kd-nlu's source names -> kd-core's (``glosses``: the gloss examples, not the definitions)
_CORE_SOURCES = {"fortunes": "fortunes", "glosses": "gloss-examples"}


def gloss_examples(min_words: int = 3, max_words: int = 64) -> list[str]:
    """The distinct quoted example sentences of the WordNet glosses, in WordNet order."""
    return gloss_sentences("examples", min_words, max_words)


def unlabelled_texts(limit: int | None = None, seed: int = 0, sources: Sequence[str] = SOURCES,
                     min_words: int = 3, max_words: int = 64) -> list[str]:
    """Distinct transfer sentences from ``sources``, shuffled with ``seed``; the first ``limit`` of them."""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources or isinstance(sources, str):
        raise ConfigError("sources", f"a non-empty subset of {list(SOURCES)}", list(sources))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("limit", "an integer >= 1 or None", limit)
    if not 1 <= min_words <= max_words:
        raise ConfigError("min_words, max_words", "1 <= min_words <= max_words", (min_words, max_words))
    return real_sentences(limit, seed, [_CORE_SOURCES[s] for s in sources], min_words, max_words)


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
