"""lm-distill: pocketsphinx n-best and lattice rescoring with a word LM trained here, and that LM distilled.

Papers:

- Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015 (arXiv 1503.02531): the student
  matches the teacher's softened distribution, α·T²·KL + (1 − α)·CE;
- Kim & Rush, "Sequence-Level Knowledge Distillation", EMNLP 2016 (arXiv 1606.07947): *word-level* KD, that
  loss at every position of a sequence over the next-word distribution;
- Sudarshan et al., "Improved Contextual Recognition in Automatic Speech Recognition Systems by Semantic
  Lattice Rescoring", arXiv 2310.09680: a transformer LM rescores a first-pass decoder's lattices,
  acoustic + λ·(interpolated LM) + β·words, weights tuned on held-out data.

The pipeline, a kd-core ``Study`` (every piece cached by what determines it):

1. Spoken commands synthesized with espeak-ng and flite (``data.*``, ``kd_speech.data``), split by voice (test
   voices unseen), and the real LibriVox and cards recordings of Debian's pocketsphinx-testdata
   (``decode.testdata``).
2. The LM's text: the transcripts of the *train* split only (``corpus.commands_repeat`` times) plus
   ``corpus.fortunes`` fortunes and ``corpus.glosses`` WordNet gloss definitions and examples
   (``kd_core.text_corpora``); a word vocabulary over it that keeps every train-transcript word. Held-out
   fortunes and glosses (``corpus.held_out``) measure perplexity on real text.
3. Pocketsphinx decodes the validation, test and real audio into n-best lists and lattices (top
   ``decode.lattice_paths`` distinct paths), cached under ``$KD_DATA_HOME/asr-decodes``. The inputs are checked
   before anything trains; the decoding itself waits until the first LM is scored (after the run directory is
   written, so that its progress shows and a bad ``--out`` fails first).
4. The teacher LM (``teacher.*``) is trained on the text (cached under ``$KD_DATA_HOME/teachers``); arms on
   paired seeds: ``distilled`` (word-level KD from the teacher into a ≥ ``student.min_ratio``× smaller LM) and
   ``scratch`` (the same student size and initialisation, cross-entropy alone).
5. Every LM rescores: λ, μ, β tuned on the validation decodes (``tune.*``), WER on the test sets for n-best and
   lattice, before (decoder 1-best) and after; perplexities, parameters, LM scoring time. The report adds the
   decoder's n-gram with re-tuned weights and the oracle as references, paired intervals (distilled vs
   scratch and vs the 1-best over seeds; teacher vs the 1-best over utterances), plots, a per-utterance CSV,
   and the LMs themselves (``teacher-lm/``, ``<arm>-seed<N>/model/``) for ``kd-speech rescore --lm RUN``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from kd_core.errors import ConfigError
from kd_core.recipes import RunContext, Section, Seed
from kd_core.study import Arm, TrainSpec, supervised_phases
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Splits, Task
from pydantic import Field, field_validator, model_validator
from torch import nn

from kd_speech.data.section import CommandSetSection

__all__ = ["METHOD", "WER_METRICS", "CommandsData", "CorpusSection", "DecodeSection", "KDSection", "LMDistillConfig",
           "LMSection", "StudentSection", "TuneSection", "arms", "task"]

#: The test WER metrics (percent in reports): commands (unseen voices) and real recordings, n-best and lattice.
WER_METRICS = ("wer_lattice", "wer_nbest", "wer_lattice_real", "wer_nbest_real")
HEADLINE = "wer_lattice"
_SET_NAMES = {"commands": "", "real": "_real"}
_MODE_NAMES = {"nbest": "n-best", "lattice": "lattice"}


class CommandsData(CommandSetSection):
    """The spoken-command set (``kd_speech.data.build_command_set``): voices, phrasings, intents, held-out voices."""

    val_voices: Annotated[int, Field(ge=1)] = 2


class CorpusSection(Section):
    """The LM's training text: train-split transcripts (repeated), fortunes and WordNet glosses (counts of
    sentences, 0: none), sentence length bounds, held-out real text, and the vocabulary."""

    commands_repeat: Annotated[int, Field(ge=1, le=100)] = 4
    fortunes: Annotated[int, Field(ge=0)] = 2000
    glosses: Annotated[int, Field(ge=0)] = 2000
    held_out: Annotated[int, Field(ge=1)] = 300
    min_words: Annotated[int, Field(ge=1)] = 3
    max_words: Annotated[int, Field(ge=1, le=200)] = 24
    min_count: Annotated[int, Field(ge=1)] = 2
    max_vocab: Annotated[int, Field(ge=16)] = 5000
    seed: Seed = 0

    @model_validator(mode="after")
    def _words(self) -> CorpusSection:
        if self.min_words > self.max_words:
            raise ValueError(f"corpus.min_words must be at most corpus.max_words ({self.max_words}), received "
                             f"{self.min_words}")
        return self


class DecodeSection(Section):
    """Pocketsphinx decoding: n-best length, distinct lattice paths kept, and whether the real recordings of
    pocketsphinx-testdata are a second test set."""

    nbest: Annotated[int, Field(ge=1, le=1000)] = 10
    lattice_paths: Annotated[int, Field(ge=1, le=1000)] = 50
    testdata: bool = True


class LMSection(Section):
    """The teacher LM (GPT-2-style, word level) and how the study trains it (AdamW, cosine decay)."""

    n_embd: Annotated[int, Field(ge=4, le=2048)] = 128
    n_layer: Annotated[int, Field(ge=1, le=24)] = 2
    n_head: Annotated[int, Field(ge=1, le=32)] = 4
    n_positions: Annotated[int, Field(ge=3, le=1024)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    epochs: Annotated[int, Field(gt=0)] = 4
    lr: Annotated[float, Field(gt=0)] = 2e-3
    batch_size: Annotated[int, Field(gt=0)] = 64
    weight_decay: Annotated[float, Field(ge=0)] = 0.01

    @model_validator(mode="after")
    def _heads(self) -> LMSection:
        if self.n_embd % self.n_head:
            raise ValueError(f"teacher.n_embd must be a multiple of teacher.n_head ({self.n_head}), received "
                             f"{self.n_embd}")
        return self

    def train_spec(self) -> TrainSpec:
        """The study's ``teacher_training``."""
        return TrainSpec(self.epochs, self.lr, self.batch_size, self.weight_decay)


