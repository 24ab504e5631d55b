"""vq-wav2vec: frame stride, causal context, both quantizers (values and gradients), the losses by hand, tokens,
codebook usage, and usage above a floor after a few pre-training steps on a tiny synthetic set."""

from __future__ import annotations

import math

import pytest
import torch
from kd_core.errors import ConfigError, DataError
from kd_speech.models import (
    ContextAggregator,
    FeatureEncoder,
    FutureStepPredictor,
    GumbelQuantizer,
    KMeansQuantizer,
    VqWav2Vec,
    VqWav2VecConfig,
    codebook_usage,
    combine_indices,
    future_contrastive_loss,
    pretrain_vq_wav2vec,
    sample_distractors,
    split_tokens,
)


def toy_waves(count: int = 8, samples: int = 16000, units: int = 16, seed: int = 0) -> list[torch.Tensor]:
    """16 kHz utterances made of 75-150 ms segments, each a two-tone chord or a chirp from a fixed inventory, plus
    noise: a tiny set with speech-like structure (a segment predicts its next frames, other segments differ)."""
    generator = torch.Generator().manual_seed(seed)
    inventory = torch.randint(150, 4000, (units, 2), generator=generator).float()
    waves = []
    for _ in range(count):
        pieces, total = [], 0
        while total < samples:
            unit = int(torch.randint(0, units, (1,), generator=generator))
            length = int(torch.randint(1200, 2400, (1,), generator=generator))
            t = torch.arange(length) / 16000
            low, high = inventory[unit].tolist()
            if unit % 4 == 3:  # a chirp from the low to the high frequency
                phase = 2 * math.pi * (low * t + (high - low) * t**2 / (2 * t[-1]))
                pieces.append(0.6 * torch.sin(phase))
            else:
                pieces.append(0.5 * torch.sin(2 * math.pi * low * t) + 0.3 * torch.sin(2 * math.pi * high * t))
            total += length
        waves.append(torch.cat(pieces)[:samples] + 0.05 * torch.randn(samples, generator=generator))
    return waves


# --- shapes and strides -----------------------------------------------------------------------------------------


def test_wav2vec_encoder_has_stride_160_and_receptive_field_465() -> None:
    encoder = FeatureEncoder()  # the paper's 8 layers, 512 channels
    assert (encoder.stride, encoder.receptive_field) == (160, 465)
    with torch.no_grad():
        out = encoder(torch.randn(2, 16000))
    assert out.shape == (2, 512, 98)  # (16000 - 465) // 160 + 1
    assert [encoder.num_frames(n) for n in (465, 624, 625, 16000, 16160)] == [1, 1, 2, 98, 99]


def test_tiny_model_frames_and_tokens_follow_the_stride() -> None:
    torch.manual_seed(0)
    model = VqWav2Vec(VqWav2VecConfig.tiny())
    assert model.stride == 160
    for samples in (4000, 4160, 8000):
        tokens = model.tokens(torch.randn(samples))
        assert tokens.shape == (model.num_frames(samples),)
    assert model.num_frames(4160) == model.num_frames(4000) + 1
    out = model(torch.randn(3, 8000))
    frames = model.num_frames(8000)
    assert out.features.shape == (3, 64, frames) and out.quantized.shape == (3, 64, frames)
    assert out.context.shape == (3, 64, frames) and out.indices.shape == (3, frames, 2)


def test_aggregator_is_causal() -> None:
    torch.manual_seed(0)
    aggregator = ContextAggregator(8, ((8, 2, 1), (16, 3, 1), (16, 4, 1))).eval()
    x = torch.randn(1, 8, 20)
    changed = x.clone()
    changed[..., 12:] = torch.randn(1, 8, 8)
    # the group norms take their statistics over the whole utterance (as in the paper's model), so the check
    # that each convolution only looks back runs without them
    for block in aggregator.conv_layers:
        block[3] = torch.nn.Identity()
    a, b = aggregator(x), aggregator(changed)
    assert torch.equal(a[..., :12], b[..., :12])
    assert not torch.allclose(a[..., 12:], b[..., 12:])


# --- quantizers ---------------------------------------------------------------------------------------------------


