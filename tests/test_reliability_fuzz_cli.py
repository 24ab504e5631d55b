"""Drill: property-based fuzzing of the command lines (hypothesis).

Random argument lists go to ``kd-vision`` (``domain_main``) and ``kd`` (``main``): subcommands, real and
mangled recipe names, ``--set`` overrides, devices, precisions, seeds, output folders and garbage. A
command may only end as the CLI promises: exit status 0, exit status 2 with a one-line ``error: ...``
(a ``KDError``), or argparse's usage exit (``SystemExit`` 0 or 2). Any other exception fails. The plan a
``distill`` builds is not run (a stub takes its place). ``Backend`` gets random devices and precisions
too (only ``KDError``). 100 examples per property in CI (derandomized); 1,000 in the slow variant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kd_core import cli
from kd_core.backends import Backend, PrecisionWarning
from kd_core.errors import KDError
from kd_core.recipes import available_recipes

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import fuzz_strategies as fs  # tests/scripts, put on the path just above

DOMAIN = "vision"
RECIPES = available_recipes(DOMAIN)
FIELDS = fs.recipe_fields(RECIPES)
CI = settings(max_examples=100, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_text = st.text(max_size=12)
_recipe = st.one_of(st.sampled_from(sorted(RECIPES)), st.sampled_from(sorted(RECIPES)).map(lambda r: r[:-1]),
                    _text, st.sampled_from(["x.yaml", "/", ".", "nope.yml", "hinton-kd.yaml"]))
_option = st.one_of(
    st.tuples(st.just("--recipe"), _recipe),
    fs.overrides(FIELDS).map(lambda items: tuple(x for item in items for x in ("--set", item))),
    st.tuples(st.just("--device"), st.one_of(st.sampled_from(["cpu", "auto", "cuda", "cuda:7", "mps", "tpu"]), _text)),
    st.tuples(st.just("--precision"), st.one_of(st.sampled_from(["fp32", "bf16", "fp16"]), _text)),
    st.tuples(st.just("--seed"), st.one_of(st.integers(-(2**40), 2**40).map(str), _text)),
    st.tuples(st.just("--out"), st.one_of(st.sampled_from(["runs/a", "out", ".", "/nonexistent/x"]), _text)),
    st.tuples(st.sampled_from(["--resume", "--help", "-h", "--bogus", "--"])),
    st.tuples(_text),
)
_free_argv = st.builds(lambda head, options: [*head, *(x for o in options for x in o)],
                       st.one_of(st.sampled_from([["distill"], ["recipes"], ["eval"], []]), st.tuples(_text)),
                       st.lists(_option, max_size=5))
_well_formed = st.one_of(  # options argparse accepts: what comes next is kd's own validation
    fs.overrides(FIELDS).map(lambda items: tuple(x for item in items for x in ("--set", item))),
    st.tuples(st.just("--device"), st.one_of(st.sampled_from(["cpu", "auto", "cuda", "cuda:7", "mps", "tpu"]), _text)),
    st.tuples(st.just("--precision"), st.sampled_from(["fp32", "bf16", "fp16"])),
    st.tuples(st.just("--seed"), st.integers(-(2**70), 2**70).map(str)),
    st.tuples(st.just("--out"), st.one_of(st.sampled_from(["runs/a", "out", ".", "/nonexistent/x"]), _text)),
    st.just(("--resume",)),
)
_distill_argv = st.builds(lambda recipe, options: ["distill", "--recipe", recipe, *(x for o in options for x in o)],
                          _recipe, st.lists(_well_formed, max_size=4))
# three in four are distill commands that get past argparse; the rest are free-form
_domain_argv = st.integers(0, 3).flatmap(lambda i: _free_argv if i == 0 else _distill_argv)
_kd_argv = st.one_of(st.lists(st.one_of(st.sampled_from(["list", "recipes", "report", "--help", "runs/a", "."]), _text),
                              max_size=3))


@dataclasses.dataclass
class _StubPlan:
    """Stands in for a built plan: a fuzzed ``distill`` must not train."""

    def run(self, context) -> Path:
        """Return the run directory without doing anything."""
        return Path(context.out)


def _stub_load_recipe(*args, **kwargs):
    method, config = _REAL_LOAD(*args, **kwargs)

    def build(config):
        method.build(config)  # the real plan is built (cheap), then put aside
        return _StubPlan()

    return dataclasses.replace(method, build=build), config


_REAL_LOAD = cli.load_recipe


def _call(main, argv: list[str]) -> None:
    """Run ``main(argv)``; allow only the endings the CLI promises."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    except SystemExit as exit_:  # argparse: usage errors (2) and --help (0)
        assert exit_.code in (0, 2), f"argparse exit {exit_.code!r} for {argv!r}"
        return
    assert status in (0, 2), f"status {status!r} for {argv!r}"
    if status == 2:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > len("error: "), err.getvalue()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Run in an empty folder, with ``distill``'s plan stubbed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "load_recipe", _stub_load_recipe)
    return tmp_path


def _check_domain(argv: list[str]) -> None:
    _call(lambda a: cli.domain_main(DOMAIN, a), argv)


def _check_backend(device: str, precision: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrecisionWarning)  # (slow-precision warnings have their own test)
            Backend(device=device, precision=precision, distributed="none")
    except KDError as err:
        assert str(err).strip()


@CI
@given(argv=_domain_argv)
def test_fuzzed_domain_command_lines_end_as_promised(sandbox, argv):
    _check_domain(argv)


@CI
@given(argv=_kd_argv)
def test_fuzzed_kd_command_lines_end_as_promised(sandbox, argv):
    _call(cli.main, argv)


@CI
@given(device=st.one_of(st.sampled_from(["cpu", "auto", "cuda", "cuda:1", "mps", "meta", "cpu:0", "xla"]), _text),
       precision=st.one_of(st.sampled_from(["fp32", "bf16", "fp16", "int8"]), _text))
def test_fuzzed_backends_raise_only_kd_errors(device, precision):
    _check_backend(device, precision)


def test_a_distill_command_line_reaches_the_plan(sandbox):
    calls = []
    _StubPlan.run = lambda self, context: calls.append(context) or Path(context.out)  # type: ignore[method-assign]
    try:
        assert cli.domain_main(DOMAIN, ["distill", "--recipe", "hinton-kd", "--set", "kd.temperature=2",
                                        "--out", "runs/x"]) == 0
    finally:
        del _StubPlan.run  # back to the class's own method
    assert len(calls) == 1 and calls[0].out == Path("runs/x")
    assert os.listdir(sandbox) == []  # the stub wrote nothing


@pytest.mark.slow
@SLOW
@given(argv=_domain_argv)
def test_fuzzed_domain_command_lines_end_as_promised_1000(sandbox, argv):
    _check_domain(argv)


@pytest.mark.slow
@SLOW
@given(argv=_kd_argv)
def test_fuzzed_kd_command_lines_end_as_promised_1000(sandbox, argv):
    _call(cli.main, argv)
