"""Reproduce ASR rescoring with a transformer word LM, and that LM distilled by word-level KD into a >= 4x smaller one.

The shipped kd-speech ``lm-distill`` study over 5 paired seeds: pocketsphinx (bundled en-us model and trigram)
decodes synthesized spoken commands (unseen test voices) and the real recordings of pocketsphinx-testdata into
n-best lists and lattices; a GPT-2-style word LM trained here rescores them (weights tuned on the validation
voices); the LM is distilled by word-level KD into a >= 4x smaller student, beside the same student trained from
scratch. Writes ``docs/results/lm-distill.md``: the run's report, then a verdict on each of the papers' claims
with the numbers read from the run's ``results.json`` (and the per-utterance details in ``rescoring/``).

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/lm_distill.py
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from kd_core.datacache import data_home
from kd_core.stats import PairedComparison, paired_difference
from repro_common import ROOT, base_parser, copy_plots, run_recipe_study, shown

TITLE = "ASR n-best/lattice rescoring with a transformer word LM, distilled by word-level KD"

INTRO = """Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015, arXiv:1503.02531 (the
softened-distribution loss α·T²·KL + (1 − α)·CE); Kim and Rush, "Sequence-Level Knowledge Distillation", EMNLP
2016, arXiv:1606.07947 (*word-level* KD: that loss at every position over the next-word distribution); Sudarshan
et al., "Improved Contextual Recognition in Automatic Speech Recognition Systems by Semantic Lattice Rescoring",
arXiv:2310.09680 (a transformer LM rescores a first-pass decoder's lattices, acoustic + λ·(interpolated LM) +
β·words, weights tuned on held-out data). Method: `kd_speech.methods.lm_distill` (recipe `lm-distill`). The claims
tested: (1) rescoring the first-pass decoder's n-best lists and lattices with a transformer LM lowers the WER
against the decoder's 1-best and against its own n-gram with re-tuned weights; (2) the gain survives distilling
the LM into a ≥ 4× smaller one; (3) word-level KD beats the same small LM trained from scratch. Here the first
pass is pocketsphinx (its bundled en-us acoustic model and trigram), the audio is synthesized spoken commands
(espeak-ng and flite voices, the test voices unseen) plus the real recordings of pocketsphinx-testdata, the
teacher is a GPT-2-style word LM trained in the run on the train transcripts, fortunes and WordNet glosses, and
every student arm shares the seed's initialisation and data order, so each student comparison is a paired
interval over seeds."""

# Verified against the run (the numbers are filled in from it): the 1-best WER, the set sizes, the real
# recordings' make-up (5 LibriVox sentences of "Sense and Sensibility" and 5 spoken playing-card strings in
# pocketsphinx-testdata) and that the rescoring weights are tuned on the synthetic validation voices only.
LIMITS = """The first pass is weak on this audio: pocketsphinx's en-us acoustic model on the synthesized voices gives a
{first_best:.1f} % 1-best WER on the synthetic commands test set (oracle of the lattice paths:
{oracle:.1f} %), so every LM picks among mostly wrong hypotheses and the absolute WERs say little about a real
recogniser; the claims are about the *differences*. The commands test set is {test_utts} utterances
({test_voices} unseen voices × {intents} intents × {per_intent} phrasings, {test_words} reference words), and
the student comparisons vary only the training seed ({n_seeds} seeds) on that one fixed test set. The real
recordings of pocketsphinx-testdata are {real_utts} utterances ({real_words} reference words: a few LibriVox
sentences of a novel and a few spoken playing-card strings), whose domain the rescoring weights, tuned on the
synthetic validation voices, never saw; intervals on them are wide and they do not enter the verdicts. One
teacher (one seed) is trained, so the teacher's own comparisons are paired over test utterances, not seeds."""

# Verified in the command set's manifest: the test *voices* are unseen, but the phrasings are shared across
# voices, so most test sentences are also train transcripts, which the LMs' text holds (corpus.commands_repeat
# times).
OVERLAP = """The test voices are unseen ({test_voice_names}), but the command phrasings are shared across voices:
{in_train} of the {test_utts} test utterances have a transcript that is also a train transcript, and the LMs are
trained on the train transcripts, so the LM side of the test is largely in-domain, closer to a command grammar
than to open-vocabulary speech (the teacher's perplexity on the commands test transcripts is {ppl_commands:.1f},
on held-out fortunes and glosses {ppl_text:.1f})."""

