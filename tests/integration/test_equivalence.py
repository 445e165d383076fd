"""One steering, every backend: the same inputs give the same logits and tokens on tiny LLaVA-OV and Chameleon.

Backends: nnsight trace and generation (``steer.apply``), plain Hugging Face hooks (``steer.attach``),
TransformerLens hooks (LLaVA-OneVision only: TransformerLens has no Chameleon adapter), the NDIF dry run
(``remote="local"`` with a :class:`RemoteSteer`), and the paper's literal ``h (W + eps W S)^T`` by hand.

Tolerances (float32):
* attach and remote run the same torch operations as nnsight on the same tensors: bit-identical (``torch.equal``);
* the paper's form multiplies in another order (``W S`` first): ``PAPER_ATOL`` = 1e-5 relative to the largest
  logit (measured <= 2e-6 relative);
* TransformerLens forces eager attention (Hugging Face uses SDPA): ``TL_ATOL`` = 1e-5 relative on real tokens
  (measured <= 2e-7 relative; padding positions are garbage in both and are not compared).
Greedy tokens must be equal everywhere. Ungated rows must equal the unsteered model exactly; gated rows differ.
"""

import pytest
import torch

from autosteer_interp.activations import collect_activations
from autosteer_interp.architectures import get_module, resolve
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.prompts import Prompt, builtin_pairs, encode_prompts
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.remote import prepare_remote
from autosteer_interp.steer import AutoSteer
from tests.integration.test_steer import mixed_batch
from tests.reference.paper_formulas import paper_refusal_logits

PAPER_ATOL = 1e-5
TL_ATOL = 1e-5
STEPS = 5


def last_token_inputs(model, inputs, layers) -> torch.Tensor:
    """``[batch, n_layers, d_model]``: the inputs of ``layers`` at the last position."""
    decoder_layers = get_module(model, resolve(model).layers_path)
    with torch.no_grad(), model.trace(**inputs):
        stacked = torch.stack([decoder_layers[layer].input[:, -1] for layer in layers], dim=1).save()
    return stacked  # noqa: RET504 (a value saved in a trace is read after the block)


def make_steer(model, prompts, layers=(2,), gate_mode="prefill", seed=0, fit=True) -> AutoSteer:
    """A linear prober (fitted on built-in pairs, or random), a random head, a threshold between the middle rows."""
    d_model = resolve(model).d_model
    config = ProberConfig(kind="linear", epochs=10)
    if fit:
        pairs = builtin_pairs()[:24]
        harmful = collect_activations(model, [p.harmful for p in pairs], list(layers), progress=False)
        safe = collect_activations(model, [p.safe for p in pairs], list(layers), progress=False)
        prober = SafetyProber.fit(harmful, safe, config=config, layers=list(layers), model=model)
    else:  # the gate's quality does not matter for equivalence; this saves two passes over 48 prompts
        prober = SafetyProber(d_model, config, layers=list(layers))
    head = RefusalHead(d_model, epsilon=0.5)
    with torch.no_grad():
        head.S.add_(torch.randn(d_model, d_model, generator=torch.Generator().manual_seed(seed)))
    head.provenance = prober.provenance
    steer = AutoSteer(prober, head, gate_mode=gate_mode)
    with torch.no_grad():
        ordered = torch.sort(steer.p_harmful(last_token_inputs(model, encode_prompts(model, prompts), layers))).values
    middle = len(ordered) // 2
    return steer.with_threshold(float(ordered[middle - 1 : middle + 1].mean()))  # no row sits on the threshold


