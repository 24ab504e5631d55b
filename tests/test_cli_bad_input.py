"""Bad input on every command line: cases generated from each CLI's own argument parser.

Every installed CLI (``kd``, ``kd-vision``, ``kd-nlu``, ``kd-speech``, ``kd-generative``, ``kd-edge``) is walked
through its argparse parser: each sub-command, each option or positional that takes a value. Each one gets wrong
values of its kind (a number that is not one, negative, NaN, infinite or out of range; a path that does not
exist, is a file where a folder is wanted or the reverse, is empty or garbage, or lies under ``/proc``; a model
spec that names an untrusted, missing or unknown builder; a data spec that points nowhere), put on an otherwise
valid command line. ``--set`` is walked the same way over the fields of each domain's recipes.

A case ends as the CLI promises: exit status 2 with one line ``error: ...`` that names the argument (or
argparse's own usage error), and no new run directory. A value that is merely unusual (a huge count, a seed of
-1) may instead be accepted, and then reaches the point where work would start: there ``RunDir.create`` runs
its checks without writing and the test stops (nothing trains). An option the classifier below does not know
fails the test, so a new flag cannot go untested.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kd_core import cli as core_cli
from kd_core.errors import KDError
from kd_core.recipes import available_recipes, load_recipe
from kd_core.runs import RunDir
from PIL import Image

#: The command lines under test: name -> (main, parser factory, domain for recipes or None).
CLIS: dict[str, tuple[Callable[[list[str]], int], Callable[[], argparse.ArgumentParser], str | None]] = {
    "kd": (core_cli.main, core_cli.kd_parser, None)}
for _domain in ("vision", "nlu", "speech", "generative"):
    CLIS[f"kd-{_domain}"] = ((lambda d: lambda argv: core_cli.domain_main(d, argv))(_domain),
                            (lambda d: lambda: core_cli.domain_parser(d))(_domain), _domain)
with contextlib.suppress(ImportError):
    from kd_edge import cli as edge_cli

    CLIS["kd-edge"] = (edge_cli.main, edge_cli.build_parser, "edge")
with contextlib.suppress(ImportError):
    from kd_speech import cli as speech_cli

    CLIS["kd-speech"] = (speech_cli.main, speech_cli.build_parser, "speech")

#: Fast settings for a valid distill, where the recipe has the field (the run never starts anyway).
TINY = ("seeds=[0]", "teacher.epochs=1", "student.epochs=1", "data.val_voices=1", "data.voices=4", "data.intents=4",
        "data.per_intent=1", "vq.steps=5", "bert.steps=5", "ptkd.steps=5", "corpus.fortunes=20", "corpus.glosses=20",
        "corpus.held_out=5", "decode.testdata=false", "decode.lattice_paths=5")


def _tiny(recipe_file: Path) -> list[str]:
    """``--set`` options that make a recipe quick: those of ``TINY`` that the recipe takes."""
    kept: list[str] = []
    for setting in TINY:
        with contextlib.suppress(KDError):
            load_recipe(str(recipe_file), [*kept, setting])
            kept.append(setting)
    return [x for s in kept for x in ("--set", s)]


class Reached(BaseException):
    """Raised where the work would start: the command line was accepted."""


@dataclass(frozen=True)
class Case:
    """One wrong value for one option of one sub-command."""

    cli: str
    argv: tuple[str, ...]
    names: tuple[str, ...]  # how the error line may name the argument
    must_fail: bool  # False: an unusual value that may be accepted (but must not end in a traceback)

    def __str__(self) -> str:
        return f"{self.cli} {' '.join(self.argv)}"


# -- wrong values, by kind -------------------------------------------------------------------------------------

def _files(root: Path) -> dict[str, str]:
    """Named paths the wrong values use: missing, empty, garbage, a folder, a file, under /proc."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty.txt").write_bytes(b"")
    (root / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (root / "folder").mkdir(exist_ok=True)
    (root / "bad-run").mkdir(exist_ok=True)
    (root / "bad-run" / "config.yaml").write_text("recipe: [unclosed\n")
    (root / "bad-run" / "config.json").write_text("{not json")
    (root / "bad-run" / "report.md").mkdir(exist_ok=True)
    for label, shade in (("dark", 40), ("light", 210)):  # a valid image folder: two classes of 12x12 greys
        (root / "images" / label).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.new("RGB", (12, 12), (shade + i, shade, shade)).save(root / "images" / label / f"{i}.png")
    paths = {"missing": str(root / "missing" / "x"), "empty": str(root / "empty.txt"),
             "garbage": str(root / "garbage.bin"), "folder": str(root / "folder"), "bad-run": str(root / "bad-run"),
             "under-file": str(root / "empty.txt" / "sub"), "proc": "/proc/kd-bad-input/x",
             "images": str(root / "images")}
    with contextlib.suppress(ImportError):  # kd-speech's rescore: a tiny word LM and an audio folder with a CSV
        import numpy as np
        import soundfile
        from kd_speech.asr.lm import LMSize, WordLM, WordVocab

        if not (root / "word-lm" / "vocab.json").is_file():
            WordLM(WordVocab.build(["turn the lights on"]), LMSize(8, 1, 2, 8), seed=0).save(root / "word-lm")
        (root / "audio").mkdir(exist_ok=True)
        tone = (0.3 * np.sin(np.arange(4800) * 0.05)).astype(np.float32)
        soundfile.write(root / "audio" / "a.wav", tone, 16_000)
        (root / "audio" / "data.csv").write_text("file,transcript\na.wav,turn the lights on\n")
        paths.update({"word-lm": str(root / "word-lm"), "audio": str(root / "audio")})
    return paths


def _int_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("abc", True), ("1.5", True), ("", True), ("-1", True), ("99999999999999999999999", False)]