_ABSOLUTE = re.compile(r"(?<![\w.$~-])/(?:tmp|root|home|work|var|usr|opt|mnt|srv|data)/")


def _body(run: Path) -> str:
    """The run's report from "## Summary" up to "## Reproduce", headings demoted one level."""
    report = (run / "report.md").read_text()
    body = report[report.index("## Summary"):report.index("## Reproduce")].rstrip()
    body = body.replace("\n## ", "\n### ").replace("\n### #", "\n####")
    if body.startswith("## "):
        body = "#" + body
    return body


def _find(comparisons: Sequence[dict[str, Any]], a: str, b: str, metric: str) -> dict[str, Any]:
    """The comparison ``a`` vs ``b`` on ``metric`` among the run's recorded ones (a ``KeyError`` if absent)."""
    for c in comparisons:
        if c["a"] == a and c["b"] == b and c["metric"] == metric:
            return c
    raise KeyError(f"no comparison {a} vs {b} on {metric} in results.json")


def _interval(c: dict[str, Any] | PairedComparison, unit: str, over: str) -> str:
    """``mean unit (95 % CI low to high, n paired over): verdict`` of a comparison (from results.json or computed)."""
    get = c.get if isinstance(c, dict) else (lambda key: getattr(c, key))
    low, high = get("low"), get("high")
    spread = "no interval (n = 1)" if low is None else f"95 % CI {low:+.2f} to {high:+.2f}"
    return f"{get('mean'):+.2f} {unit} ({spread}, {get('n')} paired {over}): {get('verdict')}"


def _errors(references: Sequence[str], hypotheses: Sequence[str]) -> list[int]:
    """Word edit errors of each hypothesis against its reference, counted as the study counts them."""
    from kd_speech.asr.wer import per_utterance_errors

    return [e.errors for e in per_utterance_errors(list(references), list(hypotheses))]


def _rescoring(run: Path, name: str) -> dict[str, Any]:
    return json.loads((run / "rescoring" / f"{name}.json").read_text())


def _combined(verdicts: Sequence[str]) -> str:
    """held if every part held, not held if any part is not held, inconclusive otherwise."""
    if any(v == "not held" for v in verdicts):
        return "not held"
    return "held" if all(v == "held" for v in verdicts) else "inconclusive"


