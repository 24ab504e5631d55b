"""Command lines: ``kd`` (what is installed, reports) and the shared plumbing of every domain CLI.

A domain package's CLI is ``domain_main("vision")``: it gets ``distill``, ``recipes`` and ``eval``.
This module imports no torch: ``--help`` and ``recipes`` stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from kd_core.errors import KDError, RunDirError
from kd_core.recipes import (
    Method,
    RecipeConfig,
    RunContext,
    apply_overrides,
    check_seed,
    domains,
    load_recipe,
    methods,
    read_recipe,
    recipe_index,
    validate,
)


def _print_recipes(domain: str | None) -> None:
    """Print every installed recipe (of ``domain``, if given): name, domain, method, summary. Imports no torch."""
    index = recipe_index(domain)
    for name in [domain] if domain else sorted(domains()):
        rows = [info for info in index if info.domain == name]
        if not rows:
            print(f"no recipes installed for {name}")
        width = max((len(info.name) for info in rows), default=0)
        method_width = max((len(info.method) for info in rows), default=0)
        for info in rows:
            print(f"{info.name:{width}s}  {name:10s} method={info.method:{method_width}s}  {info.summary}".rstrip())


def default_out(name: str, resume: bool, root: Path = Path("runs")) -> Path:
    """``runs/<name>``; if taken, ``runs/<name>-2``, ``-3``, ... (with ``resume``: the newest taken one)."""
    candidates = [root / name] + [root / f"{name}-{i}" for i in range(2, 1000)]
    taken = [c for c in candidates if c.is_file() or (c.is_dir() and any(p.name != ".lock" for p in c.iterdir()))]
    if resume:
        if not taken:
            raise RunDirError("--resume", f"an earlier run under {root / name}", "none found")
        return taken[-1]
    return next(c for c in candidates if c not in taken)


def _started_with(out: Path) -> dict[str, Any]:
    """The configuration the run in ``out`` was started with (its ``config.yaml``); {} when there is none."""
    path = out / "config.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        raise RunDirError("--resume", "a run directory with a readable config.yaml", str(path),
                          hint=str(err).splitlines()[0]) from None
    return data if isinstance(data, dict) else {}


def _resumed(method: Method, started: dict[str, Any], overrides: Sequence[str], args: argparse.Namespace,
             out: Path) -> RecipeConfig:
    """The recipe a resumed run goes on with: the one it was started with (its ``config.yaml``), to which
    ``--set``, ``--seed`` and ``--precision`` given with ``--resume`` may only add; a flag that changes a value
    is the ``--resume`` error listing the differences."""
    from kd_core.runs import check_same_config

    saved = started["recipe"]
    if saved.get("method") != method.name:
        raise RunDirError("--recipe", f"the recipe of the run being resumed in {out} (method "
                          f"{saved.get('method')!r})", f"{args.recipe} (method {method.name!r})")
    config = validate(method, apply_overrides(saved, overrides))
    before = {key: started.get(key) for key in ("recipe", "precision", "device") if key in started}
    now = {"recipe": config.model_dump()}
    for key in ("precision", "device"):
        if key in before:
            now[key] = before[key] if getattr(args, key) is None else getattr(args, key)
    check_same_config(before, now, out)
    return config


def _hold(out: Path) -> Any:
    """On ``--resume``, the lock of the run in ``out`` (a ``RunDir`` to close), taken before anything is built:
    a run another process trains is refused at once, naming its PID. None where no run is there yet."""
    if not (out / "config.yaml").is_file():
        return None
    from kd_core.runs import RunDir

    held = RunDir(out)
    held.acquire()
    return held


def _load(recipe: str, overrides: list[str], seed: int | None, domain: str) -> tuple[Method, RecipeConfig]:
    """The recipe with ``--set`` overrides and ``--seed``: the recipe's ``seed``, and for a study recipe (paired
    seeds) ``seeds: [N]`` too, so that the study runs on that one seed."""
    if seed is None:
        return load_recipe(recipe, overrides, domain=domain)
    overrides.append(f"seed={check_seed(seed)}")
    method, config = load_recipe(recipe, overrides, domain=domain)
    if "seeds" in type(config).model_fields:
        overrides.append(f"seeds=[{seed}]")
        method, config = load_recipe(recipe, overrides, domain=domain)
    return method, config


def _distill(domain: str, args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.trust:
        from kd_core.specs import check_trust

        check_trust(args.trust)
    out = Path(args.out) if args.out else None
    held = _hold(out) if out is not None and args.resume else None
    try:
        method, config = _load(args.recipe, overrides, args.seed, domain)
        if out is None:
            out = default_out(config.name or method.name, args.resume)
            held = _hold(out) if args.resume else None
        args.run_out = out  # (for the Ctrl-C hint of domain_main)
        started = _started_with(out) if args.resume else {}
        if isinstance(started.get("recipe"), dict):  # resume: the run's own config, not the recipe's defaults
            config = _resumed(method, started, overrides, args, out)
        device = args.device if args.device is not None else (started.get("device") or "auto")
        precision = args.precision or started.get("precision") or "fp32"
        plan = method.build(config)
        run_dir = plan.run(RunContext(out=out, device=device, precision=precision, resume=args.resume,
                                      trust=tuple(args.trust or ())))
    finally:
        if held is not None:
            held.close()
    report = Path(run_dir) / "report.md"
    print(f"run directory: {run_dir}")
    if report.is_file():
        print(f"report: {report}")
    return 0


def _eval(domain: str, args: argparse.Namespace) -> int:
    run = Path(args.run)
    data = read_recipe(run / "config.yaml") if (run / "config.yaml").is_file() else None
    if data is None:
        raise RunDirError("RUN", "a run directory holding config.yaml", str(run))
    recipe = data.get("recipe", data)
    registered = methods(domain)
    name = recipe.get("method") if isinstance(recipe, dict) else None
    if name not in registered:
        raise RunDirError("RUN", f"a run of a {domain} method {sorted(registered)}", name)
    method = registered[name]
    plan = method.build(validate(method, recipe))
    evaluate = getattr(plan, "evaluate", None)
    if evaluate is None:
        raise RunDirError("RUN", "a run of a method that supports eval", name)
    for key, value in evaluate(run, args.device).items():
        print(f"{key}: {value}")
    return 0


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While active, a kd warning (a kd category such as ``PrecisionWarning``, or one issued from a kd package)
    prints as one line, ``warning: <message>``, on stderr (Python's default adds the file, the line number and
    the source line); other warnings go to the previous handler."""
    previous = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
             line: str | None = None) -> None:
        if category.__module__.startswith("kd_") or any(part.startswith("kd_") for part in Path(filename).parts):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def run_command(action: Callable[[], Path | str | int]) -> int:
    """Run a domain's own subcommand (``data build``, ``rescore``, ``quantize``, ...) as ``domain_main`` runs
    ``distill``: kd warnings on one line, a ``KDError`` as ``error: ...`` with exit status 2, Ctrl-C as
    ``interrupted`` with 130. ``action`` returns a run directory (its path and report are printed; status 0) or
    an exit status."""
    try:
        with one_line_warnings():
            result = action()
    except KDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if isinstance(result, int):
        return result
    print(f"run directory: {result}")
    print(f"report: {Path(result) / 'report.md'}")
    return 0


