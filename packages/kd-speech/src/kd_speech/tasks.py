"""The spoken-command intent task of two-stage textual KD, built from recipe fields.

Kim, Kim, Shin & Lee, "Two-Stage Textual Knowledge Distillation for End-to-End Spoken Language Understanding",
ICASSP 2021 (arXiv 2010.13105): the speech model reads discrete vq-wav2vec tokens through a BERT pre-trained by
masked-token prediction; the teacher reads the transcripts.

The data pipeline (every step cached under ``$KD_DATA_HOME`` by everything that determines it):

1. the utterances of ``data.source``: ``commands`` (default), the spoken-command set
   (``kd_speech.data.build_command_set``: ``data.voices``, ``data.flite_voices``, ``data.per_intent`` phrasings,
   the first ``data.intents`` intents, ``data.seed``), split by voice; or ``folder:DIR`` / ``folder:DIR/FILE.csv``,
   your own audio folder (see :func:`read_speech_folder`: any sample rate, a CSV with ``file``, ``transcript`` and
   ``intent`` columns, split by its ``split`` column, else by ``speaker``, else at random);
2. 16 kHz audio, a tiny vq-wav2vec pre-trained on the train audio (``vq.steps``, ``vq.lr``, ``vq.batch_size``);
3. its tokens for every utterance, a ``SpeechVocabulary`` of the train tokens;
4. a small speech BERT pre-trained by masked-token prediction on the train tokens (``bert.*``).

Items are ``{"input_ids": vq BERT ids ([CLS] first), "text_input_ids": MiniLM ids of the transcript, "label"}``;
:func:`collate_speech_text` pads both and builds both attention masks. ``data.label_fraction`` keeps a stratified
fraction of the labelled train split (the paper's 10 % / 100 % settings): the intent classifiers and the text
teacher learn from that subset only; the val and test splits (unseen voices) stay whole.

A folder is read and checked when the task is made, before anything trains or a run directory is written: every
problem (no such folder, no ``intent`` or ``transcript`` column, an empty split, a val/test intent the train split
lacks, an unreadable file) is a one-line ``ConfigError`` naming ``data.source``. Its cache key is the folder's path
and a fingerprint of the CSV's bytes and each file's size and modification time, so editing the data retrains.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from kd_core.backends import Backend
from kd_core.datacache import cached_model, data_home, digest
from kd_core.errors import ConfigError
from kd_core.recipes import RunContext, Section
from kd_core.study import TrainSpec
from kd_core.task import Splits, Task
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.utils.data import Dataset

from kd_speech.data import CommandSetConfig, build_command_set, command_set_dir, read_audio
from kd_speech.data.section import CommandSetSection
from kd_speech.speech_folder import SpeechFolder, read_speech_folder, split_folder

__all__ = ["BertSection", "SpeechCommands", "SpeechCommandsData", "SpeechFolder", "SpeechTextDataset",
           "TeacherSection", "TextIntentModel", "VqSection", "announce",
           "batch_forward", "collate_speech_text", "command_set_config", "label_subset", "read_speech_folder",
           "speech_commands", "speech_commands_task", "speech_key", "split_folder"]

MAX_POSITIONS = 512
_SPLITS = ("train", "val", "test")


class SpeechCommandsData(CommandSetSection):
    """Where the utterances come from (``source``: ``commands``, the spoken-command set of
    ``kd_speech.data.builder``, or ``folder:DIR`` / ``folder:DIR/FILE.csv``, your own audio folder) and the
    labelled fraction of the train split. For a folder the command-set fields are not used, except that
    ``val_voices / voices`` and ``test_voices / voices`` are the fractions held out when the CSV has no ``split``
    column (of its speakers, else of its utterances)."""

    source: str = "commands"
    voices: Annotated[int, Field(ge=3, le=60)] = 10
    label_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    equal_updates: bool = True

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        scheme, _, rest = value.partition(":")
        if value != "commands" and (scheme != "folder" or not rest.strip()):
            raise ValueError(f"'commands' or 'folder:DIR' / 'folder:DIR/FILE.csv' (audio files with a CSV of file, "
                             f"transcript and intent), received {value!r}")
        return value

    @property
    def folder(self) -> Path | None:
        """The ``DIR`` or ``DIR/FILE.csv`` of ``folder:...`` (None for ``commands``)."""
        scheme, _, rest = self.source.partition(":")
        return Path(rest.strip()).expanduser() if scheme == "folder" else None

    def held_out(self) -> tuple[float, float]:
        """``(val, test)`` fractions a folder without a ``split`` column holds out: those of the command set's
        voices (``val_voices / voices``, ``test_voices / voices``)."""
        return self.val_voices / self.voices, self.test_voices / self.voices

    def epochs(self, epochs: int) -> int:
        """How many epochs a model trained on the labelled subset runs for a recipe's ``epochs``: with
        ``equal_updates`` and a fraction below 1, ``epochs / label_fraction`` (rounded), so that it takes as many
        updates as it would with every label (else a 10 % head gets a tenth of the training, not of the labels)."""
        return max(epochs, round(epochs / self.label_fraction)) if self.equal_updates else epochs


class VqSection(Section):
    """The speech tokenizer learnt on the train audio: ``kind: vq-wav2vec`` (the tiny ``VqWav2VecConfig.tiny()``,
    pre-trained ``steps`` Adam steps) or ``kind: mel-kmeans`` (k-means units over log-mel frames,
    ``kd_speech.models.MelUnits``, ``clusters`` of them; ``steps``/``lr``/``batch_size`` unused)."""

    kind: Literal["vq-wav2vec", "mel-kmeans"] = "vq-wav2vec"
    steps: Annotated[int, Field(gt=0)] = 300
    lr: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: Annotated[int, Field(gt=0)] = 8
    clusters: Annotated[int, Field(ge=2, le=4096)] = 64

    def key(self) -> dict[str, Any]:
        """The fields that determine this kind's tokens (a cache key: mel-kmeans ignores the training fields)."""
        used = {"kind", "clusters"} if self.kind == "mel-kmeans" else {"kind", "steps", "lr", "batch_size"}
        return self.model_dump(include=used)