def verdicts(run: Path) -> str:
    """The "Verdicts on the papers' claims" section, every number read from ``run``'s ``results.json``, its
    ``config.yaml`` and the per-utterance details of ``rescoring/`` (teacher against the re-tuned n-gram and each
    student seed against the 1-best, paired over utterances, are computed here from those details)."""
    results = json.loads((run / "results.json").read_text())
    recipe = yaml.safe_load((run / "config.yaml").read_text())["recipe"]
    decodes = json.loads((run / "rescoring" / "decodes.json").read_text())["sets"]
    seeds = [str(s) for s in results["seeds"]]
    arms, teacher_test = results["arms"], results["teacher"]["test"]
    recorded = results["rescoring"]["comparisons"]
    first_best, ngram = results["rescoring"]["first_best"], results["rescoring"]["ngram_retuned"]
    teacher = _rescoring(run, "teacher")
    references = decodes["commands"]["references"]
    t_params = int(results["teacher"]["cost"]["params"])
    s_params = int(arms["distilled"]["cost"]["params"])
    ratio = t_params / s_params
    modes = (("lattice", "wer_lattice"), ("nbest", "wer_nbest"))
    mode_name = {"lattice": "lattice", "nbest": "n-best"}
    n_utts = len(references)
    scale = (f"{n_utts} test utterances of the synthetic commands ({recipe['data']['test_voices']} unseen voices), "
             f"{len(seeds)} paired seeds ({', '.join(seeds)}), teacher {t_params:,} parameters, students "
             f"{s_params:,} ({ratio:.2f}× smaller)")

    # Claim 1: the teacher against the 1-best (recorded, over utterances) and against the re-tuned n-gram
    # (recomputed here from the n-gram's picks, checked against the n-gram WER the run recorded).
    lines1, parts1, per_utt = [], [], "errors/utterance"
    for mode, metric in modes:
        details = teacher["modes"][mode]["tests"]["commands"]
        if _errors(references, details["picks"]) != details["errors_after"]:
            raise ValueError(f"recomputed errors of the teacher's {mode} picks differ from the run's")
        ngram_errors = _errors(references, details["ngram_picks"])
        words = sum(len(r.split()) for r in references)
        if not math.isclose(sum(ngram_errors) / words, ngram[metric], abs_tol=1e-9):
            raise ValueError(f"recomputed n-gram {mode} WER differs from the run's ({ngram[metric]})")
        vs_first = _find(recorded, "teacher", "1-best", f"errors per utterance (commands {mode_name[mode]})")
        vs_ngram = paired_difference([float(e) for e in details["errors_after"]], [float(e) for e in ngram_errors],
                                     a_name="teacher", b_name="n-gram re-tuned", metric=f"errors ({mode})",
                                     higher_is_better=False)
        verdict = _combined([vs_first["verdict"], vs_ngram.verdict])
        parts1.append(verdict)
        lines1.append(f"   - {mode_name[mode]}: WER {100 * first_best[metric]:.2f} % (1-best) → "
                      f"{100 * ngram[metric]:.2f} % (n-gram re-tuned) → {100 * teacher_test[metric]:.2f} % "
                      f"(teacher); teacher − 1-best {_interval(vs_first, per_utt, 'utterances')}; teacher − n-gram "
                      f"{_interval(vs_ngram, per_utt, 'utterances')}. **{verdict}**")
    claim1 = parts1[0]

    # Claim 2: the distilled student against the 1-best: over seeds (recorded) and, per seed, over utterances.
    lines2 = []
    kept = [(first_best["wer_lattice"] - arms["distilled"]["seeds"][s]["wer_lattice"])
            / (first_best["wer_lattice"] - teacher_test["wer_lattice"]) for s in seeds
            ] if first_best["wer_lattice"] > teacher_test["wer_lattice"] else []
    parts2 = []
    for mode, metric in modes:
        over_seeds = _find(recorded, "distilled", "1-best", metric)
        per_seed = []
        for s in seeds:
            d = _rescoring(run, f"distilled-seed{s}")["modes"][mode]["tests"]["commands"]
            per_seed.append(paired_difference([float(e) for e in d["errors_after"]],
                                              [float(e) for e in d["errors_before"]], a_name="distilled",
                                              b_name="1-best", metric=f"errors ({mode})",
                                              higher_is_better=False).verdict)
        held_seeds = sum(v == "held" for v in per_seed)
        values = [100 * arms["distilled"]["seeds"][s][metric] for s in seeds]
        vs_ngram = paired_difference(values, [100 * ngram[metric]] * len(values), a_name="distilled",
                                     b_name="n-gram re-tuned", metric=metric, higher_is_better=False)
        verdict = ("not held" if over_seeds["verdict"] == "not held" else
                   "held" if over_seeds["verdict"] == "held" and held_seeds == len(seeds) else "inconclusive")
        parts2.append(verdict)
        lines2.append(f"   - {mode_name[mode]}: distilled − 1-best {_interval(over_seeds, 'points', 'seeds')}; over "
                      "utterances, "
                      f"{held_seeds} of {len(seeds)} seeds held on their own; distilled − n-gram re-tuned "
                      f"{_interval(vs_ngram, 'points', 'seeds')}. **{verdict}**")
    claim2 = parts2[0] if ratio >= 4 else "not tested (the student is less than 4× smaller)"
    kept_text = (f"The distilled students keep {100 * sum(kept) / len(kept):.0f} % of the teacher's lattice gain "
                 f"over the 1-best on average (per seed: {', '.join(f'{100 * k:.0f} %' for k in kept)})."
                 if kept else "The teacher has no lattice gain over the 1-best for a student to keep.")

    # Claim 3: distilled against scratch, over seeds (recorded).
    headline = _find(results["comparisons"], "distilled", "scratch", "wer_lattice")
    nbest = _find(recorded, "distilled", "scratch", "wer_nbest")
    nll = _find(recorded, "distilled", "scratch", "nll")
    lattice = {arm: [arms[arm]["seeds"][s]["wer_lattice"] for s in seeds] for arm in ("distilled", "scratch")}
    worse = [s for s, d, c in zip(seeds, lattice["distilled"], lattice["scratch"], strict=True) if d > c]
    spread = {arm: (100 * min(v), 100 * max(v)) for arm, v in lattice.items()}
    claim3 = headline["verdict"]

    # The real recordings: reported, not part of the verdicts.
    real = []
    for mode, metric in (("lattice", "wer_lattice_real"), ("nbest", "wer_nbest_real")):
        if metric in first_best:
            t = _find(recorded, "teacher", "1-best", f"errors per utterance (real {mode_name[mode]})")
            d = _find(recorded, "distilled", "1-best", metric)
            real.append(f"{mode_name[mode]}: 1-best {100 * first_best[metric]:.2f} %, teacher "
                        f"{100 * teacher_test[metric]:.2f} % ({t['verdict']} over {t['n']} utterances), distilled "
                        f"− 1-best {d['mean']:+.2f} points ({d['verdict']} over seeds)")
    real_text = ("On the real recordings of pocketsphinx-testdata (outside the verdicts, see Limits): "
                 + "; ".join(real) + "." if real else "")

    return f"""## Verdicts on the papers' claims

Scale: {scale}. Verdicts on the synthetic commands test set, lattice rescoring being the headline (n-best
beside it). A difference is *held* when its 95 % t-interval lies on the claimed side of zero, *not held* when
it lies on the other side, *inconclusive* when it spans zero. Differences are a − b in WER points (over seeds)
or in word errors per utterance (over utterances); negative means a makes fewer errors.

1. **Rescoring with a transformer LM lowers WER against the decoder's 1-best and its re-tuned n-gram: {claim1}**
   (lattice). It needs both comparisons held; the teacher is one model, so they are paired over the
   {n_utts} test utterances.
{chr(10).join(lines1)}
2. **The gain survives distillation into a ≥ 4× smaller LM: {claim2}** (lattice; student {ratio:.2f}×
   smaller). It needs the distilled student's WER below the 1-best over seeds and, for every seed, over
   utterances. {kept_text}
{chr(10).join(lines2)}
3. **Word-level KD beats the same small LM trained from scratch: {claim3}** (lattice). Distilled − scratch:
   lattice {_interval(headline, 'points', 'seeds')}; n-best {_interval(nbest, 'points', 'seeds')}; test NLL
   {_interval(nll, 'nats/token', 'seeds')}. Lattice WER
   over seeds: distilled {spread['distilled'][0]:.2f}–{spread['distilled'][1]:.2f} %, scratch
   {spread['scratch'][0]:.2f}–{spread['scratch'][1]:.2f} %; distilled is worse than scratch on
   {len(worse)} of {len(seeds)} seeds{' (' + ', '.join(worse) + ')' if worse else ''}.

{real_text}
"""


