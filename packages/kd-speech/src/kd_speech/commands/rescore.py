"""``kd-speech rescore --nbest|--lattice --lm LM``: decode audio with pocketsphinx, rescore it with a word LM,
report WER before and after.

The LM is a folder written by ``WordLM.save`` or an ``lm-distill`` run directory (``--lm-name`` picks one of its
LMs: ``teacher`` by default, ``distilled-seed0``, ``scratch-seed1``...; the run's data, decoding and weight-grid
settings then become the defaults, so that rescoring the run's own test set reproduces its numbers). The audio
(``--data``) is

- ``commands[:SPLIT]``: the synthesized spoken commands (test split by default; the run's ``data`` settings);
- ``testdata[:librivox|cards]``: the real recordings of Debian's pocketsphinx-testdata;
- ``folder:DIR`` or ``folder:DIR/FILE.csv``: your audio folder with a CSV (``file``, ``transcript``, optional
  ``split``); rows whose split is ``val`` tune the weights, the others (but ``train``) are rescored.

The score is acoustic + λ·(μ·LM + (1 − μ)·decoder trigram) + β·words, the combination with which Sudarshan et al.
("Improved Contextual Recognition in Automatic Speech Recognition Systems by Semantic Lattice Rescoring", arXiv
2310.09680) rescore first-pass lattices with a transformer LM. The weights λ (LM weight), μ (the LM's interpolation
share against the decoder's trigram) and β (word insertion penalty) are tuned on a validation set (``--val-data``;
by default the folder's ``val`` rows, else the commands' validation voices) over a grid, or given with
``--lm-weight``, ``--interpolation``, ``--word-penalty`` (each one given fixes that weight; all three given: no
validation set is decoded). Decodes are cached under
``$KD_DATA_HOME/asr-decodes`` (``kd_speech.asr.decoded``).

Every input is checked before the run directory is written and before anything decodes: a missing or unreadable
LM, a data spec that points nowhere, a CSV naming files that do not exist or holding an empty transcript, an
unreadable or zero-length audio file, audio at another rate than 16 kHz with ``--no-resample``, pocketsphinx
missing. The run directory (``--out``, default ``runs/rescore-<mode>``) gets ``report.md`` (WER before and after,
the decoder's n-gram with re-tuned weights and the oracle as references, a paired interval over utterances),
``utterances.csv``, ``results.json`` and ``plots/wer.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kd_core.errors import CheckpointError, ConfigError, KDError

__all__ = ["DataSpec", "add_arguments", "finite_float", "parse_data", "resolve_lm", "run"]

_SPEC_HELP = "commands[:test|val|train], testdata[:librivox|cards], or folder:DIR[/FILE.csv]"


def finite_float(text: str) -> float:
    """An argparse type: a finite number (negative allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number, received {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, received {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kd-speech rescore``."""
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--nbest", dest="mode", action="store_const", const="nbest",
                      help="rescore the decoder's n-best lists")
    mode.add_argument("--lattice", dest="mode", action="store_const", const="lattice",
                      help="rescore the best distinct paths of the decoder's lattices")
    parser.add_argument("--lm", required=True, help="a WordLM folder (WordLM.save) or an lm-distill run directory")
    parser.add_argument("--lm-name", default=None,
                        help="with a run directory: which of its LMs (teacher, distilled-seed0, scratch-seed0...; "
                             "default teacher)")
    parser.add_argument("--data", default="commands", help=f"the audio to rescore: {_SPEC_HELP} (default commands)")
    parser.add_argument("--val-data", default=None,
                        help=f"the audio the weights are tuned on: {_SPEC_HELP} (default: the folder's val rows, "
                             "else commands:val)")
    parser.add_argument("--lm-weight", type=float, default=None, help="λ, the LM weight (>= 0; default: tuned)")
    parser.add_argument("--interpolation", type=float, default=None,
                        help="μ, the LM's share against the decoder's trigram (in [0, 1]; default: tuned)")
    parser.add_argument("--word-penalty", type=finite_float, default=None,
                        help="β, the word insertion penalty (positive: a bonus per word; default: tuned)")
    parser.add_argument("--hypotheses", type=int, default=None,
                        help="n-best list length, or distinct lattice paths (default: the run's, else 10 / 50)")
    parser.add_argument("--no-resample", action="store_true",
                        help="refuse audio that is not at 16 kHz instead of resampling it")
    parser.add_argument("--device", default="cpu", help="where the LM scores: cpu (default), cuda, cuda:N, auto")
    parser.add_argument("--out", default=None, help="run directory (default runs/rescore-<mode>, -2, ... if taken)")


# -- the LM ------------------------------------------------------------------------------------------------

def _run_recipe(folder: Path) -> dict[str, Any] | None:
    """The recipe of an lm-distill run directory (its config.yaml), else None."""
    import yaml

    path = folder / "config.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None
    recipe = data.get("recipe") if isinstance(data, dict) else None
    return recipe if isinstance(recipe, dict) and recipe.get("method") == "lm-distill" else None


def resolve_lm(path: str, name: str | None) -> tuple[Path, str, dict[str, Any] | None]:
    """The LM folder ``--lm`` (and ``--lm-name``) mean, its name, and the lm-distill recipe when it is a run's."""
    expected = "a WordLM folder (vocab.json, written by WordLM.save) or an lm-distill run directory"
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError("--lm", expected, path)
    if (folder / "vocab.json").is_file():
        if name is not None:
            raise ConfigError("--lm-name", "no value when --lm is an LM folder itself (it picks an LM of an "
                              "lm-distill run directory)", name)
        return folder, folder.name, None
    recipe = _run_recipe(folder)
    if recipe is None:
        raise CheckpointError("--lm", expected, path, hint="no vocab.json, and no config.yaml of an lm-distill run")
    available = {"teacher": folder / "teacher-lm"} if (folder / "teacher-lm" / "vocab.json").is_file() else {}
    available.update({d.name: d / "model" for d in sorted(folder.glob("*-seed*"))
                      if (d / "model" / "vocab.json").is_file()})
    chosen = "teacher" if name is None else name
    if chosen not in available:
        raise ConfigError("--lm-name" if name is not None else "--lm",
                          f"an LM of the run: one of {sorted(available)}" if available
                          else "a finished lm-distill run (it holds no saved LM)", chosen if name is not None else path)
    return available[chosen], chosen, recipe


# -- the data ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data``/``--val-data`` value: the source (``commands``, ``testdata``, ``folder``) and its
    detail (a split, a testdata set, or a folder and CSV)."""

    source: str
    detail: str = ""
    csv: str | None = None
    text: str = ""

    @property
    def label(self) -> str:
        """A short name for reports."""
        if self.source == "folder":
            return f"folder {Path(self.detail).name}"
        return f"{self.source}:{self.detail}" if self.detail else self.source


def parse_data(text: str, argument: str) -> DataSpec:
    """``--data``/``--val-data`` as a :class:`DataSpec`; the folder (and CSV) must exist."""
    source, sep, detail = (text or "").partition(":")
    if source == "commands" and detail in ("", "test", "val", "train"):
        return DataSpec("commands", detail or "test", text=text)
    if source == "testdata" and detail in ("", "librivox", "cards"):
        return DataSpec("testdata", detail or "all", text=text)
    if source == "folder" and sep and detail:
        path = Path(detail)
        if path.suffix.lower() == ".csv":
            if not path.is_file():
                raise ConfigError(argument, "folder:DIR/FILE.csv naming an existing CSV file", text)
            return DataSpec("folder", str(path.parent), path.name, text)
        if not path.is_dir():
            raise ConfigError(argument, "folder:DIR naming an existing folder of audio files with a CSV", text)
        return DataSpec("folder", str(path), None, text)
    raise ConfigError(argument, _SPEC_HELP, text)


def _commands_data(recipe: dict[str, Any] | None) -> Any:
    from kd_speech.methods.lm_distill import CommandsData

    return CommandsData(**(recipe or {}).get("data", {})) if recipe else CommandsData()


def _utterances(spec: DataSpec, role: str, argument: str, recipe: dict[str, Any] | None, resample: bool) -> list[Any]:
    """The utterances a spec names for ``role`` (``test`` or ``val``), every file and transcript checked."""
    if spec.source == "commands":
        from kd_speech.data import build_command_set

        built = build_command_set(_commands_data(recipe).command_set(), progress=False)
        return built.split(spec.detail)
    if spec.source == "testdata":
        from kd_speech.data import read_testdata

        return read_testdata(spec.detail)
    from kd_speech.data import read_audio_folder

    rows = read_audio_folder(spec.detail, spec.csv, resample=resample)
    if not any(r.transcript for r in rows):
        raise ConfigError(argument, "a CSV with a 'transcript' column (WER needs references)",
                          f"{spec.text} (no transcripts)")
    if role == "val":
        chosen = [r for r in rows if r.split == "val"] or [r for r in rows if r.split != "train"]
    else:
        chosen = [r for r in rows if r.split not in ("val", "train")]
    if not chosen:
        raise ConfigError(argument, f"rows to {'tune on' if role == 'val' else 'rescore'} (split "
                          f"{'val' if role == 'val' else 'test or empty'})", f"{spec.text} (none)")
    return chosen


# -- weights -------------------------------------------------------------------------------------------------

def _grid(args: argparse.Namespace, recipe: dict[str, Any] | None) -> Any:
    """The tuning grid, with each weight given on the command line fixed to its value."""
    from kd_speech.asr.evaluate import Grid
    from kd_speech.methods.lm_distill import TuneSection

    if args.lm_weight is not None and (not math.isfinite(args.lm_weight) or args.lm_weight < 0):
        raise ConfigError("--lm-weight", "a finite number >= 0", args.lm_weight)
    if args.interpolation is not None and (not math.isfinite(args.interpolation) or
                                           not 0 <= args.interpolation <= 1):
        raise ConfigError("--interpolation", "a number in [0, 1]", args.interpolation)
    tune = TuneSection(**(recipe or {}).get("tune", {})) if recipe else TuneSection()
    return Grid(tuple([args.lm_weight] if args.lm_weight is not None else tune.lm_weights),
                tuple([args.interpolation] if args.interpolation is not None else tune.interpolations),
                tuple([args.word_penalty] if args.word_penalty is not None else tune.word_penalties))


def _settings(args: argparse.Namespace, recipe: dict[str, Any] | None) -> Any:
    from kd_speech.asr.decoded import DecodeSettings

    decode = (recipe or {}).get("decode", {}) if recipe else {}
    nbest, paths = int(decode.get("nbest", 10)), int(decode.get("lattice_paths", 50))
    if args.hypotheses is not None:
        if args.hypotheses < 1 or args.hypotheses > 10_000:
            raise ConfigError("--hypotheses", "an integer in [1, 10000]", args.hypotheses)
        nbest, paths = (args.hypotheses, paths) if args.mode == "nbest" else (nbest, args.hypotheses)
    return DecodeSettings(nbest, paths, resample=not args.no_resample)


# -- the report ----------------------------------------------------------------------------------------------

def _csv(names: Sequence[str], references: Sequence[str], before: Sequence[str], ngram: Sequence[str],
         after: Sequence[str], errors_before: Sequence[int], errors_after: Sequence[int]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["utterance", "reference", "decoder 1-best", "n-gram re-tuned", "rescored", "errors before",
                     "errors after", "changed"])
    for row in zip(names, references, before, ngram or [""] * len(names), after, errors_before, errors_after,
                   strict=True):
        writer.writerow([*row, "yes" if row[2] != row[4] else ""])
    return buffer.getvalue()


def _write(run_dir: Any, args: argparse.Namespace, lm: Any, name: str, lm_folder: Path, test_spec: DataSpec,
           val_spec: DataSpec | None, test: list[Any], val: list[Any] | None, notes: dict[str, str], result: Any,
           settings: Any) -> None:
    from kd_core.report import command_line, markdown_table, write_report
    from kd_core.stats import paired_difference
    from kd_core.study_report import comparison_sentence

    from kd_speech.asr.plots import plot_wer_bars

    mode = args.mode
    r = result.modes[mode]
    t = r.tests["test"]
    w = r.weights
    comparison = paired_difference([float(e) for e in t.errors_after], [float(e) for e in t.errors_before],
                                   a_name="rescored", b_name="decoder 1-best", metric="errors per utterance",
                                   higher_is_better=False)
    what = "n-best lists" if mode == "nbest" else "lattices (best distinct paths)"
    count = settings.nbest if mode == "nbest" else settings.lattice_paths
    ngram = (f"; the decoder's trigram with re-tuned weights gives {100 * t.ngram:.2f} %" if math.isfinite(t.ngram)
             else "")
    summary = [
        f"**Test WER** ({test_spec.label}, {len(test)} utterances): {100 * t.before:.2f} % (decoder 1-best) → "
        f"**{100 * t.after:.2f} %** after rescoring the {what} with `{name}`{ngram}; the oracle (each list's best "
        f"hypothesis) {100 * t.oracle:.2f} %.",
        comparison_sentence(comparison, "").replace("paired seeds", "paired utterances"),
    ]
    if r.tuned and val is not None and val_spec is not None:
        summary.append(f"Weights tuned on {val_spec.label} ({len(val)} utterances): validation WER "
                       f"{100 * (r.val_before or 0):.2f} % → {100 * (r.val_after or 0):.2f} %.")
    else:
        summary.append("Weights given on the command line (no tuning).")
    weights = [{"weights": "rescoring", "λ (LM weight)": w.lm_weight, "μ (LM share)": w.interpolation,
                "β (word penalty)": w.word_penalty}]
    if r.ngram_weights is not None:
        n = r.ngram_weights
        weights.append({"weights": "decoder n-gram only", "λ (LM weight)": n.lm_weight, "μ (LM share)": n.interpolation,
                        "β (word penalty)": n.word_penalty})
    groups = {"test": {"decoder 1-best": (t.before, None), "n-gram re-tuned": (t.ngram, None),
                       "rescored": (t.after, None), "oracle": (t.oracle, None)}}
    if r.val_before is not None and r.val_after is not None:
        groups = {"validation": {"decoder 1-best": (r.val_before, None), "rescored": (r.val_after, None)}, **groups}
    plot = plot_wer_bars(groups, run_dir.plots / "wer.png", f"WER before and after rescoring ({mode}) with {name}")
    names = [d.id for d in test]
    references = [d.reference for d in test]
    before = [d.first_best for d in test]
    run_dir.write_text("utterances.csv", _csv(names, references, before, t.ngram_picks, t.picks, t.errors_before,
                                              t.errors_after))
    changed = [{"utterance": u, "reference": ref, "decoder 1-best": b, "rescored": a}
               for u, ref, b, a in zip(names, references, before, t.picks, strict=True) if a != b][:10]
    run_dir.write_json("results.json", {
        "mode": mode, "lm": {"name": name, "folder": str(lm_folder), "parameters": lm.num_parameters(),
                             "vocabulary": len(lm.vocab), "size": vars(lm.size)},
        "data": {"test": test_spec.text, "val": val_spec.text if val_spec else None, "test_utterances": len(test),
                 "val_utterances": len(val) if val else 0},
        "decode": vars(settings), "weights": vars(w), "tuned": r.tuned,
        "ngram_weights": vars(r.ngram_weights) if r.ngram_weights else None,
        "wer": {"test_before": t.before, "test_after": t.after, "test_ngram": t.ngram, "test_oracle": t.oracle,
                "val_before": r.val_before, "val_after": r.val_after},
        "comparison": comparison.as_dict(), "lm_seconds": result.lm_seconds,
        "hypotheses_scored": result.hypotheses_scored})
    write_report(run_dir, f"kd-speech rescore: {what} with the word LM {name}", [
        ("Summary", "\n\n".join(summary) + "\n"),
        ("Weights", markdown_table(weights) + "\nscore = acoustic + λ·(μ·LM + (1 − μ)·decoder trigram) + β·words, "
                    "natural logs.\n"),
        ("LM", f"`{lm_folder}`: {lm.num_parameters():,} parameters, {len(lm.vocab):,} words, "
               f"{lm.size.n_layer}×{lm.size.n_embd}; it scored {result.hypotheses_scored:,} distinct hypotheses in "
               f"{result.lm_seconds:.2f} s ({result.ms_per_hypothesis:.2f} ms each) on {args.device}.\n"),
        ("Data and decoding", f"Test: `{test_spec.text}` ({len(test)} utterances). Validation: "
                              f"{f'`{val_spec.text}` ({len(val)} utterances)' if val_spec and val else 'none'}. "
                              f"Pocketsphinx (bundled en-us model and trigram), {count} "
                              f"{'hypotheses' if mode == 'nbest' else 'distinct lattice paths'} per utterance.\n\n"
                              + "\n".join(f"- {k}: {v}" for k, v in notes.items()) + "\n"),
        ("Changed by rescoring (first 10)", (markdown_table(changed) if changed else "_none_\n")
         + "\nEvery utterance: `utterances.csv`.\n"),
        ("Reproduce", f"```\n{command_line()}\n```\n"),
    ], plots=[("WER before and after", plot)])


# -- the command -----------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> Path:
    """Check every input, decode (cached), rescore, write the run directory; return its path."""
    from kd_core.backends import Backend
    from kd_core.cli import default_out
    from kd_core.runs import RunDir

    from kd_speech.asr.decode import require_pocketsphinx
    from kd_speech.asr.decoded import check_utterances, decode_utterances
    from kd_speech.asr.evaluate import evaluate_lm
    from kd_speech.asr.lm import WordLM

    out = Path(args.out) if args.out else default_out(f"rescore-{args.mode}", resume=False)
    config = {"command": "rescore", **{k: v for k, v in vars(args).items() if k not in ("command",)}}
    RunDir.create(out, config, write=False)  # a bad --out fails before anything is read or decoded
    backend = Backend(device=args.device)
    lm_folder, name, recipe = resolve_lm(args.lm, args.lm_name)
    try:
        lm = WordLM.load(lm_folder)
    except KDError as err:
        raise CheckpointError("--lm", err.expected, str(lm_folder), hint=err.hint) from None
    lm.name = name
    lm = lm.to(backend.device).eval()
    grid = _grid(args, recipe)
    settings = _settings(args, recipe)
    test_spec = parse_data(args.data, "--data")
    val_spec = parse_data(args.val_data, "--val-data") if args.val_data is not None else None
    require_pocketsphinx()
    resample = settings.resample
    test = _utterances(test_spec, "test", "--data", recipe, resample)
    needs_val = len(grid.points()) > 1
    val = None
    if needs_val:
        if val_spec is None:
            own = test_spec.source == "folder" and any(u.split == "val" for u in _folder_rows(test_spec, resample))
            val_spec = test_spec if own else parse_data("commands:val", "--val-data")
        val = _utterances(val_spec, "val", "--val-data", recipe, resample)
    check_utterances(test, settings, "--data")
    if val is not None:
        check_utterances(val, settings, "--val-data")
    run_dir = RunDir.create(out, config)
    try:
        from kd_core.progress import progress_bar

        notes: dict[str, str] = {}
        with progress_bar() as progress:
            test_decodes, notes["test decodes"] = decode_utterances(test, settings, label="pocketsphinx: test",
                                                                    progress=progress)
            val_decodes = None
            if val is not None:
                val_decodes, notes["validation decodes"] = decode_utterances(val, settings, label="pocketsphinx: val",
                                                                             progress=progress)
        result = evaluate_lm(lm.sentence_logprobs, {"test": test_decodes}, val=val_decodes, modes=[args.mode],
                             grid=grid)
        _write(run_dir, args, lm, name, lm_folder, test_spec, val_spec if val is not None else None, test_decodes,
               val_decodes, notes, result, settings)
    finally:
        run_dir.close()
    return run_dir.path


def _folder_rows(spec: DataSpec, resample: bool) -> list[Any]:
    from kd_speech.data import read_audio_folder

    return read_audio_folder(spec.detail, spec.csv, resample=resample)