def _float_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("abc", True), ("nan", True), ("inf", True), ("-1", True)]


def _ints_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("a,b", True), ("0", True), ("-1", True), ("", True)]


def _file_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [(p["missing"], True), (p["empty"], True), (p["garbage"], True), (p["folder"], True)]


def _folder_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [(p["missing"], True), (p["empty"], True), (p["folder"], True), (p["bad-run"], True)]


def _out_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [(p["proc"], True), (p["empty"], True), (p["under-file"], True), (p["bad-run"], True)]


def _model_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("os:system", True), ("nope", True), ("torchvision.models:resnet18", True),
            ("kd_core.specs:no_such_builder", True), ("tv:no_such_model", True), (":", True), (p["folder"], True)]


def _data_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("nope", True), (f"imagefolder:{p['missing']}", True), (f"imagefolder:{p['folder']}", True),
            (f"tensors:{p['garbage']}", True), (f"tensors:{p['missing']}", True), (f"csv:{p['garbage']}", True),
            (p["bad-run"], True)]


def _device_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("tpu", True), ("cuda:x", True), ("", True), ("cpu:-1", True)]


def _trust_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("", True), ("not a module", True), ("..", True)]


def _name_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("no-such-name", True), ("", True)]


def _shape_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("a,b", True), ("0,0", True), ("-1,64", True), ("1,2,3,4,5", True)]


def _layers_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("a,b", True), ("-1", True), ("999", True), ("", True)]


def _json_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("{", True), ("[]", True), ('{"no_such_argument": 1}', True)]


def _recipe_values(p: dict[str, str]) -> list[tuple[str, bool]]:
    return [("no-such-recipe", True), *_file_values(p), (p["bad-run"] + "/config.yaml", True)]


#: String options by destination name (numbers are classified by their argparse ``type``).
KINDS: dict[str, Callable[[dict[str, str]], list[tuple[str, bool]]]] = {
    "recipe": _recipe_values, "run": _folder_values, "out": _out_values, "weights": _file_values,
    "onnx": _file_values, "hf": _folder_values, "model": _model_values, "data": _data_values,
    "device": _device_values, "trust": _trust_values, "arm": _name_values, "container": _name_values,
    "model_kwargs": _json_values, "layers": _layers_values, "input_shape": _shape_values,
    "lm": _folder_values, "lm_name": _name_values, "val_data": _data_values,
    "word_penalty": lambda p: [("abc", True), ("nan", True), ("inf", True), ("-1", False)],
}
#: Options whose wrong values argparse itself refuses (``choices``), and flags that take no value.
SKIP = {"help"}