def limits(run: Path) -> str:
    """The "Limits" section: ``LIMITS`` with the run's sizes and 1-best WER filled in."""
    results = json.loads((run / "results.json").read_text())
    recipe = yaml.safe_load((run / "config.yaml").read_text())["recipe"]
    sets = json.loads((run / "rescoring" / "decodes.json").read_text())["sets"]
    real = sets.get("real", {"references": []})
    return "## Limits\n\n" + LIMITS.format(
        first_best=100 * results["rescoring"]["first_best"]["wer_lattice"],
        oracle=100 * results["rescoring"]["oracle"]["wer_lattice"], test_utts=len(sets["commands"]["references"]),
        test_voices=recipe["data"]["test_voices"], intents=recipe["data"]["intents"],
        per_intent=recipe["data"]["per_intent"], test_words=sum(len(r.split()) for r in sets["commands"]["references"]),
        n_seeds=len(results["seeds"]), real_utts=len(real["references"]),
        real_words=sum(len(r.split()) for r in real["references"])) + "\n" + _overlap(run, results)


def _overlap(run: Path, results: dict[str, Any]) -> str:
    """``OVERLAP`` filled in from the command set's manifest (named in ``rescoring/decodes.json``); "" when the
    manifest cannot be read."""
    notes = json.loads((run / "rescoring" / "decodes.json").read_text()).get("notes", {})
    manifest = Path(notes.get("commands", "")) / "manifest.jsonl"
    if "commands" not in notes or not manifest.is_file():
        return ""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    train = {r["transcript"] for r in rows if r["split"] == "train"}
    test = [r for r in rows if r["split"] == "test"]
    voices = sorted({f"{r['synthesizer']} {r['voice']}" for r in test})
    teacher = results["teacher"]["test"]
    in_train = sum(r["transcript"] in train for r in test)
    return "\n" + OVERLAP.format(test_voice_names=", ".join(voices), in_train=in_train,
                                 test_utts=len(test), ppl_commands=math.exp(teacher["nll"]),
                                 ppl_text=math.exp(teacher.get("nll_text", math.nan))) + "\n"


