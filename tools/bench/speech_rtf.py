"""Real-time factor of spoken-intent pipelines on the CPU, side by side, and the distilled LM's rescoring speed
against the teacher LM's (issue #17).

Four pipelines from 16 kHz audio to an intent, timed per utterance on real synthesized commands (espeak-ng and
flite, ``kd_speech.data.build_command_set``: 8 voices x 31 intents x 2 phrasings, ``vq-wav2vec-pretrain``'s default
set; the utterances are evenly spaced over its 2 unseen test voices), so that the real-time factor (processing time
/ audio duration) is over real audio durations:

- ``teacher``: pocketsphinx (bundled en-us model and trigram) 1-best -> MiniLM-L6 text classifier;
- ``rescore-teacher-lm``: pocketsphinx n-best (10, with lattice scores) -> rescoring with the teacher word LM
  (``kd_speech.asr.lm`` default size) -> MiniLM on the rescored best;
- ``rescore-student-lm``: the same with the >= 4x smaller LM (``kd_speech.asr.lm_distill.student_size``);
- ``slu-student``: the distilled SLU model, speech tokens -> speech BERT -> DS2 head (the sizes of
  ``slu-two-stage``'s defaults; tokens from the tiny vq-wav2vec, or from the tokenizer the recipe names in
  ``vq.kind``, ``--tokenizer``).

Each utterance is decoded once per round (n-best and lattice); the 1-best pipeline is charged the decoder's search
(``Decoded.decode_seconds``: start, process, end of utterance, all that a 1-best decode runs) and the rescoring
pipelines the whole call (search, lattice, n-best with acoustic and n-gram scores); the two LMs then score that
same n-best list, one after the other in alternating order. Stages run back to back per utterance, their order
reversed every other round, so that machine drift hits every side alike. Reported: per pipeline the RTF (median
over rounds of the summed stage times over the summed audio duration), the stage breakdown, and the ratios
SLU / teacher and student-LM / teacher-LM (rescoring pipelines and the LM scoring alone).

Weights are not trained (timing does not depend on their values): vq-wav2vec, speech BERT, DS2 head and both LMs
are initialised from their configs; MiniLM is the bundled pre-trained encoder with a fresh 31-intent classifier.
Model sizes are the recipes' defaults (``slu-two-stage.yaml``; ``LMSize()``); the LM vocabulary is the command
words plus the n-best words plus cmudict words up to ``--lm-vocab`` (default 6000, ``lm-distill``'s
``corpus.max_vocab``). Sanity checks (exit 1 when one fails): every pipeline gives an intent in [0, 31) for every
utterance; decoding and the SLU model give the same output every round; the ASR's 1-best is non-empty for most
utterances; the LM scores are finite and the student LM is >= 4x smaller; the sizes are the recipes'.

    .venv/bin/python tools/bench/speech_rtf.py                       # ~2 min on a busy 2-core CPU
    .venv/bin/python tools/bench/speech_rtf.py --utterances 40 --rounds 5

One torch thread by default: pocketsphinx decodes on one thread, so every pipeline gets one core, and small models
at batch 1 gain little from more; on a shared machine more threads mostly measure waiting for each other (here,
under a load of 4-7 on 2 cores, the SLU model took 16 ms per utterance with one thread and 0.8-1.5 s with two).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import sync, versions

HERE = Path(__file__).resolve().parent
PIPELINES = {
    "teacher": ("decode_search", "minilm_1best"),
    "rescore-teacher-lm": ("decode_nbest", "lm_teacher", "minilm_teacher_lm"),
    "rescore-student-lm": ("decode_nbest", "lm_student", "minilm_student_lm"),
    "slu-student": ("slu_tokens", "slu_model"),
}
NBEST = 10
#: The synthesized commands the utterances come from (``vq-wav2vec-pretrain``'s default set): 8 voices, 2 of them
#: unseen test voices, 31 intents x 2 phrasings; the test split holds 124 utterances.
COMMAND_SET = {"seed": 0, "voices": 8, "flite_voices": 2, "utterances_per_intent": 2, "intents": 31,
               "val_voices": 1, "test_voices": 2}
MIN_LM_RATIO = 4.0


@dataclass
class Utterance:
    """One benchmark utterance: its 16 kHz waveform, transcript, intent index and duration."""

    wave: torch.Tensor
    transcript: str
    intent: int
    seconds: float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's options (see ``--help``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cpu", help="device of the neural stages (pocketsphinx runs on the CPU)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (1: each pipeline on one core, as single-threaded pocketsphinx)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the utterances")
    parser.add_argument("--utterances", type=int, default=20,
                        help="test utterances, evenly spaced over the unseen voices and intents (at most 124)")
    parser.add_argument("--lm-vocab", type=int, default=6000, help="word LM vocabulary size")
    parser.add_argument("--seed", type=int, default=0, help="initialisation of the untrained weights")
    parser.add_argument("--tokenizer", choices=["recipe", "vq-wav2vec", "mel-kmeans"], default="recipe",
                        help="the SLU model's speech tokens: slu-two-stage's vq.kind (vq-wav2vec where it names "
                             "none), or the one named")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "speech_rtf.json",
                        help="where to write the results")
    args = parser.parse_args(argv)
    for name in ("threads", "rounds", "utterances"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.lm_vocab < 100:
        parser.error("--lm-vocab must be >= 100")
    return args


def utterances(count: int) -> tuple[list[Utterance], tuple[str, ...], dict[str, Any]]:
    """``count`` test utterances of the benchmark's command set (synthesized once, then cached)."""
    from kd_speech.data import CommandSetConfig, build_command_set, read_audio

    commands = build_command_set(CommandSetConfig(**COMMAND_SET), progress=False)
    test = commands.split("test")
    chosen = [test[i * len(test) // count] for i in range(min(count, len(test)))]
    items = []
    for u in chosen:
        wave = read_audio(u.path)
        items.append(Utterance(wave, u.transcript, commands.classes.index(str(u.intent)), len(wave) / 16000))
    info = {"set": str(commands.directory.name), "split": "test", "voices": sorted({u.speaker for u in chosen}),
            "utterances": len(items), "audio_seconds": sum(u.seconds for u in items)}
    return items, tuple(commands.classes), info


class SLUStudent:
    """Speech tokens -> speech BERT -> DS2 head at ``slu-two-stage``'s default sizes, untrained. The tokenizer is
    the tiny vq-wav2vec, or the recipe's ``vq.kind`` when ``tokenizer`` is ``recipe`` and the recipe names one
    (``mel-kmeans``: log-mel k-means units, their centroids fitted on ``waves``)."""

    def __init__(self, classes: int, device: torch.device, seed: int, tokenizer: str = "vq-wav2vec",
                 waves: Sequence[torch.Tensor] = ()) -> None:
        from kd_core.recipes import load_recipe
        from kd_speech.methods.two_stage import head
        from kd_speech.models import (
            SpeechVocabulary,
            VqWav2Vec,
            VqWav2VecConfig,
            build_speech_bert,
            speech_bert_config,
        )
        from kd_speech.slu import SpeechIntentModel
        from kd_speech.tasks import MAX_POSITIONS

        _, recipe = load_recipe("slu-two-stage", domain="speech")
        self.recipe = recipe
        torch.manual_seed(seed)
        if tokenizer == "recipe":
            tokenizer = getattr(recipe.vq, "kind", "vq-wav2vec")
        self.tokenizer = tokenizer
        if tokenizer == "mel-kmeans":
            from kd_speech.models import MelUnits

            self.vq = MelUnits(recipe.vq.clusters).fit(list(waves), iterations=5, seed=seed).to(device).eval()
        else:
            self.vq = VqWav2Vec(VqWav2VecConfig.tiny()).to(device).eval()
        self.vocab = SpeechVocabulary(self.vq.num_tokens)
        bert = build_speech_bert(speech_bert_config(self.vocab, hidden_size=recipe.bert.hidden,
                                                    num_layers=recipe.bert.layers, num_heads=recipe.bert.heads,
                                                    max_positions=MAX_POSITIONS))
        self.model = SpeechIntentModel(bert, head(recipe.student, recipe.bert.hidden, classes, seed),
                                       freeze_encoder=True).to(device).eval()
        self.max_positions, self.device = MAX_POSITIONS, device

    def sizes(self) -> dict[str, Any]:
        """Parameter counts and the sizes the sanity check compares with the recipe."""
        bert = self.model.encoder.config
        head = self.model.head
        conv = next(m for m in head.conv if isinstance(m, torch.nn.Conv2d))
        return {"tokenizer": self.tokenizer, "vq_parameters": sum(p.numel() for p in self.vq.parameters()),
                "model_parameters": sum(p.numel() for p in self.model.parameters()),
                "bert": [bert.hidden_size, bert.num_hidden_layers, bert.num_attention_heads],
                "head": [conv.out_channels, head.lstms[0].hidden_size, len(head.lstms)]}

    @torch.no_grad()
    def tokens(self, wave: torch.Tensor) -> torch.Tensor:
        """The vq tokens of one waveform."""
        return self.vq.tokens(wave.to(self.device))

    @torch.no_grad()
    def intent(self, tokens: torch.Tensor) -> torch.Tensor:
        """Intent logits of one utterance's tokens."""
        ids = self.vocab.encode(tokens.cpu(), max_length=self.max_positions).unsqueeze(0).to(self.device)
        return self.model({"input_ids": ids, "attention_mask": torch.ones_like(ids)})["logits"][0]


class TextClassifier:
    """The bundled MiniLM-L6 with a fresh classifier over the intents (the teacher's text model), untrained head."""

    def __init__(self, classes: int, device: torch.device, seed: int, max_length: int) -> None:
        from kd_speech.text_teacher import load_text_model

        torch.manual_seed(seed)
        model, self.tokenizer = load_text_model(classes)
        self.model, self.device, self.max_length = model.to(device).eval(), device, max_length

    @torch.no_grad()
    def intent(self, text: str) -> torch.Tensor:
        """Intent logits of one transcript."""
        encoded = self.tokenizer(text, truncation=True, max_length=self.max_length, return_tensors="pt")
        return self.model(**{k: v.to(self.device) for k, v in encoded.items()}).logits[0]


def cmudict_words() -> list[str]:
    """Words of pocketsphinx's bundled cmudict (alternate pronunciations folded), in file order."""
    import pocketsphinx

    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    words = (line.split(maxsplit=1)[0].split("(")[0] for line in path.read_text(errors="replace").splitlines()
             if line.strip())
    return list(dict.fromkeys(w.lower() for w in words if w.isascii()))


def word_lms(texts: Sequence[str], vocab_size: int, device: torch.device, seed: int) -> tuple[Any, Any]:
    """Teacher (``LMSize()``) and student (``student_size``) word LMs over a ``vocab_size``-word vocabulary that
    holds every word of ``texts``, untrained."""
    from kd_speech.asr import LMSize, WordLM, WordVocab, student_size
    from kd_speech.asr.wer import normalize_words

    own = list(dict.fromkeys(w for t in texts for w in normalize_words(t)))
    fill = [w for w in cmudict_words() if w not in set(own)]
    vocab = WordVocab((own + fill)[: vocab_size - 4])
    teacher = WordLM(vocab, LMSize(), seed=seed).to(device).eval()
    student = WordLM(vocab, student_size(teacher, MIN_LM_RATIO), seed=seed).to(device).eval()
    return teacher, student


def rescored_best(nbest: Any, lm_scores: Sequence[float]) -> str:
    """The n-best list's best text under acoustic + LM (λ = 1) + no word penalty (a missing acoustic score counts
    the decoder's total, or 0)."""
    from kd_speech.asr import RescoreWeights, combine

    weights = RescoreWeights()
    scores = [combine(h.acoustic if h.acoustic is not None else (h.total or 0.0), s, h.lm, len(h.words), weights)
              for h, s in zip(nbest.hypotheses, lm_scores, strict=True)]
    return nbest.hypotheses[max(range(len(scores)), key=scores.__getitem__)].text if scores else ""


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


class Round:
    """One pass over the utterances: every stage's time per utterance and every pipeline's output."""

    def __init__(self, decoder: Any, slu: SLUStudent, text: TextClassifier, lms: tuple[Any, Any],
                 device: torch.device) -> None:
        self.decoder, self.slu, self.text, self.lms, self.device = decoder, slu, text, lms, device
        self.times: dict[str, list[float]] = {s: [] for p in PIPELINES.values() for s in p}
        self.outputs: dict[str, list[Any]] = {"nbest": [], "lm_teacher": [], "lm_student": [],
                                              **{p: [] for p in PIPELINES}}

    def timed(self, stage: str, work: Callable[[], Any]) -> Any:
        """``work()``, its time added to ``stage`` (device work finished before the clock is read)."""
        sync(self.device)
        began = time.perf_counter()
        out = work()
        sync(self.device)
        self.times[stage].append(time.perf_counter() - began)
        return out

    def slu_side(self, u: Utterance) -> None:
        """The distilled SLU model: vq tokens, then speech BERT + DS2 head."""
        tokens = self.timed("slu_tokens", lambda: self.slu.tokens(u.wave))
        self.outputs["slu-student"].append(self.timed("slu_model", lambda: self.slu.intent(tokens)).float().cpu())

    def asr_side(self, u: Utterance, reverse: bool) -> None:
        """One n-best decode (its search charged to the 1-best pipeline), MiniLM on the 1-best, and each LM's
        rescoring of that n-best list followed by MiniLM on its best (LM order reversed with ``reverse``)."""
        began = time.perf_counter()
        decoded = self.decoder.decode(u.wave.numpy())
        self.times["decode_nbest"].append(time.perf_counter() - began)
        self.times["decode_search"].append(decoded.decode_seconds)  # (a 1-best decode: start, process, end)
        nbest = decoded.nbest
        self.outputs["nbest"].append(tuple(nbest.texts))
        first = nbest.best.text if nbest.best is not None else ""
        self.outputs["teacher"].append(self.timed("minilm_1best", lambda: self.text.intent(first)).float().cpu())
        order = (("teacher", self.lms[0]), ("student", self.lms[1]))
        for name, lm in order[::-1] if reverse else order:
            scores, best = self.timed(f"lm_{name}", lambda lm=lm: self._rescore(lm, nbest))
            self.outputs[f"lm_{name}"].append(scores)
            logits = self.timed(f"minilm_{name}_lm", lambda best=best: self.text.intent(best))
            self.outputs[f"rescore-{name}-lm"].append(logits.float().cpu())

    @staticmethod
    def _rescore(lm: Any, nbest: Any) -> tuple[list[float], str]:
        scores = lm.sentence_logprobs(nbest.texts) if len(nbest) else []
        return scores, rescored_best(nbest, scores)

    def run(self, items: Sequence[Utterance], reverse: bool) -> Round:
        """Every utterance through every stage, the SLU side first (ASR first with ``reverse``)."""
        for u in items:
            if reverse:
                self.asr_side(u, reverse)
                self.slu_side(u)
            else:
                self.slu_side(u)
                self.asr_side(u, reverse)
        return self


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(rounds: list[dict[str, list[float]]], audio: float) -> dict[str, Any]:
    """Per pipeline the RTF of every round and its median; per stage the median ms per utterance; the ratios."""
    rtf = {p: [sum(sum(r[s]) for s in stages) / audio for r in rounds] for p, stages in PIPELINES.items()}
    stage_ms = {s: _median([1000 * statistics.mean(r[s]) for r in rounds]) for s in rounds[0]}
    median = {p: _median(v) for p, v in rtf.items()}

    def per_round(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(rtf[a], rtf[b], strict=True)]

    lm_round = [sum(r["lm_student"]) / sum(r["lm_teacher"]) for r in rounds]
    return {
        "rtf": median, "rtf_per_round": rtf, "stage_ms_per_utterance": stage_ms,
        "ratios": {
            "slu-student/teacher": median["slu-student"] / median["teacher"],
            "rescore-student-lm/rescore-teacher-lm": median["rescore-student-lm"] / median["rescore-teacher-lm"],
            "rescore-student-lm/teacher": median["rescore-student-lm"] / median["teacher"],
            "lm-student/lm-teacher": _median(lm_round),
        },
        "ratios_per_round": {"slu-student/teacher": per_round("slu-student", "teacher"),
                             "rescore-student-lm/rescore-teacher-lm": per_round("rescore-student-lm",
                                                                                "rescore-teacher-lm"),
                             "lm-student/lm-teacher": lm_round},
    }


def sanity(items: Sequence[Utterance], outs: list[dict[str, list[Any]]], classes: int, slu: SLUStudent,
           lms: tuple[Any, Any]) -> dict[str, Any]:
    """The checks of the module doc: name -> {"ok", "detail"}."""
    checks: dict[str, Any] = {}
    for pipeline in PIPELINES:
        logits = [x for o in outs for x in o[pipeline]]
        ok = len(logits) == len(items) * len(outs) and all(
            x.shape == (classes,) and bool(torch.isfinite(x).all()) for x in logits)
        intents = [int(x.argmax()) for x in outs[0][pipeline]]
        checks[f"{pipeline} gives an intent for every utterance"] = {
            "ok": ok and all(0 <= i < classes for i in intents), "detail": f"{len(logits)} predictions"}
    same_nbest = all(o["nbest"] == outs[0]["nbest"] for o in outs)
    same_slu = all(torch.equal(a, b) for o in outs for a, b in zip(o["slu-student"], outs[0]["slu-student"],
                                                                     strict=True))
    checks["decoding is the same every round"] = {"ok": same_nbest, "detail": "n-best texts compared"}
    checks["the SLU model is the same every round"] = {"ok": same_slu, "detail": "logits compared"}
    spoken = sum(bool(n[0].strip()) for n in outs[0]["nbest"] if n)
    checks["the ASR hears something in most utterances"] = {
        "ok": spoken >= 0.5 * len(items), "detail": f"{spoken}/{len(items)} non-empty 1-best"}
    finite = all(math.isfinite(s) for o in outs for k in ("lm_teacher", "lm_student") for row in o[k] for s in row)
    checks["LM scores are finite"] = {"ok": finite, "detail": "every hypothesis, both LMs"}
    ratio = lms[0].num_parameters() / lms[1].num_parameters()
    checks[f"the student LM is >= {MIN_LM_RATIO:g}x smaller"] = {"ok": ratio >= MIN_LM_RATIO,
                                                                 "detail": f"{ratio:.2f}x"}
    recipe, sizes = slu.recipe, slu.sizes()
    want = {"bert": [recipe.bert.hidden, recipe.bert.layers, recipe.bert.heads],
            "head": [recipe.student.conv_channels, recipe.student.lstm_hidden, recipe.student.lstm_layers]}
    got = {k: sizes[k] for k in want}
    checks["the SLU sizes are slu-two-stage's defaults"] = {
        "ok": got == want, "detail": f"{got} vs {want}"}
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; 1 when a sanity check fails."""
    args = parse_args(argv)
    from kd_core.pretrained import quiet_transformers
    from kd_speech.asr import PocketsphinxDecoder

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_start = load_average()
    started = time.perf_counter()
    items, classes, data = utterances(args.utterances)
    slu = SLUStudent(len(classes), device, args.seed, args.tokenizer, [u.wave for u in items])
    with quiet_transformers():
        text = TextClassifier(len(classes), device, args.seed, slu.recipe.teacher.max_length)
    decoder = PocketsphinxDecoder(nbest=NBEST)
    first_pass = [decoder.decode(u.wave.numpy()).nbest for u in items]  # (also warms the decoder up)
    from kd_speech.data import COMMANDS

    phrasings = [p for c in COMMANDS for p in c.phrasings]
    lms = word_lms([*phrasings, *(t for n in first_pass for t in n.texts)], args.lm_vocab, device, args.seed)
    Round(decoder, slu, text, lms, device).run(items[:2], reverse=False)  # warm-up, not timed
    rounds, outs = [], []
    for index in range(args.rounds):
        done = Round(decoder, slu, text, lms, device).run(items, reverse=bool(index % 2))
        rounds.append(done.times)
        outs.append(done.outputs)
        print(f"round {index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    audio = sum(u.seconds for u in items)
    summary = summarise(rounds, audio)
    checks = sanity(items, outs, len(classes), slu, lms)
    result = {
        "benchmark": "speech_rtf", "date": time.strftime("%Y-%m-%d"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": versions(), "load_average": {"start": load_start, "end": load_average()},
        "data": data, "weights": "untrained (timing does not depend on weight values); MiniLM encoder pre-trained",
        "sizes": {"slu": slu.sizes(), "minilm_parameters": sum(p.numel() for p in text.model.parameters()),
                  "lm_teacher": {"parameters": lms[0].num_parameters(), **vars(lms[0].size)},
                  "lm_student": {"parameters": lms[1].num_parameters(), **vars(lms[1].size)},
                  "lm_vocabulary": len(lms[0].vocab), "nbest": NBEST,
                  "hypotheses_per_list": statistics.mean(len(x) for x in outs[0]["lm_teacher"])},
        "pipelines": {p: list(s) for p, s in PIPELINES.items()},
        **summary, "checks": checks, "seconds": time.perf_counter() - started,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(items)} utterances, {audio:.1f} s of audio, {args.rounds} rounds, {args.threads} threads, "
          f"device {args.device}; weights untrained")
    print(f"{'pipeline':<22}{'RTF (median)':>14}")
    for pipeline, value in summary["rtf"].items():
        print(f"{pipeline:<22}{value:>14.4f}")
    for name, value in summary["ratios"].items():
        print(f"{name:<40}{value:>10.4f}")
    failed = [name for name, c in checks.items() if not c["ok"]]
    for name in failed:
        print(f"sanity check failed: {name} ({checks[name]['detail']})", file=sys.stderr)
    print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