def _value_kind(action: argparse.Action) -> Callable[[dict[str, str]], list[tuple[str, bool]]] | None:
    if action.choices is not None:
        return lambda p: [("not-a-choice", True)]
    if action.type is int:
        return _int_values
    if action.type is float:
        return _float_values
    if getattr(action.type, "__name__", "") == "_ints":
        return _ints_values
    return KINDS.get(action.dest)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _value_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if action.dest in SKIP or action.nargs == 0:
            continue
        yield action


def _groups(parser: argparse.ArgumentParser) -> list[set[str]]:
    return [{a.dest for a in g._group_actions} for g in parser._mutually_exclusive_groups]


# -- valid command lines each case starts from ----------------------------------------------------------------

def _first_recipe(domain: str) -> str | None:
    recipes = sorted(available_recipes(domain))
    preferred = {"vision": "hinton-kd", "nlu": "annealing-kd"}.get(domain)
    return preferred if preferred in recipes else (recipes[0] if recipes else None)


def _base(cli: str, command: str, domain: str | None, run: Path, paths: dict[str, str]) -> list[str] | None:
    """A valid command line for ``command`` (None: there is none, e.g. distill in a domain without recipes)."""
    if cli == "kd":
        return {"report": ["report", str(run)]}.get(command, [command])
    if command == "distill":
        recipe = _first_recipe(domain or "")
        if recipe is None:
            return None
        return ["distill", "--recipe", recipe, *_tiny(available_recipes(domain)[recipe]), "--device", "cpu"]
    if command == "eval":
        return ["eval", str(run), "--device", "cpu"] if domain == "vision" else None
    if command in ("export", "quantize", "bench"):
        return [command, "--model", "mlp", "--train-epochs", "0"]
    if command == "prune":
        return ["prune", "--model", "mlp", "--data", "digits", "--finetune-epochs", "0"]
    if command == "data":
        return ["data", "build", "--voices", "3", "--flite-voices", "0", "--intents", "2"]
    if command == "rescore":  # every weight given: nothing to tune, so no validation audio to build
        return ["rescore", "--nbest", "--lm", paths["word-lm"], "--data", f"folder:{paths['audio']}", "--lm-weight",
                "1", "--interpolation", "0.5", "--word-penalty", "0", "--device", "cpu"]
    return [command]


def _without(base: list[str], dests: set[str], parser: argparse.ArgumentParser) -> list[str]:
    """``base`` without the options whose destinations are in ``dests`` (and their values)."""
    flags = {s for a in parser._actions if a.dest in dests for s in a.option_strings}
    out, skip = [], False
    for i, token in enumerate(base):
        if skip:
            skip = False
            continue
        if token in flags:
            skip = i + 1 < len(base) and not base[i + 1].startswith("--")
            continue
        out.append(token)
    return out


#: Where an option only matters with another one, the base gets that one too.
NEEDS = {"layers": ["--method", "layers"], "container": ["--method", "layers", "--layers", "0"],
         "arm": [], "image_size": ["--data", "imagefolder:{images}"]}


