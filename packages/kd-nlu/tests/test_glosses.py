"""WordNet gloss task and transfer text from the real Debian files (wordnet-base, fortunes).

Tests that need a Debian file fail when ``CI=true`` and the file is missing, and skip otherwise.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kd_core.errors import ConfigError, DataError
from kd_nlu.data import glosses, transfer
from kd_nlu.data.glosses import (
    LEXNAMES,
    GlossTask,
    definition,
    examples,
    gloss_splits,
    load_gloss_task,
    load_synsets,
    parse_wordnet,
)


def need(present: bool, what: str) -> None:
    """Fail in CI, skip elsewhere, when a Debian file is missing."""
    if present:
        return
    message = f"{what} is missing (tools/setup.sh installs it as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def need_wordnet() -> None:
    need(all((glosses.WORDNET_DIR / f"data.{p}").is_file() for p in glosses.PARTS_OF_SPEECH),
         "Debian package wordnet-base")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private ``KD_DATA_HOME`` for the whole module (the parsed table is cached there once)."""
    path = tmp_path_factory.mktemp("kd-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KD_DATA_HOME", str(path))
        yield path


def test_the_45_lexicographer_names() -> None:
    assert len(LEXNAMES) == len(set(LEXNAMES)) == 45
    assert LEXNAMES[0] == "adj.all" and LEXNAMES[6] == "noun.artifact" and LEXNAMES[44] == "adj.ppl"


def test_definition_and_examples_by_hand() -> None:
    gloss = ('practicing great self-denial; "Be systematically ascetic...do it"- William James; '
             '"a spartan diet"')
    assert definition(gloss) == "practicing great self-denial"
    assert examples(gloss) == ["Be systematically ascetic...do it", "a spartan diet"]
    inline = 'promise of reward as in "carrot and stick"; "used the carrot of housing"'
    assert definition(inline) == 'promise of reward as in "carrot and stick"'
    assert examples(inline) == ["used the carrot of housing"]
    assert definition("an entity that has physical existence") == "an entity that has physical existence"
    assert examples("an entity that has physical existence") == []


def test_real_class_counts_match_the_spec(home: Path) -> None:
    need_wordnet()
    rows = load_synsets()
    assert len(rows) == 117_659
    counts = Counter(LEXNAMES[r.lexfile] for r in rows)
    assert len(counts) == 45
    assert counts.most_common(5) == [("adj.all", 14_435), ("noun.artifact", 11_587), ("noun.person", 11_087),
                                     ("noun.plant", 8_030), ("noun.animal", 7_509)]
    assert counts["verb.weather"] == 81
    assert min(counts.items(), key=lambda item: item[1]) == ("noun.motive", 42)
    assert sum('"' in r.gloss for r in rows) == 32_930  # glosses carrying quoted example sentences
    first = rows[0]
    assert (first.lemma, first.pos, LEXNAMES[first.lexfile]) == ("entity", "noun", "noun.Tops")


def test_parsed_table_is_cached_with_a_verified_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_wordnet()
    cache = tmp_path / "glosses"
    rows = load_synsets(cache_dir=cache)
    assert (cache / "manifest.json").is_file() and (cache / "synsets.json").is_file()
    calls = []
    real_parse = glosses.parse_wordnet
    monkeypatch.setattr(glosses, "parse_wordnet", lambda *a: calls.append(1) or real_parse(*a))
    assert load_synsets(cache_dir=cache) == rows and calls == []  # served from the cache
    data = bytearray((cache / "synsets.json").read_bytes())
    data[10] ^= 1
    (cache / "synsets.json").write_bytes(bytes(data))
    assert load_synsets(cache_dir=cache) == rows and calls == [1]  # checksum failed: parsed again


def test_missing_files_name_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="wordnet-base"):
        parse_wordnet(tmp_path)


