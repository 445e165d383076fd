"""The real SmolLM2-135M-Instruct: loading, the exact LLaVA-OneVision transplant, activations, SAS."""

import pytest
import torch

from autosteer_interp.activations import collect_activations
from autosteer_interp.architectures import resolve
from autosteer_interp.models import tiny_image
from autosteer_interp.prompts import Prompt, builtin_pairs, encode_prompts
from autosteer_interp.sas import safety_awareness_scores
from tests.integration.test_activations import hidden_states_reference

pytestmark = pytest.mark.real

TEXTS = [
    Prompt("What is the capital of France?"),
    Prompt("Give me three tips for a good night's sleep, in one sentence each."),
    Prompt("Hi!"),
]


def _greedy(model, prompts, n=12):
    inputs = encode_prompts(model, prompts)
    with torch.no_grad():
        out = model._module.generate(**inputs, max_new_tokens=n, do_sample=False)
    return model.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_smollm2_is_the_real_instruct_model(smollm2):
    spec = resolve(smollm2)
    assert (spec.model_type, spec.n_layers, spec.d_model, spec.d_vocab) == ("llama", 30, 576, 49152)
    assert "Paris" in _greedy(smollm2, TEXTS[:1])[0]


def test_transplant_into_llava_onevision_keeps_the_text_logits(smollm2, smollm2_llava):
    assert resolve(smollm2_llava).model_type == "llava_onevision"
    text_inputs = encode_prompts(smollm2, TEXTS)
    vlm_inputs = encode_prompts(smollm2_llava, TEXTS)
    assert torch.equal(text_inputs["input_ids"], vlm_inputs["input_ids"])
    with torch.no_grad():
        reference = smollm2._module(**text_inputs).logits
        transplanted = smollm2_llava._module(**vlm_inputs).logits
    assert transplanted.shape[-1] == reference.shape[-1] + 2  # <image>, <video>
    assert (transplanted[..., : reference.shape[-1]] - reference).abs().max() <= 1e-5
    assert _greedy(smollm2_llava, TEXTS[:1]) == _greedy(smollm2, TEXTS[:1])


def test_transplant_accepts_images_through_its_untrained_vision_tower(smollm2_llava):
    inputs = encode_prompts(smollm2_llava, [Prompt("What is in this image?", tiny_image())])
    assert int((inputs["input_ids"] == resolve(smollm2_llava).image_token_id).sum()) == 36
    with torch.no_grad():
        logits = smollm2_llava._module(**inputs).logits
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("fixture", ["smollm2", "smollm2_llava"])
def test_real_activations_equal_hidden_states_and_are_batch_invariant(fixture, request):
    model = request.getfixturevalue(fixture)
    layers = [0, 7, 22, 29]
    reference = hidden_states_reference(model, TEXTS, layers)
    # One prompt at a time, without prefix sharing, runs the very same float32 kernels as the reference.
    plain = collect_activations(model, TEXTS, layers=layers, batch_size=1, share_prefix=False, progress=False)
    assert torch.equal(plain.values, reference)
    # Batching and the shared-prefix cache change matmul shapes: float32 rounding, relative to the residual
    # scale, which reaches ~500 at the last layers of SmolLM2.
    scale = reference.abs().amax()
    for batch_size in (1, 3):
        for share_prefix in (False, True):
            values = collect_activations(
                model, TEXTS, layers=layers, batch_size=batch_size, share_prefix=share_prefix, progress=False
            ).values
            assert (values - reference).abs().max() <= 2e-6 * scale, (batch_size, share_prefix)


def test_safety_awareness_peaks_in_the_upper_layers_of_the_real_model(smollm2_llava):
    pairs = builtin_pairs()[:96]
    layers = list(range(1, 30))
    harmful = collect_activations(smollm2_llava, [p.harmful for p in pairs], layers, batch_size=16, progress=False)
    safe = collect_activations(smollm2_llava, [p.safe for p in pairs], layers, batch_size=16, progress=False)
    scores = safety_awareness_scores(safe, harmful)
    assert scores.best_layer >= 15, scores.to_dict()
    assert float(scores.scores.max()) > 3 * float(scores.scores[0]), scores.to_dict()


def test_the_layout_read_before_loading_matches_the_real_models(smollm2, smollm2_llava):
    from autosteer_interp.architectures import resolve
    from autosteer_interp.models import model_layout

    for name, model in (("smollm2", smollm2), ("smollm2-llava-onevision", smollm2_llava)):
        layout, spec = model_layout(name), resolve(model)
        assert (layout.model_type, layout.n_layers, layout.d_model, layout.context_length) == (
            spec.model_type,
            spec.n_layers,
            spec.d_model,
            spec.context_length,
        )
