"""Conformance: every backend gives the reference gate, logits and tokens in every configuration users run.

Backends: nnsight trace, nnsight generate, plain Hugging Face hooks (a forward, and ``generate``),
TransformerLens hooks (LLaVA-OneVision and Qwen2: TransformerLens has no Chameleon adapter), and the NDIF dry run
(``remote="local"``) for a trace and a generation. Configurations: float32 and bfloat16, left and right padding,
key/value cache on and off, chunked prefill, ``prefill`` and ``every_step`` gates.

The reference (``tests/reference/paper_formulas.py``) runs each prompt alone, unpadded, and computes the paper's
formulas literally: ``p = softmax(prober(h_L[last prompt token]))[harmful]`` and, for gated rows,
``logits = h (W + eps W S)^T``. Tolerances: p within 1e-5 (float32) / 2e-2 (bfloat16: a padded batch rounds
differently from a single row); logits within 1e-5 / 3e-2 of the largest logit; tokens: gated rows equal a
generation with the LM head's weight replaced by ``W + eps W S`` (float32; in bfloat16 that weight rounds
differently, so there the backends are compared with each other), ungated rows equal plain generation exactly.
The threshold sits in the widest gap between the reference p values, so no row is on the edge.
"""

import copy
import functools

import pytest
import torch

from autosteer_interp.architectures import get_module, resolve
from autosteer_interp.models import wrap
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.prompts import Prompt, encode_prompts
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.remote import prepare_remote
from autosteer_interp.steer import AutoSteer
from tests.integration.test_steer import mixed_batch
from tests.reference.paper_formulas import paper_refusal_logits, reference_p_harmful

LAYERS = (1, 3)
STEPS = 4
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
P_ATOL = {"float32": 1e-5, "bfloat16": 2e-2}
LOGIT_ATOL = {"float32": 1e-5, "bfloat16": 3e-2}


def prompts_with_images():
    """Harmful and benign requests of different lengths, some with images (the equivalence suite's batch)."""
    return mixed_batch()


def text_prompts():
    return [Prompt(p.text) for p in prompts_with_images()]


@functools.cache
def _model(name: str, dtype: str):
    from autosteer_interp.models import load_model

    base = load_model(name)
    if dtype == "float32":
        return base
    return wrap(copy.deepcopy(base._module).to(DTYPES[dtype]), base.tokenizer, base.processor)


def encode(model, prompts, side):
    """Encode with the given padding side (restored afterwards)."""
    tokenizers = [model.tokenizer] + ([model.processor.tokenizer] if model.processor is not None else [])
    before = [t.padding_side for t in tokenizers]
    for t in tokenizers:
        t.padding_side = side
    try:
        return encode_prompts(model, prompts)
    finally:
        for t, b in zip(tokenizers, before):
            t.padding_side = b


def random_steer(model, prompts, gate_mode):
    """A random linear prober and head, thresholded in the widest gap of the reference p; and that reference.

    The prober and the head stay float32 on the CPU (as after ``fit`` or ``load``), whatever the model's dtype
    and device.
    """
    d_model = resolve(model).d_model
    generator = torch.Generator().manual_seed(1)
    prober = SafetyProber(d_model, ProberConfig(kind="linear"), layers=LAYERS)
    with torch.no_grad():
        for parameter in prober.net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    head = RefusalHead(d_model, epsilon=0.5)
    with torch.no_grad():
        head.S.add_(torch.randn(d_model, d_model, generator=generator))
    p = reference_p_harmful(model, prompts, LAYERS, prober)
    ordered = torch.sort(p).values
    gaps = ordered[2:-1] - ordered[1:-2]  # keep at least two rows on each side
    cut = int(torch.argmax(gaps)) + 1
    threshold = float((ordered[cut] + ordered[cut + 1]) / 2)
    return AutoSteer(prober, head, threshold=threshold, gate_mode=gate_mode), p


@functools.cache
def _steer_and_reference(name: str, dtype: str, images: bool, gate_mode: str):
    prompts = prompts_with_images() if images else text_prompts()
    steer, p = random_steer(_model(name, dtype), prompts, gate_mode)
    return steer, prompts, p