def image_masked(logits: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    """Chameleon masks its image-code logits after the LM head; apply the same mask (a no-op elsewhere)."""
    return torch.where(plain == torch.finfo(plain.dtype).min, plain, logits)


def paper_logits(model, inputs, steer, gate) -> torch.Tensor:
    """Logits of every position, the gated rows by ``h (W + eps W S)^T`` computed literally."""
    hf = model._module
    with torch.no_grad():
        plain = hf(**inputs).logits
        hidden = hf.model(**inputs).last_hidden_state
        weight = get_module(hf, resolve(hf).row.lm_head_path).weight
        steered = paper_refusal_logits(hidden[gate], weight, steer.head.S.detach(), steer.epsilon)
    out = plain.clone()
    out[gate] = image_masked(steered, plain[gate])
    return out


def paper_generate(model, inputs, steer, gate, steps) -> torch.Tensor:
    """Greedy decoding by hand with the paper's head on the gated rows (``min_new_tokens = steps``)."""
    hf = model._module
    weight = get_module(hf, resolve(hf).row.lm_head_path).weight
    eos = hf.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    mask, new = inputs["attention_mask"], []
    with torch.no_grad():
        out = hf.model(**inputs, use_cache=True)
        for _ in range(steps):
            hidden = out.last_hidden_state[:, -1]
            plain = hf.lm_head(hidden)
            if hasattr(hf.model, "vocabulary_mapping"):  # Chameleon never emits image codes
                plain[:, hf.model.vocabulary_mapping.image_tokens] = torch.finfo(plain.dtype).min
            logits = plain.clone()
            logits[gate] = image_masked(
                paper_refusal_logits(hidden[gate], weight, steer.head.S, steer.epsilon), plain[gate]
            )
            logits[:, eos] = -torch.inf  # min_new_tokens
            token = logits.argmax(-1)
            new.append(token)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = hf.model(input_ids=token[:, None], attention_mask=mask, cache=out.cache, use_cache=True)
    return torch.stack(new, dim=1)


def nnsight_logits(model, inputs, steer):
    with torch.no_grad(), model.trace(**inputs):
        report = steer.apply(model)
        logits = model.lm_head.output.save()
    return report, logits


def nnsight_generate(model, inputs, steer, steps=STEPS, remote=False):
    kwargs = dict(max_new_tokens=steps, min_new_tokens=steps, do_sample=False)
    with torch.no_grad(), model.generate(**inputs, **kwargs, remote=remote) as tracer:
        report = steer.apply(model, tracer, steps=steps)
        ids = tracer.result.save()
    return report, ids[:, inputs["input_ids"].shape[1] :]


def hf_generate(model, inputs, steps=STEPS):
    with torch.no_grad():
        out = model._module.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)
    return out[:, inputs["input_ids"].shape[1] :]


@pytest.fixture(params=["tiny_llava", "tiny_chameleon"])
def model(request):
    return request.getfixturevalue(request.param)


def plain_hooked_and_remote_logits(model, inputs, steer, remote_steer):
    """Unsteered logits, logits with ``steer.attach`` hooks, and the ``remote="local"`` report and logits."""
    with torch.no_grad():
        plain = model._module(**inputs).logits
        with steer.attach(model):
            hooked = model._module(**inputs).logits
    with torch.no_grad(), model.trace(**inputs, remote="local"):
        remote_report = remote_steer.apply(model)
        remote_logits = model.lm_head.output.save()
    return plain, hooked, remote_report, remote_logits


def test_logits_agree_across_nnsight_attach_remote_and_the_paper_formula(model):
    inputs = encode_prompts(model, mixed_batch())
    steer = make_steer(model, mixed_batch())
    report, logits = nnsight_logits(model, inputs, steer)
    gate = report.gate
    assert 0 < int(gate.sum()) < len(gate)
    remote_steer, _ = prepare_remote(steer, model)
    plain, hooked, remote_report, remote_logits = plain_hooked_and_remote_logits(model, inputs, steer, remote_steer)
    assert torch.equal(hooked, logits) and torch.equal(remote_logits, logits)
    assert torch.equal(remote_report.gate, gate) and torch.equal(remote_report.p_harmful, report.p_harmful)
    assert torch.equal(logits[~gate], plain[~gate])
    assert all(not torch.equal(a, b) for a, b in zip(logits[gate], plain[gate]))
    reference = paper_logits(model, inputs, steer, gate)
    scale = float(reference[reference > torch.finfo(reference.dtype).min].abs().max())
    assert torch.allclose(logits, reference, rtol=0, atol=PAPER_ATOL * scale)