class BertSection(Section):
    """The speech BERT over vq tokens and its masked-token pre-training."""

    hidden: Annotated[int, Field(ge=16, le=1024)] = 128
    layers: Annotated[int, Field(ge=1, le=12)] = 2
    heads: Annotated[int, Field(ge=1, le=16)] = 2
    steps: Annotated[int, Field(gt=0)] = 300
    lr: Annotated[float, Field(gt=0)] = 5e-4
    batch_size: Annotated[int, Field(gt=0)] = 16

    @model_validator(mode="after")
    def _heads_divide(self) -> BertSection:
        if self.hidden % self.heads:
            raise ValueError(f"bert.hidden must be a multiple of bert.heads ({self.heads}), received {self.hidden}")
        return self


class TeacherSection(Section):
    """How the study fine-tunes the MiniLM text teacher on the labelled train transcripts (AdamW, cosine decay),
    and the longest transcript in tokens."""

    epochs: Annotated[int, Field(gt=0)] = 4
    lr: Annotated[float, Field(gt=0)] = 1e-4
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    batch_size: Annotated[int, Field(gt=0)] = 16
    max_length: Annotated[int, Field(ge=4, le=512)] = 32

    def train_spec(self, epochs: int | None = None) -> TrainSpec:
        """The study's ``teacher_training`` (``epochs``: instead of the section's, e.g. ``data.epochs(...)``)."""
        return TrainSpec(self.epochs if epochs is None else epochs, self.lr, self.batch_size, self.weight_decay)


class TextIntentModel(nn.Module):
    """A text classifier (MiniLM ``BertForSequenceClassification``) read from a speech batch's transcript fields:
    ``forward(batch) -> {"logits"}`` of ``batch["text_input_ids"]`` / ``batch["text_attention_mask"]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if not isinstance(batch, Mapping) or "text_input_ids" not in batch:
            raise ConfigError("batch", "a mapping with the transcripts' ids under 'text_input_ids'",
                              sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__)
        return {"logits": self.model(input_ids=batch["text_input_ids"],
                                     attention_mask=batch.get("text_attention_mask")).logits}


def command_set_config(data: SpeechCommandsData) -> CommandSetConfig:
    """The ``CommandSetConfig`` of the recipe's ``data`` section (its errors name ``data.*`` fields)."""
    return data.command_set()