def reference_logits(model, inputs, steer, gate):
    """float32 logits, gated rows by the paper's formula; and where the model masks logits (Chameleon's images)."""
    hf = model._module
    with torch.no_grad():
        raw = hf(**inputs).logits
        hidden = hf.model(**inputs).last_hidden_state.float()
        weight = get_module(hf, resolve(hf).row.lm_head_path).weight.float()
        steered = paper_refusal_logits(hidden[gate], weight, steer.head.S.detach(), steer.epsilon)
    masked = raw == torch.finfo(raw.dtype).min
    out = raw.float()
    out[gate] = steered
    return out, masked


# ------------------------------------------------------------------------------------------ single forward pass


def forward_nnsight(model, inputs, steer):
    with torch.no_grad(), model.trace(**inputs):
        report = steer.apply(model)
        logits = model.lm_head.output.save()
    return report, logits


def forward_hooks(model, inputs, steer):
    with torch.no_grad(), steer.attach(model) as handle:
        logits = model._module(**inputs).logits
    return handle.report, logits


@functools.cache
def _remote(steer, model):
    return prepare_remote(steer, model)[0]


def forward_remote(model, inputs, steer):
    remote_steer = _remote(steer, model)
    with torch.no_grad(), model.trace(**inputs, remote="local"):
        report = remote_steer.apply(model)
        logits = model.lm_head.output.save()
    return report, logits


def forward_lens(model, inputs, steer):
    from autosteer_interp.hooks_tl import AutoSteerHooks

    bridge = _bridge(model)
    ids, rest = inputs["input_ids"], {k: v for k, v in inputs.items() if k != "input_ids"}
    with torch.no_grad(), AutoSteerHooks(steer, bridge) as lens:
        logits = bridge.run_with_hooks(ids, **rest, fwd_hooks=lens.fwd_hooks())
    return lens.report, logits


@functools.cache
def _bridge(model):
    from autosteer_interp.hooks_tl import boot_bridge

    return boot_bridge(model)


FORWARD = {"nnsight": forward_nnsight, "hooks": forward_hooks, "remote": forward_remote, "lens": forward_lens}


MODEL_BACKENDS = [
    (name, backend)
    for name in ("tiny-llava-onevision", "tiny-chameleon")
    for backend in FORWARD
    if not (backend == "lens" and name == "tiny-chameleon")  # no TransformerLens adapter (test_hooks_tl)
]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize(("name", "backend"), MODEL_BACKENDS)
def test_a_forward_pass_gives_the_reference_gate_and_logits(name, backend, dtype, side):
    model = _model(name, dtype)
    steer, prompts, p_reference = _steer_and_reference(name, dtype, True, "prefill")
    inputs = encode(model, prompts, side)
    report, logits = FORWARD[backend](model, inputs, steer)
    assert torch.allclose(report.p_harmful.cpu(), p_reference, atol=P_ATOL[dtype], rtol=0)
    assert torch.equal(report.gate.cpu(), p_reference > steer.threshold)
    expected, masked = reference_logits(model, inputs, steer, report.gate.cpu())
    compared = inputs["attention_mask"].bool()[..., None] & ~masked  # real tokens, logits the model does not mask
    scale = float(expected[compared].abs().max())
    assert torch.allclose(logits.float()[compared], expected[compared], atol=LOGIT_ATOL[dtype] * scale, rtol=0)
    with torch.no_grad():
        plain = model._module(**inputs).logits
    ungated = ~report.gate.cpu()
    if backend != "lens":  # TransformerLens forces eager attention: close, not bit-equal, to Hugging Face's SDPA
        assert torch.equal(logits[ungated], plain[ungated])


# ------------------------------------------------------------------------------------------ generation


def generate_nnsight(model, inputs, steer, kwargs, remote=False):
    runner = _remote(steer, model) if remote else steer
    with torch.no_grad(), model.generate(**inputs, **kwargs, remote="local" if remote else False) as tracer:
        report = runner.apply(model, tracer, steps=kwargs["max_new_tokens"])
        ids = tracer.result.save()
    return report, ids[:, inputs["input_ids"].shape[1] :]


def generate_hooks(model, inputs, steer, kwargs):
    with torch.no_grad(), steer.attach(model) as handle:
        ids = model._module.generate(**inputs, **kwargs)
    return handle.report, ids[:, inputs["input_ids"].shape[1] :]


def generate_remote(model, inputs, steer, kwargs):
    return generate_nnsight(model, inputs, steer, kwargs, remote=True)