def test_gumbel_forward_is_a_hard_one_hot_and_its_gradient_the_softmax() -> None:
    torch.manual_seed(0)
    quantizer = GumbelQuantizer(dim=8, num_vars=5, groups=2, vq_dim=6, temperature=(2.0, 0.5, 0.5)).train()
    features = torch.randn(2, 8, 7, requires_grad=True)
    weights = torch.randn(2, 6, 7)
    torch.manual_seed(1)
    out = quantizer(features)
    (out.quantized * weights).sum().backward()
    codewords = quantizer.codewords().detach()  # [G, V, 3]
    expected = torch.stack([codewords[g, out.indices[..., g]] for g in range(2)], dim=2).reshape(2, 7, 6)
    assert torch.equal(out.quantized.transpose(1, 2).detach(), expected)  # exactly one codeword per group
    # the codebook only gets gradient on the codewords the forward used
    used = torch.zeros(2, 5, dtype=torch.bool)
    for g in range(2):
        used[g, out.indices[..., g].unique()] = True
    grad = quantizer.vars.grad.view(2, 5, 3).abs().sum(-1)
    assert (grad[used] > 0).all() and (grad[~used] == 0).all()

    # the same draw, by hand: the gradient is the one of softmax((logits + noise) / tau)
    surrogate_features = features.detach().clone().requires_grad_(True)
    torch.manual_seed(1)
    logits = quantizer.logits(surrogate_features)
    noise = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-10, 1.0 - 1e-7)))
    soft = torch.softmax((logits + noise) / quantizer.temperature, dim=-1)
    assert torch.equal(soft.argmax(-1), out.indices)
    soft_out = torch.einsum("btgv,gvd->btgd", soft, quantizer.codewords().detach()).reshape(2, 7, 6).transpose(1, 2)
    (soft_out * weights).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    torch.testing.assert_close(features.grad, surrogate_features.grad)



def test_gumbel_eval_is_the_argmax_and_the_temperature_anneals() -> None:
    torch.manual_seed(0)
    quantizer = GumbelQuantizer(dim=8, num_vars=5, groups=2).eval()
    features = torch.randn(1, 8, 6)
    assert torch.equal(quantizer(features).indices, quantizer.logits(features).argmax(-1))
    assert quantizer.temperature == 2.0
    quantizer.set_num_updates(1000)
    assert quantizer.temperature == pytest.approx(2.0 * 0.999995**1000)
    quantizer.set_num_updates(10**7)
    assert quantizer.temperature == 0.5


def test_kmeans_picks_the_nearest_codeword_and_passes_the_gradient_to_z() -> None:
    torch.manual_seed(0)
    quantizer = KMeansQuantizer(dim=6, num_vars=7, groups=2)
    features = torch.randn(2, 6, 9, requires_grad=True)
    weights = torch.randn(2, 6, 9)
    out = quantizer(features)
    z = quantizer.project(features)  # [B, T, G, 3]
    table = quantizer.codewords().detach()  # [G, V, 3]
    distances = ((z.detach().unsqueeze(3) - table.unsqueeze(0).unsqueeze(0)) ** 2).sum(-1)  # [B, T, G, V]
    assert torch.equal(out.indices, distances.argmin(-1))
    chosen = torch.stack([table[g, out.indices[..., g]] for g in range(2)], dim=2).reshape(2, 9, 6)
    assert torch.equal(out.quantized.transpose(1, 2).detach(), chosen)
    (out.quantized * weights).sum().backward()
    straight = features.grad.clone()
    features.grad = None
    (z.reshape(2, 9, 6).transpose(1, 2) * weights).sum().backward()
    torch.testing.assert_close(straight, features.grad)  # d quantized / d z is the identity