def _cases(paths: dict[str, str], run: Path) -> list[Case]:
    cases: list[Case] = []
    for cli, (_, parser_factory, domain) in CLIS.items():
        for command, parser in _subcommands(parser_factory()).items():
            base = _base(cli, command, domain, run, paths)
            if base is None:
                continue
            groups = _groups(parser)
            for action in _value_actions(parser):
                kind = _value_kind(action)
                if action.dest == "set":
                    continue  # generated from the recipes' fields below
                assert kind is not None, f"{cli} {command}: no wrong values known for {action.dest!r}; add it to KINDS"
                names = (*action.option_strings, action.dest.upper(), action.dest)
                if not action.option_strings:  # a positional: replace the base's value
                    line = [t for t in base if t != str(run)]
                    for value, must in kind(paths):
                        cases.append(Case(cli, (*line[:1], value, *line[1:]), names, must))
                    continue
                group = next((g for g in groups if action.dest in g), {action.dest})
                line = _without(base, group | ({"data"} if action.dest == "digits" else set()), parser)
                extra = [t.format(**paths) for t in NEEDS.get(action.dest, [])]
                line = _without(line, {"method", "layers", "data"} & {a.lstrip("-") for a in extra}, parser)
                for value, must in kind(paths):
                    cases.append(Case(cli, (*line, *extra, action.option_strings[0], value), names, must))
    return cases


# -- --set over the recipes' fields ------------------------------------------------------------------------------

def _fields(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _fields(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix.rstrip("."), data


def _set_values(key: str, value: Any, paths: dict[str, str]) -> list[tuple[str, bool]]:
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "model":
        return _model_values(paths)[:4]
    if leaf == "source" and key.startswith("data"):
        return _data_values(paths)[:4]
    if leaf in ("weights", "path", "file", "dir"):
        return _file_values(paths)[:2]
    if isinstance(value, bool):
        return [("maybe", True), ("[1]", True)]
    if isinstance(value, int):
        return [("abc", True), ("1.5", True), ("-1", False), ("1e400", True)]
    if isinstance(value, float):
        return [("abc", True), (".nan", True), (".inf", True), ("-1", False)]
    if isinstance(value, list):
        return [("[", True), ("{a: 1}", True)]
    return []


def _set_cases(paths: dict[str, str], every_value: bool = True) -> list[Case]:
    """``--set FIELD=WRONG`` for every field of every recipe; ``every_value=False`` takes one wrong value per
    field, rotating through the field's kind (a stable choice, so that CI runs the same cases each time)."""
    cases = []
    for cli, (_, _, domain) in CLIS.items():
        recipes = available_recipes(domain) if domain else {}
        for recipe, file in sorted(recipes.items()):
            base = ["distill", "--recipe", recipe, "--device", "cpu"]
            sets = _tiny(file)
            for key, value in _fields(yaml.safe_load(Path(file).read_text()) or {}):
                if key in ("method", "name"):
                    continue
                values = _set_values(key, value, paths)
                if not every_value and values:
                    values = [values[zlib.crc32(f"{recipe}:{key}".encode()) % len(values)]]
                for wrong, must in values:
                    cases.append(Case(cli, (*base, *sets, "--set", f"{key}={wrong}"), (key,), must))
    return cases


# -- running a case --------------------------------------------------------------------------------------------

def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "kd-home" not in p.parts}


def _outcome(case: Case, sandbox: Path) -> str:
    """Run ``case``; return 'error', 'usage' or 'accepted', or fail with what went wrong."""
    main = CLIS[case.cli][0]
    before = _tree(sandbox)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(list(case.argv))
    except Reached:
        return "accepted"
    except SystemExit as exit_:  # argparse: a usage error (2)
        assert exit_.code == 2, f"{case}: argparse exit {exit_.code!r}"
        assert any(n in err.getvalue() for n in case.names), f"{case}: usage error names no argument: {err.getvalue()}"
        return "usage"
    except Exception as error:  # a traceback
        raise AssertionError(f"{case}: {type(error).__name__}: {error}") from error
    assert status == 2, f"{case}: exit status {status!r} (stdout {out.getvalue()[-300:]!r})"
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: not one error line: {err.getvalue()!r}"
    assert any(n in lines[0] for n in case.names), f"{case}: the error names no argument {case.names}: {lines[0]}"
    new = _tree(sandbox) - before
    assert not new, f"{case}: left {sorted(new)[:5]} behind"
    return "error"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, tiny, finished kd-vision run (the valid RUN of ``eval`` and ``kd report``)."""
    root = tmp_path_factory.mktemp("run")
    old = os.environ.get("KD_DATA_HOME")
    os.environ["KD_DATA_HOME"] = str(root / "kd-home")
    try:
        argv = ["distill", "--recipe", "hinton-kd", "--out", str(root / "run"), "--device", "cpu",
                *(x for s in ("seeds=[0]", "teacher.epochs=1", "student.epochs=1", "data.train_size=60",
                              "data.teacher_train_size=60", "data.val_size=30", "data.test_size=60",
                              "latency_iterations=1") for x in ("--set", s))]
        with contextlib.redirect_stdout(io.StringIO()):
            assert core_cli.domain_main("vision", argv) == 0
    finally:
        if old is None:
            os.environ.pop("KD_DATA_HOME", None)
        else:
            os.environ["KD_DATA_HOME"] = old
    return root / "run"


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder; ``RunDir.create`` checks its arguments, writes nothing and stops the command."""
    real = RunDir.create.__func__  # type: ignore[attr-defined]

    def create(cls: type[RunDir], path: Any, config: Any, resume: bool = False, env: Any = None,
               write: bool = True, options: tuple[str, str] = ("--out", "--resume")) -> RunDir:
        if not write:  # a check-only call (before a study builds its data): checks, nothing written
            return real(cls, path, config, resume, env, False, options)
        made = not Path(path).exists()
        real(cls, path, config, resume, env, write, options).close()  # every check, a real mkdir included
        if made:
            shutil.rmtree(path)
        raise Reached

    monkeypatch.setattr(RunDir, "create", classmethod(create))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path / "kd-home"))
    return tmp_path