def domain_parser(domain: str) -> argparse.ArgumentParser:
    """The argument parser shared by every ``kd-<domain>`` command."""
    parser = argparse.ArgumentParser(prog=f"kd-{domain}", description=f"kd {domain}: distillation recipes")
    sub = parser.add_subparsers(dest="command", required=True)
    distill = sub.add_parser("distill", help="run a recipe and write a run directory with a report")
    distill.add_argument("--recipe", required=True, help="a recipe name (see `recipes`) or a YAML file")
    distill.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe field")
    distill.add_argument("--device", default=None,
                         help="auto (cuda, mps, cpu), cpu, cuda, cuda:N (default auto, or on --resume the one the "
                              "run's config.yaml records, if it records one)")
    distill.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                         help="default fp32; on --resume the run's own")
    distill.add_argument("--seed", type=int, default=None,
                         help="overrides the recipe's seed; a study recipe then runs on this one seed (several: "
                              "--set seeds=[0,1,2])")
    distill.add_argument("--out", default=None,
                         help="run directory (default runs/<recipe name>, or -2, -3, ... if taken)")
    distill.add_argument("--resume", action="store_true",
                         help="continue the run in --out (default: the newest) with the configuration it was "
                              "started with (--set, --seed, --precision may only repeat it)")
    distill.add_argument("--trust", action="append", metavar="PREFIX",
                         help="a package whose 'module:function' model builders may be imported (runs its code)")
    sub.add_parser("recipes", help="list the recipes of this domain")
    evaluate = sub.add_parser("eval", help="evaluate a finished run's student")
    evaluate.add_argument("run", help="the run directory")
    evaluate.add_argument("--device", default="auto")
    return parser


