"""One steering, every backend, on the real SmolLM2 (as a Llama LM and inside LLaVA-OneVision with an image).

Same matrix and tolerances as ``tests/integration/test_equivalence.py`` (nnsight trace and generation, the NDIF
dry run, the paper's ``h (W + eps W S)^T`` by hand, TransformerLens logits), except plain Hugging Face hooks:
on this model the hooked forward pass differs from the nnsight one in the last bits of the steered logits.
TransformerLens tokens are compared on the tiny models (its generation drops the image after the first token).
"""

import pytest
import torch

from autosteer_interp.hooks_tl import AutoSteerHooks, boot_bridge
from autosteer_interp.models import tiny_image
from autosteer_interp.prompts import Prompt, builtin_pairs, encode_prompts
from autosteer_interp.remote import prepare_remote
from tests.integration.test_equivalence import (
    PAPER_ATOL,
    TL_ATOL,
    hf_generate,
    make_steer,
    nnsight_generate,
    nnsight_logits,
    paper_generate,
    paper_logits,
    plain_hooked_and_remote_logits,
)

pytestmark = pytest.mark.real

STEPS = 4
LAYERS = (12,)
ATTACH_ATOL = 1e-5  # relative to the largest logit; measured 3e-6 on SmolLM2 (steered logits reach ~400)


def test_every_backend_gives_the_same_logits_and_tokens(smollm2_llava):
    """SmolLM2 inside LLaVA-OneVision, a batch with an image (the text-only Llama path is the same code)."""
    model = smollm2_llava
    batch = [
        Prompt(builtin_pairs()[0].harmful.text, tiny_image(1)),
        Prompt("How do I bake bread?"),
        builtin_pairs()[2].harmful,
    ]
    inputs = encode_prompts(model, batch)
    steer = make_steer(model, batch, layers=LAYERS, fit=False)
    report, logits = nnsight_logits(model, inputs, steer)
    gate = report.gate
    assert 0 < int(gate.sum()) < len(gate)
    remote_steer, _ = prepare_remote(steer, model)
    plain, hooked, remote_report, remote_logits = plain_hooked_and_remote_logits(model, inputs, steer, remote_steer)
    scale = float(logits.abs().max())
    assert torch.equal(remote_logits, logits) and torch.equal(remote_report.gate, gate)
    assert torch.allclose(hooked, logits, rtol=0, atol=ATTACH_ATOL * scale)
    assert torch.equal(logits[~gate], plain[~gate]) and not torch.equal(logits[gate], plain[gate])
    reference = paper_logits(model, inputs, steer, gate)
    assert torch.allclose(logits, reference, rtol=0, atol=PAPER_ATOL * scale)
    bridge = boot_bridge(model)
    tl_steer = AutoSteerHooks(steer, bridge)
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    with torch.no_grad():
        tl_logits = bridge.run_with_hooks(inputs["input_ids"], **rest, fwd_hooks=tl_steer.fwd_hooks())
    real = inputs["attention_mask"].bool()
    assert torch.equal(tl_steer.report.gate, gate)
    assert torch.allclose(tl_logits[real], logits[real], rtol=0, atol=TL_ATOL * scale)

    report, tokens = nnsight_generate(model, inputs, steer, steps=STEPS)
    with steer.attach(model):
        hooked_tokens = hf_generate(model, inputs, steps=STEPS)
    _, remote_tokens = nnsight_generate(model, inputs, remote_steer, steps=STEPS, remote="local")
    assert torch.equal(hooked_tokens, tokens) and torch.equal(remote_tokens, tokens)
    assert torch.equal(paper_generate(model, inputs, steer, report.gate, STEPS), tokens)
    assert torch.equal(tokens[~gate], hf_generate(model, inputs, steps=STEPS)[~gate])
