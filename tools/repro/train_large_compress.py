"""Train large, then compress (S24): word-level Transformer language models of several widths trained for the same
number of steps on real text, then magnitude-pruned and fake-quantized, test perplexity against compressed bytes.

Li, Wallace, Shen, Lin, Keutzer, Klein and Gonzalez, "Train Large, Then Compress: Rethinking Model Size for
Efficient Training and Inference of Transformers", ICML 2020 (arXiv:2002.11794). The paper's two claims:
(i) wider and deeper Transformers reach a lower loss in fewer steps (at equal wall-clock on an accelerator; on a CPU
the stand-in is equal optimizer steps); (ii) large models are more robust to compression, so a heavily compressed
large model beats a lightly compressed or uncompressed small one at equal or smaller compressed size.

Protocol: a causal, pre-LayerNorm word-level Transformer LM (tied input/output embeddings) of each width in
``--widths`` (and ``--depth-variant``), every model trained for ``--steps`` AdamW steps on the same batches per seed
(same initialisation seed, same data order), on WordNet 3.0 glosses and examples and fortunes
(``kd_core.text_corpora``). Each trained model is compressed by ``kd_edge.fake_compress``: global unstructured
magnitude pruning at each of ``--sparsities`` and symmetric per-channel fake quantization at each of ``--bits``
(32 = none), every combination, one shot without fine-tuning; perplexity on the validation and test sentences,
bytes = non-zero weights × bits + scales + untouched parameters at 32 bits. The comparisons are paired over seeds
(``kd_core.stats.paired_difference``). Writes ``docs/results/train-large-compress.md`` and its plots; the CNN side
study is ``tools/repro/train_large_compress_cnn.py``.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/train_large_compress.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import random
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen above, before pyplot is imported
import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from kd_core.metrics import mean_std
from kd_core.plots import save_figure
from kd_core.report import markdown_table
from kd_core.stats import PairedComparison, paired_difference
from kd_core.study_report import comparison_sentence
from kd_core.text_corpora import SOURCES, text_pool
from kd_edge.fake_compress import FULL_BITS, fake_quantize, model_bytes, prune_magnitude
from repro_common import PaperClaim, base_parser, claims_section, shown
from torch import nn

METRIC = "test perplexity (lower is better)"
PLOT = "train-large-compress.png"
CURVES = "train-large-compress-curves.png"
EOS, UNK = "<eos>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


# -- data ----------------------------------------------------------------------------------------------------

def tokenize(text: str) -> list[str]:
    """Lower-cased words (with an apostrophe suffix kept: ``don't``) and single punctuation marks."""
    return _TOKEN.findall(text.lower())


@dataclass
class Corpus:
    """A word-level corpus: the vocabulary (``<eos>``, ``<unk>``, then words by train frequency) and each split as
    one stream of token ids, sentences separated by ``<eos>``."""

    vocab: list[str]
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    sentences: dict[str, int]
    unk_rate: float


def _stream(sentences: Sequence[list[str]], index: dict[str, int]) -> torch.Tensor:
    ids = [i for words in sentences for i in [*(index.get(w, 1) for w in words), 0]]
    return torch.tensor(ids, dtype=torch.long)


def build_corpus(vocab_size: int, val_sentences: int, test_sentences: int, split_seed: int = 0) -> Corpus:
    """The distinct sentences of every ``kd_core.text_corpora`` source, shuffled once with ``split_seed`` (the
    same split for every training seed), the first ``test_sentences`` for test, the next ``val_sentences`` for
    validation, the rest for training; the vocabulary is the ``vocab_size`` most frequent training words."""
    if vocab_size < 10:
        raise ConfigError("--vocab", "an integer >= 10", vocab_size)
    pool = text_pool(SOURCES)
    random.Random(split_seed).shuffle(pool)
    if val_sentences + test_sentences >= len(pool):
        raise ConfigError("--val-sentences", f"with --test-sentences fewer than the {len(pool)} sentences",
                          val_sentences)
    words = [tokenize(s) for s in pool]
    test, val, train = (words[:test_sentences], words[test_sentences:test_sentences + val_sentences],
                        words[test_sentences + val_sentences:])
    counts = Counter(w for s in train for w in s)
    vocab = [EOS, UNK, *(w for w, _ in counts.most_common(vocab_size))]
    index = {w: i for i, w in enumerate(vocab)}
    train_ids = _stream(train, index)
    return Corpus(vocab, train_ids, _stream(val, index), _stream(test, index),
                  {"train": len(train), "val": len(val), "test": len(test)},
                  float((train_ids == 1).double().mean()))


def windows(stream: torch.Tensor, length: int, limit: int | None = None) -> torch.Tensor:
    """Non-overlapping windows of ``length + 1`` tokens (inputs and next-token targets), at most ``limit``."""
    count = (len(stream) - 1) // length
    count = count if limit is None else min(count, limit)
    return torch.stack([stream[i * length:i * length + length + 1] for i in range(count)])


def batch_starts(stream_length: int, length: int, batch: int, steps: int, seed: int) -> torch.Tensor:
    """Random window starts for every training step (``[steps, batch]``), drawn from ``seed`` alone, so every
    width of one seed sees the same batches in the same order."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, stream_length - length - 1, (steps, batch), generator=generator)


# -- the model ------------------------------------------------------------------------------------------------

class Block(nn.Module):
    """A pre-LayerNorm Transformer block: causal multi-head self-attention, then a 4× GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[batch, time, width]`` through attention and MLP, each with a residual."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class WordLM(nn.Module):
    """A causal word-level Transformer LM: token + learned position embeddings, ``layers`` blocks, a final
    LayerNorm and an output layer tied to the token embedding."""

    def __init__(self, vocab: int, width: int, layers: int, context: int, head_width: int = 32) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, max(1, width // head_width)) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tokens.weight
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[batch, time, vocab]`` for token ids ``[batch, time]``."""
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


@dataclass(frozen=True)
class ModelSpec:
    """One base model: its name on the page, width and depth."""

    name: str
    width: int
    layers: int


def model_specs(widths: Sequence[int], layers: int, depth_variant: str | None) -> list[ModelSpec]:
    """``d<width>`` at ``layers`` for every width, plus ``d<width>-L<layers>`` for a ``WIDTHxLAYERS`` variant."""
    specs = [ModelSpec(f"d{w}", w, layers) for w in widths]
    if depth_variant:
        match = re.fullmatch(r"(\d+)x(\d+)", depth_variant)
        if not match:
            raise ConfigError("--depth-variant", "WIDTHxLAYERS, e.g. 128x4", depth_variant)
        width, depth = int(match[1]), int(match[2])
        specs.append(ModelSpec(f"d{width}-L{depth}", width, depth))
    return specs


# -- training and evaluation ----------------------------------------------------------------------------------

def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps to ``peak``, then cosine decay to a tenth of it at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.inference_mode()
def perplexity(model: nn.Module, data: torch.Tensor, batch: int = 64) -> float:
    """exp of the mean next-token cross-entropy over every position of the windows ``data``."""
    model.eval()
    total, count = 0.0, 0
    for chunk in data.split(batch):
        logits = model(chunk[:, :-1])
        total += float(F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum"))
        count += chunk[:, 1:].numel()
    return math.exp(total / count)


def train_model(model: nn.Module, corpus: Corpus, starts: torch.Tensor, settings: dict[str, Any],
                curve_data: torch.Tensor) -> dict[str, Any]:
    """Train ``model`` on the windows at ``starts`` (one row per step), recording the validation perplexity on
    ``curve_data`` every ``settings['eval_every']`` steps; returns the curve and the training seconds."""
    length, steps = settings["context"], len(starts)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], betas=(0.9, 0.98), weight_decay=0.01)
    offsets = torch.arange(length + 1)
    curve, seconds = [], 0.0
    for step in range(steps):
        start = time.perf_counter()
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, settings["lr"], settings["warmup"])
        batch = corpus.train[starts[step][:, None] + offsets]
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seconds += time.perf_counter() - start
        if (step + 1) % settings["eval_every"] == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "val_ppl": perplexity(model, curve_data), "seconds": seconds})
    return {"curve": curve, "seconds": seconds}


def compression_grid(model: nn.Module, val: torch.Tensor, test: torch.Tensor, sparsities: Sequence[float],
                     bits: Sequence[int]) -> list[dict[str, Any]]:
    """Validation and test perplexity and bytes of ``model`` at every (sparsity, bits) combination: pruned once per
    sparsity, then quantized (the same as ``kd_edge.fake_compress.compress`` point by point)."""
    points = []
    for sparsity in sparsities:
        pruned = prune_magnitude(model, sparsity) if sparsity > 0 else model
        for width in bits:
            small = fake_quantize(pruned, width) if width < FULL_BITS else pruned
            points.append({"sparsity": sparsity, "bits": width, "bytes": model_bytes(small, bits=width),
                           "val_ppl": perplexity(small, val), "test_ppl": perplexity(small, test)})
    return points


def run_seed(seed: int, specs: Sequence[ModelSpec], corpus: Corpus, settings: dict[str, Any]) -> dict[str, Any]:
    """Every base model of one seed: same initialisation seed and batches, trained, then compressed and measured."""
    context = settings["context"]
    starts = batch_starts(len(corpus.train), context, settings["batch"], settings["steps"], seed)
    val = windows(corpus.val, context, settings["eval_windows"])
    test = windows(corpus.test, context, settings["eval_windows"])
    curve_data = val[:settings["curve_windows"]]
    models = {}
    for spec in specs:
        torch.manual_seed(seed)
        model = WordLM(len(corpus.vocab), spec.width, spec.layers, context)
        trained = train_model(model, corpus, starts, settings, curve_data)
        grid = compression_grid(model, val, test, settings["sparsities"], settings["bits"])
        params = sum(p.numel() for p in model.parameters())
        models[spec.name] = {"width": spec.width, "layers": spec.layers, "params": params, **trained, "points": grid}
        print(f"seed {seed} {spec.name}: {trained['seconds']:.0f} s, val ppl {trained['curve'][-1]['val_ppl']:.1f}, "
              f"test ppl {grid[0]['test_ppl']:.1f}", flush=True)
    return {"seed": seed, "models": models}


# -- across seeds ----------------------------------------------------------------------------------------------

def values(seeds: Sequence[dict[str, Any]], model: str, sparsity: float, bits: int, key: str) -> list[float]:
    """``key`` of one (model, sparsity, bits) point, one value per seed in seed order."""
    out = []
    for s in seeds:
        point = next(p for p in s["models"][model]["points"] if p["sparsity"] == sparsity and p["bits"] == bits)
        out.append(point[key])
    return out


def summarise(seeds: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of bytes and perplexities for every (model, sparsity, bits) point."""
    rows = []
    for model, info in seeds[0]["models"].items():
        for point in info["points"]:
            key = (model, point["sparsity"], point["bits"])
            test = mean_std(values(seeds, *key, "test_ppl"))
            rows.append({"model": model, "width": info["width"], "layers": info["layers"],
                         "sparsity": point["sparsity"], "bits": point["bits"],
                         "bytes": max(values(seeds, *key, "bytes")),
                         "val_ppl": mean_std(values(seeds, *key, "val_ppl"))[0],
                         "test_ppl": test[0], "test_std": test[1]})
    return rows


def pareto(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats on both bytes (no more) and mean test perplexity (lower), by bytes."""
    front, best = [], math.inf
    for row in sorted(rows, key=lambda r: (r["bytes"], r["test_ppl"])):
        if row["test_ppl"] < best:
            front.append(row)
            best = row["test_ppl"]
    return front


def frontier_ranges(rows: Sequence[dict[str, Any]]) -> str:
    """Which model holds the Pareto frontier over which range of sizes, in one sentence."""
    front = pareto(rows)
    spans = []
    for model in dict.fromkeys(r["model"] for r in front):
        sizes = [r["bytes"] / 1024 for r in front if r["model"] == model]
        count = len(sizes)
        spans.append(f"{model} {count} point{'s' if count > 1 else ''} ({min(sizes):.0f}–{max(sizes):.0f} KiB)")
    return "Frontier points by model, smallest first: " + "; ".join(spans) + "."


def label(model: str, sparsity: float, bits: int) -> str:
    """A compressed point's name on the page: ``d256 pruned 80 % + 4-bit``."""
    parts = [f"pruned {round(100 * sparsity)} %"] if sparsity > 0 else []
    parts += [f"{bits}-bit"] if bits < FULL_BITS else []
    return f"{model} {' + '.join(parts)}" if parts else model


def compare(seeds: Sequence[dict[str, Any]], a: tuple[str, float, int], b: tuple[str, float, int]) -> PairedComparison:
    """Test perplexity of point ``a`` against point ``b`` (model, sparsity, bits), paired over seeds, lower is
    better."""
    return paired_difference(values(seeds, *a, "test_ppl"), values(seeds, *b, "test_ppl"), a_name=label(*a),
                             b_name=label(*b), metric=METRIC, higher_is_better=False)


def size_pairs(specs: Sequence[ModelSpec]) -> list[tuple[str, str]]:
    """(larger, smaller) neighbours among the base-depth models, largest first, then (deeper, shallower) for the
    depth variant."""
    base = sorted((s for s in specs if s.layers == specs[0].layers), key=lambda s: -s.width)
    pairs = [(big.name, small.name) for big, small in itertools.pairwise(base)]
    for spec in specs:
        twin = next((s for s in base if s.width == spec.width and s.layers != spec.layers), None)
        if spec.layers != specs[0].layers and twin:
            pairs.append((spec.name, twin.name))
    return pairs


def matched_point(rows: Sequence[dict[str, Any]], model: str, budget: float) -> dict[str, Any] | None:
    """The rule fixed before the run: among ``model``'s compressed points (sparsity > 0 or bits < 32) whose bytes
    (largest over seeds) are at most ``budget``, the one of lowest mean *validation* perplexity."""
    fits = [r for r in rows if r["model"] == model and r["bytes"] <= budget and (r["sparsity"] > 0 or r["bits"] < 32)]
    return min(fits, key=lambda r: r["val_ppl"]) if fits else None


def comparisons(seeds: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], specs: Sequence[ModelSpec],
                robust: tuple[float, int]) -> dict[str, list[PairedComparison]]:
    """Claim (i): each larger model against the next smaller one, uncompressed; claim (ii): each larger model's
    matched compressed point against the smaller one uncompressed and at 8 bits; robustness: the largest and the
    smallest model's perplexity ratio (compressed / uncompressed) at the ``robust`` (sparsity, bits) points."""
    pairs = size_pairs(specs)
    out: dict[str, list[PairedComparison]] = {"i": [], "ii": [], "robust": []}
    by = {(r["model"], r["sparsity"], r["bits"]): r for r in rows}
    for big, small in pairs:
        out["i"].append(compare(seeds, (big, 0.0, 32), (small, 0.0, 32)))
    for big, small in pairs[:sum(1 for s in specs if s.layers == specs[0].layers) - 1]:
        for reference in ((small, 0.0, 32), (small, 0.0, 8)):
            if reference not in by:
                continue
            point = matched_point(rows, big, by[reference]["bytes"])
            if point is not None:
                out["ii"].append(compare(seeds, (big, point["sparsity"], point["bits"]), reference))
    base = sorted((s for s in specs if s.layers == specs[0].layers), key=lambda s: -s.width)
    largest, smallest = base[0].name, base[-1].name
    for sparsity, bits in ((robust[0], 32), (0.0, robust[1])):
        if (largest, sparsity, bits) in by:
            out["robust"].append(robustness(seeds, largest, smallest, sparsity, bits))
    return out


def robustness(seeds: Sequence[dict[str, Any]], big: str, small: str, sparsity: float, bits: int) -> PairedComparison:
    """Per seed, the relative perplexity increase (compressed / uncompressed − 1, in %) of ``big`` against that of
    ``small`` at one compression point; lower is better (more robust)."""
    def increase(model: str) -> list[float]:
        return [100 * (c / u - 1) for c, u in zip(values(seeds, model, sparsity, bits, "test_ppl"),
                                                  values(seeds, model, 0.0, 32, "test_ppl"), strict=True)]

    what = label("", sparsity, bits).strip()
    return paired_difference(increase(big), increase(small), a_name=big, b_name=small, higher_is_better=False,
                             metric=f"test perplexity increase under {what} (%, lower is more robust)")


def steps_to_reach(curve: Sequence[dict[str, Any]], target: float) -> int | None:
    """The first recorded step at which the validation perplexity is at most ``target`` (None: never)."""
    return next((c["step"] for c in curve if c["val_ppl"] <= target), None)


# -- plots -------------------------------------------------------------------------------------------------------

def plot_frontier(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Mean test perplexity against compressed bytes (both log) for every point, a colour per model, a marker per
    bit width, the Pareto frontier drawn over all of them."""
    fig, ax = plt.subplots(figsize=(8.5, 5.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = {b: m for b, m in zip(sorted({r["bits"] for r in rows}, reverse=True), "os^vDPX*", strict=False)}
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        for bits, marker in markers.items():
            mine = [r for r in rows if r["model"] == model and r["bits"] == bits]
            ax.scatter([r["bytes"] / 1024 for r in mine], [r["test_ppl"] for r in mine], marker=marker, s=28,
                       color=colours[i % 10], alpha=0.8, edgecolors="black", linewidths=0.3)
        ax.plot([], [], color=colours[i % 10], linewidth=6, label=model)
    for bits, marker in markers.items():
        ax.scatter([], [], color="gray", marker=marker, label="fp32" if bits == FULL_BITS else f"{bits}-bit")
    front = pareto(rows)
    ax.step([r["bytes"] / 1024 for r in front], [r["test_ppl"] for r in front], where="post", color="black",
            linewidth=1.2, label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compressed size (KiB: non-zero weights × bits + scales + other parameters at 32 bits; log)")
    ax.set_ylabel("test perplexity (mean over seeds, log)")
    top_sparsity = round(100 * max(r["sparsity"] for r in rows))
    ax.set_title(f"Train large, then compress: word-level Transformer LMs, pruning 0–{top_sparsity} % × "
                 f"{'/'.join(str(b) for b in markers)} bits")
    ax.grid(True, which="both", alpha=0.3)
    top = max(r["test_ppl"] for r in rows if r["sparsity"] == 0 and r["bits"] == FULL_BITS)
    ax.set_ylim(top=min(ax.get_ylim()[1], 20 * top))
    ax.legend(fontsize="small", ncol=2, loc="upper right")
    return save_figure(fig, path)


def plot_curves(seeds: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Validation perplexity against optimizer steps for every model (mean over seeds)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for model in seeds[0]["models"]:
        curves = [s["models"][model]["curve"] for s in seeds]
        steps = [c["step"] for c in curves[0]]
        ax.plot(steps, [mean_std([c[i]["val_ppl"] for c in curves])[0] for i in range(len(steps))], label=model)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step (the same batches for every model of a seed)")
    ax.set_ylabel("validation perplexity (mean over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


# -- the page ----------------------------------------------------------------------------------------------------

def training_table(seeds: Sequence[dict[str, Any]]) -> str:
    """Per model: parameters, steps, training seconds, final validation and test perplexity (mean ± std), and the
    steps to reach the smallest model's final validation perplexity."""
    models = list(seeds[0]["models"])
    target = mean_std([s["models"][models[0]]["curve"][-1]["val_ppl"] for s in seeds])[0]
    rows = []
    for model in models:
        runs = [s["models"][model] for s in seeds]
        reach = [steps_to_reach(r["curve"], target) for r in runs]
        val, test = (mean_std(v) for v in ([r["curve"][-1]["val_ppl"] for r in runs],
                                            [r["points"][0]["test_ppl"] for r in runs]))
        rows.append({"model": model, "width": runs[0]["width"], "layers": runs[0]["layers"],
                     "params": runs[0]["params"], "steps": runs[0]["curve"][-1]["step"],
                     "train s / model (wall, shared CPU)": mean_std([r["seconds"] for r in runs])[0],
                     "val ppl (curve subset)": f"{val[0]:.1f} ± {val[1]:.1f}",
                     "test ppl": f"{test[0]:.1f} ± {test[1]:.1f}",
                     f"steps to val ppl ≤ {target:.1f}": ", ".join("never" if r is None else str(r) for r in reach)})
    return markdown_table(rows, digits=1)


def points_table(rows: Sequence[dict[str, Any]]) -> str:
    """Every (model, sparsity, bits) point with bytes and test perplexity (mean ± std), frontier points marked."""
    front = {(r["model"], r["sparsity"], r["bits"]) for r in pareto(rows)}
    table = [{"model": r["model"], "sparsity": f"{r['sparsity']:.1f}", "bits": r["bits"],
              "KiB": f"{r['bytes'] / 1024:.1f}", "val ppl": f"{r['val_ppl']:.1f}",
              "test ppl": f"{r['test_ppl']:.1f} ± {r['test_std']:.1f}",
              "frontier": "yes" if (r["model"], r["sparsity"], r["bits"]) in front else ""} for r in rows]
    return markdown_table(table)


def paper_claims(found: dict[str, list[PairedComparison]]) -> tuple[dict[str, Any], list[PaperClaim]]:
    """The comparisons as ``claims_section`` reads them, and one ``PaperClaim`` per comparison."""
    words = {"i": "(i) at equal steps the larger model reaches lower test perplexity",
             "ii": "(ii) at equal or smaller bytes the compressed larger model beats the smaller one",
             "robust": "(ii) the larger model loses less perplexity to compression"}
    claims = [PaperClaim(c.a, c.b, words[k], c.metric) for k, cs in found.items() for c in cs]
    results = {"task": {"headline": METRIC}, "comparisons": [c.as_dict() for cs in found.values() for c in cs]}
    return results, claims


def depth_note(seeds: Sequence[dict[str, Any]]) -> str:
    """Whether the run holds a depth variant (the paper varies depth as well as width)."""
    if len({m["layers"] for m in seeds[0]["models"].values()}) > 1:
        return "The deeper model of the same width tests the depth half of claim (i)."
    return ("No depth variant was run (`--depth-variant 64x4` adds one): with the CPU budget of about 30 single-core "
            "minutes for the whole experiment on a machine shared with other runs, widths were kept and depth left "
            "out, so only the width half of claim (i) is tested.")


def planned_note(found: dict[str, list[PairedComparison]], planned: int | None) -> str:
    """When seeds were added to a planned run: every comparison on the first ``planned`` seeds alone (written so
    that the results index does not read them as further claims)."""
    every = [c for cs in found.values() for c in cs]
    if not planned or not every or planned >= every[0].n:
        return ""
    lines = []
    for c in every:
        head = paired_difference(list(c.differences[:planned]), [0.0] * planned, higher_is_better=False)
        interval = "no interval" if head.low is None else f"95 % CI [{head.low:+.2f}, {head.high:+.2f}]"
        lines.append(f"- {c.a} − {c.b} ({c.metric}): {head.mean:+.2f}, {interval}, {head.verdict}")
    return (f"**Seeds added after the planned run.** The run was planned with {planned} seeds; with them, the "
            f"comparisons read as below, and {every[0].n - planned} seeds were added afterwards to narrow the "
            "intervals (the verdicts above use every seed; the matched points of claim (ii) are those the rule chose "
            "on every seed's validation perplexity, which the planned seeds alone might not have chosen):\n\n"
            + "\n".join(lines) + "\n")


def write_page(doc: Path, result: dict[str, Any], command: str, minutes: float) -> None:
    """The results page: setting, gates (none apply), claims as paired sentences, the plots, every point, the
    claims section and the command."""
    settings, corpus, seeds = result["settings"], result["corpus"], result["seeds"]
    found = {k: [PairedComparison(**{f: v for f, v in c.items() if f not in ("n", "half_width")} |
                                  {"differences": tuple(c["differences"])}) for c in cs]
             for k, cs in result["comparisons"].items()}
    sentences = {k: "\n".join(f"- {comparison_sentence(c, unit='')}" for c in cs) or "- none compared"
                 for k, cs in found.items()}
    results, claims = paper_claims(found)
    front = pareto(result["rows"])
    names = ", ".join(f"{r['model']} s{r['sparsity']:.1f} {r['bits']}b" for r in front)
    bits = "/".join(str(b) for b in settings["bits"] if b < FULL_BITS)
    models = ", ".join(f"{m} ({i['width']}×{i['layers']} layers, {i['params']:,} parameters)"
                       for m, i in seeds[0]["models"].items())
    text = [
        "# Train large, then compress (S24): word-level Transformer language models on real text\n",
        "Li, Wallace, Shen, Lin, Keutzer, Klein and Gonzalez, \"Train Large, Then Compress: Rethinking Model Size "
        "for Efficient Training and Inference of Transformers\", ICML 2020 (arXiv:2002.11794). The paper's claims: "
        "(i) wider and deeper Transformers reach a lower loss in fewer steps, so under a fixed training budget one "
        "should train a large model and stop early; (ii) large models are more robust to pruning and quantization, "
        "so a heavily compressed large model beats a lightly compressed small one at equal compressed size. Code: "
        "`tools/repro/train_large_compress.py` (the LM and the protocol) and `kd_edge.fake_compress` (pruning, "
        "fake quantization, bytes; tests in `packages/kd-edge/tests/test_fake_compress.py`). An earlier CNN "
        "experiment that tested a different claim is kept as a side study: "
        "[train-large-compress-cnn.md](train-large-compress-cnn.md).\n",
        "## Setting\n",
        f"- Text: every distinct sentence of WordNet 3.0's glosses (definitions and quoted examples) and of the "
        f"BSD fortunes (`kd_core.text_corpora`; the repository has no Bible reader, so none is used), shuffled once "
        f"(the same split for every seed): {corpus['sentences']['train']:,} train, {corpus['sentences']['val']:,} "
        f"validation and {corpus['sentences']['test']:,} test sentences ({corpus['tokens']['train']:,} / "
        f"{corpus['tokens']['val']:,} / {corpus['tokens']['test']:,} tokens). Words lower-cased, punctuation split "
        f"off; vocabulary the {settings['vocab']:,} most frequent training words + `<unk>` + `<eos>` (sentence end); "
        f"{100 * corpus['unk_rate']:.1f} % of training tokens are `<unk>`.",
        f"- Models: causal pre-LayerNorm Transformer LMs (heads of width 32, 4× GELU MLP, learned positions, output "
        f"tied to the input embedding), {models}. {depth_note(seeds)}",
        f"- Training: every model {settings['steps']} AdamW steps (lr {settings['lr']:g}, {settings['warmup']} warm-up "
        f"steps then cosine to lr/10, weight decay 0.01, clip 1.0) of {settings['batch']} random windows of "
        f"{settings['context']} tokens ({settings['steps'] * settings['batch'] * settings['context']:,} training "
        "tokens, less than one pass: no model sees a window twice on average). Equal steps are the CPU stand-in for "
        "the paper's equal wall-clock on an accelerator: on one CPU thread a step's cost grows about linearly with "
        "the model's FLOPs, so the wall-clock half of claim (i) is not tested. Within a seed every model starts from "
        "`torch.manual_seed(seed)` and sees the same batches in the same order.",
        f"- Compression (`kd_edge.fake_compress`, one shot, no fine-tuning): global unstructured magnitude pruning "
        f"of every Linear and embedding weight matrix (tied embedding counted once; biases and LayerNorms kept) at "
        f"sparsities {', '.join(f'{s:g}' for s in settings['sparsities'])}, each followed by symmetric per-channel "
        f"fake quantization of the same weights at {bits} bits or none (32): {len(settings['sparsities'])} × "
        f"{len(settings['bits'])} points per model. Size: non-zero compressed weights × bits + one 32-bit scale per "
        "row + every other parameter at 32 bits (no sparse index counted, as in the paper's nonzeros × bits; a "
        "bitmap index would add 1 bit per compressed weight). At 3 and 2 bits many small weights round to zero "
        "and are not counted, so those points are smaller than bits/32 of fp32. The paper pruned and quantized "
        "while fine-tuning; "
        "one-shot compression without fine-tuning is harsher on every model alike.",
        f"- Perplexity: exp of the mean next-token cross-entropy over {settings['eval_windows']} non-overlapping "
        f"{settings['context']}-token windows of the validation and of the test stream (the learning curve uses the "
        f"first {settings['curve_windows']} validation windows). Seeds {[s['seed'] for s in seeds]}.\n",
        "## Gates\n",
        "**Teacher gate**: not applicable: S24 has no teacher and no distillation (it compares model sizes "
        "under compression).\n",
        "**Plain KD against scratch**: not applicable, for the same reason. Every model is trained from scratch on "
        "the same batches.\n",
        "## Claim (i): at equal steps, larger models reach lower perplexity\n",
        sentences["i"] + "\n",
        f"![validation perplexity against steps]({CURVES})\n",
        training_table(seeds),
        "## Claim (ii): heavily compressed large models against lightly compressed small ones\n",
        "Matched pairs, by a rule fixed before the run: for each larger model and the next smaller one, the "
        "smaller model's reference is its uncompressed (fp32) model and its 8-bit model (light compression); the "
        "larger model's point is, among its compressed points whose bytes (the largest over seeds) are at most the "
        "reference's, the one of lowest mean **validation** perplexity; the comparison is on test perplexity, "
        "paired over seeds.\n",
        sentences["ii"] + "\n",
        f"Robustness (the paper's reason for (ii)): the relative perplexity increase of the largest and the "
        f"smallest model at two compression points fixed before the run (pruning {settings['robust_sparsity']:g}; "
        f"{settings['robust_bits']}-bit).\n",
        sentences["robust"] + "\n",
        f"![test perplexity against compressed bytes]({PLOT})\n",
        f"Pareto frontier (mean over seeds, all models together; model, sparsity, bits): {names}. "
        f"{frontier_ranges(result['rows'])}\n",
        planned_note(found, settings.get("planned_seeds")),
        "## Every point (mean over seeds)\n",
        points_table(result["rows"]),
        "## Claims\n",
        claims_section(results, claims, scale=result["scale"], paper_scale=result["paper_scale"]) + "\n",
        "## Reproduce\n",
        f"```\n{command}\n```\n",
        f"Wall time {minutes:.1f} min on {platform.machine()} CPU (Python {platform.python_version()}), one torch "
        "thread, under `nice -n 10` on a shared 2-core machine. Every per-seed number is in the run folder's "
        "`results.json`.\n",
    ]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(text))


# -- the run -----------------------------------------------------------------------------------------------------

def scales(settings: dict[str, Any], specs: Sequence[ModelSpec], seeds: int) -> tuple[str, str]:
    """What this run tested and what the paper's scale would need, in one sentence each."""
    models = ", ".join(f"{s.name} ({s.width}×{s.layers})" for s in specs)
    tested = (f"{len(specs)} word-level Transformer LMs ({models}) trained {settings['steps']} steps of "
              f"{settings['batch']}×{settings['context']} tokens of glosses and fortunes (vocabulary "
              f"{settings['vocab']:,}), one-shot magnitude pruning and post-training fake quantization, {seeds} "
              "paired seeds on one CPU thread.")
    paper = ("RoBERTa-style masked-LM pretraining on BookCorpus + Wikipedia (billions of tokens) and WMT14 En→Fr, "
             "widths 256–1536 and 3–24 layers at equal wall-clock on GPUs/TPUs, then pruning and quantization during "
             "fine-tuning on MNLI/SST-2: several accelerator-days per model and downstream fine-tuning runs.")
    return tested, paper


def run_experiment(seeds: Sequence[int], specs: Sequence[ModelSpec], settings: dict[str, Any]) -> dict[str, Any]:
    """Build the corpus, run every seed, summarise, compare, plot; everything JSON-serialisable."""
    corpus = build_corpus(settings["vocab"], settings["val_sentences"], settings["test_sentences"])
    per_seed = [run_seed(seed, specs, corpus, settings) for seed in seeds]
    rows = summarise(per_seed)
    found = comparisons(per_seed, rows, specs, (settings["robust_sparsity"], settings["robust_bits"]))
    tested, paper = scales(settings, specs, len(seeds))
    return {"settings": settings, "seeds": per_seed, "rows": rows, "scale": tested, "paper_scale": paper,
            "comparisons": {k: [c.as_dict() for c in cs] for k, cs in found.items()},
            "corpus": {"sentences": corpus.sentences, "unk_rate": corpus.unk_rate,
                       "tokens": {"train": len(corpus.train), "val": len(corpus.val), "test": len(corpus.test)}}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = base_parser(__doc__, "train-large-compress")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--depth-variant", default="", help="an extra model WIDTHxLAYERS, e.g. 64x4 (default none)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--val-sentences", type=int, default=3000)
    parser.add_argument("--test-sentences", type=int, default=3000)
    parser.add_argument("--eval-windows", type=int, default=100, help="windows of each eval split (<= all)")
    parser.add_argument("--curve-windows", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[round(0.1 * i, 1) for i in range(10)])
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 8, 6, 4, 3, 2])
    parser.add_argument("--robust-sparsity", type=float, default=0.5)
    parser.add_argument("--robust-bits", type=int, default=4)
    parser.add_argument("--planned-seeds", type=int, default=None,
                        help="how many of --seeds the run was planned with (the page also shows them alone)")
    parser.add_argument("--page-only", action="store_true",
                        help="re-render the page and plots from --out's results.json (no training)")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings (checked: sparsity 0 and 32 bits must be in the grid, they are the references)."""
    if 0.0 not in args.sparsities or FULL_BITS not in args.bits:
        raise ConfigError("--sparsities/--bits", "grids holding 0 and 32 (the uncompressed reference)",
                          [args.sparsities, args.bits])
    keys = ("steps", "batch", "context", "lr", "warmup", "vocab", "val_sentences", "test_sentences", "eval_windows",
            "curve_windows", "eval_every", "sparsities", "bits", "robust_sparsity", "robust_bits", "planned_seeds")
    return {k: getattr(args, k) for k in keys}


def earlier_run(result: dict[str, Any], doc: Path) -> tuple[str, float]:
    """The command and wall minutes of the run behind ``result``: recorded in it, or else read from the page it
    wrote (``doc``)."""
    if "command" in result and "minutes" in result:
        return result["command"], result["minutes"]
    page = doc.read_text() if doc.is_file() else ""
    command = re.search(r"## Reproduce\n\n```\n(.+?)\n```", page)
    minutes = re.search(r"Wall time ([\d.]+) min", page)
    if not command or not minutes:
        raise ConfigError("--page-only", f"a results.json holding the command and wall time, or the page {doc} "
                          "that run wrote", "neither")
    return command[1], float(minutes[1])


def render(result: dict[str, Any], doc: Path, command: str, minutes: float) -> None:
    """The page and its two plots beside it."""
    plot_frontier(result["rows"], doc.with_name(PLOT))
    plot_curves(result["seeds"], doc.with_name(CURVES))
    write_page(doc, result, command, minutes)


def main(argv: list[str] | None = None) -> int:
    """Run every seed, write ``results.json``, the page and its two plots (``--page-only``: only re-render the page
    and plots from the ``results.json`` in ``--out``)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.page_only:
        result = json.loads((args.out / "results.json").read_text())
        command, minutes = earlier_run(result, args.doc)
        if args.planned_seeds is not None:
            result["settings"]["planned_seeds"] = args.planned_seeds
            if "--planned-seeds" not in command:  # the command that reproduces this page
                command += f" --planned-seeds {args.planned_seeds}"
        render(result, args.doc, command, minutes)
        print(f"re-rendered {shown(args.doc)} from {shown(args.out / 'results.json')}")
        return 0
    started = time.time()
    specs = model_specs(args.widths, args.layers, args.depth_variant)
    result = run_experiment(args.seeds, specs, settings_of(args))
    result["command"] = " ".join(["OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/repro/train_large_compress.py",
                                  *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    result["minutes"] = (time.time() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    render(result, args.doc, result["command"], result["minutes"])
    for group in result["comparisons"].values():
        for c in group:
            print(f"{c['a']} vs {c['b']}: {c['mean']:+.2f} [{c['low']}, {c['high']}] {c['verdict']}")
    print(f"results: {shown(args.doc)}; every number: {shown(args.out / 'results.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