def test_generated_tokens_agree_across_nnsight_attach_remote_and_the_paper_formula(model):
    prompts = mixed_batch()
    inputs = encode_prompts(model, prompts)
    steer = make_steer(model, prompts)
    report, tokens = nnsight_generate(model, inputs, steer)
    gate = report.gate
    with steer.attach(model):
        hooked = hf_generate(model, inputs)
    remote_steer, _ = prepare_remote(steer, model)
    remote_report, remote_tokens = nnsight_generate(model, inputs, remote_steer, remote="local")
    plain = hf_generate(model, inputs)
    assert torch.equal(hooked, tokens) and torch.equal(remote_tokens, tokens)
    assert torch.equal(remote_report.gate, gate)
    assert torch.equal(paper_generate(model, inputs, steer, gate, STEPS), tokens)
    assert torch.equal(tokens[~gate], plain[~gate])
    assert not torch.equal(tokens[gate], plain[gate])


def test_transformer_lens_gives_the_same_logits_and_tokens_on_llava_onevision(tiny_llava):
    from autosteer_interp.hooks_tl import AutoSteerHooks, boot_bridge

    prompts = mixed_batch()
    inputs = encode_prompts(tiny_llava, prompts)
    steer = make_steer(tiny_llava, prompts)
    report, logits = nnsight_logits(tiny_llava, inputs, steer)
    bridge = boot_bridge(tiny_llava)
    tl_steer = AutoSteerHooks(steer, bridge)
    ids, rest = inputs["input_ids"], {k: v for k, v in inputs.items() if k != "input_ids"}
    with torch.no_grad():
        tl_logits = bridge.run_with_hooks(ids, **rest, fwd_hooks=tl_steer.fwd_hooks())
        tl_plain = bridge(ids, **rest)
    real = inputs["attention_mask"].bool()
    assert torch.equal(tl_steer.report.gate, report.gate)
    assert torch.allclose(tl_logits[real], logits[real], rtol=0, atol=TL_ATOL * float(logits[real].abs().max()))
    assert torch.equal(tl_logits[~report.gate], tl_plain[~report.gate])
    # generation: TransformerLens 4.3 drops pixel_values after the first step (and its key/value cache is lost
    # under transformers 5), so tokens are compared on text prompts; with images, ungated rows stay unsteered
    text = encode_prompts(tiny_llava, [Prompt(p.text) for p in prompts])
    text_report, text_tokens = nnsight_generate(tiny_llava, text, steer)
    kwargs = dict(max_new_tokens=STEPS, do_sample=False, verbose=False, stop_at_eos=False, use_past_kv_cache=False)
    text_rest = {k: v for k, v in text.items() if k != "input_ids"}
    with torch.no_grad(), bridge.hooks(fwd_hooks=tl_steer.fwd_hooks()):
        tl_tokens = bridge.generate(text["input_ids"], **text_rest, **kwargs)[:, text["input_ids"].shape[1] :]
    assert torch.equal(tl_steer.report.gate, text_report.gate) and torch.equal(tl_tokens, text_tokens)
    with torch.no_grad(), bridge.hooks(fwd_hooks=tl_steer.fwd_hooks()):
        tl_image_tokens = bridge.generate(ids, **rest, **kwargs)
    with torch.no_grad():
        tl_image_plain = bridge.generate(ids, **rest, **kwargs)
    assert torch.equal(tl_image_tokens[~report.gate], tl_image_plain[~report.gate])
    assert not torch.equal(tl_image_tokens[report.gate], tl_image_plain[report.gate])
