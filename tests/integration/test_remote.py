"""NDIF transport: what travels, how big it is, how far float16 / low rank move the head (dry run, tiny models)."""

import subprocess
import sys

import pytest
import torch

from autosteer_interp.errors import InvalidInputError
from autosteer_interp.prompts import encode_prompts
from autosteer_interp.remote import SERVER_MODULES, head_transport_bytes, prepare_remote, server_imports
from tests.integration.test_equivalence import make_steer, mixed_batch, nnsight_logits

# nnsight and cloudpickle are imported inside the tests: imported before the package (and so before beartype),
# nnsight breaks beartype's first import under the jaxtyping pytest hook.


@pytest.fixture(scope="module")
def steer(tiny_llava):
    return make_steer(tiny_llava, mixed_batch())


def remote_logits(model, inputs, remote_steer, remote="local"):
    with torch.no_grad(), model.trace(**inputs, remote=remote):
        report = remote_steer.apply(model)
        logits = model.lm_head.output.save()
    return report, logits


def test_only_server_modules_travel_and_an_autosteer_itself_would_not(tiny_llava, steer):
    from nnsight.intervention.serialization import dumps, loads

    remote_steer, report = prepare_remote(steer, tiny_llava)
    assert server_imports(remote_steer) <= SERVER_MODULES
    restored = loads(dumps(remote_steer))  # what the server rebuilds computes the same numbers
    inputs = encode_prompts(tiny_llava, mixed_batch())
    expected, logits = nnsight_logits(tiny_llava, inputs, steer)
    got, restored_logits = remote_logits(tiny_llava, inputs, restored, remote=False)
    assert torch.equal(got.gate, expected.gate) and torch.equal(restored_logits, logits)
    assert report.head_bytes == report.float32_head_bytes == 64 * 64 * 4
    assert report.payload_bytes > report.head_bytes + report.prober_bytes


def test_the_package_registers_itself_where_nnsight_would_not(tiny_llava, steer, monkeypatch):
    from cloudpickle import cloudpickle as cp
    from nnsight import ndif

    monkeypatch.setattr(ndif, "_PULLED_ENV", True)  # as for a pip-installed package: no auto-registration
    monkeypatch.setattr(cp, "_PICKLE_BY_VALUE_MODULES", set())
    remote_steer, _ = prepare_remote(steer, tiny_llava)
    inputs = encode_prompts(tiny_llava, mixed_batch())
    remote_logits(tiny_llava, inputs, remote_steer)  # registered by prepare_remote: the dry run passes
    monkeypatch.setattr(cp, "_PICKLE_BY_VALUE_MODULES", set())
    with pytest.raises(ModuleNotFoundError, match="autosteer_interp"):
        remote_logits(tiny_llava, inputs, remote_steer)  # unregistered: the server could not rebuild it


def test_float16_and_low_rank_transport_report_their_size_and_error(tiny_llava, steer):
    inputs = encode_prompts(tiny_llava, mixed_batch())
    expected, logits = nnsight_logits(tiny_llava, inputs, steer)
    S = steer.head.S.detach()
    half, half_report = prepare_remote(steer, tiny_llava, transport="float16")
    assert half_report.head_bytes == 64 * 64 * 2
    assert 0 < half_report.max_abs_error <= float(S.abs().max()) * 2**-11
    report, half_logits = remote_logits(tiny_llava, inputs, half)
    gate = expected.gate
    assert torch.equal(report.gate, gate) and torch.equal(half_logits[~gate], logits[~gate])
    assert torch.allclose(half_logits, logits, atol=1e-3 * float(logits.abs().max()))
    for rank, bound in ((64, 1e-5), (8, 1.0)):
        low, low_report = prepare_remote(steer, tiny_llava, transport="low_rank", rank=rank)
        assert low_report.head_bytes == 2 * rank * 64 * 4 == head_transport_bytes(64, "low_rank", rank)
        assert low_report.relative_error < bound
        assert torch.equal(remote_logits(tiny_llava, inputs, low)[1][~gate], logits[~gate])
    assert head_transport_bytes(3584, "float32") == 51_380_224  # a 7B model's head in float32


def test_bad_transport_settings_are_refused(tiny_llava, steer):
    with pytest.raises(InvalidInputError, match="transport must be one of"):
        prepare_remote(steer, tiny_llava, transport="int8")
    for rank in (None, 0, 65, 2.5):
        with pytest.raises(InvalidInputError, match=r"rank = an integer in \[1, d_model=64\]"):
            prepare_remote(steer, tiny_llava, transport="low_rank", rank=rank)


AUTOSTEER_IMPORTS = """
import torch
from autosteer_interp.prober import SafetyProber
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.remote import SERVER_MODULES, register, server_imports
from autosteer_interp.steer import AutoSteer
register()
print(sorted(server_imports(AutoSteer(SafetyProber(8, layers=1), RefusalHead(8), threshold=0.5)) - SERVER_MODULES))
"""


def test_an_autosteer_itself_would_need_modules_the_server_lacks():
    # a fresh process: under the pytest jaxtyping hook the package's classes carry beartype wrappers
    result = subprocess.run([sys.executable, "-c", AUTOSTEER_IMPORTS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    missing = eval(result.stdout.strip().splitlines()[-1])
    assert {"jaxtyping", "PIL"} <= set(missing)  # why prepare_remote builds a RemoteSteer instead


def test_a_model_with_meta_weights_is_checked_by_its_layout(steer):
    from autosteer_interp.errors import LayerIndexError
    from autosteer_interp.models import build_tiny_llava_onevision

    with torch.device("meta"):  # how nnsight holds a model that runs on NDIF: layout, no weights
        remote_model, _, _ = build_tiny_llava_onevision()
    remote_steer, report = prepare_remote(steer, remote_model, transport="float16")
    assert remote_steer.layers == steer.layers and report.head_bytes == 64 * 64 * 2
    with pytest.raises(LayerIndexError, match=r"0\.\.3"):
        prepare_remote(make_deeper_steer(steer), remote_model)


def make_deeper_steer(steer):
    from autosteer_interp.prober import SafetyProber
    from autosteer_interp.steer import AutoSteer

    return AutoSteer(SafetyProber(64, layers=7), steer.head, threshold=0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_the_remote_prober_scores_half_precision_activations_like_float32(tiny_llava, steer, dtype):
    remote_steer, _ = prepare_remote(steer, tiny_llava)
    h = torch.randn(3, len(steer.layers), 64).to(dtype)
    p = remote_steer.p_harmful(h)
    assert p.dtype == torch.float32 and torch.allclose(p, steer.p_harmful(h), atol=1e-6)
    lm_input, gate = torch.randn(3, 2, 64).to(dtype), torch.tensor([True, False, True])
    steered = remote_steer.steer_lm_input(lm_input, gate)
    assert steered.dtype == dtype and torch.equal(steered, steer.steer_lm_input(lm_input, gate))
