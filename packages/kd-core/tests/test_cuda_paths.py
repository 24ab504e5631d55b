"""The accelerator paths of kd-core, run where a CUDA device exists (skipped elsewhere, e.g. in CPU-only CI).

Mixed precision (bf16 autocast, fp16 with a grad scaler), the one-transfer logging and the NaN stop, the
teacher cache, DCS weights and the REINFORCE policy, all on the GPU, checked against the same work on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from kd_core import Backend, Distiller, FrozenTeacher, Objective, Phase, Term
from kd_core.errors import NonFiniteLossError
from kd_core.losses import cross_entropy, kl_divergence
from kd_core.objective import ObjectiveResult
from kd_core.reinforced import PolicyReward, ReinforcedWeighting
from kd_core.sample_weights import CorrectiveWeights
from kd_core.signals import CachedTeacher, Ensemble, default_forward
from kd_core.testing import BlobDataset, tiny_mlp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _kd() -> Objective:
    return Objective(Term("kd", kl_divergence, teacher="logits", weight=0.9, temperature=4.0),
                     Term("ce", cross_entropy, target="label", weight=0.1))


def _accuracy(model: torch.nn.Module, data: BlobDataset) -> float:
    with torch.no_grad():
        model = model.cpu().eval()
        return float((model(data.inputs).argmax(-1) == data.labels).double().mean())


def _distil(tmp_path, device: str, precision: str = "fp32") -> tuple[float, float, str]:
    """(accuracy before, accuracy after, parameter device) of a student distilled on ``device``."""
    data = BlobDataset(size=256, seed=1)
    teacher = tiny_mlp(hidden=64, seed=1)
    Distiller(teacher, [Phase("t", Objective(Term("ce", cross_entropy, target="label")), epochs=20)],
              backend=Backend(device), batch_size=32).fit(data, out=tmp_path / f"teacher-{device}-{precision}")
    student = tiny_mlp(seed=2)
    before = _accuracy(student, data)
    distiller = Distiller(student, [Phase("kd", _kd(), epochs=20)], teacher=FrozenTeacher(teacher),
                          backend=Backend(device, precision), batch_size=32)
    distiller.fit(data, out=tmp_path / f"{device}-{precision}")
    where = next(distiller.student.parameters()).device.type
    return before, _accuracy(distiller.student, data), where


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_distillation_on_the_gpu_matches_the_cpu_in_every_precision(tmp_path, precision: str) -> None:
    _, reference, _ = _distil(tmp_path, "cpu")
    before, after, where = _distil(tmp_path, "cuda", precision)
    assert where == "cuda"
    assert after > before + 0.1  # it learned
    assert after >= reference - (0.02 if precision == "fp32" else 0.05)  # as well as on the CPU


def test_logged_values_on_the_gpu_equal_the_cpu_reads() -> None:
    terms = {"kd": torch.tensor(1.25), "ce": torch.tensor(0.5, dtype=torch.bfloat16)}
    cpu = ObjectiveResult(total=torch.tensor(1.75), terms=terms).log_values(extra={"finite": torch.tensor(True)})
    gpu = ObjectiveResult(total=torch.tensor(1.75, device="cuda"), terms={k: v.cuda() for k, v in terms.items()}
                          ).log_values(extra={"finite": torch.tensor(True, device="cuda")})
    assert gpu == cpu == {"loss/total": 1.75, "loss/kd": 1.25, "loss/ce": 0.5, "finite": 1.0}


def test_a_nan_in_an_earlier_micro_batch_stops_the_gpu_run(tmp_path) -> None:
    data = BlobDataset(size=64, seed=1)
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        out = model(batch["input"])
        return out * float("nan") if calls["n"] == 3 else out  # the 1st micro-batch of the 2nd step

    distiller = Distiller(tiny_mlp(seed=0), [Phase("p", Objective(Term("ce", cross_entropy, target="label")),
                                                   epochs=1)],
                          backend=Backend("cuda"), batch_size=8, grad_accum_steps=2, forward=poisoned)
    with pytest.raises(NonFiniteLossError, match="earlier micro-batch"):
        distiller.fit(data, out=tmp_path / "run")
    assert distiller.global_step == 1


def test_teacher_cache_on_the_gpu_serves_the_teachers_logits(tmp_path) -> None:
    teacher = tiny_mlp(seed=3).cuda().eval()
    data = BlobDataset(size=32, seed=2)
    cache = CachedTeacher(FrozenTeacher(teacher), tmp_path / "cache")
    cache.bind(["logits"], default_forward)
    batch = {"input": data.inputs[:8].cuda(), "index": torch.arange(8, device="cuda")}
    cache.build([batch])
    served = cache(batch)["logits"]
    with torch.no_grad():
        assert torch.allclose(served.float().cuda(), teacher(batch["input"]), atol=1e-6)


def test_dcs_weights_and_the_reinforce_policy_train_on_the_gpu(tmp_path) -> None:
    data = BlobDataset(size=64, seed=1, noise=2.0)
    dcs = CorrectiveWeights(len(data))
    objective = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.5, sample_weight=dcs, temperature=2.0),
                          Term("ce", cross_entropy, target="label", weight=0.5, sample_weight=dcs),
                          dcs.observer())
    Distiller(tiny_mlp(seed=0), [Phase("p", objective, epochs=2)], teacher=FrozenTeacher(tiny_mlp(seed=5)),
              backend=Backend("cuda"), callbacks=[dcs], batch_size=16).fit(data, out=tmp_path / "dcs")
    assert len(dcs.history) == 8 and float(dcs.weights.mean()) == pytest.approx(1.0)

    weighting = ReinforcedWeighting(2, 3, hidden=8, lr=1e-2, warmup_steps=1)
    kd = Objective(Term("kd", kl_divergence, teacher="logits", weight=0.5, sample_weight=weighting.sample_weights,
                        temperature=2.0),
                   Term("ce", cross_entropy, target="label", weight=0.5))
    Distiller(tiny_mlp(seed=0), [Phase("p", kd, epochs=2)],
              teacher=Ensemble([FrozenTeacher(tiny_mlp(seed=s)) for s in (10, 11)], weighting),
              backend=Backend("cuda"), callbacks=[PolicyReward(weighting, dev=BlobDataset(size=16, seed=1))],
              batch_size=16).fit(data, out=tmp_path / "rl")
    assert weighting.steps == 8 and len(weighting.history) == 7
