"""Gradients through the steering: no backend cuts autograd, and all of them give the same gradients.

Attribution studies differentiate a logit with respect to the inputs with steering on. The loss here reads the
last position of every row (gated and not), and the gradient is taken with respect to the token-embedding matrix.
TransformerLens forces eager attention (Hugging Face uses SDPA), so its gradients are compared with a tolerance.
"""

import copy

import pytest
import torch

from autosteer_interp.architectures import get_module, resolve
from autosteer_interp.hooks_tl import AutoSteerHooks, boot_bridge
from autosteer_interp.prompts import encode_prompts
from tests.integration.test_conformance import _steer_and_reference

NAME = "tiny-llava-onevision"


@pytest.fixture(scope="module")
def setup():
    from autosteer_interp.models import load_model

    model = load_model(NAME)
    steer, prompts, _ = _steer_and_reference(NAME, "float32", False, "prefill")
    return model, steer, encode_prompts(model, prompts)


def loss_of(logits):
    return logits[:, -1].float().pow(2).mean()


def embedding_grad(module):
    weight = get_module(module, resolve(module).row.embed_path).weight
    grad = weight.grad.detach().clone()
    weight.grad = None
    return grad


def grad_plain(model, inputs):
    loss_of(model._module(**inputs).logits).backward()
    return embedding_grad(model._module)


def grad_hooks(model, inputs, steer):
    with steer.attach(model) as handle:
        loss_of(model._module(**inputs).logits).backward()
    return embedding_grad(model._module), handle.report.gate


def grad_nnsight(model, inputs, steer):
    with model.trace(**inputs):
        report = steer.apply(model)
        logits = model.lm_head.output.save()
    loss_of(logits).backward()
    return embedding_grad(model._module), report.gate


def test_every_backend_keeps_autograd_and_gives_the_same_gradient(setup):
    model, steer, inputs = setup
    plain = grad_plain(model, inputs)
    hooked, gate = grad_hooks(model, inputs, steer)
    traced, traced_gate = grad_nnsight(model, inputs, steer)
    assert bool(gate.any()) and torch.equal(gate, traced_gate)
    assert not torch.allclose(hooked, plain)  # the steering is part of the graph
    assert torch.allclose(hooked, traced, atol=1e-7, rtol=1e-5)
    bridge = boot_bridge(model)
    ids, rest = inputs["input_ids"], {k: v for k, v in inputs.items() if k != "input_ids"}
    with AutoSteerHooks(steer, bridge) as lens:
        loss_of(bridge.run_with_hooks(ids, **rest, fwd_hooks=lens.fwd_hooks())).backward()
    lensed = embedding_grad(bridge.original_model)
    assert torch.equal(lens.report.gate, gate)
    assert torch.allclose(lensed, hooked, atol=1e-5 * float(hooked.abs().max()), rtol=0)


def test_the_always_on_refusal_head_keeps_autograd(setup):
    model, steer, inputs = setup
    plain = grad_plain(model, inputs)
    with steer.head.attach(model):
        loss_of(model._module(**inputs).logits).backward()
    steered = embedding_grad(model._module)
    copy_model = copy.deepcopy(model._module)
    lm_head = get_module(copy_model, resolve(copy_model).row.lm_head_path)
    with torch.no_grad():  # the paper's form: the LM head's weight W + eps W S
        lm_head.weight.add_(steer.epsilon * lm_head.weight @ steer.head.S.detach())
    loss_of(copy_model(**inputs).logits).backward()
    paper = embedding_grad(copy_model)
    assert not torch.allclose(steered, plain)
    assert torch.allclose(steered, paper, atol=1e-5 * float(paper.abs().max()), rtol=0)
