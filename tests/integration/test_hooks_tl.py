"""TransformerLens hooks: safe boot, per-sample gate, new-sequence detection, clear errors (tiny models)."""

import pytest
import torch
from torch import nn

from autosteer_interp.errors import ArtifactError, InvalidInputError, UnsupportedModelError
from autosteer_interp.hooks_tl import AutoSteerHooks, boot_bridge
from autosteer_interp.models import build_tiny_llava_onevision, build_tiny_qwen2, wrap
from autosteer_interp.prompts import Prompt, encode_prompts
from tests.integration.test_equivalence import make_steer, mixed_batch, nnsight_generate, nnsight_logits

STEPS = 4


def text_batch():
    return [Prompt(p.text) for p in mixed_batch()]


def test_boot_copies_the_model_and_never_pip_installs(tiny_llava, monkeypatch):
    from transformer_lens.model_bridge.sources.transformers import helpers

    def forbidden() -> bool:
        raise AssertionError("TransformerLens tried to pip-install torchvision")

    monkeypatch.setattr(helpers, "_ensure_torchvision", forbidden)
    inputs = encode_prompts(tiny_llava, text_batch())
    with torch.no_grad():
        before = tiny_llava._module(**inputs).logits
    bridge = boot_bridge(tiny_llava)  # the processor lookup fails offline, which would trigger the install
    assert helpers._ensure_torchvision is forbidden  # restored after the boot
    assert bridge.original_model is not tiny_llava._module
    assert type(tiny_llava._module.lm_head) is nn.Linear  # the nnsight model is untouched
    with torch.no_grad():
        assert torch.equal(tiny_llava._module(**inputs).logits, before)


def test_chameleon_and_unsafe_sharing_are_refused(tiny_chameleon, tiny_llava):
    with pytest.raises(UnsupportedModelError, match="TransformerLens 4.3 has no adapter for 'chameleon'"):
        boot_bridge(tiny_chameleon)
    with pytest.raises(InvalidInputError, match="copy_model=False on an nnsight-wrapped model"):
        boot_bridge(tiny_llava, copy_model=False)
    hf_model, tokenizer, _ = build_tiny_qwen2()
    bridge = boot_bridge(hf_model, tokenizer=tokenizer, copy_model=False)  # handed over: converted in place
    assert bridge.original_model is hf_model
    with pytest.raises(InvalidInputError, match="already converted by TransformerLens"):
        boot_bridge(hf_model, tokenizer=tokenizer)


def test_hooks_refuse_a_steer_fitted_on_another_model(tiny_llava):
    steer = make_steer(tiny_llava, text_batch())
    other = wrap(*build_tiny_llava_onevision(seed=5))
    with pytest.raises(ArtifactError, match="different checkpoint"):
        AutoSteerHooks(steer, boot_bridge(other))


def test_each_unrelated_pass_is_gated_afresh_and_generation_steps_keep_the_gate(tiny_qwen2):
    prompts = text_batch()
    steer = make_steer(tiny_qwen2, prompts)
    bridge = boot_bridge(tiny_qwen2)
    tl_steer = AutoSteerHooks(steer, bridge)
    forward, backward = encode_prompts(tiny_qwen2, prompts), encode_prompts(tiny_qwen2, prompts[::-1])
    expected_forward, _ = nnsight_logits(tiny_qwen2, forward, steer)
    expected_backward, _ = nnsight_logits(tiny_qwen2, backward, steer)
    with torch.no_grad(), bridge.hooks(fwd_hooks=tl_steer.fwd_hooks()):
        bridge(forward["input_ids"], attention_mask=forward["attention_mask"])
        assert torch.equal(tl_steer.report.gate, expected_forward.gate)
        bridge(backward["input_ids"], attention_mask=backward["attention_mask"])  # a new batch: decided again
        assert torch.equal(tl_steer.report.gate, expected_backward.gate)
    for cached in (False, True):  # with a key/value cache each step feeds one token per row
        with torch.no_grad(), bridge.hooks(fwd_hooks=tl_steer.fwd_hooks()):
            bridge.generate(
                forward["input_ids"],
                attention_mask=forward["attention_mask"],
                max_new_tokens=STEPS,
                do_sample=False,
                verbose=False,
                stop_at_eos=False,
                use_past_kv_cache=cached,
            )
        assert torch.equal(tl_steer.report.gate, expected_forward.gate)
        assert torch.allclose(tl_steer.report.p_harmful, expected_forward.p_harmful, atol=1e-6)  # eager vs SDPA


def test_every_step_gating_matches_nnsight(tiny_qwen2):
    prompts = text_batch()
    steer = make_steer(tiny_qwen2, prompts, gate_mode="every_step")
    steer = steer.with_threshold(steer.threshold + 0.01)
    inputs = encode_prompts(tiny_qwen2, prompts)
    report, tokens = nnsight_generate(tiny_qwen2, inputs, steer, steps=STEPS)
    bridge = boot_bridge(tiny_qwen2)
    tl_steer = AutoSteerHooks(steer, bridge)
    with torch.no_grad(), bridge.hooks(fwd_hooks=tl_steer.fwd_hooks()):
        out = bridge.generate(
            inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            max_new_tokens=STEPS,
            do_sample=False,
            verbose=False,
            stop_at_eos=False,
            use_past_kv_cache=False,
        )
    assert torch.equal(tl_steer.report.gate, report.gate)
    assert torch.equal(out[:, inputs["input_ids"].shape[1] :], tokens)
