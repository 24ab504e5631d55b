"""kd_core.text_corpora: fortunes and WordNet glosses read from small hand-made copies of the Debian files (exact
expectations), then from the installed packages (skipped when absent, failing when ``CI=true``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kd_core import text_corpora as tc
from kd_core.errors import ConfigError, DataError

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by\n"
NOUN = (
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known or inferred to have its "
    "own distinct existence\n"
    "02084071 05 n 05 dog 0 domestic_dog 0 002 @ 02083346 n 0000 | a member of the genus Canis; "
    '"the dog barked all night"; "dogs are loyal to their owners"\n'
)
VERB = "01835496 38 v 01 travel 0 000 | change location; move, travel, or proceed; \"How fast does your new car go?\"\n"
ADJ = '00001740 00 a 01 able 0 000 | (usually followed by `to\') having the necessary means; "able to swim"\n'
ADV = "00001837 02 r 01 barely 0 000 | only a very short time before\n"


def _wordnet(root: Path, noun: str = NOUN) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for pos, body in (("noun", noun), ("verb", VERB), ("adj", ADJ), ("adv", ADV)):
        (root / f"data.{pos}").write_text(HEADER + body, encoding="latin-1")
    return root


def _fortunes(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "people").write_text("A man of few words.\n%\nHe who hesitates\nis lost, mostly.\n%\nOk\n%\n",
                                 encoding="latin-1")
    (root / "art").write_text("_\b_\b_\bBold move, said the painter.\n%\n|---+---|---+---|\n%\n", encoding="latin-1")
    (root / "ethnic").write_text("An excluded topic entirely.\n%\n", encoding="latin-1")
    (root / "people.dat").write_bytes(b"\x00\x01binary index")
    return root


def test_gloss_definition_and_examples_by_hand() -> None:
    gloss = 'practicing great self-denial; "Be systematically ascetic...do it"- William James; "a spartan diet"'
    assert tc.gloss_definition(gloss) == "practicing great self-denial"
    assert tc.gloss_examples(gloss) == ["Be systematically ascetic...do it", "a spartan diet"]
    assert tc.gloss_definition('"only an example"') == "" and tc.gloss_examples('"only an example"') == [
        "only an example"]


def test_wordnet_is_parsed_with_classes_lemmas_and_glosses(tmp_path: Path) -> None:
    folder = _wordnet(tmp_path / "wn")
    rows = tc.read_wordnet(folder)
    assert [(r.pos, r.lemma, tc.WORDNET_LEXNAMES[r.lexfile]) for r in rows] == [
        ("noun", "entity", "noun.Tops"), ("noun", "dog", "noun.animal"), ("verb", "travel", "verb.motion"),
        ("adj", "able", "adj.all"), ("adv", "barely", "adv.all")]
    assert tc.gloss_sentences("examples", directory=folder) == [
        "the dog barked all night", "dogs are loyal to their owners", "How fast does your new car go?",
        "able to swim"]
    definitions = tc.gloss_sentences("definitions", directory=folder)
    assert definitions[:2] == ["that which is perceived or known or inferred to have its own distinct existence",
                               "a member of the genus Canis"]
    assert "only a very short time before" in definitions
    assert tc.gloss_sentences("examples", min_words=5, directory=folder) == [
        "the dog barked all night", "dogs are loyal to their owners", "How fast does your new car go?"]
    assert tc.gloss_sentences("examples", max_words=5, directory=folder) == ["the dog barked all night",
                                                                             "able to swim"]
    with pytest.raises(ConfigError, match="kind"):
        tc.gloss_sentences("lemmas", directory=folder)


def test_changed_wordnet_files_are_parsed_again(tmp_path: Path) -> None:
    folder = _wordnet(tmp_path / "wn")
    assert len(tc.read_wordnet(folder)) == 5
    _wordnet(folder, NOUN + "09999999 05 n 01 cat 0 000 | a small feline; \"the cat sat\"\n")
    assert [r.lemma for r in tc.read_wordnet(folder)][:3] == ["entity", "dog", "cat"]


def test_missing_or_malformed_wordnet_names_the_package_or_the_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install wordnet-base") as info:
        tc.read_wordnet(tmp_path / "nowhere")
    assert info.value.argument == "WordNet data files"
    folder = _wordnet(tmp_path / "wn", "not a synset line\n")
    with pytest.raises(DataError, match=r"data\.noun:2"):
        tc.read_wordnet(folder)


def test_fortunes_are_cleaned_filtered_and_grouped_by_topic(tmp_path: Path) -> None:
    topics = tc.fortunes(_fortunes(tmp_path / "f"))
    assert topics == {"art": ["Bold move, said the painter."],
                      "people": ["A man of few words.", "He who hesitates is lost, mostly."]}
    assert tc.fortunes(tmp_path / "f", min_words=6) == {"art": [],
                                                        "people": ["He who hesitates is lost, mostly."]}
    with pytest.raises(DataError, match="apt-get install fortunes fortunes-min"):
        tc.fortunes(tmp_path / "empty-folder")


def test_pool_and_shuffled_sentences(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tc, "FORTUNES_DIR", _fortunes(tmp_path / "f"))
    monkeypatch.setattr(tc, "WORDNET_DIR", _wordnet(tmp_path / "wn"))
    tc._pool.cache_clear()
    try:
        pool = tc.text_pool()
        assert pool[:3] == ["Bold move, said the painter.", "A man of few words.", "He who hesitates is lost, mostly."]
        assert pool[3:6] == ["the dog barked all night", "dogs are loyal to their owners",
                             "How fast does your new car go?"]
        assert len(pool) == len(set(pool)) == 3 + 4 + 5
        assert tc.text_pool(["gloss-definitions", "fortunes"])[:3] == pool[:3]  # always pooled in SOURCES order
        shuffled = tc.real_sentences(seed=1)
        assert sorted(shuffled) == sorted(pool) and shuffled == tc.real_sentences(seed=1)
        assert shuffled != tc.real_sentences(seed=2)
        assert tc.real_sentences(4, seed=1) == shuffled[:4]
        with pytest.raises(ConfigError, match="at most the 3 available"):
            tc.real_sentences(4, sources=["fortunes"])
        for bad in ([], ["chatterbot"], "fortunes"):
            with pytest.raises(ConfigError, match="sources"):
                tc.text_pool(bad)
        with pytest.raises(ConfigError, match="limit"):
            tc.real_sentences(0)
        with pytest.raises(ConfigError, match="min_words"):
            tc.text_pool(min_words=9, max_words=3)
    finally:
        tc._pool.cache_clear()


def _need(present: bool, what: str) -> None:
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing (tools/setup.sh installs it as root)")
    pytest.skip(f"{what} is missing (tools/setup.sh installs it as root)")


def test_the_installed_debian_text() -> None:
    _need((tc.FORTUNES_DIR / "people").is_file(), "Debian package fortunes")
    _need((tc.WORDNET_DIR / "data.noun").is_file(), "Debian package wordnet-base")
    topics = tc.fortunes()
    assert {"people", "riddles", "fortunes"} <= set(topics) and not tc.EXCLUDED_TOPICS & set(topics)
    assert sum(map(len, topics.values())) > 5_000
    assert len(tc.read_wordnet()) == 117_659  # WordNet 3.0's synsets
    examples, definitions = tc.gloss_sentences("examples"), tc.gloss_sentences("definitions")
    assert len(examples) > 30_000 and len(definitions) > 90_000
    sentences = tc.real_sentences(300, seed=0, sources=["fortunes", "gloss-examples", "gloss-definitions"],
                                  max_words=20)
    assert len(set(sentences)) == 300 and all(3 <= len(s.split()) <= 20 for s in sentences)
    assert not any("\x08" in s or "\n" in s for s in sentences)
