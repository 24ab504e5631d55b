"""``vq-wav2vec-pretrain``: self-supervised vq-wav2vec pre-training as a recipe, with codebook-usage reports.

Baevski, Schneider & Auli, "vq-wav2vec: Self-Supervised Learning of Discrete Speech Representations", ICLR 2020
(arXiv 1910.05453). A convolutional encoder maps raw 16 kHz audio to one frame per 10 ms, a quantizer (Gumbel-softmax
or online k-means, ``G`` groups of ``V`` codewords) replaces each frame by codewords, and a causal aggregator
predicts the next quantized frames against distractors (binary contrastive loss). The discrete tokens it learns
feed a BERT (``slu-two-stage``); how much of the codebook they use, and how many distinct tokens an audio set
maps to, decide whether that BERT has anything to read.

Data (``data.source``): ``commands``, the synthesized spoken-command set (``kd_speech.data.build_command_set``,
split by voice, cached), or ``folder:DIR``, a folder of audio files at any sample rate with a CSV naming them
(``kd_speech.data.read_audio_folder``; ``data.csv`` names the CSV when the folder holds several). A folder's
``split`` column is used when it has one (empty means train); otherwise ``data.val_fraction`` of its files
(drawn with ``data.seed``) are held out. Every file is checked before the run directory is made.

The loop is :class:`kd_speech.models.vq_pretrain.VqPretrainer`, the updates of ``pretrain_vq_wav2vec`` one at a
time (Adam, random crops, Gumbel temperature annealing; the encoder at ``train.encoder_lr_scale`` of the rate).
Every ``train.usage_every`` steps the codebook usage of the deterministic tokens of a fixed, evenly spaced subset of
the train and validation audio is measured (per group: codewords used, perplexity; distinct tokens); every
``train.checkpoint_every`` steps the whole trainer state goes to ``checkpoints/last.safetensors`` (atomically),
so ``--resume`` goes on from there and ends with the same weights as an uninterrupted run.

Two defaults of the recipe differ from the paper, both for short CPU runs: the Gumbel quantizer adds wav2vec 2.0's
codebook-diversity penalty (``model.diversity_weight: 1``; without it the tiny model's deterministic tokens on the
command set fall to a perplexity of 3-4 of 16 codewords per group in 600 updates, with it about 11), and the
temperature falls from 2 to 0.5 over ``model.anneal_fraction`` (70 %) of this run's updates, the paper's schedule
shape, rather than by the reference's fixed 0.999995 per update, which is made for 400k updates and would leave it
at 2 in a run of hundreds.

The run directory holds ``model.safetensors`` + ``model.json`` (reload with :func:`load_model`), ``results.json``,
``metrics.jsonl``, ``report.md`` and ``plots/loss.png`` / ``plots/codebook_usage.png``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from kd_core.errors import CheckpointError, ConfigError, KDError
from kd_core.recipes import Method, RecipeConfig, RunContext, Section
from pydantic import Field, field_validator, model_validator

from kd_speech.data.section import CommandSetSection

__all__ = ["METHOD", "MODEL_FILE", "MODEL_JSON", "TEMPERATURE", "VqData", "VqModel", "VqPretrainConfig",
           "VqPretrainPlan", "VqTrain", "load_model", "split_token_stats", "vq_config"]

MODEL_FILE = "model.safetensors"
MODEL_JSON = "model.json"
_FORMAT = 1
_SPLITS = ("train", "val", "test")
_SMOOTH = 25  # steps in the loss curve's moving average
TEMPERATURE = (2.0, 0.5)  # the Gumbel temperature's start and floor (the paper's)


class VqData(CommandSetSection):
    """Where the audio comes from: ``commands`` (the synthesized spoken-command set, fields as in
    ``slu-two-stage``) or ``folder:DIR`` with ``csv`` (default: the folder's only CSV) and ``val_fraction``."""

    source: str = "commands"
    csv: str | None = None
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        scheme, _, rest = value.partition(":")
        if value != "commands" and (scheme != "folder" or not rest.strip()):
            raise ValueError(f"'commands' or 'folder:DIR' (audio files with a CSV), received {value!r}")
        return value

    @property
    def folder(self) -> Path | None:
        """The audio folder of ``folder:DIR`` (None for ``commands``)."""
        scheme, _, rest = self.source.partition(":")
        return Path(rest.strip()).expanduser() if scheme == "folder" else None


class VqModel(Section):
    """The vq-wav2vec model: ``size`` (``tiny``: 64 channels, stride 160; ``paper``: the wav2vec encoder, 512
    channels) and the quantizer (``gumbel`` or ``kmeans``, ``groups`` × ``num_vars`` codewords), with the
    contrastive task's future steps and distractors (the paper: 320 codewords, 8 steps, 10 distractors). The
    Gumbel temperature falls from 2 to 0.5 over the first ``anneal_fraction`` of the updates, as in the paper
    (70 %), whatever ``train.steps`` is."""

    size: Literal["tiny", "paper"] = "tiny"
    quantizer: Literal["gumbel", "kmeans"] = "gumbel"
    groups: Annotated[int, Field(ge=1, le=64)] = 2
    num_vars: Annotated[int, Field(ge=2, le=4096)] = 16
    diversity_weight: Annotated[float, Field(ge=0)] = 0.0
    gamma: Annotated[float, Field(ge=0)] = 0.25
    anneal_fraction: Annotated[float, Field(gt=0, le=1)] = 0.7
    prediction_steps: Annotated[int, Field(ge=1, le=64)] = 4
    num_negatives: Annotated[int, Field(ge=1, le=256)] = 4


class VqTrain(Section):
    """Adam updates on random crops (``crop`` samples per waveform, null: the batch's shortest), the encoder at
    ``encoder_lr_scale`` of ``lr``; usage measured every ``usage_every`` steps on ``usage_limit`` evenly spaced
    waveforms of train and val (null: all); a checkpoint every ``checkpoint_every`` steps."""

    steps: Annotated[int, Field(gt=0)] = 600
    lr: Annotated[float, Field(gt=0)] = 1e-3
    batch_size: Annotated[int, Field(gt=0)] = 8
    crop: Annotated[int, Field(gt=0)] | None = 16000
    encoder_lr_scale: Annotated[float, Field(ge=0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    usage_every: Annotated[int, Field(gt=0)] = 25
    usage_limit: Annotated[int, Field(gt=0)] | None = 64
    checkpoint_every: Annotated[int, Field(gt=0)] = 100


class VqPretrainConfig(RecipeConfig):
    """The ``vq-wav2vec-pretrain`` recipe: ``data``, ``model``, ``train`` and the training ``seed``."""

    method: Literal["vq-wav2vec-pretrain"] = "vq-wav2vec-pretrain"
    data: VqData = VqData()
    model: VqModel = VqModel()
    train: VqTrain = VqTrain()

    @model_validator(mode="after")
    def _model_builds(self) -> VqPretrainConfig:
        try:
            config = vq_config(self.model, self.train.steps)
        except ConfigError as err:
            raise ValueError(f"model.{err.argument} must be {err.expected}, received {err.received!r}") from None
        if self.train.crop is not None and self.train.crop < config.min_samples():
            raise ValueError(f"train.crop must be at least {config.min_samples()} samples (the receptive field of "
                             f"{config.receptive_field} plus one frame to predict), received {self.train.crop}")
        return self


def vq_config(model: VqModel, steps: int) -> Any:
    """The ``VqWav2VecConfig`` of a recipe's ``model`` section for a run of ``steps`` updates (``ConfigError``
    naming the config field): the Gumbel temperature decays from 2 by ``0.25 ** (1 / (anneal_fraction *
    steps))`` per update, reaching 0.5 after ``anneal_fraction`` of them."""
    from kd_speech.models import VqWav2VecConfig

    start, end = TEMPERATURE
    decay = (end / start) ** (1.0 / (model.anneal_fraction * steps))
    build = VqWav2VecConfig.tiny if model.size == "tiny" else VqWav2VecConfig
    return build(quantizer=model.quantizer, groups=model.groups, num_vars=model.num_vars,
                 diversity_weight=model.diversity_weight, gamma=model.gamma, temperature=(start, end, decay),
                 prediction_steps=model.prediction_steps, num_negatives=model.num_negatives)


# -- data ---------------------------------------------------------------------------------------------------------


@dataclass
class _Audio:
    """The audio of every split (16 kHz float waveforms), where it came from and what it is."""

    waves: dict[str, list[torch.Tensor]]
    names: dict[str, list[str]]
    description: str
    origin: str


def _folder_argument(argument: str) -> str:
    """The recipe field a ``read_audio_folder`` error is about, with the file or column it names."""
    if argument == "csv" or argument.endswith(" csv"):
        return "data.csv"
    return "data.source" if argument == "audio folder" else f"data.source ({argument})"


def _folder_utterances(data: VqData, min_samples: int) -> list[Any]:
    """The folder's utterances, every file checked (exists, readable, long enough) before anything is made."""
    from kd_speech.data import SAMPLE_RATE, read_audio_folder

    folder = data.folder
    assert folder is not None
    if not folder.is_dir():
        raise ConfigError("data.source", "folder:DIR naming an existing folder of audio files with a CSV",
                          data.source)
    try:
        utterances = read_audio_folder(folder, data.csv)
    except ConfigError as err:
        raise ConfigError(_folder_argument(err.argument), err.expected, err.received, hint=err.hint) from None
    seconds = min_samples / SAMPLE_RATE
    for u in utterances:
        samples = u.info["frames"] * SAMPLE_RATE // u.info["sample_rate"]
        if samples < min_samples:
            raise ConfigError(f"data.source ({u.path})", f"audio of at least {min_samples} samples at 16 kHz "
                              f"({1000 * seconds:.0f} ms: the model's receptive field plus one frame)",
                              f"{samples} samples", hint=f"line {u.info['line']} of the CSV; drop it or pad it")
    return utterances


def _folder_splits(utterances: Sequence[Any], data: VqData) -> dict[str, list[Any]]:
    """The folder's utterances by split: its ``split`` column (empty: train), else ``val_fraction`` held out."""
    if any(u.split for u in utterances):
        splits = {s: [u for u in utterances if (u.split or "train") == s] for s in _SPLITS}
    else:
        order = list(range(len(utterances)))
        random.Random(f"kd-speech-vq-split:{data.seed}").shuffle(order)
        held = round(data.val_fraction * len(order)) if len(order) > 1 else 0
        if data.val_fraction > 0 and len(order) > 1:
            held = max(1, held)
        chosen = set(order[:held])
        splits = {"train": [u for i, u in enumerate(utterances) if i not in chosen],
                  "val": [u for i, u in enumerate(utterances) if i in chosen], "test": []}
    if not splits["train"]:
        raise ConfigError("data.source", "at least one train utterance (rows with split train or empty)",
                          f"{sum(map(len, splits.values()))} rows, none for train")
    return {s: items for s, items in splits.items() if items}


def _check_data(data: VqData, min_samples: int) -> dict[str, list[Any]] | None:
    """What can go wrong with the data, found before the run directory: the folder, its files and splits, or a
    missing synthesizer for a command set that is not cached yet. Returns the folder's utterances by split."""
    if data.folder is not None:
        return _folder_splits(_folder_utterances(data, min_samples), data)
    from kd_speech.data import command_set_dir, require_synthesizer

    config = data.command_set()
    if not (command_set_dir(config) / "manifest.jsonl").is_file():
        for name in ("espeak", "flite") if config.flite_voices else ("espeak",):
            require_synthesizer(name)
    return None


def _read(items: Mapping[str, Sequence[Any]], progress: Any) -> dict[str, list[torch.Tensor]]:
    from kd_speech.data import read_audio

    task = progress.add_task("reading audio", total=sum(map(len, items.values())), info="")
    waves: dict[str, list[torch.Tensor]] = {}
    for split, utterances in items.items():
        waves[split] = []
        for u in utterances:
            waves[split].append(read_audio(u.path))
            progress.advance(task)
    return waves


def _load_audio(data: VqData, folder_splits: Mapping[str, list[Any]] | None, progress: Any) -> _Audio:
    from kd_speech.data import SAMPLE_RATE, build_command_set

    if folder_splits is not None:
        splits = folder_splits
        waves = _read(splits, progress)
        hours = sum(len(w) for ws in waves.values() for w in ws) / SAMPLE_RATE / 3600
        split_text = ", ".join(f"{len(v)} {s}" for s, v in splits.items())
        return _Audio(waves, {s: [str(u.path) for u in items] for s, items in splits.items()},
                      f"{sum(map(len, splits.values()))} audio files from {data.folder} ({split_text}; "
                      f"{hours:.2f} h at 16 kHz)", str(data.folder))
    commands = build_command_set(data.command_set(), progress=False)
    splits = {s: commands.split(s) for s in _SPLITS}
    waves = _read(splits, progress)
    train = data.voices - data.val_voices - data.test_voices
    return _Audio(waves, {s: [u.path.name for u in items] for s, items in splits.items()},
                  f"synthesized spoken commands ({data.intents} intents × {data.per_intent} phrasings, "
                  f"{data.voices} voices: {train} train / {data.val_voices} val / {data.test_voices} test; "
                  f"{len(commands.utterances)} utterances)", str(commands.directory))


# -- model files --------------------------------------------------------------------------------------------------


def _save_model(model: Any, run: Any, info: Mapping[str, Any]) -> Path:
    from kd_core.checkpoint import save_weights

    run.write_json(MODEL_JSON, {"format": _FORMAT, "config": model.config.to_dict(), "sample_rate": 16000,
                                **info})
    return save_weights(model, run.path / MODEL_FILE, metadata={"kd_format": "vq-wav2vec"})


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """The trained ``VqWav2Vec`` of a run directory (or its ``model.safetensors``), in eval mode.

    ``model.tokens(wave)`` then gives the discrete tokens of a 16 kHz waveform."""
    from kd_core.checkpoint import load_weights

    from kd_speech.models import VqWav2Vec, VqWav2VecConfig

    path = Path(path)
    folder = path.parent if path.suffix == ".safetensors" else path
    meta = folder / MODEL_JSON
    if not meta.is_file() or not (folder / MODEL_FILE).is_file():
        raise CheckpointError("path", f"a vq-wav2vec-pretrain run directory holding {MODEL_FILE} and {MODEL_JSON}",
                              str(path))
    try:
        info = json.loads(meta.read_text())
        config = VqWav2VecConfig.from_dict(info["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as err:
        raise CheckpointError(MODEL_JSON, "the model description a vq-wav2vec-pretrain run writes", str(meta),
                              hint=f"{type(err).__name__}: {err}") from None
    model = VqWav2Vec(config)
    load_weights(model, folder / MODEL_FILE)
    return model.to(device).eval()


# -- measurements -------------------------------------------------------------------------------------------------


def _usage_record(usage: Any) -> dict[str, Any]:
    return {"used": list(usage.used), "fraction_used": [u / usage.num_vars for u in usage.used],
            "perplexity": list(usage.perplexity), "distinct": usage.distinct, "frames": usage.frames}


@torch.no_grad()
def split_token_stats(model: Any, waves: Mapping[str, Sequence[torch.Tensor]]) -> dict[str, dict[str, Any]]:
    """Per split: codebook usage of the model's deterministic tokens (codewords used and perplexity per group),
    distinct tokens, and for the splits after ``train`` the distinct tokens and the share of frames whose token
    the train audio never maps to."""
    from kd_speech.models import codebook_usage, combine_indices

    device = next(model.parameters()).device
    model.eval()
    stats: dict[str, dict[str, Any]] = {}
    seen: set[int] = set()
    for split, items in waves.items():
        indices = [model.indices(w.to(device)).reshape(-1, model.config.groups).cpu() for w in items
                   if len(w) >= model.config.receptive_field]
        if not indices:
            continue
        flat = torch.cat(indices)
        usage = codebook_usage(flat, model.config.num_vars)
        tokens = combine_indices(flat, model.config.num_vars)
        distinct = set(torch.unique(tokens).tolist())
        row = {"utterances": len(items), **_usage_record(usage), "possible": model.num_tokens}
        if split == "train":
            seen = distinct
        elif seen:
            unseen = distinct - seen
            row["unseen_in_train"] = len(unseen)
            row["frames_unseen_in_train"] = float(sum(t in unseen for t in tokens.tolist()) / len(tokens))
        stats[split] = row
    return stats


def _spread(items: Sequence[torch.Tensor], limit: int | None) -> list[torch.Tensor]:
    """At most ``limit`` of ``items``, evenly spaced (a split ordered by voice keeps every voice)."""
    if limit is None or len(items) <= limit:
        return list(items)
    return [items[i * len(items) // limit] for i in range(limit)]


def _measure(model: Any, subsets: Mapping[str, Sequence[torch.Tensor]], step: int) -> list[dict[str, Any]]:
    from kd_speech.models import measure_usage

    model.eval()
    return [{"step": step, "split": split, **_usage_record(measure_usage(model, items))}
            for split, items in subsets.items() if items]


# -- plots and report ---------------------------------------------------------------------------------------------


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _plot_loss(steps: Sequence[Mapping[str, Any]], path: Path) -> Path:
    from kd_core.plots import plot_epoch_curves

    xs = [r["step"] for r in steps]
    contrastive = [r["contrastive"] for r in steps]
    window = max(1, min(_SMOOTH, len(steps) // 5))
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {
        "contrastive loss": {"per step": list(zip(xs, contrastive, strict=True)),
                             f"moving average ({window})": list(zip(xs, _moving_average(contrastive, window),
                                                                    strict=True))},
        "total loss": {"per step": [(r["step"], r["loss"]) for r in steps]},
    }
    if any(r["quantizer"] for r in steps):
        panels["quantizer loss"] = {"per step": [(r["step"], r["quantizer"]) for r in steps]}
    if any(r["temperature"] is not None for r in steps):
        panels["Gumbel temperature"] = {"τ": [(r["step"], r["temperature"]) for r in steps]}
    return plot_epoch_curves(panels, path, xlabel="update")


def _plot_usage(usage: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]], groups: int,
                path: Path) -> Path:
    from kd_core.plots import plot_epoch_curves

    panels: dict[str, dict[str, list[tuple[float, float]]]] = {
        "codewords used per group (%)": {}, "code perplexity per group": {}, "distinct tokens": {}}
    for record in usage:
        split = record["split"]
        for g in range(groups):
            label = f"{split} g{g}" if groups > 1 else split
            panels["codewords used per group (%)"].setdefault(label, []).append(
                (record["step"], 100 * record["fraction_used"][g]))
            panels["code perplexity per group"].setdefault(label, []).append((record["step"], record["perplexity"][g]))
        panels["distinct tokens"].setdefault(split, []).append((record["step"], record["distinct"]))
    panels["batch code perplexity (training, Σ groups)"] = {
        "per step": [(r["step"], r["code_perplexity"]) for r in steps]}
    return plot_epoch_curves(panels, path, xlabel="update")


def _usage_rows(stats: Mapping[str, Mapping[str, Any]], num_vars: int) -> list[dict[str, Any]]:
    rows = []
    for split, s in stats.items():
        rows.append({"split": split, "utterances": s["utterances"], "frames": s["frames"],
                     "codewords used per group": ", ".join(f"{u}/{num_vars}" for u in s["used"]),
                     "used %": f"{100 * sum(s['used']) / (num_vars * len(s['used'])):.0f}",
                     "perplexity per group": ", ".join(f"{p:.1f}" for p in s["perplexity"]),
                     "distinct tokens": f"{s['distinct']:,} of {s['possible']:,}",
                     "unseen in train": (f"{s['unseen_in_train']} ({100 * s['frames_unseen_in_train']:.2f} % of frames)"
                                         if "unseen_in_train" in s else "—")})
    return rows


def _collapse_note(stats: Mapping[str, Mapping[str, Any]], num_vars: int, quantizer: str) -> str:
    train = stats["train"]
    worst = min(train["used"]) / num_vars
    if worst >= 0.25:
        return ""
    remedy = ("a diversity penalty (--set model.diversity_weight=1.0)" if quantizer == "gumbel" else
              "a lower train.encoder_lr_scale or more data")
    return (f"\n\n**Warning**: the least-used group uses {100 * worst:.0f} % of its codewords on the train audio: "
            f"the codebook has (nearly) collapsed, and its tokens carry little. Try {remedy}, or fewer steps.")


def _report(run: Any, config: VqPretrainConfig, audio: _Audio, model: Any, history: Mapping[str, Any],
            stats: Mapping[str, Mapping[str, Any]], plots: list[tuple[str, Path]], seconds: float) -> Path:
    from kd_core.report import command_line, markdown_table, write_report

    m, t = config.model, config.train
    steps = history["steps"]
    tail = max(1, len(steps) // 10)
    first = sum(r["contrastive"] for r in steps[:tail]) / tail
    last = sum(r["contrastive"] for r in steps[-tail:]) / tail
    vq = model.config
    params = sum(p.numel() for p in model.parameters())
    usage = history["usage"]
    start = {r["split"]: r for r in usage if r["step"] == 0}
    end_step = max((r["step"] for r in usage), default=0)
    end = {r["split"]: r for r in usage if r["step"] == end_step}
    trend = "; ".join(
        f"{split}: {', '.join(f'{100 * f:.0f}' for f in start[split]['fraction_used'])} % → "
        f"{', '.join(f'{100 * f:.0f}' for f in end[split]['fraction_used'])} % of codewords per group, "
        f"{start[split]['distinct']} → {end[split]['distinct']} distinct tokens"
        for split in end if split in start)
    quantizer = (f"Gumbel-softmax (τ {vq.temperature[0]:g} → {vq.temperature[1]:g} over the first "
                 f"{100 * m.anneal_fraction:g} % of the updates, ×{vq.temperature[2]:.6g} per update"
                 f"{f', diversity weight {m.diversity_weight:g}' if m.diversity_weight else ''})"
                 if m.quantizer == "gumbel" else f"online k-means (γ = {m.gamma:g})")
    sections = [
        ("Command", f"```\n{command_line()}\n```\n\nResume an interrupted run with `--resume` and the same `--out`."),
        ("Setup", f"- data: {audio.description}; audio from `{audio.origin}`\n"
                  f"- model: vq-wav2vec `{m.size}` ({params:,} parameters, one frame per {vq.stride} samples = "
                  f"{1000 * vq.stride / 16000:g} ms), {quantizer}, {vq.groups} group(s) × {vq.num_vars} codewords "
                  f"({model.num_tokens:,} possible tokens); {vq.prediction_steps} future steps, "
                  f"{vq.num_negatives} distractors\n"
                  f"- training: {t.steps} Adam updates, lr {t.lr:g} (encoder ×{t.encoder_lr_scale:g}), batch "
                  f"{t.batch_size}, crops of {t.crop if t.crop else 'the batch shortest'} samples, weight decay "
                  f"{t.weight_decay:g}, gradient clip {t.grad_clip if t.grad_clip else 'none'}, seed {config.seed}; "
                  f"{seconds:.0f} s"),
        ("Results", f"Contrastive loss: {first:.4f} (mean of the first {tail} updates) → **{last:.4f}** (mean of "
                    f"the last {tail}).\n\nTokens of the trained model (deterministic: argmax / nearest codeword) "
                    f"over every utterance of each split; \"unseen in train\" counts distinct tokens the train "
                    f"audio never maps to (a BERT built on the train tokens reads them as unknown):\n\n"
                    + markdown_table(_usage_rows(stats, vq.num_vars))
                    + _collapse_note(stats, vq.num_vars, m.quantizer)),
        ("Codebook usage over training", f"Measured every {t.usage_every} updates on "
                                         f"{f'{t.usage_limit} evenly spaced' if t.usage_limit else 'all the'} "
                                         f"utterances of the train and val splits. {trend}."),
        ("Files", f"- `{MODEL_FILE}` + `{MODEL_JSON}`: the trained model; `load_model(run_dir)` of "
                  f"`kd_speech.methods.vq_wav2vec_pretrain` gives it back, `model.tokens(wave)` its tokens\n"
                  "- `results.json`: settings, token statistics per split, the usage history\n"
                  "- `metrics.jsonl`: the losses of every update and every usage measurement\n"
                  "- `checkpoints/last.safetensors`: the trainer's last state (model, optimizer, random streams, "
                  "data position)"),
        ("Reference", "Baevski, Schneider & Auli, \"vq-wav2vec: Self-Supervised Learning of Discrete Speech "
                      "Representations\", ICLR 2020, arXiv 1910.05453."),
    ]
    return write_report(run, f"vq-wav2vec pre-training on {audio.description.split(' (')[0]}", sections, plots)


# -- the plan -----------------------------------------------------------------------------------------------------


def _progress(enabled: bool) -> Any:
    from kd_core.progress import progress_bar
    from rich.progress import Progress

    return progress_bar() if enabled else Progress(disable=True)


def _checkpoint(run: Any, trainer: Any, history: Mapping[str, Any]) -> None:
    from kd_core.checkpoint import save_state

    run.flush()
    save_state({"format": _FORMAT, "trainer": trainer.state_dict(), "history": dict(history)},
               run.checkpoints / "last.safetensors")


@dataclass
class VqPretrainPlan:
    """A validated ``vq-wav2vec-pretrain`` recipe, ready to run (what ``METHOD.build`` returns)."""

    config: VqPretrainConfig

    def run(self, context: RunContext) -> Path:
        """Check the data, open the run directory, pre-train (resuming from the last checkpoint with
        ``context.resume``), then write the model, the token statistics, the plots and the report."""
        import time

        from kd_core.backends import Backend
        from kd_core.checkpoint import load_state
        from kd_core.recipes import open_run

        from kd_speech.models import VqWav2Vec
        from kd_speech.models.vq_pretrain import VqPretrainer

        config, t = self.config, self.config.train
        if context.precision != "fp32":
            raise ConfigError("--precision", "fp32 (the vq-wav2vec pre-training loop runs in fp32)",
                              context.precision)
        backend = Backend(device=context.device)
        vq = vq_config(config.model, t.steps)
        folder_splits = _check_data(config.data, vq.min_samples())
        run = open_run(context, config.model_dump(), config.seed, backend)
        try:
            began = time.perf_counter()
            with _progress(context.progress) as progress:
                audio = _load_audio(config.data, folder_splits, progress)
                too_short = [(s, i) for s, ws in audio.waves.items() for i, w in enumerate(ws)
                             if len(w) < vq.min_samples()]
                if too_short:
                    split, index = too_short[0]
                    raise ConfigError(f"data.source ({audio.names[split][index]})",
                                      f"audio of at least {vq.min_samples()} samples", len(audio.waves[split][index]))
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(config.seed)
                    model = VqWav2Vec(vq).to(backend.device)
                trainer = VqPretrainer(model, audio.waves["train"], lr=t.lr, batch_size=t.batch_size, crop=t.crop,
                                       seed=config.seed, weight_decay=t.weight_decay, grad_clip=t.grad_clip,
                                       encoder_lr_scale=t.encoder_lr_scale)
                subsets = {s: _spread(ws, t.usage_limit) for s, ws in audio.waves.items() if s in ("train", "val")}
                history: dict[str, Any] = {"steps": [], "usage": []}
                saved = run.checkpoints / "last.safetensors"
                if context.resume:
                    run.remove_stale_temp_files()
                if context.resume and saved.is_file():
                    state = load_state(saved)
                    trainer.load_state_dict(state["trainer"])
                    history = state["history"]
                    run.truncate_metrics(trainer.step)  # (the updates after the checkpoint are done again)
                else:
                    if context.resume:  # killed before its first checkpoint: start again from nothing
                        run.truncate_metrics(-1)
                    history["usage"] = _measure(model, subsets, 0)
                    for record in history["usage"]:
                        run.log({**record, "kind": "usage"})
                task = progress.add_task("vq-wav2vec", total=t.steps, completed=trainer.step, info="")
                while trainer.step < t.steps:
                    done = trainer.train_step()
                    step = trainer.step
                    record = {"step": step, "loss": done.loss, "contrastive": done.contrastive,
                              "quantizer": done.quantizer, "temperature": done.temperature,
                              "code_perplexity": done.code_perplexity}
                    history["steps"].append(record)
                    run.log({**record, "kind": "update"})
                    if step % t.usage_every == 0 or step == t.steps:
                        measured = _measure(model, subsets, step)
                        history["usage"] += measured
                        for usage in measured:
                            run.log({**usage, "kind": "usage"})
                    if step % t.checkpoint_every == 0 or step == t.steps:
                        _checkpoint(run, trainer, history)
                    progress.update(task, advance=1, info=f"contrastive {done.contrastive:.4f} ppl "
                                                          f"{done.code_perplexity:.1f}")
                trainer.finish()
                stats_task = progress.add_task("tokens", total=1, info="")
                stats = split_token_stats(model, audio.waves)
                progress.update(stats_task, advance=1)
            model_path = _save_model(model, run, {"steps": t.steps, "recipe": config.model_dump()})
            plots = [("Contrastive loss", _plot_loss(history["steps"], run.plots / "loss.png")),
                     ("Codebook usage over training", _plot_usage(history["usage"], history["steps"], vq.groups,
                                                                  run.plots / "codebook_usage.png"))]
            seconds = time.perf_counter() - began
            run.write_json("results.json", {
                "method": config.method, "data": {"description": audio.description, "origin": audio.origin,
                                                  "utterances": {s: len(w) for s, w in audio.waves.items()}},
                "model": {"file": model_path.name, "parameters": sum(p.numel() for p in model.parameters()),
                          "num_tokens": model.num_tokens, "config": vq.to_dict()},
                "final": {"contrastive": history["steps"][-1]["contrastive"], "loss": history["steps"][-1]["loss"]},
                "tokens": stats, "usage_history": history["usage"], "seconds": seconds})
            _report(run, config, audio, model, history, stats, plots, seconds)
        finally:
            run.close()
        return run.path

    def evaluate(self, run: Path, device: str = "auto") -> dict[str, float]:
        """Codebook usage and distinct tokens of a finished run's model over the recipe's audio, per split."""
        from kd_core.backends import Backend

        model = load_model(run, Backend(device=device).device)
        folder_splits = _check_data(self.config.data, model.config.min_samples())
        with _progress(False) as progress:
            audio = _load_audio(self.config.data, folder_splits, progress)
        scores: dict[str, float] = {}
        for split, s in split_token_stats(model, audio.waves).items():
            scores[f"{split}/distinct_tokens"] = s["distinct"]
            for g, (fraction, ppl) in enumerate(zip(s["fraction_used"], s["perplexity"], strict=True)):
                scores[f"{split}/group{g}/fraction_used"] = round(fraction, 4)
                scores[f"{split}/group{g}/perplexity"] = round(ppl, 3)
        return scores


def _build(config: RecipeConfig) -> VqPretrainPlan:
    if not isinstance(config, VqPretrainConfig):
        raise KDError("config", "a VqPretrainConfig", type(config).__name__)
    return VqPretrainPlan(config)


METHOD = Method(
    name="vq-wav2vec-pretrain", config_model=VqPretrainConfig, build=_build, domain="speech",
    recipes=Path(__file__).resolve().parent.parent / "recipes",
    summary="vq-wav2vec self-supervised pre-training (Gumbel or k-means) on spoken commands or your audio: "
            "loss, codebook usage, tokens (Baevski et al. 2020)")