_LABEL_FIELDS = {"label_fraction", "equal_updates"}
def speech_key(data: SpeechCommandsData, vq: VqSection, bert: BertSection, folder: SpeechFolder | None = None
               ) -> dict[str, Any]:
    """Everything that determines the tokens and the MLM speech BERT, and under ``"labels"`` what determines the
    labelled subset and how long it is trained on (what reads only the audio and transcripts leaves that out).

    For ``data.source: folder:...`` the folder's :meth:`SpeechFolder.key` (``folder``, else the folder read
    now) stands under ``"folder"`` instead of the command set, and ``"data"`` holds only the fields a folder uses."""
    rest = {"labels": data.model_dump(include=_LABEL_FIELDS), "vq": vq.key(), "bert": bert.model_dump(),
            "max_positions": MAX_POSITIONS}
    if data.folder is None:
        return {"commands": command_set_dir(command_set_config(data)).name,
                "data": data.model_dump(exclude=_LABEL_FIELDS | {"source"}), **rest}
    folder = folder if folder is not None else read_speech_folder(data)
    used = {"source", "seed"} | (set() if folder.split_by == "split column" else {"voices", "val_voices",
                                                                                    "test_voices"})
    return {"folder": folder.key(), "data": data.model_dump(include=used), **rest}


def label_subset(labels: Sequence[int], fraction: float, seed: int = 0) -> list[int]:
    """Positions of a stratified ``fraction`` of ``labels``: per class ``max(1, round(fraction * n))`` items drawn
    with ``seed``, returned in their original order."""
    if not 0 < fraction <= 1:
        raise ConfigError("data.label_fraction", "a fraction in (0, 1]", fraction)
    labels = np.asarray(labels)
    if fraction == 1:
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    kept: list[int] = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        kept += rng.choice(pool, size=max(1, round(fraction * len(pool))), replace=False).tolist()
    return sorted(kept)


@dataclass
class SpeechCommands:
    """The built pipeline: per split the transcripts, labels and vq tokens; the vocabulary, the MLM speech BERT
    (trained weights, never modified: copy it), the MiniLM tokenizer and where each piece came from."""

    classes: tuple[str, ...]
    texts: dict[str, list[str]]
    labels: dict[str, list[int]]
    tokens: dict[str, list[torch.Tensor]]
    vocab: Any
    bert: nn.Module
    tokenizer: Any
    key: dict[str, Any]
    notes: dict[str, str] = field(default_factory=dict)

    def encoder(self) -> nn.Module:
        """A fresh copy of the MLM speech BERT."""
        return copy.deepcopy(self.bert)


_BUILT: dict[str, SpeechCommands] = {}


def announce(line: str) -> None:
    """One plain line on stderr for a long pipeline stage that has no bar of its own."""
    import sys

    print(line, file=sys.stderr, flush=True)


def _text_tokenizer() -> Any:
    from kd_core.pretrained import minilm_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def _min_samples(vq: VqSection) -> int:
    """The shortest audio (16 kHz samples) the speech tokenizer gives a token for."""
    if vq.kind == "mel-kmeans":
        return 1  # log-mel frames pad a short waveform to one window
    from kd_speech.models import VqWav2VecConfig

    return VqWav2VecConfig.tiny().min_samples()