def _caches(run: Path) -> str:
    """What the run read from the caches instead of computing (the teacher, the pocketsphinx decodes)."""
    results = json.loads((run / "results.json").read_text())
    notes = json.loads((run / "rescoring" / "decodes.json").read_text()).get("notes", {})
    decodes = [v for k, v in notes.items() if k.startswith("decodes")]
    read = (["the teacher LM"] if str(results["teacher"].get("source", "")).startswith("reused") else []) + (
        ["the pocketsphinx decodes"] if decodes and all("read from the cache" in v for v in decodes) else [])
    return f", with {' and '.join(read)} read from the caches under `$KD_DATA_HOME`" if read else ""


def build_page(run: Path, command: str, minutes: float, out: Path, doc: Path) -> str:
    """The results page of ``run`` (to be written at ``doc``): title, intro, the report's body, verdicts, limits
    and how to reproduce it, with the data home written ``$KD_DATA_HOME``, the repository's own paths relative
    and the report's plots copied beside ``doc`` (the run directory is not committed)."""
    run = Path(run)
    page = (f"# {TITLE}\n\n{INTRO}\n\n{_body(run)}\n\n{verdicts(run)}\n{limits(run)}\n## Reproduce\n\n"
            f"```\n{command}\n```\n\nWall time: {minutes:.1f} min on a shared 2-core CPU, one torch thread"
            f"{_caches(run)}. The run directory (`{shown(out)}`) holds `report.md` with plots, `results.json`, the "
            "rescoring details (`rescoring/`), the LMs and one sub-run per arm and seed.\n")
    page = copy_plots(page, run, Path(doc))
    page = page.replace(str(run.resolve()), shown(run)).replace(str(run), shown(run))
    page = page.replace(str(data_home()), "$KD_DATA_HOME").replace(f"{ROOT}/", "")
    return re.sub(r"[ \t]+\n", "\n", page)


def outside_paths(page: str) -> list[str]:
    """Lines of ``page`` that name an absolute path outside the repository or a sibling ``../shared`` folder."""
    return [line for line in page.splitlines() if _ABSOLUTE.search(line) or "../shared" in line]


def main(argv: list[str] | None = None) -> int:
    """Run the study over the seeds and write the results page."""
    parser = base_parser(__doc__, "lm-distill", seeds=(0, 1, 2, 3, 4), run_name="repro-lm-distill")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra recipe overrides (key=value)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [f"seeds={args.seeds}", "name=repro-lm-distill", *args.overrides]
    run, minutes = run_recipe_study("lm-distill", "speech", settings, args.out, args.device)
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python",
                        "tools/repro/lm_distill.py", *map(shlex.quote, given)])
    page = build_page(run, command, minutes, args.out, args.doc)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page)
    print(f"results: {args.doc} ({minutes:.1f} min)")
    leaks = outside_paths(page)
    if leaks:
        print("the page names paths outside the repository:\n" + "\n".join(leaks), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