def _run_all(cases: list[Case], sandbox: Path) -> dict[str, int]:
    failures, counts = [], {"error": 0, "usage": 0, "accepted": 0}
    for case in cases:
        try:
            outcome = _outcome(case, sandbox)
        except AssertionError as failure:
            failures.append(str(failure).splitlines()[0][:400])
            continue
        if outcome == "accepted" and case.must_fail:
            failures.append(f"{case}: a wrong value was accepted")
        counts[outcome] += 1
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)
    return counts


def test_every_flag_of_every_cli_refuses_wrong_values(sandbox: Path, finished_run: Path) -> None:
    paths = _files(sandbox / "inputs")
    cases = _cases(paths, finished_run)
    assert {c.cli for c in cases} >= {"kd", "kd-vision", "kd-nlu"}, "the CLIs were not walked"
    counts = _run_all(cases, sandbox)
    assert counts["error"] + counts["usage"] > 0.9 * len(cases)


def test_every_recipe_field_refuses_a_wrong_value(sandbox: Path) -> None:
    cases = _set_cases(_files(sandbox / "inputs"), every_value=False)
    assert len(cases) > 100, "the recipes' fields were not walked"
    _run_all(cases, sandbox)


@pytest.mark.slow
def test_every_recipe_field_refuses_every_wrong_value(sandbox: Path) -> None:
    cases = _set_cases(_files(sandbox / "inputs"))
    assert len(cases) > 1000, "the recipes' fields were not walked"
    _run_all(cases, sandbox)


def test_seed_runs_a_study_on_that_one_seed(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--seed 7`` is not a silent no-op on a study recipe (paired ``seeds``): the study runs on seed 7 alone."""
    started: list[dict[str, Any]] = []

    def create(cls: type[RunDir], path: Any, config: dict[str, Any], *args: Any, **kwargs: Any) -> RunDir:
        started.append(config)
        raise Reached

    monkeypatch.setattr(RunDir, "create", classmethod(create))
    with pytest.raises(Reached):
        core_cli.domain_main("vision", ["distill", "--recipe", "hinton-kd", "--seed", "7", "--device", "cpu"])
    assert started[0]["seeds"] == [7] and started[0]["recipe"]["seed"] == 7
    assert _outcome(Case("kd-vision", ("distill", "--recipe", "hinton-kd", "--seed", str(2**32)), ("--seed",),
                         True), sandbox) == "error"
