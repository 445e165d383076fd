"""The conformance checks on a GPU: bfloat16 models on CUDA, and a model split across the CPU and the GPU.

Skipped without CUDA. ``AUTOSTEER_TEST_DEVICE=cpu`` runs the same code on the CPU (how it is kept honest on
machines without a GPU); ``tests/gpu/run_on_device.sh`` is the prepared command for a lent GPU machine.
Every comparison moves tensors to the CPU first, so a tensor left on the wrong device fails loudly.
"""

import copy
import functools
import os

import pytest
import torch

from autosteer_interp.architectures import get_module, resolve
from autosteer_interp.models import load_model, wrap
from autosteer_interp.prompts import encode_prompts
from autosteer_interp.steer import AutoSteer
from tests.integration.test_conformance import (
    CONFIGS,
    FORWARD,
    GENERATE,
    LOGIT_ATOL,
    P_ATOL,
    STEPS,
    encode,
    prompts_with_images,
    random_steer,
    text_prompts,
)
from tests.reference.paper_formulas import paper_refusal_logits

DEVICE = os.environ.get("AUTOSTEER_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA (or AUTOSTEER_TEST_DEVICE=cpu)"
)
GPU_BACKENDS = [backend for backend in FORWARD if backend != "lens"]  # TransformerLens is not on the GPU image


@functools.cache
def gpu_model(name: str, dtype: str):
    base = load_model(name)
    module = copy.deepcopy(base._module).to(DEVICE, getattr(torch, dtype))
    return wrap(module, base.tokenizer, base.processor)


@functools.cache
def split_model():
    """tiny-qwen2 with its embedding and first two layers on the CPU, the rest on ``DEVICE`` (``device_map``)."""
    from accelerate import dispatch_model

    base = load_model("tiny-qwen2")
    module = copy.deepcopy(base._module)
    device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu"}
    device_map |= {"model.layers.2": DEVICE, "model.layers.3": DEVICE, "model.norm": DEVICE}
    device_map |= {"model.rotary_emb": DEVICE, "lm_head": DEVICE}
    return wrap(dispatch_model(module, device_map=device_map), base.tokenizer, base.processor)


@functools.cache
def cpu_steer(name: str, images: bool, gate_mode: str, model_key: str):
    """A random AutoSteer whose prober and head stay on the CPU, thresholded in a gap; the reference p."""
    model = split_model() if model_key == "split" else gpu_model(name, model_key)
    prompts = prompts_with_images() if images else text_prompts()
    steer, p = random_steer(model, prompts, gate_mode)
    return steer, prompts, p


def steered_reference(model, inputs, steer, gate):
    hf = model._module
    with torch.no_grad():
        raw = hf(**inputs).logits.cpu()
        hidden = hf.model(**inputs).last_hidden_state.float().cpu()
        weight = get_module(hf, resolve(hf).row.lm_head_path).weight.float().cpu()
    out = raw.float()
    out[gate] = paper_refusal_logits(hidden[gate], weight, steer.head.S.detach(), steer.epsilon)
    return out, raw == torch.finfo(raw.dtype).min


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("name", ["tiny-llava-onevision", "tiny-chameleon"])
def test_bfloat16_forward_on_the_gpu_matches_the_reference(name, backend, side):
    model = gpu_model(name, "bfloat16")
    steer, prompts, p_reference = cpu_steer(name, True, "prefill", "bfloat16")
    inputs = encode(model, prompts, side)
    report, logits = FORWARD[backend](model, inputs, steer)
    gate = report.gate.cpu()
    assert torch.allclose(report.p_harmful.cpu(), p_reference, atol=P_ATOL["bfloat16"], rtol=0)
    assert torch.equal(gate, p_reference > steer.threshold)
    expected, masked = steered_reference(model, inputs, steer, gate)
    compared = inputs["attention_mask"].bool().cpu()[..., None] & ~masked
    scale = float(expected[compared].abs().max())
    assert torch.allclose(logits.float().cpu()[compared], expected[compared], atol=LOGIT_ATOL["bfloat16"] * scale)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", ["tiny-llava-onevision", "tiny-chameleon"])
def test_bfloat16_generation_on_the_gpu_agrees_across_backends(name, config):
    model = gpu_model(name, "bfloat16")
    steer, prompts, p_reference = cpu_steer(name, False, "prefill", "bfloat16")
    inputs = encode(model, prompts, "left")
    kwargs = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False, **CONFIGS[config])
    kwargs.setdefault("pad_token_id", model.tokenizer.pad_token_id)
    results = {backend: run(model, inputs, steer, kwargs) for backend, run in GENERATE.items()}
    anchor_report, anchor_tokens = results["hooks"]
    for backend, (report, tokens) in results.items():
        assert torch.equal(report.gate.cpu(), p_reference > steer.threshold), backend
        assert torch.equal(tokens.cpu(), anchor_tokens.cpu()), backend


def test_a_model_split_across_devices_is_gated_and_steered_like_the_reference():
    model = split_model()
    steer, prompts, p_reference = cpu_steer("tiny-qwen2", False, "prefill", "split")
    inputs = encode_prompts(model, prompts)
    for backend in GPU_BACKENDS:
        report, logits = FORWARD[backend](model, inputs, steer)
        assert torch.allclose(report.p_harmful.cpu(), p_reference, atol=1e-5), backend
        expected, _ = steered_reference(model, inputs, steer, report.gate.cpu())
        real = inputs["attention_mask"].bool().cpu()
        assert torch.allclose(logits.cpu()[real], expected[real], atol=1e-5 * float(expected.detach().abs().max())), (
            backend
        )
    with torch.no_grad():
        generated = steer.generate(model, prompts, max_new_tokens=STEPS, min_new_tokens=STEPS)
    assert torch.equal(generated.gate, p_reference > steer.threshold)


def test_fitting_runs_on_the_models_devices():
    from autosteer_interp.prompts import builtin_pairs

    model = gpu_model("tiny-llava-onevision", "bfloat16")
    steer = AutoSteer.fit(
        model,
        builtin_pairs()[:12],
        candidate_layers=[1, 2, 3],
        builtin_gate_data=False,
        wrap_pairs=False,
        progress=False,
    )
    inputs = encode_prompts(model, text_prompts())
    with torch.no_grad(), model.trace(**inputs):
        report = steer.apply(model)
    assert report.p_harmful.shape == (len(text_prompts()),)
