"""Real English text that Debian packages ship, read offline: fortunes and WordNet 3.0 glosses.

Any domain that needs real sentences (unlabelled transfer text for general distillation, a language model's
training text) reads them here; nothing downloads. Each source is a Debian package's installed files, and a
missing package is a ``DataError`` that names it and the ``apt-get install`` line:

- ``fortunes`` + ``fortunes-min`` (BSD-style): ``/usr/share/games/fortunes/<topic>``, items separated by lines
  holding ``%``, latin-1. Backspace overstriking is removed and whitespace collapsed. Topics with edgy jokes or
  no prose (``EXCLUDED_TOPICS``) are skipped, and so are items shorter than ``min_words`` or longer than
  ``max_words`` words, or less than 60 % letters (ASCII art, tables).
- ``wordnet-base`` (WordNet 3.0 licence): ``/usr/share/wordnet/data.{noun,verb,adj,adv}``, one synset per line,
  ``<offset> <lex_filenum> <pos> ... | <gloss>``. A gloss is a definition, often followed by quoted example
  sentences (``"a spartan diet"``). Miller, "WordNet: a lexical database for English", CACM 38(11), 1995.

:func:`text_pool` / :func:`real_sentences` give the distinct sentences of a choice of sources
(``fortunes``, ``gloss-examples``, ``gloss-definitions``), shuffled with a seed.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kd_core.errors import ConfigError, DataError

__all__ = ["EXCLUDED_TOPICS", "FORTUNES_DIR", "FORTUNES_PACKAGES", "SOURCES", "WORDNET_DIR", "WORDNET_LEXNAMES",
           "WORDNET_PACKAGE", "WORDNET_PARTS_OF_SPEECH", "WordNetEntry", "clean_text", "fortunes",
           "gloss_definition", "gloss_examples", "gloss_sentences", "parse_wordnet_file", "read_wordnet",
           "real_sentences", "text_pool", "usable_sentence", "wordnet_files"]

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_PACKAGES = ("fortunes", "fortunes-min")
EXCLUDED_TOPICS = frozenset({"ascii-art", "drugs", "ethnic", "men-women", "translate-me"})

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_PACKAGE = "wordnet-base"
WORDNET_PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
#: The 45 lexicographer files of WordNet 3.0, indexed by the ``lex_filenum`` field of a synset line (the Debian
#: package ships no ``lexnames`` file).
WORDNET_LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)

#: The sentence sources :func:`text_pool` knows, in the order their sentences are pooled.
SOURCES = ("fortunes", "gloss-examples", "gloss-definitions")

_OVERSTRIKE = re.compile(r"[^\x08]\x08")
_SEPARATOR = re.compile(r"(?m)^%\s*$")
_QUOTED = re.compile(r'"([^"]+)"')


# -- shared cleaning -----------------------------------------------------------------------------------------

def clean_text(text: str) -> str:
    """Undo backspace overstriking (``___\\b\\b\\bword`` underlines ``word``) and collapse whitespace."""
    while True:
        stripped = _OVERSTRIKE.sub("", text)
        if stripped == text:
            break
        text = stripped
    return " ".join(text.replace("\x08", "").split())


def usable_sentence(text: str, min_words: int = 3, max_words: int = 64) -> bool:
    """Whether ``text`` has ``min_words`` to ``max_words`` words and at least 60 % letters (spaces aside)."""
    words = len(text.split())
    letters = sum(map(str.isalpha, text))
    return min_words <= words <= max_words and letters >= 0.6 * len(text.replace(" ", ""))


def _check_words(min_words: int, max_words: int) -> None:
    for name, value in (("min_words", min_words), ("max_words", max_words)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, "an integer", value)
    if not 1 <= min_words <= max_words:
        raise ConfigError("min_words, max_words", "1 <= min_words <= max_words", (min_words, max_words))


# -- fortunes -----------------------------------------------------------------------------------------------

def fortunes(directory: str | Path | None = None, min_words: int = 3, max_words: int = 64) -> dict[str, list[str]]:
    """Topic -> its usable fortunes (cleaned), for every topic file not in ``EXCLUDED_TOPICS``.

    ``directory``: the fortunes folder (default ``FORTUNES_DIR``); with no topic file there, a ``DataError``
    naming the Debian packages.
    """
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
        items = (clean_text(item) for item in _SEPARATOR.split(path.read_text(encoding="latin-1")))
        topics[path.name] = [item for item in items if usable_sentence(item, min_words, max_words)]
    return topics


# -- WordNet glosses ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WordNetEntry:
    """One parsed synset line: its full gloss, lexicographer class index, part of speech and first lemma."""

    gloss: str
    lexfile: int
    pos: str
    lemma: str


def wordnet_files(directory: str | Path | None = None) -> list[Path]:
    """The four ``data.*`` files; a ``DataError`` naming the Debian package when one is missing."""
    folder = Path(directory) if directory is not None else WORDNET_DIR
    files = [folder / f"data.{pos}" for pos in WORDNET_PARTS_OF_SPEECH]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError("WordNet data files", f"the files of the Debian package {WORDNET_PACKAGE}", "missing",
                        hint=f"missing {missing}; install it with `apt-get install {WORDNET_PACKAGE}` "
                             "(tools/setup.sh does, as root)")
    return files


def gloss_definition(gloss: str) -> str:
    """The gloss without its quoted example sentences (everything before the first ``; "``)."""
    text = gloss.split('; "')[0] if not gloss.startswith('"') else ""
    return text.strip().rstrip(";").strip()


def gloss_examples(gloss: str) -> list[str]:
    """The quoted example sentences of a gloss (those after its definition)."""
    head = gloss_definition(gloss)
    return [m.strip() for m in _QUOTED.findall(gloss[len(head):]) if m.strip()]


def parse_wordnet_file(path: str | Path, pos: str) -> list[WordNetEntry]:
    """Every synset line of one ``data.<pos>`` file (the licence header skipped), in file order.

    A line that is not a synset line (no ``lex_filenum``, no gloss after `` | ``) is a ``DataError`` naming
    the file and line.
    """
    path = Path(path)
    rows = []
    with open(path, encoding="latin-1") as handle:
        for number, line in enumerate(handle, 1):
            if line.startswith("  "):  # the licence header
                continue
            head, sep, gloss = line.partition(" | ")
            fields = head.split()
            try:
                lexfile = int(fields[1])
                lemma = fields[4]
            except (IndexError, ValueError):
                raise DataError(f"{path}:{number}", "a WordNet synset line", line[:80]) from None
            if not sep or not 0 <= lexfile < len(WORDNET_LEXNAMES):
                raise DataError(f"{path}:{number}",
                                f"a gloss after ' | ' and a lex_filenum in 0..{len(WORDNET_LEXNAMES) - 1}", line[:80])
            rows.append(WordNetEntry(gloss.strip(), lexfile, pos, lemma.replace("_", " ")))
    return rows


@functools.lru_cache(maxsize=2)
def _wordnet(files: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> tuple[WordNetEntry, ...]:
    """The parsed files (kept for the process while their size and modification time stay the same)."""
    return tuple(row for pos, path in zip(WORDNET_PARTS_OF_SPEECH, files, strict=True)
                 for row in parse_wordnet_file(path, pos))


def read_wordnet(directory: str | Path | None = None) -> list[WordNetEntry]:
    """Every synset of the four data files, in file order (parsed once per process; about half a second)."""
    files = wordnet_files(directory)
    stamps = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return list(_wordnet(tuple(str(f) for f in files), stamps))


def gloss_sentences(kind: str = "examples", min_words: int = 3, max_words: int = 64,
                    directory: str | Path | None = None) -> list[str]:
    """The distinct usable gloss ``"examples"`` (quoted example sentences) or ``"definitions"``, in WordNet
    order."""
    _check_words(min_words, max_words)
    if kind == "examples":
        found = (e for s in read_wordnet(directory) if '"' in s.gloss for e in gloss_examples(s.gloss))
    elif kind == "definitions":
        found = (gloss_definition(s.gloss) for s in read_wordnet(directory))
    else:
        raise ConfigError("kind", "'examples' or 'definitions'", kind)
    return list(dict.fromkeys(t for t in found if t and usable_sentence(t, min_words, max_words)))


# -- pools of sentences --------------------------------------------------------------------------------------

def _check_sources(sources: Sequence[str]) -> tuple[str, ...]:
    if isinstance(sources, str) or not sources or any(s not in SOURCES for s in sources):
        raise ConfigError("sources", f"a non-empty subset of {list(SOURCES)}",
                          sources if isinstance(sources, str) else list(sources))
    return tuple(s for s in SOURCES if s in sources)


@functools.lru_cache(maxsize=8)
def _pool(sources: tuple[str, ...], min_words: int, max_words: int) -> tuple[str, ...]:
    pool: list[str] = []
    if "fortunes" in sources:
        pool += [t for items in fortunes(min_words=min_words, max_words=max_words).values() for t in items]
    if "gloss-examples" in sources:
        pool += gloss_sentences("examples", min_words, max_words)
    if "gloss-definitions" in sources:
        pool += gloss_sentences("definitions", min_words, max_words)
    return tuple(dict.fromkeys(pool))


def text_pool(sources: Sequence[str] = SOURCES, min_words: int = 3, max_words: int = 64) -> list[str]:
    """The distinct sentences of ``sources``, pooled in ``SOURCES`` order (fortunes by topic file, then gloss
    examples, then gloss definitions; the first occurrence of a repeated sentence kept). Kept for the process:
    the files are read-only."""
    _check_words(min_words, max_words)
    return list(_pool(_check_sources(sources), min_words, max_words))


def real_sentences(limit: int | None = None, seed: int = 0, sources: Sequence[str] = SOURCES, min_words: int = 3,
                   max_words: int = 64) -> list[str]:
    """:func:`text_pool` shuffled with ``seed`` (``random.Random``); the first ``limit`` of them (all: None).

    A ``limit`` above the pool's size is a ``ConfigError`` naming ``limit`` and saying how many there are.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("limit", "an integer >= 1 or None", limit)
    pool = text_pool(sources, min_words, max_words)
    if limit is not None and limit > len(pool):
        raise ConfigError("limit", f"at most the {len(pool)} available sentences of {list(sources)}", limit)
    random.Random(seed).shuffle(pool)
    return pool if limit is None else pool[:limit]
