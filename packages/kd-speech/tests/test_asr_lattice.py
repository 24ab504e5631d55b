"""HTK SLF parsing on a small hand-written lattice: best path, n-best paths, alignment, link LM, rescoring."""

from __future__ import annotations

import math

import pytest
from kd_core.errors import ConfigError
from kd_speech.asr.lattice import parse_htk_slf, read_htk_slf
from kd_speech.asr.rescore import RescoreWeights, lattice_nbest, rescore_lattice

# Paths (acoustic, lm):  A "the cat sat" (-50, -6) · A' same words via node 6 (-51, -6)
#                        B "the cap sat" (-48, -10) · C "sat" (-65, -9)
SLF = """\
# a hand-written lattice
VERSION=1.0
lmscale=1.0 wdpenalty=0.0
start=0 end=5
N=7 L=9
I=0 t=0.00 W=!NULL
I=1 t=0.10 W=the
I=2 t=0.30 W=cat
I=3 t=0.30 W=cap
I=4 t=0.60 W=sat
I=5 t=0.90 W=!NULL
I=6 t=0.32 W=cat
J=0 S=0 E=1 a=-10 l=-1
J=1 S=1 E=2 a=-20 l=-3
J=2 S=1 E=3 a=-18 l=-6
J=3 S=2 E=4 a=-15 l=-1
J=4 S=3 E=4 a=-15 l=-2
J=5 S=4 E=5 a=-5 l=-1
J=6 S=0 E=4 a=-60 l=-8
J=7 S=1 E=6 a=-21 l=-3
J=8 S=6 E=4 a=-15 l=-1
"""


def test_parse_reads_nodes_links_and_header() -> None:
    lattice = parse_htk_slf(SLF)
    assert (len(lattice.nodes), len(lattice.links), lattice.start, lattice.end) == (7, 9, 0, 5)
    assert lattice.nodes[2].word == "cat" and lattice.nodes[2].time == pytest.approx(0.3)
    assert (lattice.links[2].acoustic, lattice.links[2].lm) == (-18.0, -6.0)
    without_header = parse_htk_slf(SLF.replace("start=0 end=5\n", ""))  # start/end found from the graph
    assert (without_header.start, without_header.end) == (0, 5)


def test_best_path_under_each_weighting() -> None:
    lattice = parse_htk_slf(SLF)
    best = lattice.best_path()  # header: lmscale 1, no penalty -> A: -50 + -6
    assert best.words == ("the", "cat", "sat")
    assert (best.acoustic, best.lm, best.score) == (-50.0, -6.0, -56.0)
    assert best.links == (0, 1, 3, 5)
    assert lattice.best_path(lm_weight=0.0).text == "the cap sat"  # acoustic only: B (-48)
    # a word penalty of -10 per word: A -86, B -88, C -74 - 10 = -84 -> the one-word path wins
    assert lattice.best_path(word_penalty=-10.0).words == ("sat",)


def test_nbest_paths_in_score_order_distinct_or_not() -> None:
    lattice = parse_htk_slf(SLF)
    unique = lattice.nbest_paths(5)
    assert [p.text for p in unique] == ["the cat sat", "the cap sat", "sat"]
    assert [p.score for p in unique] == [-56.0, -58.0, -74.0]
    every = lattice.nbest_paths(5, unique=False)
    assert [p.score for p in every] == [-56.0, -57.0, -58.0, -74.0]
    assert every[1].links == (0, 7, 8, 5)
    assert [p.text for p in lattice.nbest_paths(2)] == ["the cat sat", "the cap sat"]


def test_align_finds_the_best_path_with_given_words() -> None:
    lattice = parse_htk_slf(SLF)
    path = lattice.align(["the", "cap", "sat"])
    assert path is not None and path.acoustic == -48.0 and path.lm == -10.0
    assert lattice.align(["the", "cat", "sat"]).acoustic == -50.0  # A beats A'
    assert lattice.align(["the", "dog", "sat"]) is None


def test_link_lm_from_a_bigram_function() -> None:
    calls: list[tuple[str | None, str]] = []

    def bigram(context: str | None, word: str) -> float:
        calls.append((context, word))
        return -1.0 if context is not None else -5.0

    lattice = parse_htk_slf(SLF).with_link_lm(bigram)
    assert ("<s>", "the") in calls and ("the", "cat") in calls and ("sat", "</s>") in calls
    path = lattice.best_path(lm_weight=1.0)
    assert path.lm == -4.0  # <s> the, the cat, cat sat, sat </s>
    assert lattice.links[5].lm == -1.0 and lattice.links[0].lm == -1.0


def test_log_base_and_file_reading(tmp_path) -> None:
    base10 = parse_htk_slf("base=10.0\n" + SLF)
    assert base10.best_path().score == pytest.approx(-56.0 * math.log(10.0))
    path = tmp_path / "lattice.slf"
    path.write_text(SLF)
    assert read_htk_slf(path).best_path().text == "the cat sat"


def test_bad_lattices_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cycle"):
        parse_htk_slf(SLF + "J=9 S=4 E=1 a=-1\n")
    with pytest.raises(ConfigError, match="a number"):
        parse_htk_slf(SLF.replace("a=-20", "a=minus"))
    with pytest.raises(ConfigError, match="node"):
        parse_htk_slf("VERSION=1.0\n")
    with pytest.raises(ConfigError, match="lattice path"):
        read_htk_slf(tmp_path / "missing.slf")
    with pytest.raises(ConfigError, match="n"):
        parse_htk_slf(SLF).nbest_paths(0)


def test_lattice_rescoring_uses_the_new_lm_over_the_top_paths() -> None:
    lattice = parse_htk_slf(SLF)
    nbest = lattice_nbest(lattice, n=3)
    assert nbest.texts == ["the cat sat", "the cap sat", "sat"]
    assert (nbest[1].acoustic, nbest[1].lm) == (-48.0, -10.0)
    prefers_cap = {"the cat sat": -20.0, "the cap sat": -2.0, "sat": -30.0}

    def scorer(texts):
        return [prefers_cap[t] for t in texts]

    kept = rescore_lattice(lattice, scorer, RescoreWeights(lm_weight=0.0), n=3)
    assert kept.text == "the cap sat"  # acoustic only
    moved = rescore_lattice(lattice, scorer, RescoreWeights(lm_weight=1.0, interpolation=0.0), n=3)
    assert moved.text == "the cat sat"  # the lattice's own LM
    new = rescore_lattice(lattice, scorer, RescoreWeights(lm_weight=1.0, interpolation=1.0), n=3)
    assert new.text == "the cap sat" and new.scores[0] == -50.0
    full = lattice_nbest(lattice, n=3, decoder_lm=lambda words: -float(len(words)))
    assert [h.lm for h in full] == [-3.0, -3.0, -1.0]