class StudentSection(Section):
    """The student LM (both arms): its size (0 everywhere: half the teacher's layers, narrowed until it is
    ``min_ratio``× smaller), the smallest teacher/student parameter ratio, and its training (AdamW, cosine decay,
    gradient clipping)."""

    n_embd: Annotated[int, Field(ge=0, le=2048)] = 0
    n_layer: Annotated[int, Field(ge=0, le=24)] = 0
    n_head: Annotated[int, Field(ge=0, le=32)] = 0
    min_ratio: Annotated[float, Field(ge=4)] = 4.0
    epochs: Annotated[int, Field(gt=0)] = 4
    lr: Annotated[float, Field(gt=0)] = 3e-3
    batch_size: Annotated[int, Field(gt=0)] = 64
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    clip_grad_norm: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="after")
    def _size(self) -> StudentSection:
        given = [self.n_embd, self.n_layer, self.n_head]
        if any(given) and not all(given):
            raise ValueError(f"student.n_embd, student.n_layer and student.n_head must be all 0 (automatic) or all "
                             f"given, received {given}")
        if all(given) and self.n_embd % self.n_head:
            raise ValueError(f"student.n_embd must be a multiple of student.n_head ({self.n_head}), received "
                             f"{self.n_embd}")
        return self

    def train_spec(self) -> TrainSpec:
        """The ``TrainSpec`` of both arms."""
        return TrainSpec(self.epochs, self.lr, self.batch_size, self.weight_decay)


class KDSection(Section):
    """Word-level KD: the KL term's weight α (CE gets 1 − α) and the temperature T."""

    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 2.0


def _finite_list(values: list[float], name: str, low: float | None = None, high: float | None = None) -> list[float]:
    if not values:
        raise ValueError(f"tune.{name} must hold at least one value, received []")
    for value in values:
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            bounds = f" in [{low:g}, {high:g}]" if high is not None else f" >= {low:g}" if low is not None else ""
            raise ValueError(f"tune.{name} must hold finite numbers{bounds}, received {value}")
    return values


class TuneSection(Section):
    """The grid the rescoring weights are tuned over on the validation decodes: λ (LM weight, ≥ 0), μ (the new
    LM's interpolation share, in [0, 1]) and β (word insertion penalty; positive is a bonus)."""

    lm_weights: list[float] = Field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0, 6.5, 8.0, 10.0, 13.0, 16.0, 20.0])
    interpolations: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    word_penalties: list[float] = Field(default_factory=lambda: [-15.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0,
                                                                 10.0])

    @field_validator("lm_weights")
    @classmethod
    def _lm_weights(cls, values: list[float]) -> list[float]:
        return _finite_list(values, "lm_weights", 0.0)

    @field_validator("interpolations")
    @classmethod
    def _interpolations(cls, values: list[float]) -> list[float]:
        return _finite_list(values, "interpolations", 0.0, 1.0)

    @field_validator("word_penalties")
    @classmethod
    def _word_penalties(cls, values: list[float]) -> list[float]:
        return _finite_list(values, "word_penalties")

    def grid(self) -> Any:
        """The ``kd_speech.asr.evaluate.Grid``."""
        from kd_speech.asr.evaluate import Grid

        return Grid(tuple(self.lm_weights), tuple(self.interpolations), tuple(self.word_penalties))


class LMDistillConfig(StudyRecipe):
    """The ``lm-distill`` recipe."""

    method: Literal["lm-distill"] = "lm-distill"
    data: CommandsData = CommandsData()
    corpus: CorpusSection = CorpusSection()
    decode: DecodeSection = DecodeSection()
    teacher: LMSection = LMSection()
    student: StudentSection = StudentSection()
    kd: KDSection = KDSection()
    tune: TuneSection = TuneSection()
    latency_iterations: Annotated[int, Field(ge=0)] = 10

    @model_validator(mode="after")
    def _context_fits(self) -> LMDistillConfig:
        if self.teacher.n_positions < self.corpus.max_words + 2:
            raise ValueError(f"teacher.n_positions must hold the longest sentence and <s>, </s> (corpus.max_words + "
                             f"2 = {self.corpus.max_words + 2}), received {self.teacher.n_positions}")
        return self


# -- the data: commands, real recordings, the LM's text, the decodes -------------------------------------------