def test_kmeans_loss_by_hand() -> None:
    quantizer = KMeansQuantizer(dim=2, num_vars=2, groups=1, gamma=0.25)
    with torch.no_grad():
        quantizer.projection[0].weight.copy_(torch.eye(2).view(2, 2, 1))
        quantizer.embedding.copy_(torch.tensor([[[1.0, 0.0]], [[-1.0, 1.0]]]))
    # two frames (2, 0) and (-2, 0): the group norm (mean 0, variance 2) makes z = (√2, 0) and (-√2, 0)
    features = torch.tensor([[[2.0, -2.0], [0.0, 0.0]]])
    out = quantizer(features)
    assert out.indices.flatten().tolist() == [0, 1]  # (√2, 0) is nearest (1, 0); (-√2, 0) nearest (-1, 1)
    root2 = math.sqrt(2)
    squared = (1 - root2) ** 2 + 0.0 + (-1 + root2) ** 2 + 1.0  # ||ẑ - z||² summed over frames and dimensions
    assert float(out.loss.detach()) == pytest.approx((1 + 0.25) * squared / 4, abs=1e-4)  # mse: mean over 4 elements
    out.loss.backward()
    # the codebook is pulled towards z by the first term only: d/dẑ mean((ẑ - sg z)²) = 2 (ẑ - z) / 4
    expected = torch.tensor([[[2 * (1 - root2) / 4, 0.0]], [[2 * (-1 + root2) / 4, 2 * 1.0 / 4]]])
    torch.testing.assert_close(quantizer.embedding.grad, expected, atol=1e-4, rtol=0)


# --- contrastive loss ---------------------------------------------------------------------------------------------


def test_contrastive_loss_by_hand() -> None:
    # K = 1, one distractor, three frames: predictions at frames 0 and 1 score the targets at 1 and 2
    predictions = torch.tensor([[[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]]])  # [B=1, K=1, T=3, D=2]
    targets = torch.tensor([[[0.5, -1.0], [1.0, 1.0], [-1.0, 0.5]]])  # [B=1, T=3, D=2]
    distractors = torch.tensor([[[1], [0], [0]]])  # target frame 1's distractor is frame 0, frame 2's is frame 0

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    p0, p1 = (1.0, 0.0), (0.0, 2.0)
    t0, t1, t2 = (0.5, -1.0), (1.0, 1.0), (-1.0, 0.5)

    def dot(a: tuple[float, float], b: tuple[float, float]) -> float:
        return a[0] * b[0] + a[1] * b[1]

    total = -(log_sigmoid(dot(p0, t1)) + log_sigmoid(-dot(p0, t0)) + log_sigmoid(dot(p1, t2))
              + log_sigmoid(-dot(p1, t0)))
    assert float(future_contrastive_loss(predictions, targets, distractors, reduction="sum")) == pytest.approx(total)
    assert float(future_contrastive_loss(predictions, targets, distractors)) == pytest.approx(total / 2)
    # offset 2: only frame 0 predicts frame 2
    one = -(log_sigmoid(dot(p0, t2)) + log_sigmoid(-dot(p0, t0)))
    assert float(future_contrastive_loss(predictions, targets, distractors, offset=2)) == pytest.approx(one)


def test_step_k_uses_its_own_affine_map() -> None:
    torch.manual_seed(0)
    predictor = FutureStepPredictor(context_dim=4, target_dim=3, steps=2)
    context = torch.randn(2, 4, 5)
    out = predictor(context)
    for k in range(2):
        expected = context.transpose(1, 2) @ predictor.weight[k].T + predictor.bias[k]
        torch.testing.assert_close(out[:, k], expected)


def test_distractors_come_from_the_other_frames_of_the_utterance() -> None:
    generator = torch.Generator().manual_seed(0)
    draws = sample_distractors(2, 5, 400, generator=generator)
    assert draws.shape == (2, 5, 400)
    for frame in range(5):
        seen = set(draws[:, frame].flatten().tolist())
        assert seen == set(range(5)) - {frame}
    with pytest.raises(ConfigError, match="frames"):
        sample_distractors(1, 1, 3)


# --- model, tokens, usage ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantizer", ["gumbel", "kmeans"])
def test_every_parameter_gets_a_gradient(quantizer: str) -> None:
    torch.manual_seed(0)
    model = VqWav2Vec(VqWav2VecConfig.tiny(quantizer=quantizer))
    out = model(torch.randn(2, 6000))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_tokens_combine_the_groups_and_ignore_the_training_noise() -> None:
    torch.manual_seed(0)
    model = VqWav2Vec(VqWav2VecConfig.tiny()).train()
    wave = torch.randn(2, 6000)
    tokens = model.tokens(wave)
    indices = model.tokens(wave, combine=False)
    assert torch.equal(tokens, indices[..., 0] * 16 + indices[..., 1])
    assert int(tokens.max()) < model.num_tokens == 256
    assert torch.equal(model.tokens(wave), tokens)  # deterministic even in training mode
    assert torch.equal(split_tokens(tokens, 16, 2), indices)
    assert torch.equal(combine_indices(torch.tensor([[3, 4, 5]]), 10), torch.tensor([345]))


