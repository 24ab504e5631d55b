"""``kd-speech distill --recipe lm-distill``: a toy run through the CLI (spoken commands decoded by pocketsphinx,
a word LM trained on the train transcripts + fortunes + glosses, distilled and from scratch on paired seeds, WER
before and after), what it saves and reproduces, and recipe values refused before any run directory."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
from kd_speech.cli import main

TOY = ("seeds=[0,1]", "data.voices=3", "data.flite_voices=0", "data.per_intent=1", "data.intents=2",
       "data.val_voices=1", "data.test_voices=1", "corpus.fortunes=30", "corpus.glosses=30", "corpus.held_out=10",
       "corpus.commands_repeat=2", "corpus.max_vocab=400", "decode.testdata=false", "decode.nbest=5",
       "decode.lattice_paths=8", "teacher.n_embd=32", "teacher.n_head=2", "teacher.n_positions=26",
       "teacher.epochs=2", "teacher.batch_size=32", "student.epochs=2", "student.batch_size=32",
       "latency_iterations=1")


def _sets(*settings: str) -> list[str]:
    return [x for s in settings for x in ("--set", s)]


def _needs_tools() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/setup.sh installs it as root)")
    if not Path("/usr/share/wordnet/data.noun").is_file() or not Path("/usr/share/games/fortunes/people").is_file():
        pytest.skip("wordnet-base or fortunes is not installed (tools/setup.sh installs them as root)")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    """A private ``KD_DATA_HOME``; one torch thread (tiny models train faster on one than on two contended ones)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("kd-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KD_DATA_HOME", str(path))
        yield path
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _needs_tools()
    out = tmp_path_factory.mktemp("lm") / "run"
    assert main(["distill", "--recipe", "lm-distill", "--device", "cpu", "--out", str(out), *_sets(*TOY)]) == 0
    return out


def test_toy_run_reports_wer_before_and_after_for_every_lm(toy: Path) -> None:
    results = json.loads((toy / "results.json").read_text())
    assert {a: results["arms"][a]["role"] for a in results["arms"]} == {"distilled": "kd", "scratch": "scratch"}
    teacher, students = results["teacher"], results["arms"]
    ratio = teacher["cost"]["params"] / students["distilled"]["cost"]["params"]
    assert ratio >= 4 and students["distilled"]["cost"]["params"] == students["scratch"]["cost"]["params"]
    rescoring = results["rescoring"]
    for metric in ("wer_nbest", "wer_lattice"):
        oracle, first = rescoring["oracle"][metric], rescoring["first_best"][metric]
        assert 0.0 <= oracle <= first and oracle <= rescoring["ngram_retuned"][metric]
        lms = [teacher["test"][metric]] + [students[a]["seeds"][s][metric] for a in students for s in ("0", "1")]
        assert all(oracle <= wer for wer in lms), metric  # no LM beats the best hypothesis of every list
    assert "wer_nbest_real" not in teacher["test"]  # decode.testdata=false: no real set
    assert all(students[a]["seeds"][s]["perplexity"] > 1 for a in students for s in ("0", "1"))
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [("distilled", "scratch")]
    kinds = {(c["a"], c["b"]) for c in rescoring["comparisons"]}
    assert {("distilled", "scratch"), ("distilled", "1-best"), ("teacher", "1-best")} <= kinds
    report = (toy / "report.md").read_text()
    for heading in ("Rescoring: WER before and after", "Does the gain survive distillation?", "Tuned weights",
                    "decoder 1-best (before)", "oracle (best hypothesis)", "distilled (2 seeds)"):
        assert heading in report
    for plot in ("wer_rescoring.png", "wer_vs_size.png", "headline.png"):
        assert (toy / "plots" / plot).stat().st_size > 1000