def _interrupted(domain: str, args: argparse.Namespace) -> str:
    """What Ctrl-C during ``distill`` prints: where the last checkpoint is and the command that resumes."""
    out: Path | None = getattr(args, "run_out", None)
    if out is None or not (out / "config.yaml").is_file():
        return "interrupted before the run directory was written: nothing to resume"
    checkpoints = [p for p in out.rglob("last.safetensors") if p.parent.name == "checkpoints"]
    where = (f"the last checkpoint is {max(checkpoints, key=lambda p: p.stat().st_mtime)}" if checkpoints
             else f"no checkpoint yet in {out}")
    command = [f"kd-{domain}", "distill", "--recipe", args.recipe, "--out", str(out), "--resume"]
    if args.device is not None:
        command += ["--device", args.device]
    for prefix in args.trust or ():
        command += ["--trust", prefix]
    return f"interrupted: {where}\nresume with: {shlex.join(command)}"


def domain_main(domain: str, argv: Sequence[str] | None = None) -> int:
    """Entry point body of ``kd-<domain>``: exit status 0, 2 with a one-line error, or 130 on Ctrl-C (with
    the command that resumes the run)."""
    args = domain_parser(domain).parse_args(argv)
    try:
        with one_line_warnings():
            return _domain_command(domain, args)
    except KDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(domain, args) if args.command == "distill" else "interrupted", file=sys.stderr)
        return 130


def _domain_command(domain: str, args: argparse.Namespace) -> int:
    if args.command == "recipes":
        _print_recipes(domain)
        return 0
    if args.command == "distill":
        return _distill(domain, args)
    return _eval(domain, args)


def kd_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kd``: ``list``, ``recipes`` and ``report RUN``."""
    parser = argparse.ArgumentParser(prog="kd", description="kd: knowledge distillation toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="installed domains and their recipes")
    sub.add_parser("recipes", help="every installed recipe, by domain")
    report = sub.add_parser("report", help="print a run's report")
    report.add_argument("run", help="the run directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``kd``: list installed domains and recipes, show a run's report."""
    args = kd_parser().parse_args(argv)
    try:
        if args.command == "list":
            installed = domains()
            if not installed:
                print("no kd domain packages installed (pip install kd-vision, kd-nlu, ...)")
            index = recipe_index()
            for name, version in sorted(installed.items()):
                recipes = sorted({info.name for info in index if info.domain == name})
                print(f"kd-{name} {version}: {', '.join(recipes) if recipes else '(no recipes)'}")
            return 0
        if args.command == "recipes":
            _print_recipes(None)
            return 0
        path = Path(args.run) / "report.md"
        if not path.is_file():
            raise RunDirError("RUN", "a run directory holding report.md", str(args.run))
        print(path.read_text())
        print(f"report: {path}")
        return 0
    except KDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