@dataclass
class Built:
    """What the task builds once: transcripts per split, the LM's text and vocabulary, the utterances to decode
    (checked) and where the data came from."""

    train_texts: list[str]
    val_texts: list[str]
    test_texts: list[str]
    corpus: list[str]
    held_out: list[str]
    corpus_sizes: dict[str, int]
    vocab: Any
    utterances: dict[str, list[Any]]
    settings: Any
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Decoded:
    """The decodes of the validation, test and (if asked for) real utterances."""

    val: list[Any]
    test: list[Any]
    real: list[Any]
    notes: dict[str, str] = field(default_factory=dict)

    def tests(self) -> dict[str, list[Any]]:
        """The test sets: ``commands`` (unseen voices) and, if decoded, ``real``."""
        return {"commands": self.test, **({"real": self.real} if self.real else {})}


def _real_text(corpus: CorpusSection, sources: list[str], count: int, argument: str) -> tuple[list[str], list[str]]:
    """``count`` training sentences of ``sources`` and ``corpus.held_out`` more, disjoint (one seeded shuffle)."""
    from kd_core.text_corpora import real_sentences

    if count == 0:
        return [], []
    pool = real_sentences(None, corpus.seed, sources, corpus.min_words, corpus.max_words)
    if count + corpus.held_out > len(pool):
        raise ConfigError(argument, f"at most {len(pool) - corpus.held_out} (the {len(pool)} usable sentences of "
                          f"{sources} less corpus.held_out = {corpus.held_out})", count)
    return pool[:count], pool[count: count + corpus.held_out]


def _build(config: LMDistillConfig) -> Built:
    """Build (or read from the caches) the text and the command set; check every utterance to decode. It prints
    nothing (it runs before the run directory is written, and an error then must stay one line)."""
    from kd_speech.asr.decoded import DecodeSettings, check_utterances
    from kd_speech.asr.lm import WordVocab
    from kd_speech.data import build_command_set, read_testdata

    commands = build_command_set(config.data.command_set(), progress=False)
    splits = {s: commands.split(s) for s in ("train", "val", "test")}
    for split, items in splits.items():
        if not items:
            raise ConfigError("data.voices", f"voices enough for a non-empty {split} split", config.data.voices)
    real = read_testdata() if config.decode.testdata else []
    c = config.corpus
    fortunes, held_fortunes = _real_text(c, ["fortunes"], c.fortunes, "corpus.fortunes")
    glosses, held_glosses = _real_text(c, ["gloss-definitions", "gloss-examples"], c.glosses, "corpus.glosses")
    train_texts = [u.transcript for u in splits["train"]]
    corpus = [t for _ in range(c.commands_repeat) for t in train_texts] + fortunes + glosses
    vocab = WordVocab.build(corpus, min_count=c.min_count, max_size=c.max_vocab, keep=train_texts)
    settings = DecodeSettings(config.decode.nbest, config.decode.lattice_paths)
    utterances = {"val": splits["val"], "test": splits["test"], "real": real}
    for name, items in utterances.items():
        if items:
            check_utterances(items, settings, "data" if name != "real" else "decode.testdata")
    return Built(train_texts, [u.transcript for u in splits["val"]], [u.transcript for u in splits["test"]], corpus,
                 held_fortunes + held_glosses,
                 {"train transcripts": len(train_texts), "fortunes": len(fortunes), "glosses": len(glosses),
                  "sentences": len(corpus), "words": sum(len(t.split()) for t in corpus), "vocabulary": len(vocab)},
                 vocab, utterances, settings, {"commands": str(commands.directory)})


def _decode(built: Built) -> Decoded:
    """Decode (or read from the cache) the validation, test and real utterances: when the first LM is scored,
    after the run directory is written (so progress may show; the inputs were checked before)."""
    from kd_speech.asr.decoded import decode_utterances

    decodes, notes = {}, {}
    for name, items in built.utterances.items():
        if items:
            decodes[name], notes[f"decodes ({name})"] = decode_utterances(items, built.settings,
                                                                          label=f"pocketsphinx: {name} audio")
    return Decoded(decodes["val"], decodes["test"], decodes.get("real", []), notes)


class _Lazy:
    """A value built on first ``get()``."""

    def __init__(self, build: Any) -> None:
        self._build, self._value, self._done = build, None, False

    def get(self) -> Any:
        if not self._done:
            self._value, self._done = self._build(), True
        return self._value


def _sizes(config: LMDistillConfig, vocab: Any) -> tuple[Any, Any]:
    """The teacher's and the student's ``LMSize`` (the student's checked against ``student.min_ratio``)."""
    from kd_speech.asr.lm import LMSize, WordLM
    from kd_speech.asr.lm_distill import check_ratio, student_size

    t, s = config.teacher, config.student
    teacher = LMSize(t.n_embd, t.n_layer, t.n_head, t.n_positions, t.dropout)
    probe = WordLM(vocab, teacher)
    student = (LMSize(s.n_embd, s.n_layer, s.n_head, t.n_positions, t.dropout) if s.n_embd
               else student_size(probe, s.min_ratio))
    try:
        check_ratio(probe, WordLM(vocab, student), s.min_ratio)
    except ConfigError as err:
        raise ConfigError("student.n_embd", err.expected, err.received, hint=err.hint) from None
    return teacher, student


