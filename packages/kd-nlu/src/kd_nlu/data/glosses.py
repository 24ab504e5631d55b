"""WordNet 3.0 glosses → lexicographer class: a real single-sentence classification task, offline.

Source: the Debian package ``wordnet-base`` (``/usr/share/wordnet/data.{noun,verb,adj,adv}``, latin-1;
WordNet 3.0 licence). Each of the 117,659 synsets has a gloss (a definition, often followed by quoted
example sentences) and a lexicographer file, one of 45 classes (``noun.artifact``, ``verb.motion``...).
The package ships no ``lexnames`` file, so the standard 45 names are hard-coded in ``LEXNAMES``. The files are
read by kd-core's shared reader, ``kd_core.text_corpora`` (which the speech LM's training text uses too).

The parsed table (every synset: gloss, class, part of speech) is cached under
``$KD_DATA_HOME/glosses/`` with a manifest holding the source files' SHA-256 (``kd_core.datacache``);
``load_gloss_task`` then applies the options (drop examples, dedupe, the k largest classes, a per-class
cap) and ``gloss_splits`` cuts deterministic, disjoint, stratified train/val/test splits.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kd_core import datacache
from kd_core.errors import ConfigError
from kd_core.text_corpora import WORDNET_DIR, WORDNET_LEXNAMES, parse_wordnet_file, wordnet_files
from kd_core.text_corpora import WORDNET_PACKAGE as DEBIAN_PACKAGE
from kd_core.text_corpora import WORDNET_PARTS_OF_SPEECH as PARTS_OF_SPEECH
from kd_core.text_corpora import WordNetEntry as Synset
from kd_core.text_corpora import gloss_definition as definition
from kd_core.text_corpora import gloss_examples as examples

__all__ = ["DEBIAN_PACKAGE", "FORMAT", "LEXNAMES", "PARTS_OF_SPEECH", "WORDNET_DIR", "GlossTask", "Synset",
           "definition", "examples", "gloss_splits", "load_gloss_task", "load_synsets", "parse_wordnet",
           "source_files"]

FORMAT = 1

#: The 45 lexicographer files of WordNet 3.0, indexed by the ``lex_filenum`` field of a synset line.
LEXNAMES: tuple[str, ...] = WORDNET_LEXNAMES

_MEMO: dict[tuple[str, str], tuple[Synset, ...]] = {}  # the last table loaded in this process


@dataclass
class GlossTask:
    """Gloss texts with integer labels ``0..len(label_names)-1``; ``label_names[i]`` is a lexicographer file."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> dict[str, int]:
        """Samples per class name."""
        counts = Counter(self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.label_names)}


def source_files(wordnet_dir: Path | None = None) -> list[Path]:
    """The four ``data.*`` files; ``DataError`` naming the Debian package when one is missing."""
    return wordnet_files(wordnet_dir)


def parse_wordnet(wordnet_dir: Path | None = None) -> list[Synset]:
    """Every synset of the four data files, in file order (no cache)."""
    return [row for pos, path in zip(PARTS_OF_SPEECH, source_files(wordnet_dir), strict=True)
            for row in parse_wordnet_file(path, pos)]


