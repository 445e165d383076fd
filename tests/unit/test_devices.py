"""Devices and dtypes without a GPU: FakeTensor CUDA inputs catch any CPU/GPU mixing in the torch-level code.

Inside ``FakeTensorMode(allow_non_fake_inputs=True)``, a ``FakeTensor(mode, t.to("meta"), cuda)`` acts as a CUDA
tensor: an operation that mixes it with a real CPU tensor raises ``FakeTensorDeviceMismatchError``. Parameters
here stay real CPU tensors (as after ``fit`` or ``load``) and the activations are "on the GPU": the prober, the
refusal head, the gate core and a head-training step must follow them.

The CPU build of torch aborts (a C++ abort, not an exception) when autograd records a copy to the fake CUDA
device, so these run under ``no_grad``; gradients across devices are checked by ``tests/gpu``.
"""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorDeviceMismatchError, FakeTensorMode

from autosteer_interp.gating import GateState, layer_pass_inputs, steered_input
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.steer import AutoSteer

CUDA = torch.device("cuda", 0)


@pytest.fixture
def mode():
    with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) as fake_mode:
        yield fake_mode


def on_gpu(mode, tensor):
    return FakeTensor(mode, tensor.to("meta"), CUDA)


def test_the_fake_device_catches_cpu_gpu_mixing(mode):
    with pytest.raises(FakeTensorDeviceMismatchError):
        torch.randn(3, 8) + on_gpu(mode, torch.randn(3, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_a_cpu_prober_scores_gpu_activations_in_float32_on_the_gpu(mode, dtype, kind):
    prober = SafetyProber(16, ProberConfig(kind=kind), layers=[1, 2])
    logits = prober(on_gpu(mode, torch.randn(3, 2, 16, dtype=dtype)))
    assert logits.device.type == "cuda" and logits.dtype == torch.float32 and logits.shape == (3, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_cpu_head_steers_gpu_inputs_in_their_dtype(mode, dtype):
    head = RefusalHead(16, epsilon=0.1)
    h = on_gpu(mode, torch.randn(2, 5, 16, dtype=dtype))
    gate = on_gpu(mode, torch.tensor([True, False]))
    for out in (head(h), head(h, gate), steered_input(h, head.S, 0.1, torch.tensor([True, False]))):
        assert out.device.type == "cuda" and out.dtype == dtype and out.shape == h.shape
    assert head.matrix_on(CUDA).device.type == "cuda" and head.matrix_on("cpu") is head.S


def test_an_autosteer_on_the_cpu_gates_and_steers_gpu_activations(mode):
    steer = AutoSteer(SafetyProber(16, ProberConfig(kind="linear"), layers=[1, 3]), RefusalHead(16))
    p = steer.p_harmful(on_gpu(mode, torch.randn(4, 2, 16, dtype=torch.bfloat16)))
    assert p.device.type == "cuda" and p.dtype == torch.float32
    h = on_gpu(mode, torch.randn(4, 3, 16, dtype=torch.bfloat16))
    assert steer.steer_lm_input(h, p > 0.5).device.type == "cuda"


def test_the_gate_core_plans_and_reads_gpu_passes(mode):
    """(The decision itself branches on tensor values, which fake tensors do not have: tested on real ones.)"""
    state = GateState(threshold=0.5, every_step=True, eos_token_ids=(2,), image_token_id=9)
    ids = on_gpu(mode, torch.tensor([[0, 5, 6], [4, 5, 6]]))
    mask = on_gpu(mode, torch.tensor([[0, 1, 1], [1, 1, 1]]))
    state.expect(3)
    plan = state.begin_pass(ids, mask, past_length=0)
    assert plan.positions.device.type == "cuda" and plan.rows.device.type == "cuda" and plan.decides
    features = plan.gather(on_gpu(mode, torch.randn(2, 3, 8, dtype=torch.bfloat16)))
    assert features.device.type == "cuda" and features.shape == (2, 8)
    assert layer_pass_inputs({"attention_mask": on_gpu(mode, torch.ones(2, 1, 3, 3, dtype=torch.bool))}, 3)[1] == 0


def test_a_head_training_step_runs_on_the_lm_heads_device_from_a_cpu_cache(mode):
    head = RefusalHead(16)
    hidden, labels = torch.randn(6, 16), torch.randint(0, 40, (6,))  # the cache stays on the CPU
    weight, bias = on_gpu(mode, torch.randn(40, 16)), on_gpu(mode, torch.randn(40))
    loss = head.batch_loss(hidden, labels, weight, bias, token_weight=torch.ones(6))
    assert loss.device.type == "cuda" and loss.shape == ()