def test_the_arms_train_as_described_and_the_lms_are_saved(toy: Path) -> None:
    from kd_speech.asr.lm import WordLM

    kd_log = (toy / "distilled-seed0" / "metrics.jsonl").read_text()
    scratch_log = (toy / "scratch-seed0" / "metrics.jsonl").read_text()
    assert '"loss/kd"' in kd_log and '"loss/ce"' in kd_log and '"loss/kd"' not in scratch_log
    teacher = WordLM.load(toy / "teacher-lm")
    student = WordLM.load(toy / "distilled-seed1" / "model")
    assert student.vocab.words == teacher.vocab.words
    assert teacher.num_parameters() >= 4 * student.num_parameters()
    decodes = json.loads((toy / "rescoring" / "decodes.json").read_text())
    train = decodes["corpus"]["train transcripts"]
    assert train == 2 and decodes["corpus"]["sentences"] == 2 * train + 30 + 30  # repeated twice, 30 + 30 sentences
    from kd_speech.data import CommandSetConfig, build_command_set

    commands = build_command_set(CommandSetConfig(voices=3, flite_voices=0, intents=2), progress=False)  # cached
    train_words = {w for u in commands.split("train") for w in u.transcript.lower().split()}
    assert train_words <= set(teacher.vocab.words)  # every in-domain word is kept, however rare
    tuned = json.loads((toy / "rescoring" / "teacher.json").read_text())["modes"]["lattice"]["weights"]
    from kd_speech.methods.lm_distill import TuneSection

    grid = TuneSection()
    assert tuned["lm_weight"] in grid.lm_weights and tuned["interpolation"] in grid.interpolations
    with (toy / "utterances.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 and {r["mode"] for r in rows} == {"nbest", "lattice"}
    assert [r["reference"] for r in rows[:2]] == decodes["sets"]["commands"]["references"]


def test_rescore_with_a_saved_lm_reproduces_the_run(toy: Path, tmp_path: Path, capsys) -> None:
    results = json.loads((toy / "results.json").read_text())
    out = tmp_path / "rescored"
    argv = ["rescore", "--lattice", "--lm", str(toy), "--lm-name", "distilled-seed1", "--data", "commands",
            "--out", str(out)]
    assert main(argv) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert again["wer"]["test_after"] == results["arms"]["distilled"]["seeds"]["1"]["wer_lattice"]
    assert again["wer"]["test_before"] == results["rescoring"]["first_best"]["wer_lattice"]
    assert again["lm"]["name"] == "distilled-seed1" and again["tuned"]
    assert main(["eval", str(toy), "--device", "cpu"]) == 0  # kd-core's eval re-scores every student
    printed = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert float(printed["scratch/seed0/wer_lattice"]) == results["arms"]["scratch"]["seeds"]["0"]["wer_lattice"]


@pytest.mark.parametrize(("settings", "named"), [
    (("student.min_ratio=2",), "student.min_ratio"),
    (("teacher.n_positions=10",), "teacher.n_positions"),
    (("tune.interpolations=[0.5, 1.5]",), "tune.interpolations"),
    (("data.val_voices=2", "data.test_voices=1", "data.voices=3"), "data"),
    (("student.n_embd=32", "student.n_layer=2", "student.n_head=2"), "student.n_embd"),  # not 4x smaller
    (("corpus.fortunes=10000000",), "corpus.fortunes"),
])
def test_bad_recipe_values_fail_in_one_line_before_any_run(toy: Path, tmp_path: Path, capsys, settings,
                                                            named: str) -> None:
    out = tmp_path / "never"
    assert main(["distill", "--recipe", "lm-distill", "--device", "cpu", "--out", str(out),
                 *_sets(*TOY, *settings)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err
    assert not out.exists()


def test_missing_pocketsphinx_is_named_before_anything_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    out = tmp_path / "never"
    assert main(["distill", "--recipe", "lm-distill", "--device", "cpu", "--out", str(out), *_sets(*TOY)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pocketsphinx" in err and "pip install pocketsphinx" in err and not out.exists()