def speech_commands(data: SpeechCommandsData, vq: VqSection, bert: BertSection, device: str = "cpu",
                    folder: SpeechFolder | None = None) -> SpeechCommands:
    """The pipeline of the module doc, cached on disk (vq model and speech BERT) and in this process. It prints one
    line to stderr per stage it has to train (a cached stage prints nothing). ``folder``: the folder of a
    ``folder:...`` source when already read (else it is read here)."""
    from kd_speech.models import (
        MelUnits,
        SpeechVocabulary,
        VqWav2Vec,
        VqWav2VecConfig,
        build_speech_bert,
        pretrain_speech_bert,
        pretrain_vq_wav2vec,
        speech_bert_config,
    )

    if data.folder is not None and folder is None:
        folder = read_speech_folder(data, _min_samples(vq))
    key = speech_key(data, vq, bert, folder)
    memo = digest(home=str(data_home()), **key)
    if memo in _BUILT:
        return _BUILT[memo]
    target = Backend(device=device).device
    if folder is None:
        commands = build_command_set(command_set_config(data), progress=False)  # (stderr stays one line on errors)
        utterances = {s: commands.split(s) for s in _SPLITS}
        for split, items in utterances.items():
            if not items:
                raise ConfigError("data.voices", f"voices enough for a non-empty {split} split", data.voices)
        classes, origin = tuple(commands.classes), {"commands": key["commands"]}
        source_note = {"commands": str(commands.directory)}
    else:
        utterances, classes, origin = folder.splits, folder.classes, {"folder": key["folder"]}
        source_note = {"audio folder": str(folder.csv)}
    waves = {s: [read_audio(u.path) for u in items] for s, items in utterances.items()}

    def build_vq() -> nn.Module:
        torch.manual_seed(data.seed)
        return VqWav2Vec(VqWav2VecConfig.tiny()) if vq.kind == "vq-wav2vec" else MelUnits(vq.clusters)

    def train_vq(model: nn.Module) -> nn.Module:
        what = f"fitting {vq.clusters} k-means units" if vq.kind == "mel-kmeans" else f"{vq.steps} vq-wav2vec steps"
        announce(f"speech tokens: {what} on {len(waves['train'])} train utterances (cached afterwards)")
        if isinstance(model, MelUnits):
            return model.fit(waves["train"], seed=data.seed)
        pretrain_vq_wav2vec(model.to(target), waves["train"], vq.steps, lr=vq.lr, batch_size=vq.batch_size,
                            seed=data.seed)
        return model.cpu()

    vq_model, vq_note = cached_model(build_vq, train_vq, f"speech-{vq.kind}", True, **origin, vq=key["vq"],
                                     seed=data.seed)
    vq_model = vq_model.cpu().eval()
    tokens = {s: [vq_model.tokens(w) for w in ws] for s, ws in waves.items()}
    vocab = SpeechVocabulary.from_sequences(tokens["train"], vq_model.num_tokens)
    config = speech_bert_config(vocab, hidden_size=bert.hidden, num_layers=bert.layers, num_heads=bert.heads,
                                max_positions=MAX_POSITIONS)

    def build_bert() -> nn.Module:
        torch.manual_seed(data.seed)
        return build_speech_bert(config)

    def train_bert(model: nn.Module) -> nn.Module:
        announce(f"speech BERT: {bert.steps} masked-token pre-training steps (cached afterwards)")
        pretrain_speech_bert(model.to(target), tokens["train"], vocab, bert.steps, lr=bert.lr,
                             batch_size=bert.batch_size, seed=data.seed)
        return model.cpu()

    speech_bert, bert_note = cached_model(build_bert, train_bert, "speech-bert-mlm", True, **origin, vq=key["vq"],
                                          bert=key["bert"], vocab=vocab.to_config(), seed=data.seed)
    built = SpeechCommands(
        classes=classes, texts={s: [u.transcript for u in items] for s, items in utterances.items()},
        labels={s: [classes.index(str(u.intent)) for u in items] for s, items in utterances.items()},
        tokens=tokens, vocab=vocab, bert=speech_bert.cpu().eval(), tokenizer=_text_tokenizer(), key=key,
        notes={**source_note, "vq-wav2vec": vq_note, "speech BERT (MLM)": bert_note})
    _BUILT[memo] = built
    return built


class SpeechTextDataset(Dataset):
    """Items ``{"input_ids", "text_input_ids", "label"}`` of one split (``positions``: a subset of it)."""

    def __init__(self, commands: SpeechCommands, split: str, positions: Sequence[int] | None = None,
                 text_max_length: int = 32) -> None:
        self.commands, self.split, self.text_max_length = commands, split, text_max_length
        self.positions = list(range(len(commands.labels[split]))) if positions is None else list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        c, i = self.commands, self.positions[index]
        text = c.tokenizer(c.texts[self.split][i], truncation=True, max_length=self.text_max_length)["input_ids"]
        return {"input_ids": c.vocab.encode(c.tokens[self.split][i], max_length=MAX_POSITIONS),
                "text_input_ids": torch.tensor(text, dtype=torch.long), "label": c.labels[self.split][i]}