def test_codebook_usage_by_hand() -> None:
    indices = torch.tensor([[0, 1], [0, 1], [1, 1], [3, 1]])  # group 0 uses 0, 1, 3; group 1 only 1
    usage = codebook_usage(indices, num_vars=4)
    assert usage.used == (3, 1) and usage.distinct == 3 and usage.frames == 4
    expected = math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert usage.perplexity[0] == pytest.approx(expected, rel=1e-6) and usage.perplexity[1] == pytest.approx(1.0)
    assert usage.fraction == pytest.approx(4 / 8) and usage.min_fraction == pytest.approx(1 / 4)
    assert "3/4, 1/4" in usage.summary()


@pytest.mark.parametrize(("quantizer", "overrides", "floor", "group_floor"), [
    ("gumbel", {"diversity_weight": 1.0}, 0.5, 0.3),  # 66-88 % used (44-81 % in the worst group) over seeds 0-9
    ("kmeans", {}, 0.3, 0.25),  # 44-75 % (38-69 %) over seeds 0-9
])
def test_codebook_usage_stays_above_a_floor_after_a_few_steps(quantizer: str, overrides: dict, floor: float,
                                                              group_floor: float) -> None:
    torch.manual_seed(0)
    model = VqWav2Vec(VqWav2VecConfig.tiny(quantizer=quantizer, **overrides))
    waves = toy_waves()
    result = pretrain_vq_wav2vec(model, waves, steps=20, lr=1e-3, batch_size=4, crop=4000, seed=0)
    assert len(result.losses) == 20 and all(math.isfinite(v) for v in result.losses)
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    if quantizer == "gumbel":
        assert result.temperatures[0] == 2.0 and result.temperatures[-1] < 2.0
    usage = result.usage
    assert usage is not None and usage.frames == 8 * model.num_frames(16000)
    # 2 groups x 16 codewords; a collapsed codebook uses 1-3 of them (6-19 %)
    assert usage.fraction >= floor, usage.summary()
    assert usage.min_fraction >= group_floor, usage.summary()


def test_pretraining_is_deterministic_for_a_seed_and_keeps_the_callers_rng() -> None:
    waves = toy_waves(count=4, samples=6000)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = VqWav2Vec(VqWav2VecConfig.tiny(quantizer="kmeans"))
        before = torch.random.get_rng_state()
        result = pretrain_vq_wav2vec(model, waves, steps=3, batch_size=2, crop=4000, seed=3)
        assert torch.equal(torch.random.get_rng_state(), before)
        assert result.temperatures == [None] * 3 and all(v > 0 for v in result.quantizer)
        losses.append(result.losses)
    assert losses[0] == losses[1]


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "argument"), [
    ({"groups": 3}, "groups"),
    ({"num_vars": 0}, "num_vars"),
    ({"quantizer": "rvq"}, "quantizer"),
    ({"conv_layers": ((64, 0, 5),)}, "conv_layers[0]"),
    ({"aggregator_layers": ((64, 2, 2),)}, "aggregator_layers[0]"),
    ({"temperature": (0.5, 2.0, 0.9)}, "temperature"),
    ({"quantizer": "kmeans", "vq_dim": 32}, "vq_dim"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_config_is_a_config_error(overrides: dict, argument: str) -> None:
    with pytest.raises(ConfigError) as error:
        VqWav2VecConfig.tiny(**overrides)
    assert error.value.argument == argument


def test_bad_input_is_named() -> None:
    model = VqWav2Vec(VqWav2VecConfig.tiny())
    with pytest.raises(ConfigError, match="wave"):
        model(torch.randn(1, 200))  # shorter than one frame
    with pytest.raises(ConfigError, match="wave"):
        model(torch.randn(1, 500))  # one frame: nothing to predict
    with pytest.raises(DataError, match=r"waves\[1\]"):
        pretrain_vq_wav2vec(model, [torch.randn(6000), torch.randn(6000, 2)], steps=1, batch_size=2)
    with pytest.raises(ConfigError, match="steps"):
        pretrain_vq_wav2vec(model, [torch.randn(6000)], steps=0)
