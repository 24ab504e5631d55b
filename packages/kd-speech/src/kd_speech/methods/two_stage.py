"""Two-stage textual KD for end-to-end spoken language understanding: the paper's ablation ladder as a Study.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105). A speech BERT over vq-wav2vec tokens is (1) pre-trained further with PT-KD,
matching its utterance ``[CLS]`` to a text encoder's utterance embedding alongside the MLM loss
(``kd_speech.methods.ptkd``), then (2) frozen under a DeepSpeech2-style head fine-tuned with FT-KD: cross-entropy
plus an L1 between its intent logits and those of a text teacher (MiniLM fine-tuned on the transcripts), with span
masking of vq tokens and time/channel masking of hidden states as augmentation.

Arms (paired seeds: the same seed gives every arm the same head initialisation and data order):

- ``base`` (scratch): the MLM encoder (continued by MLM for as many steps as PT-KD takes), CE only;
- ``pt-kd`` (baseline): the PT-KD encoder, CE only;
- ``ft-kd`` (kd): the PT-KD encoder, CE + L1 to the text teacher's logits;
- ``ft-kd-da`` (variant): as ``ft-kd`` plus span masking of the vq tokens and time/channel masking.

The paper's 10 % / 100 % settings are one run each: ``--set data.label_fraction=0.1``. At a fraction below 1 the
text teacher and the heads run ``epochs / label_fraction`` epochs (``data.equal_updates``, on by default), so that
the fraction removes labels, not training steps.

Data (``data.source``): ``commands``, the synthesized spoken-command set (default), or your own audio with
``--set data.source=folder:DIR`` (or ``folder:DIR/FILE.csv``): audio files at any sample rate and a CSV with
``file``, ``transcript`` and ``intent`` columns, optional ``speaker`` and ``split``. The splits come from the
``split`` column, else whole speakers are held out, else a random split stratified by intent (see
``kd_speech.tasks.split_folder``); the intents are the train split's. The folder is checked before anything trains.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.errors import ConfigError
from kd_core.recipes import RunContext, Section
from kd_core.study import Arm, TrainSpec, cached_teacher, supervised_phases
from kd_core.study_recipe import StudyRecipe, study_method
from kd_core.task import Task
from pydantic import Field
from torch import nn

from kd_speech.methods.ptkd import PTKDSection, ptkd_encoders
from kd_speech.tasks import (
    BertSection,
    SpeechCommands,
    SpeechCommandsData,
    TeacherSection,
    VqSection,
    speech_commands_task,
)

__all__ = ["METHOD", "AugmentSection", "FTKDSection", "SLUStudent", "TwoStageConfig", "arms", "task"]

_KERNELS = ((5, 3), (5, 3))  # (feature, time): short token sequences, a small encoder width
_STRIDES = ((4, 2), (2, 2))  # time /4: 25 LSTM steps a second of speech


class SLUStudent(Section):
    """The DS2 head on the frozen speech BERT and how it is fine-tuned (AdamW, cosine decay)."""

    epochs: Annotated[int, Field(gt=0)] = 15
    lr: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: Annotated[int, Field(gt=0)] = 32
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    conv_channels: Annotated[int, Field(ge=1, le=256)] = 8
    lstm_hidden: Annotated[int, Field(ge=1, le=2048)] = 128
    lstm_layers: Annotated[int, Field(ge=1, le=8)] = 1

    def train_spec(self, epochs: int | None = None) -> TrainSpec:
        """The ``TrainSpec`` of every arm (``epochs``: instead of the section's, e.g. ``data.epochs(...)``)."""
        return TrainSpec(self.epochs if epochs is None else epochs, self.lr, self.batch_size, self.weight_decay)


class FTKDSection(Section):
    """FT-KD: the weight of the L1 logit term (1 in the paper)."""

    kd_weight: Annotated[float, Field(gt=0)] = 1.0


class AugmentSection(Section):
    """The ``ft-kd-da`` arm's masking: vq-token spans (rate, span) and hidden time / channel masks (p, span)."""

    token_rate: Annotated[float, Field(gt=0, lt=1)] = 0.2
    token_span: Annotated[int, Field(ge=1)] = 5
    time_p: Annotated[float, Field(ge=0, lt=1)] = 0.5
    time_span: Annotated[int, Field(ge=1)] = 5
    channel_p: Annotated[float, Field(ge=0, lt=1)] = 0.4
    channel_span: Annotated[int, Field(ge=1)] = 5


class TwoStageConfig(StudyRecipe):
    """The ``slu-two-stage`` recipe."""

    method: Literal["slu-two-stage"] = "slu-two-stage"
    data: SpeechCommandsData = SpeechCommandsData()
    vq: VqSection = VqSection()
    bert: BertSection = BertSection()
    ptkd: PTKDSection = PTKDSection()
    teacher: TeacherSection = TeacherSection()
    student: SLUStudent = SLUStudent()
    ftkd: FTKDSection = FTKDSection()
    augment: AugmentSection = AugmentSection()


def head(config: SLUStudent, width: int, classes: int, seed: int) -> nn.Module:
    """A DS2 head over ``width``-wide hidden states, initialised from ``seed``."""
    from kd_speech.slu import DS2Head

    torch.manual_seed(seed)
    try:
        return DS2Head(width, classes, conv_channels=config.conv_channels, lstm_hidden=config.lstm_hidden,
                       lstm_layers=config.lstm_layers, kernels=_KERNELS, strides=_STRIDES)
    except ConfigError as err:
        raise ConfigError("student", err.expected, err.received, hint=err.hint) from None


def _student(config: TwoStageConfig, encoder: nn.Module, commands: SpeechCommands, seed: int,
             augment: bool = False) -> nn.Module:
    from kd_speech.slu import HiddenAugment, SpeechIntentModel, TokenSpanMask

    a = config.augment
    token_mask = TokenSpanMask(commands.vocab, span=a.token_span, rate=a.token_rate, seed=seed) if augment else None
    hidden = HiddenAugment(a.time_p, a.time_span, a.channel_p, a.channel_span, seed=seed) if augment else None
    width = int(encoder.config.hidden_size)
    return SpeechIntentModel(encoder, head(config.student, width, len(commands.classes), seed), freeze_encoder=True,
                             token_mask=token_mask, hidden_augment=hidden, cache_hidden=True)


def task(config: TwoStageConfig, context: RunContext) -> Task:
    """The speech-commands task of the recipe's ``data``, ``vq``, ``bert`` and ``teacher`` sections; its own
    student is the ``base`` arm's."""
    return speech_commands_task(config.data, config.vq, config.bert, config.teacher,
                                lambda encoder, commands, seed: _student(config, encoder, commands, seed), context)


def arms(config: TwoStageConfig, task: Task) -> dict[str, Arm]:
    """The ladder: ``base`` -> ``pt-kd`` -> ``ft-kd`` -> ``ft-kd-da`` (see the module doc)."""
    from kd_speech.slu import ft_kd_objective

    commands = task.extras["commands"]
    encoders: dict[str, Any] = {}
    device = str(task.extras.get("device", "cpu"))

    def encoder(which: str) -> nn.Module:
        if not encoders:
            base, ptkd, notes = ptkd_encoders(commands.get(), config.ptkd, config.data.seed, device,
                                              config.teacher.max_length)
            encoders.update(base=base, ptkd=ptkd)
            task.extras["encoder_notes"] = notes
        return copy.deepcopy(encoders[which])

    def student(which: str, augment: bool = False) -> Any:
        return lambda seed: _student(config, encoder(which), commands.get(), seed, augment)

    train = config.student.train_spec(config.data.epochs(config.student.epochs))
    transcript_logits = cached_teacher()  # the teacher reads the transcripts, never augmented: computed once
    ce = "cross-entropy on the intents"
    ft = f"CE + {config.ftkd.kd_weight:g}·L1(student logits, text-teacher logits)"
    a = config.augment
    return {
        "base": Arm(lambda: supervised_phases(train), role="scratch", student=student("base"),
                    batch_size=train.batch_size, description=f"MLM speech BERT (frozen) + DS2 head, {ce}"),
        "pt-kd": Arm(lambda: supervised_phases(train), role="baseline", student=student("ptkd"),
                     batch_size=train.batch_size, needs_teacher=False,
                     description=f"PT-KD speech BERT (frozen) + DS2 head, {ce}"),
        "ft-kd": Arm(lambda: train.phases(ft_kd_objective(config.ftkd.kd_weight)), role="kd", student=student("ptkd"),
                     batch_size=train.batch_size, signal=transcript_logits, description=f"PT-KD encoder, FT-KD: {ft}"),
        "ft-kd-da": Arm(lambda: train.phases(ft_kd_objective(config.ftkd.kd_weight)), role="variant",
                        student=student("ptkd", augment=True), batch_size=train.batch_size, signal=transcript_logits,
                        description=f"FT-KD + span masking of vq tokens (rate {a.token_rate:g}, span {a.token_span}) "
                                    f"and time/channel masking of hidden states (p {a.time_p:g}/{a.channel_p:g})"),
    }


def compare(config: TwoStageConfig, arms: dict[str, Arm]) -> list[tuple[str, str]]:
    """Each rung of the ladder against the one below, and the whole ladder against ``base``."""
    return [("pt-kd", "base"), ("ft-kd", "pt-kd"), ("ft-kd-da", "ft-kd"), ("ft-kd-da", "base")]


def notes(config: TwoStageConfig, task: Task) -> str:
    """The settings a reader needs beside the numbers."""
    d, s = config.data, config.student
    head_epochs, teacher_epochs = d.epochs(s.epochs), d.epochs(config.teacher.epochs)
    scaled = (f" (epochs × 1/{d.label_fraction:g}: as many updates as with every label, data.equal_updates)"
              if head_epochs != s.epochs else "")
    tokens = (f"a tiny vq-wav2vec pre-trained {config.vq.steps} steps" if config.vq.kind == "vq-wav2vec" else
              f"{config.vq.clusters} k-means units over log-mel frames (HuBERT's first-iteration targets; a tiny "
              f"vq-wav2vec trained for what a CPU run affords gives tokens near chance for intents)")
    return (f"{_data_note(config, task)}Labelled train fraction {d.label_fraction:g} (stratified; the text teacher "
            "and the heads see only "
            f"those labels). Tokens: {tokens}; speech BERT {config.bert.layers}×"
            f"{config.bert.hidden} ({config.bert.heads} heads): {config.bert.steps} MLM steps, then "
            f"{config.ptkd.steps} more steps of MLM + {config.ptkd.kd_weight:g}·MSE([CLS] → MiniLM mean-pooled "
            f"transcript embedding) for "
            f"PT-KD, or of MLM alone for the base encoder. Heads: DS2 (conv {s.conv_channels} ch, BiLSTM "
            f"{s.lstm_layers}×{s.lstm_hidden}) on the frozen encoder, {head_epochs} epochs{scaled}, AdamW lr "
            f"{s.lr:g}, batch {s.batch_size}, cosine decay. Text teacher: MiniLM-L6 fine-tuned {teacher_epochs} "
            f"epochs (AdamW lr {config.teacher.lr:g}) on the labelled train transcripts. {_unseen(task)}")


def _data_note(config: TwoStageConfig, task: Task) -> str:
    """For a folder source: its intents, how it was split and which command-set fields it leaves unused (the
    folder, its utterances per split and the number of intents are in the task's description)."""
    folder = task.extras.get("folder")
    if folder is None:
        return ""
    d = config.data
    names = ", ".join(folder.classes[:12]) + (f" and {len(folder.classes) - 12} more" if len(folder.classes) > 12
                                               else "")
    if folder.split_by == "split column":
        unused = "data.voices, data.val_voices, data.test_voices, data.flite_voices, data.per_intent, data.intents"
        held = ""
    else:
        unused = "data.flite_voices, data.per_intent, data.intents"
        held = (f"; held out for val / test: {d.val_voices}/{d.voices} / {d.test_voices}/{d.voices} of the "
                f"{'speakers' if folder.split_by == 'speaker' else 'utterances'} (data.val_voices, data.test_voices "
                "over data.voices)")
    return (f"Data: {d.source}, {folder.split_by} split{held}; the train intents ({len(folder.classes)}): {names}. "
            f"Not used for a folder: {unused}. ")


def _unseen(task: Task) -> str:
    folder = task.extras.get("folder")
    if folder is None:
        return "Test voices are unseen in training."
    return {"split column": "The splits are the CSV's (test speakers unseen in training only if the CSV makes them "
                            "so).",
            "speaker": "Test speakers are unseen in training.",
            "random": "The split is random per utterance: test speakers may also speak train utterances."}[
        folder.split_by]


def _teacher_training(config: TwoStageConfig) -> TrainSpec:
    return config.teacher.train_spec(config.data.epochs(config.teacher.epochs))


def _title(config: TwoStageConfig, task: Task) -> str:
    return f"Two-stage textual KD (PT-KD, FT-KD) on {task.description}"


METHOD = study_method(
    "slu-two-stage", TwoStageConfig, task=task, arms=arms, teacher_training=_teacher_training,
    title=_title, notes=notes, compare=compare, domain="speech",
    recipes=Path(__file__).resolve().parent.parent / "recipes",
    summary="Two-stage textual KD for spoken intents: base -> +PT-KD -> +FT-KD -> +masking (Kim et al. 2021)")