# -- evaluation ---------------------------------------------------------------------------------------------

def _batches(lm: nn.Module, texts: Sequence[str], n_positions: int) -> list[dict[str, Any]]:
    from torch.utils.data import DataLoader

    from kd_speech.asr.lm import SentenceDataset, collate_sentences

    device = next(lm.parameters()).device
    loader = DataLoader(SentenceDataset(lm.vocab, texts, "extra", n_positions), batch_size=128,
                        collate_fn=partial(collate_sentences, pad_id=lm.vocab.pad_id))
    return [{k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()} for batch in loader]


def _mode_json(result: Any) -> dict[str, Any]:
    ngram = vars(result.ngram_weights) if result.ngram_weights else None
    return {"weights": vars(result.weights), "tuned": result.tuned, "val_before": result.val_before,
            "val_after": result.val_after, "ngram_weights": ngram,
            "tests": {name: vars(r) for name, r in result.tests.items()}}


def _write_decodes(folder: Path, b: Built, d: Decoded) -> None:
    """``rescoring/decodes.json``: per set the utterance ids, references, decoder 1-best texts and decode
    statistics; the LM text's sizes; where the data came from."""
    sets = {}
    for name, decodes in (("val", d.val), *d.tests().items()):
        audio = sum(u.audio_seconds for u in decodes)
        sets[name] = {"ids": [u.id for u in decodes], "references": [u.reference for u in decodes],
                      "first_best": [u.first_best for u in decodes], "audio_seconds": audio,
                      "rtf": sum(u.decode_seconds for u in decodes) / audio if audio else math.nan,
                      "mean_links": sum(u.lattice_links for u in decodes) / len(decodes)}
    (folder / "decodes.json").write_text(json.dumps({"sets": sets, "corpus": b.corpus_sizes,
                                                     "notes": {**b.notes, **d.notes}}, indent=1))


def _evaluator(config: LMDistillConfig, context: RunContext, built: _Lazy, decoded: _Lazy) -> Any:
    """The task's evaluator: perplexity of the split's transcripts, and (val, test) WER after rescoring; on test,
    perplexity of the real references and held-out text, LM scoring time, and the details in
    ``<run>/rescoring/<lm name>.json``; the teacher is saved to ``<run>/teacher-lm``."""
    from kd_core.taps import unwrap

    from kd_speech.asr.evaluate import evaluate_lm
    from kd_speech.asr.lm import token_nll

    out = Path(context.out)

    def evaluate(model: nn.Module, batches: Any, forward: Any) -> dict[str, float]:
        batches = list(batches)
        nll, _ = token_nll(model, batches, forward)
        metrics = {"nll": nll, "perplexity": math.exp(nll)}
        split = batches[0].get("split") if batches else None
        if split not in ("val", "test"):
            return metrics
        lm = unwrap(model)
        b, d = built.get(), decoded.get()
        grid = config.tune.grid()
        if split == "val":
            result = evaluate_lm(lm.sentence_logprobs, {"commands": d.val}, val=d.val, grid=grid)
            return {**metrics, **{f"wer_{mode}": r.val_after for mode, r in result.modes.items()}}
        result = evaluate_lm(lm.sentence_logprobs, d.tests(), val=d.val, grid=grid)
        for mode, r in result.modes.items():
            for name, suffix in _SET_NAMES.items():
                if name in r.tests:
                    metrics[f"wer_{mode}{suffix}"] = r.tests[name].after
        n_positions = lm.size.n_positions
        if d.real:
            metrics["nll_real"] = token_nll(lm, _batches(lm, [u.reference for u in d.real], n_positions), forward)[0]
        metrics["nll_text"] = token_nll(lm, _batches(lm, b.held_out, n_positions), forward)[0]
        metrics["lm_ms_per_hypothesis"] = result.ms_per_hypothesis
        name = getattr(lm, "name", "") or "lm"
        if (out / "config.yaml").is_file():  # a run directory (not a bare check): record what was scored
            details = {"name": name, "parameters": lm.num_parameters(), "size": vars(lm.size),
                       "lm_seconds": result.lm_seconds, "hypotheses_scored": result.hypotheses_scored,
                       "modes": {mode: _mode_json(r) for mode, r in result.modes.items()}}
            folder = out / "rescoring"
            folder.mkdir(exist_ok=True)
            (folder / f"{name}.json").write_text(json.dumps(details, indent=1))
            if not (folder / "decodes.json").is_file():
                _write_decodes(folder, b, d)
            if name == "teacher" and not (out / "teacher-lm" / "vocab.json").is_file():
                lm.save(out / "teacher-lm")
        return metrics

    return evaluate


def _validator(model: nn.Module, batches: Any, forward: Any) -> dict[str, float]:
    """After every epoch: the validation transcripts' perplexity (nats per token and its exponential)."""
    from kd_speech.asr.lm import token_nll

    nll, _ = token_nll(model, batches, forward)
    return {"nll": nll, "perplexity": math.exp(nll)}


def _key(config: LMDistillConfig) -> dict[str, Any]:
    """What determines the data and the teacher, as far as the config says (the text's digest is added once the
    corpus is built, before the study's teacher cache reads the key)."""
    from kd_speech.data import command_set_dir

    return {"format": 1, "commands": command_set_dir(config.data.command_set()).name,
            "corpus": config.corpus.model_dump(), "data": config.data.model_dump(),
            "teacher": config.teacher.model_dump()}