def test_task_options(home: Path) -> None:
    need_wordnet()
    full = load_gloss_task(drop_examples=False, dedupe=False)
    assert len(full) == 117_659 and full.label_names == list(LEXNAMES)
    task = load_gloss_task(top_k=5, per_class_cap=100, seed=3)
    assert task.label_names == ["adj.all", "noun.animal", "noun.artifact", "noun.person", "noun.plant"]
    assert task.class_counts() == dict.fromkeys(task.label_names, 100)
    assert not any('; "' in t for t in task.texts)  # examples dropped
    assert len(set(task.texts)) == len(task)  # deduplicated
    assert load_gloss_task(top_k=5, per_class_cap=100, seed=3).texts == task.texts
    assert load_gloss_task(top_k=5, per_class_cap=100, seed=4).texts != task.texts
    chosen = load_gloss_task(classes=["verb.weather", "noun.motive"])
    assert chosen.label_names == ["noun.motive", "verb.weather"]  # WordNet's order
    for bad in ({"top_k": 1}, {"top_k": 46}, {"per_class_cap": 0}, {"classes": ["noun.nothing", "adj.all"]}):
        with pytest.raises(ConfigError):
            load_gloss_task(**bad)


def _task() -> GlossTask:
    sizes = {0: 50, 1: 30, 2: 20}  # 100 samples, classes of 50/30/20
    labels = [c for c, n in sizes.items() for _ in range(n)]
    return GlossTask([f"text {i}" for i in range(len(labels))], labels, ["a", "b", "c"])


def test_splits_are_disjoint_stratified_and_deterministic() -> None:
    task = _task()
    splits = gloss_splits(task, train_size=50, val_size=20, test_size=30, seed=0)
    assert {k: len(v[0]) for k, v in splits.items()} == {"train": 50, "val": 20, "test": 30}
    texts = [set(splits[k][0]) for k in ("train", "val", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert len(texts[0] | texts[1] | texts[2]) == 100
    for name, (split_texts, labels) in splits.items():
        assert all(task.labels[int(t.split()[1])] == y for t, y in zip(split_texts, labels))  # pairs kept
        counts = Counter(labels)
        for c, n in {0: 50, 1: 30, 2: 20}.items():
            assert abs(counts[c] - len(labels) * n / 100) <= 1, (name, c, counts)
    assert gloss_splits(task, 50, 20, 30, seed=0) == splits
    assert gloss_splits(task, 50, 20, 30, seed=1)["train"][0] != splits["train"][0]


def test_real_splits_are_stratified(home: Path) -> None:
    need_wordnet()
    task = load_gloss_task(top_k=16, per_class_cap=250)
    splits = gloss_splits(task, 3000, 400, 600, seed=0)
    for name, (_, labels) in splits.items():
        counts = Counter(labels)
        assert set(counts) == set(range(16))
        assert max(counts.values()) - min(counts.values()) <= 2, (name, counts)


def test_split_sizes_are_checked() -> None:
    with pytest.raises(ConfigError, match="at most the task's 100 samples"):
        gloss_splits(_task(), 90, 10, 1)
    with pytest.raises(ConfigError, match="train_size"):
        gloss_splits(_task(), 0, 10, 10)


def test_transfer_text_from_fortunes_and_gloss_examples(home: Path) -> None:
    need(transfer.FORTUNES_DIR.joinpath("people").is_file(), "Debian package fortunes")
    need_wordnet()
    topics = transfer.fortunes()
    assert "people" in topics and "riddles" in topics and "fortunes" in topics  # fortunes + fortunes-min
    assert not transfer.EXCLUDED_TOPICS & set(topics)
    assert all("\x08" not in t and "\n" not in t for items in topics.values() for t in items)
    texts = transfer.unlabelled_texts(200, seed=0)
    assert len(texts) == len(set(texts)) == 200
    assert texts == transfer.unlabelled_texts(200, seed=0) and texts != transfer.unlabelled_texts(200, seed=1)
    assert all(3 <= len(t.split()) <= 64 for t in texts)
    only_fortunes = set(transfer.unlabelled_texts(sources=["fortunes"]))
    assert only_fortunes == {t for items in topics.values() for t in items}
    with pytest.raises(ConfigError, match="limit"):
        transfer.unlabelled_texts(10**7)
    with pytest.raises(ConfigError, match="sources"):
        transfer.unlabelled_texts(5, sources=["chatterbot"])


def test_missing_fortunes_name_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fortunes"):
        transfer.fortunes(tmp_path)