def _pad(rows: Sequence[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for row, value in enumerate(rows):
        ids[row, : len(value)] = torch.as_tensor(value)
        mask[row, : len(value)] = 1
    return ids, mask


def collate_speech_text(items: Sequence[Mapping[str, Any]], speech_pad: int = 0, text_pad: int = 0
                        ) -> dict[str, torch.Tensor]:
    """Pad the vq ids and the transcript ids of ``items`` separately; both attention masks; the labels."""
    if not items:
        raise ConfigError("items", "at least one item", 0)
    input_ids, attention_mask = _pad([i["input_ids"] for i in items], speech_pad)
    text_ids, text_mask = _pad([i["text_input_ids"] for i in items], text_pad)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "text_input_ids": text_ids,
            "text_attention_mask": text_mask, "label": torch.as_tensor([int(i["label"]) for i in items])}


def batch_forward(model: nn.Module, batch: Any) -> Any:
    """The task's forward: the model reads its own keys of the batch (speech student or transcript teacher)."""
    return model(batch)


class _Lazy:
    """A value built on first ``get()`` (the pipeline runs when a study first needs data)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build, self._value, self._done = build, None, False

    def get(self) -> Any:
        if not self._done:
            self._value, self._done = self._build(), True
        return self._value


def speech_commands_task(data: SpeechCommandsData, vq: VqSection, bert: BertSection, teacher: TeacherSection,
                         student: Callable[[nn.Module, SpeechCommands, int], nn.Module],
                         context: RunContext | None = None) -> Task:
    """The ``speech-commands`` task: splits as in the module doc, a MiniLM text teacher with a fresh intent
    classifier (the study fine-tunes it on the labelled train transcripts and caches it by ``key``) and
    ``student(mlm speech BERT copy, commands, seed)`` as the task's student. ``task.extras["commands"].get()``
    gives the built :class:`SpeechCommands`. Nothing is built until a split or model is asked for, but a
    ``folder:...`` source is read and checked here (``task.extras["folder"]``: its :class:`SpeechFolder`)."""
    from kd_core.pretrained import minilm_fingerprint

    from kd_speech.text_teacher import load_text_model

    folder = read_speech_folder(data, _min_samples(vq)) if data.folder is not None else None
    device = context.device if context is not None else "cpu"
    commands = _Lazy(lambda: speech_commands(data, vq, bert, device, folder))
    labelled = _Lazy(lambda: label_subset(commands.get().labels["train"], data.label_fraction, data.seed))

    def splits() -> Splits:
        c = commands.get()
        return Splits(*(SpeechTextDataset(c, s, labelled.get() if s == "train" else None, teacher.max_length)
                        for s in _SPLITS))

    def build_teacher() -> nn.Module:
        return TextIntentModel(load_text_model(len(commands.get().classes))[0])

    def build_student(seed: int) -> nn.Module:
        c = commands.get()
        return student(c.encoder(), c, seed)

    def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_speech_text(items, 0, commands.get().tokenizer.pad_token_id or 0)

    if folder is None:
        cfg = command_set_config(data)
        what = (f"synthesized spoken commands ({len(cfg.commands)} intents, {data.voices} voices: "
                f"{data.voices - data.val_voices - data.test_voices} train / {data.val_voices} val / "
                f"{data.test_voices} unseen test; {data.label_fraction:.0%} of the train labels)")
        class_names = [c.intent for c in cfg.commands]
    else:
        what = folder.describe(f"{data.label_fraction:.0%} of the train labels")
        class_names = list(folder.classes)
    return Task(name="speech-commands", splits=splits, teacher=build_teacher, student=build_student,
                key={**speech_key(data, vq, bert, folder), "text_max_length": teacher.max_length,
                     "minilm": minilm_fingerprint()},
                forward=batch_forward, collate=collate, description=what, class_names=class_names,
                extras={"commands": commands, "labelled": labelled, "device": device, "folder": folder},
                student_field="student", teacher_field="teacher")