def task(config: LMDistillConfig, context: RunContext) -> Task:
    """The ``speech-lm`` task: the LM's text (train split) and the command transcripts (val, test) as
    :class:`~kd_speech.asr.lm.SentenceDataset` splits, the teacher and student LMs, and an evaluator that
    rescores the decodes. Nothing is built until a split or a model is asked for."""
    from kd_speech.asr.decode import require_pocketsphinx
    from kd_speech.asr.lm import SentenceDataset, WordLM, collate_sentences, lm_forward

    require_pocketsphinx()  # names the package before anything else
    key = _key(config)

    def build() -> Built:
        made = _build(config)
        digest = hashlib.sha256("\n".join(made.corpus).encode()).hexdigest()
        key.update(corpus_sha256=digest, vocabulary=hashlib.sha256("\n".join(made.vocab.words).encode()).hexdigest())
        return made

    built = _Lazy(build)
    decoded = _Lazy(lambda: _decode(built.get()))
    sizes = _Lazy(lambda: _sizes(config, built.get().vocab))
    n_positions = config.teacher.n_positions

    def splits() -> Splits:
        b = built.get()
        return Splits(SentenceDataset(b.vocab, b.corpus, "train", n_positions),
                      SentenceDataset(b.vocab, b.val_texts, "val", n_positions),
                      SentenceDataset(b.vocab, b.test_texts, "test", n_positions))

    def teacher() -> nn.Module:
        return WordLM(built.get().vocab, sizes.get()[0], seed=0, name="teacher")

    def student(seed: int, name: str = "student") -> nn.Module:
        return WordLM(built.get().vocab, sizes.get()[1], seed=seed, name=name)

    d, c = config.data, config.corpus
    what = (f"word LM rescoring pocketsphinx n-best lists and lattices: synthesized spoken commands "
            f"({d.intents} intents, {d.voices} voices: {d.voices - d.val_voices - d.test_voices} train / "
            f"{d.val_voices} val / {d.test_voices} unseen test)"
            + (" and the real recordings of pocketsphinx-testdata" if config.decode.testdata else "")
            + f"; LM text: train transcripts ×{c.commands_repeat}, {c.fortunes} fortunes, {c.glosses} WordNet glosses")
    return Task(name="speech-lm", splits=splits, teacher=teacher, student=student, key=key,
                evaluator=_evaluator(config, context, built, decoded), validator=_validator, headline=HEADLINE,
                higher_is_better=False, percent=WER_METRICS, forward=lm_forward,
                collate=partial(collate_sentences, pad_id=0), description=what, save=lambda m, folder: m.save(folder),
                extras={"built": built, "decoded": decoded, "sizes": sizes, "student": student},
                student_field="student", teacher_field="teacher")


def arms(config: LMDistillConfig, task: Task) -> dict[str, Arm]:
    """``distilled`` (word-level KD, role kd) and ``scratch`` (the same student, cross-entropy alone)."""
    from kd_core.objective import hinton_objective

    student = task.extras["student"]
    train = config.student.train_spec()
    options = {"monitor": "val/nll", "mode": "min", "clip_grad_norm": config.student.clip_grad_norm}
    kd = config.kd

    def named(arm: str) -> Any:
        return lambda seed: student(seed, f"{arm}-seed{seed}")

    return {
        "distilled": Arm(lambda: train.phases(hinton_objective(kd.temperature, kd.alpha)), role="kd",
                         student=named("distilled"), batch_size=train.batch_size, distiller=options,
                         description=f"word-level KD: {kd.alpha:g}·T²·KL(teacher ‖ student at T = {kd.temperature:g})"
                                     f" + {1 - kd.alpha:g}·CE, every position"),
        "scratch": Arm(lambda: supervised_phases(train), role="scratch", student=named("scratch"),
                       batch_size=train.batch_size, distiller=options,
                       description="the same student (size, initialisation, data order), next-word CE alone"),
    }


def notes(config: LMDistillConfig, task: Task) -> str:
    """The settings a reader needs beside the numbers."""
    t, s, c, d = config.teacher, config.student, config.corpus, config.decode
    size = (f"{s.n_layer}×{s.n_embd} ({s.n_head} heads)" if s.n_embd else
            f"chosen ≥ {s.min_ratio:g}× smaller than the teacher")
    return (f"Teacher LM: GPT-2-style, {t.n_layer}×{t.n_embd} ({t.n_head} heads), context {t.n_positions}, "
            f"{t.epochs} epochs, AdamW lr {t.lr:g}, batch {t.batch_size}, cosine decay. Students: {size}, "
            f"{s.epochs} epochs, lr {s.lr:g}, clipping {s.clip_grad_norm:g}. Text: sentences of {c.min_words}–"
            f"{c.max_words} words; "
            f"vocabulary: every train-transcript word plus the most frequent words seen ≥ {c.min_count} times, at "
            f"most {c.max_vocab}. Pocketsphinx (bundled en-us model and trigram): {d.nbest}-best lists and the "
            f"{d.lattice_paths} best distinct lattice paths. Rescoring weights tuned on the validation voices' "
            f"decodes (λ × μ × β grid, {len(config.tune.grid().points())} points), then applied unchanged to the "
            f"test sets (also to the real recordings, whose domain the tuning never saw). The headline is the "
            f"commands test set's WER after lattice rescoring (lower is better).")