def generate_lens(model, inputs, steer, kwargs):
    from autosteer_interp.hooks_tl import AutoSteerHooks

    bridge = _bridge(model)
    ids, rest = inputs["input_ids"], {k: v for k, v in inputs.items() if k != "input_ids"}
    lens_kwargs = dict(max_new_tokens=kwargs["max_new_tokens"], do_sample=False, verbose=False, stop_at_eos=False)
    with torch.no_grad(), AutoSteerHooks(steer, bridge) as lens, bridge.hooks(fwd_hooks=lens.fwd_hooks()):
        out = bridge.generate(ids, **rest, **lens_kwargs, use_past_kv_cache=kwargs.get("use_cache", True))
    return lens.report, out[:, ids.shape[1] :]


GENERATE = {"nnsight": generate_nnsight, "hooks": generate_hooks, "remote": generate_remote}
CONFIGS = {
    "cache": {},
    "no-cache": {"use_cache": False},
    "chunked": {"prefill_chunk_size": 8},
}


def plain_and_edited_tokens(model, inputs, steer, kwargs):
    """Plain generation, and generation with the LM head's weight replaced by ``W + eps W S`` (the paper)."""
    hf = model._module
    lm_head = get_module(hf, resolve(hf).row.lm_head_path)
    with torch.no_grad():
        plain = hf.generate(**inputs, **kwargs)
        original = lm_head.weight.detach().clone()
        W = original.float()
        lm_head.weight.copy_((W + steer.epsilon * W @ steer.head.S.detach()).to(original.dtype))
        try:
            edited = hf.generate(**inputs, **kwargs)
        finally:
            lm_head.weight.copy_(original)
    width = inputs["input_ids"].shape[1]
    return plain[:, width:], edited[:, width:]


@pytest.mark.parametrize("gate_mode", ["prefill", "every_step"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", ["tiny-llava-onevision", "tiny-chameleon"])
def test_generation_keeps_the_prefill_gate_and_gives_the_same_tokens_everywhere(name, dtype, side, config, gate_mode):
    model = _model(name, dtype)
    steer, prompts, p_reference = _steer_and_reference(name, dtype, False, gate_mode)
    inputs = encode(model, prompts, side)
    kwargs = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False, **CONFIGS[config])
    kwargs.setdefault("pad_token_id", model.tokenizer.pad_token_id)
    results = {backend: run(model, inputs, steer, kwargs) for backend, run in GENERATE.items()}
    prefill_gate = p_reference > steer.threshold
    anchor_report, anchor_tokens = results["hooks"]
    for backend, (report, tokens) in results.items():
        assert torch.allclose(report.p_harmful.cpu(), p_reference, atol=P_ATOL[dtype], rtol=0), backend
        assert torch.equal(report.gate.cpu(), anchor_report.gate.cpu()), backend
        assert torch.equal(tokens.cpu(), anchor_tokens.cpu()), backend
    gate = anchor_report.gate.cpu()
    plain, edited = plain_and_edited_tokens(model, inputs, steer, kwargs)
    assert torch.equal(anchor_tokens[~gate], plain[~gate])  # ungated rows: exactly the unsteered model
    if gate_mode == "prefill":
        assert torch.equal(gate, prefill_gate)
        if dtype == "float32":
            assert torch.equal(anchor_tokens[gate], edited[gate])
    else:
        assert bool((gate | ~prefill_gate).all())  # every_step only adds rows


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("cache", [True, False])
def test_transformer_lens_generation_keeps_the_prefill_gate_of_the_other_backends(dtype, cache):
    name = "tiny-llava-onevision"
    model = _model(name, dtype)
    steer, prompts, p_reference = _steer_and_reference(name, dtype, False, "prefill")
    inputs = encode(model, prompts, "left")
    kwargs = dict(max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False, use_cache=cache)
    report, tokens = generate_lens(model, inputs, steer, kwargs)
    assert torch.allclose(report.p_harmful.cpu(), p_reference, atol=P_ATOL[dtype], rtol=0)
    assert torch.equal(report.gate.cpu(), p_reference > steer.threshold)
    if not cache and dtype == "float32":  # TransformerLens 4.3 loses its cache under transformers 5 (hooks_tl)
        _, expected = generate_hooks(model, inputs, steer, kwargs)
        assert torch.equal(tokens, expected)