def load_synsets(wordnet_dir: Path | None = None, cache_dir: Path | None = None) -> list[Synset]:
    """Every synset, from the verified cache under ``$KD_DATA_HOME/glosses`` or parsed (and cached) anew.

    The last table loaded is also kept in memory, keyed by the cache folder, the sources' SHA-256 and
    the cache files' modification times (a changed cache file is verified again).
    """
    files = source_files(wordnet_dir)
    key = {"format": FORMAT, "sources": {f.name: datacache.file_sha256(f) for f in files}}
    directory = Path(cache_dir) if cache_dir is not None else datacache.data_home() / "glosses"
    stamps = [(p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else None
              for p in (directory / datacache.MANIFEST, directory / "synsets.json")]
    memo_key = (str(directory), json.dumps([key, stamps], sort_keys=True))
    if memo_key in _MEMO:
        return list(_MEMO[memo_key])
    cached = datacache.load(directory, key)
    if cached is not None:
        rows = [Synset(*row) for row in json.loads(cached["synsets.json"])]
    else:
        rows = parse_wordnet(wordnet_dir)
        payload = json.dumps([[r.gloss, r.lexfile, r.pos, r.lemma] for r in rows], ensure_ascii=False).encode()
        datacache.store(directory, key, {"synsets.json": payload})
    _MEMO.clear()  # one table in memory at a time, valid while the cache files are untouched
    stamps = [(p.stat().st_mtime_ns, p.stat().st_size) for p in (directory / datacache.MANIFEST,
                                                                   directory / "synsets.json")]
    _MEMO[(str(directory), json.dumps([key, stamps], sort_keys=True))] = tuple(rows)
    return rows


def load_gloss_task(top_k: int | None = None, per_class_cap: int | None = None, drop_examples: bool = True,
                    dedupe: bool = True, seed: int = 0, classes: Sequence[str] | None = None,
                    wordnet_dir: Path | None = None, cache_dir: Path | None = None) -> GlossTask:
    """Gloss → lexicographer-class classification.

    ``drop_examples`` keeps only each gloss's definition; ``dedupe`` keeps the first of identical texts
    (so no text appears in two splits); ``classes`` (names) or ``top_k`` (the k largest classes, counted
    after dedupe, ties by name) selects classes, which keep WordNet's order; ``per_class_cap`` keeps at
    most that many samples per class, chosen by a ``seed``-ed shuffle.
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 2 <= top_k <= 45):
        raise ConfigError("top_k", "an integer in 2..45 or None", top_k)
    if per_class_cap is not None and (isinstance(per_class_cap, bool) or not isinstance(per_class_cap, int)
                                      or per_class_cap < 1):
        raise ConfigError("per_class_cap", "an integer >= 1 or None", per_class_cap)
    if classes is not None:
        unknown = [c for c in classes if c not in LEXNAMES]
        if unknown or len(set(classes)) < 2:
            raise ConfigError("classes", "at least two distinct lexicographer names from LEXNAMES", list(classes))
        if top_k is not None:
            raise ConfigError("top_k", "None when classes are given", top_k)
    rows: list[tuple[str, int]] = []
    seen: set[str] = set()
    for synset in load_synsets(wordnet_dir, cache_dir):
        text = definition(synset.gloss) if drop_examples else synset.gloss
        if not text or (dedupe and text in seen):
            continue
        seen.add(text)
        rows.append((text, synset.lexfile))
    counts = Counter(lexfile for _, lexfile in rows)
    if classes is not None:
        chosen = {LEXNAMES.index(c) for c in classes}
    elif top_k is not None:
        chosen = {i for i, _ in sorted(counts.items(), key=lambda item: (-item[1], LEXNAMES[item[0]]))[:top_k]}
    else:
        chosen = set(counts)
    kept = sorted(chosen)
    relabel = {lexfile: i for i, lexfile in enumerate(kept)}
    by_class: dict[int, list[str]] = {i: [] for i in kept}
    for text, lexfile in rows:
        if lexfile in relabel:
            by_class[lexfile].append(text)
    if per_class_cap is not None:
        rng = random.Random(seed)
        for lexfile, texts in by_class.items():
            if len(texts) > per_class_cap:
                picked = sorted(rng.sample(range(len(texts)), per_class_cap))
                by_class[lexfile] = [texts[i] for i in picked]
    texts, labels = [], []
    for lexfile in kept:  # grouped by class; gloss_splits interleaves them
        texts += by_class[lexfile]
        labels += [relabel[lexfile]] * len(by_class[lexfile])
    return GlossTask(texts, labels, [LEXNAMES[i] for i in kept])


def _check_size(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", value)
    return value


def gloss_splits(task: GlossTask, train_size: int, val_size: int, test_size: int,
                 seed: int = 0) -> dict[str, tuple[list[str], list[int]]]:
    """Disjoint, stratified, deterministic ``train``/``val``/``test`` splits of ``task``.

    Each class is shuffled with ``seed``; its i-th sample of n gets the position (i + 0.5) / n, and all
    samples are ordered by position (ties by a seeded random number). Every class is thus spread evenly
    along that order, and consecutive slices of it (train, then val, then test) hold each class in
    proportion to its size, to within about one sample.
    """
    sizes = {"train_size": _check_size("train_size", train_size, 1),
             "val_size": _check_size("val_size", val_size, 0),
             "test_size": _check_size("test_size", test_size, 0)}
    total = sum(sizes.values())
    if total > len(task):
        raise ConfigError("train_size + val_size + test_size", f"at most the task's {len(task)} samples", total)
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(task.labels):
        by_class.setdefault(label, []).append(index)
    keyed = []
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        keyed += [((rank + 0.5) / len(members), rng.random(), index) for rank, index in enumerate(members)]
    order = [index for *_, index in sorted(keyed)]
    bounds = {"train": (0, train_size), "val": (train_size, train_size + val_size),
              "test": (train_size + val_size, total)}
    return {name: ([task.texts[i] for i in order[a:b]], [task.labels[i] for i in order[a:b]])
            for name, (a, b) in bounds.items()}