# -- the report's own sections ------------------------------------------------------------------------------

def _read(run: Path, name: str) -> dict[str, Any] | None:
    path = run / "rescoring" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def _mean_std(values: Sequence[float], scale: float = 100.0) -> str:
    from kd_core.metrics import mean_std

    kept = [scale * v for v in values if math.isfinite(v)]
    if not kept:
        return "n/a"
    if len(kept) == 1:
        return f"{kept[0]:.2f}"
    mean, std = mean_std(kept)
    return f"{mean:.2f} ± {std:.2f}"


def _columns(teacher: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(set, mode, metric) of every WER the run has, commands first."""
    modes = teacher["modes"]
    return [(name, mode, f"wer_{mode}{suffix}") for name, suffix in _SET_NAMES.items() for mode in ("nbest", "lattice")
            if mode in modes and name in modes[mode]["tests"]]


def _label(name: str, mode: str) -> str:
    return f"{name} {_MODE_NAMES[mode]}"


def sections(config: LMDistillConfig, results: dict[str, Any], run: Path) -> list[tuple[str, str]]:
    """WER before/after per LM, whether the gain survives distillation (paired intervals), tuned weights,
    decoding, the per-utterance CSV and the plots."""
    from kd_core.report import markdown_table
    from kd_core.stats import paired_difference
    from kd_core.study_report import comparison_sentence

    from kd_speech.asr.plots import plot_wer_bars, plot_wer_vs_size

    run = Path(run)
    teacher = _read(run, "teacher")
    if teacher is None or "teacher" not in results:
        return [("Rescoring", "_the teacher's rescoring details are missing_\n")]
    seeds = [str(s) for s in results["seeds"]]
    columns = _columns(teacher)
    arms = results["arms"]
    t_test = results["teacher"]["test"]

    def first(metric: str) -> float:
        name, mode = next((n, m) for n, m, x in columns if x == metric)
        return teacher["modes"][mode]["tests"][name]["before"]

    def ngram(metric: str) -> float:
        name, mode = next((n, m) for n, m, x in columns if x == metric)
        return teacher["modes"][mode]["tests"][name]["ngram"]

    def oracle(metric: str) -> float:
        name, mode = next((n, m) for n, m, x in columns if x == metric)
        return teacher["modes"][mode]["tests"][name]["oracle"]

    def seed_values(arm: str, metric: str) -> list[float]:
        return [arms[arm]["seeds"][s].get(metric, math.nan) for s in seeds if s in arms[arm]["seeds"]]

    # 1. WER before and after ------------------------------------------------------------------------------
    def row(model: str, values: dict[str, str], params: str = "", extra: dict[str, str] | None = None) -> dict:
        return {"LM": model, **{f"{_label(n, m)} %": values.get(x, "") for n, m, x in columns},
                "params": params, **(extra or {})}

    def perplexities(nll: Sequence[float] | float, real: Sequence[float] | float,
                     text: Sequence[float] | float, ms: Sequence[float] | float) -> dict[str, str]:
        def exp(values: Sequence[float] | float) -> str:
            items = [values] if isinstance(values, float | int) else list(values)
            return _mean_std([math.exp(v) for v in items if math.isfinite(v)], 1.0)
        items = [ms] if isinstance(ms, float | int) else list(ms)
        return {"ppl commands": exp(nll), "ppl real": exp(real), "ppl text": exp(text),
                "LM ms/hyp": _mean_std(items, 1.0)}

    rows = [row("decoder 1-best (before)", {x: _pct(first(x)) for _, _, x in columns}),
            row("decoder n-gram, re-tuned λ, β", {x: _pct(ngram(x)) for _, _, x in columns})]
    t_cost = results["teacher"].get("cost", {})
    rows.append(row("teacher", {x: _pct(t_test.get(x)) for _, _, x in columns}, f"{int(t_cost.get('params', 0)):,}",
                    perplexities(t_test["nll"], t_test.get("nll_real", math.nan), t_test.get("nll_text", math.nan),
                                 t_test.get("lm_ms_per_hypothesis", math.nan))))
    for arm in ("distilled", "scratch"):
        if arm in arms:
            cost = arms[arm].get("cost", {})
            rows.append(row(f"{arm} ({len(seeds)} seeds)", {x: _mean_std(seed_values(arm, x)) for _, _, x in columns},
                            f"{int(cost.get('params', 0)):,}",
                            perplexities(seed_values(arm, "nll"), seed_values(arm, "nll_real"),
                                         seed_values(arm, "nll_text"), seed_values(arm, "lm_ms_per_hypothesis"))))
    rows.append(row("oracle (best hypothesis)", {x: _pct(oracle(x)) for _, _, x in columns}))
    ratio = (t_cost.get("params", math.nan) / arms["distilled"]["cost"]["params"]) if "distilled" in arms else math.nan
    table = markdown_table(rows, list(dict.fromkeys(k for r in rows for k in r))) + (
        f"\nStudents: mean ± std over seeds. Teacher/student parameters: {ratio:.1f}×. ppl: perplexity of the "
        "commands test transcripts, of the real recordings' transcripts and of held-out fortunes and glosses. "
        "LM ms/hyp: wall time of scoring the distinct test and validation hypotheses, per hypothesis (CPU or the "
        "study's device). The oracle picks each list's best hypothesis: no LM can do better.\n")

    # 2. paired comparisons -----------------------------------------------------------------------------------
    comparisons, sentences = [], []
    for _, _, metric in columns:
        base = first(metric)
        if {"distilled", "scratch"} <= set(arms):
            comparisons.append(paired_difference([100 * v for v in seed_values("distilled", metric)],
                                                 [100 * v for v in seed_values("scratch", metric)],
                                                 a_name="distilled", b_name="scratch", metric=metric,
                                                 higher_is_better=False))
        for arm in ("distilled", "scratch"):
            if arm in arms:
                values = seed_values(arm, metric)
                comparisons.append(paired_difference([100 * v for v in values], [100 * base] * len(values),
                                                     a_name=arm, b_name="1-best", metric=metric,
                                                     higher_is_better=False))
    if {"distilled", "scratch"} <= set(arms):
        comparisons.append(paired_difference(seed_values("distilled", "nll"), seed_values("scratch", "nll"),
                                             a_name="distilled", b_name="scratch", metric="nll",
                                             higher_is_better=False))
    utterance_comparisons = []
    for name, mode, _ in columns:
        details = teacher["modes"][mode]["tests"][name]
        utterance_comparisons.append(paired_difference(
            [float(e) for e in details["errors_after"]], [float(e) for e in details["errors_before"]],
            a_name="teacher", b_name="1-best", metric=f"errors per utterance ({_label(name, mode)})",
            higher_is_better=False))
    for metric in (HEADLINE,):
        if "distilled" in arms and metric in t_test:
            gain_t = first(metric) - t_test[metric]
            kept = [(first(metric) - v) / gain_t for v in seed_values("distilled", metric)] if gain_t > 0 else []
            beyond = ngram(metric) - t_test[metric]
            if kept:
                sentences.append(f"The teacher lowers the commands lattice WER from {100 * first(metric):.2f} % "
                                 f"(decoder 1-best) to {100 * t_test[metric]:.2f} %; re-tuning the decoder's own "
                                 f"trigram alone reaches {100 * ngram(metric):.2f} %, so the teacher LM itself is "
                                 f"worth {100 * beyond:.2f} points of that. The distilled student keeps "
                                 f"{100 * sum(kept) / len(kept):.0f} % of the teacher's gain over the 1-best on "
                                 f"average over seeds ({', '.join(f'{100 * k:.0f} %' for k in kept)}).")
            elif gain_t <= 0:
                sentences.append("The teacher does not lower the commands lattice WER below the decoder's 1-best, "
                                 "so there is no gain for distillation to keep.")
    sentences += [comparison_sentence(c, "points" if c.metric.startswith("wer") else "") for c in comparisons
                  if c.a == "distilled" and c.b in ("scratch", "1-best")]
    sentences += [comparison_sentence(c, "").replace("paired seeds", "paired utterances")
                  for c in utterance_comparisons]
    comparison_rows = [{"a": c.a, "b": c.b, "metric": c.metric, "mean a − b": f"{c.mean:+.3f}",
                        "95 % CI": "n/a (n = 1)" if c.low is None else f"{c.low:+.3f} to {c.high:+.3f}",
                        "n": c.n, "paired over": "utterances" if c.metric.startswith("errors") else "seeds",
                        "verdict": c.verdict} for c in (*comparisons, *utterance_comparisons)]
    gain = ("\n\n".join(sentences) + "\n\n" + markdown_table(comparison_rows)
            + "\nWER differences in points (a − b; negative: a has fewer errors). Against the 1-best (a constant), "
              "the interval is that of the student's WER over seeds. The teacher is one model, so its comparison "
              "with the 1-best is paired over utterances (edit errors per utterance).\n")
    results["rescoring"] = {"comparisons": [c.as_dict() for c in (*comparisons, *utterance_comparisons)],
                            "first_best": {x: first(x) for _, _, x in columns},
                            "ngram_retuned": {x: ngram(x) for _, _, x in columns},
                            "oracle": {x: oracle(x) for _, _, x in columns}}

    # 3. tuned weights -----------------------------------------------------------------------------------------
    weight_rows = []
    lm_names = ["teacher", *(f"{arm}-seed{seeds[0]}" for arm in ("distilled", "scratch") if arm in arms)]
    details_of = {name: _read(run, name) for name in lm_names}
    for name in lm_names:
        details = details_of[name]
        if details is None:
            continue
        for mode, r in details["modes"].items():
            w = r["weights"]
            weight_rows.append({"LM": name, "mode": _MODE_NAMES[mode], "λ": w["lm_weight"], "μ": w["interpolation"],
                                "β": w["word_penalty"], "val WER before %": _pct(r["val_before"]),
                                "val WER after %": _pct(r["val_after"])})
    for mode, r in teacher["modes"].items():
        if r["ngram_weights"]:
            w = r["ngram_weights"]
            weight_rows.append({"LM": "decoder n-gram only", "mode": _MODE_NAMES[mode], "λ": w["lm_weight"],
                                "μ": w["interpolation"], "β": w["word_penalty"],
                                "val WER before %": _pct(r["val_before"]), "val WER after %": ""})

    # 4. per-utterance CSV ------------------------------------------------------------------------------------
    recorded = json.loads((run / "rescoring" / "decodes.json").read_text()) if (
        run / "rescoring" / "decodes.json").is_file() else {}
    decodes = recorded.get("sets", {})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["set", "mode", "utterance", "reference", "decoder 1-best", "n-gram re-tuned", *lm_names]
    writer.writerow(header)
    changed = []
    for name, mode, _ in columns:
        info = decodes.get(name, {})
        tests = {lm: details_of[lm]["modes"][mode]["tests"][name] for lm in lm_names if details_of.get(lm)}
        t = teacher["modes"][mode]["tests"][name]
        for i, (uid, reference, one_best) in enumerate(zip(info.get("ids", []), info.get("references", []),
                                                           info.get("first_best", []), strict=False)):
            picks = [tests[lm]["picks"][i] if lm in tests else "" for lm in lm_names]
            writer.writerow([name, mode, uid, reference, one_best, t["ngram_picks"][i] if t["ngram_picks"] else "",
                             *picks])
            if mode == "lattice" and picks[0] != one_best and len(changed) < 8:
                changed.append({"set": name, "reference": reference, "decoder 1-best": one_best,
                                "teacher": picks[0], **({lm_names[1]: picks[1]} if len(picks) > 1 else {})})
    (run / "utterances.csv").write_text(buffer.getvalue())

    # 5. decoding ------------------------------------------------------------------------------------------------
    decode_rows = [{"set": name, "utterances": len(info["ids"]), "audio s": f"{info['audio_seconds']:.1f}",
                    "decode RTF": f"{info['rtf']:.2f}", "lattice links (mean)": f"{info['mean_links']:.0f}"}
                   for name, info in decodes.items()]
    where = "\n".join(f"- {k}: {v}" for k, v in recorded.get("notes", {}).items())
    text = ", ".join(f"{v:,} {k}" for k, v in recorded.get("corpus", {}).items())

    # 6. plots --------------------------------------------------------------------------------------------------
    groups: dict[str, dict[str, tuple[float, float | None]]] = {}
    from kd_core.stats import t_half_width

    for name, mode, metric in columns:
        group = {"decoder 1-best": (first(metric), None), "n-gram re-tuned": (ngram(metric), None),
                 "teacher": (t_test.get(metric, math.nan), None)}
        for arm in ("distilled", "scratch"):
            if arm in arms:
                values = [v for v in seed_values(arm, metric) if math.isfinite(v)]
                if values:
                    group[arm] = (sum(values) / len(values), t_half_width(values))
        group["oracle"] = (oracle(metric), None)
        groups[_label(name, mode)] = group
    bars = plot_wer_bars(groups, run / "plots" / "wer_rescoring.png",
                         "WER before (decoder 1-best) and after rescoring, per LM (students: mean, 95 % t-interval; "
                         "oracle: each list's best hypothesis)")
    points = {"teacher": (float(t_cost.get("params", math.nan)), {x: t_test[x] for _, _, x in columns if x in t_test})}
    for arm in ("distilled", "scratch"):
        if arm in arms:
            points[arm] = (float(arms[arm]["cost"]["params"]),
                           {x: sum(seed_values(arm, x)) / len(seed_values(arm, x)) for _, _, x in columns})
    size_plot = plot_wer_vs_size(points, {x: first(x) for _, _, x in columns}, run / "plots" / "wer_vs_size.png",
                                 "WER after rescoring against LM size")
    saved = ["`teacher-lm/`", *(f"`{arm}-seed{s}/model/`" for arm in ("distilled", "scratch") if arm in arms
                                for s in seeds)]
    return [
        ("Rescoring: WER before and after", table),
        ("Does the gain survive distillation?", gain),
        ("Tuned weights", markdown_table(weight_rows) + "\nλ: LM weight, μ: the new LM's share of the interpolated "
                                                        "LM score (1 − μ: the decoder's trigram), β: word insertion "
                                                        "penalty (positive: a bonus per word).\n"),
        ("Decoding and LM text", markdown_table(decode_rows) + "\nRTF: decode time over audio time (pocketsphinx, "
         f"one CPU thread). LM text: {text}.\n\n{where}\n"),
        ("Where the teacher changes the 1-best (lattice, first few)",
         (markdown_table(changed) if changed else "_no changes_\n")
         + "\nEvery utterance, every LM: `utterances.csv`.\n"),
        ("WER plots", f"![WER before and after]({bars.relative_to(run).as_posix()})\n\n"
                      f"![WER against LM size]({size_plot.relative_to(run).as_posix()})\n"),
        ("LMs", "Saved with `WordLM.save`: " + ", ".join(saved) + f". Rescore other audio with one, e.g. "
                f"`kd-speech rescore --lattice --lm {run} --lm-name distilled-seed{seeds[0]} --data testdata`.\n"),
    ]


def _title(config: LMDistillConfig, task: Task) -> str:
    return "ASR rescoring with a word LM, and that LM distilled (word-level KD)"


METHOD = study_method(
    "lm-distill", LMDistillConfig, task=task, arms=arms, teacher_training=lambda c: c.teacher.train_spec(),
    title=_title, notes=notes, compare=lambda c, a: [("distilled", "scratch")], sections=sections, domain="speech",
    recipes=Path(__file__).resolve().parent.parent / "recipes",
    summary="ASR n-best/lattice rescoring with a word LM, distilled into a >= 4x smaller one (word-level KD)")
