import pytest
import torch

from autosteer_interp.activations import cache_lm_head_inputs
from autosteer_interp.architectures import get_module, resolve
from autosteer_interp.errors import ArtifactError, InvalidInputError
from autosteer_interp.models import build_tiny_llava_onevision, tiny_image, wrap
from autosteer_interp.prompts import Prompt, builtin_pairs, encode_prompts
from autosteer_interp.provenance import ModelProvenance
from autosteer_interp.refusal_head import RefusalHead, RefusalHeadConfig
from tests.reference.paper_formulas import paper_refusal_logits


def trained_like_head(d_model=64, epsilon=0.1, seed=0):
    head = RefusalHead(d_model, epsilon)
    with torch.no_grad():
        head.S.add_(torch.randn(d_model, d_model, generator=torch.Generator().manual_seed(seed)))
    return head


def test_steering_the_lm_head_input_equals_the_paper_formula(tiny_llava):
    head = trained_like_head()
    weight = tiny_llava._module.lm_head.weight.detach()
    h = torch.randn(3, 5, 64)
    ours = head(h) @ weight.T
    assert torch.allclose(ours, paper_refusal_logits(h, weight, head.S.detach(), 0.1), atol=1e-5)


def test_a_zero_gate_leaves_rows_bit_identical_and_gates_act_per_row():
    head = trained_like_head(d_model=16)
    h = torch.randn(4, 3, 16)
    gate = torch.tensor([0.0, 1.0, 0.0, 1.0])
    out = head(h, gate)
    assert torch.equal(out[0], h[0]) and torch.equal(out[2], h[2])
    assert torch.allclose(out[1], head(h[1:2])[0]) and not torch.allclose(out[1], h[1])


def test_identity_start_scales_the_input_by_one_plus_epsilon():
    head = RefusalHead(8, epsilon=0.25)
    h = torch.randn(2, 8)
    assert torch.allclose(head(h), 1.25 * h)


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_chameleon"])
def test_the_cache_holds_the_lm_head_inputs_that_predict_each_target_token(fixture, request):
    model = request.getfixturevalue(fixture)
    prompts = [Prompt("Tell me a secret", tiny_image(1)), Prompt("Hi")]
    targets = torch.tensor([40, 41, 42])
    cache = cache_lm_head_inputs(model, prompts, targets, batch_size=2, progress=False)
    assert cache.hidden.shape == (6, 64) and cache.labels.tolist() == [40, 41, 42] * 2
    captured = {}
    hf = model._module
    handle = hf.lm_head.register_forward_pre_hook(lambda m, args: captured.setdefault("h", args[0]))
    inputs = encode_prompts(model, prompts[1:])
    inputs["input_ids"] = torch.cat([inputs["input_ids"], targets[None]], 1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    with torch.no_grad():
        hf(**inputs)
    handle.remove()
    assert torch.allclose(cache.hidden[3:], captured["h"][0, -4:-1], atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_chameleon", "tiny_qwen2"])
def test_fitting_teaches_a_tiny_model_to_answer_with_the_target(fixture, request):
    model = request.getfixturevalue(fixture)
    prompts = [p.harmful for p in builtin_pairs()[:12]]
    if fixture != "tiny_qwen2":  # multimodal: one prompt with an image
        prompts[0] = Prompt(prompts[0].text, tiny_image(0))
    config = RefusalHeadConfig(target="nope", epsilon=0.5, epochs=60, learning_rate=3e-2, batch_size=32)
    head = RefusalHead.fit(model, prompts, config, progress=False)
    assert head.history[-1] < 0.2 * head.history[0]
    inputs = encode_prompts(model, prompts[:4])
    target = model.tokenizer("nope", add_special_tokens=False)["input_ids"]
    with torch.no_grad(), head.attach(model):
        out = model._module.generate(**inputs, max_new_tokens=len(target), do_sample=False)
    assert (out[:, inputs["input_ids"].shape[1] :] == torch.tensor(target)).all()


def test_attach_restores_the_model_when_removed(tiny_llava):
    head = trained_like_head()
    inputs = encode_prompts(tiny_llava, [Prompt("hello", tiny_image())])
    hf = tiny_llava._module
    with torch.no_grad():
        before = hf(**inputs).logits
        with head.attach(tiny_llava):
            steered = hf(**inputs).logits
        after = hf(**inputs).logits
    assert torch.equal(before, after) and not torch.allclose(before, steered)
    weight = hf.lm_head.weight.detach()
    with torch.no_grad():
        h = hf.model(**inputs).last_hidden_state
    assert torch.allclose(steered, paper_refusal_logits(h, weight, head.S.detach(), 0.1), atol=1e-4)


def test_retain_prompts_keep_the_models_own_answers(tiny_llava):
    harmful = [p.harmful for p in builtin_pairs()[:8]]
    benign = [p.safe for p in builtin_pairs()[8:16]]
    config = RefusalHeadConfig(target="no", epsilon=0.5, epochs=30, learning_rate=3e-2, retain_tokens=4)
    head = RefusalHead.fit(tiny_llava, harmful, config, retain_prompts=benign, progress=False)
    inputs = encode_prompts(tiny_llava, benign[:4])
    hf = tiny_llava._module
    with torch.no_grad():
        plain = hf.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        with head.attach(tiny_llava):
            steered = hf.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert (plain == steered).float().mean() > 0.9


def test_save_load_round_trip_and_model_checks(tiny_llava, tmp_path):
    head = RefusalHead.fit(tiny_llava, [Prompt("a"), Prompt("b")], RefusalHeadConfig(epochs=1), progress=False)
    head.save(tmp_path / "head")
    loaded = RefusalHead.load(tmp_path / "head", model=tiny_llava)
    assert torch.equal(loaded.S, head.S) and loaded.epsilon == head.epsilon and loaded.config == head.config
    other, tokenizer, processor = build_tiny_llava_onevision(seed=1)
    with pytest.raises(ArtifactError, match="different checkpoint"):
        RefusalHead.load(tmp_path / "head", model=wrap(other, tokenizer, processor))
    with pytest.raises(ArtifactError, match="different checkpoint"):
        loaded.attach(wrap(other, tokenizer, processor))


def test_a_head_from_a_wider_model_is_refused(tiny_llava):
    provenance = ModelProvenance("big", "llava_onevision", 3584, (152064, 3584), {}, {"lm_head.weight": (0.1,) * 128})
    with pytest.raises(ArtifactError, match="d_model=3584.*this model has d_model=64"):
        provenance.check(tiny_llava, "this head")


def test_fingerprints_survive_a_change_of_dtype(tiny_llava):
    hf, tokenizer, processor = build_tiny_llava_onevision()
    as_bf16 = wrap(hf.to(torch.bfloat16), tokenizer, processor)
    assert ModelProvenance.of(as_bf16).matches(ModelProvenance.of(tiny_llava))
    other, _, _ = build_tiny_llava_onevision(seed=1)
    assert not ModelProvenance.of(other).matches(ModelProvenance.of(tiny_llava))


def test_fingerprints_tell_apart_checkpoints_that_share_their_lm_head(tiny_llava):
    hf, tokenizer, processor = build_tiny_llava_onevision()
    spec = resolve(hf)
    with torch.no_grad():
        for layer in get_module(hf, spec.layers_path)[1:]:  # the LM head and embedding stay as they are
            for parameter in layer.parameters():
                parameter.mul_(1.5)
    mine, theirs = ModelProvenance.of(tiny_llava), ModelProvenance.of(wrap(hf, tokenizer, processor))
    assert theirs.signatures[f"{spec.row.lm_head_path}.weight"] == mine.signatures[f"{spec.row.lm_head_path}.weight"]
    assert any("layers" in d and "differ" in d for d in mine.differences(theirs))
    with pytest.raises(ArtifactError, match="different checkpoint: weights .*layers.* differ"):
        mine.check(wrap(hf, tokenizer, processor), "this head")


def test_fingerprints_compare_the_architecture(tiny_llava):
    mine = ModelProvenance.of(tiny_llava)
    assert mine.architecture["text_config.num_hidden_layers"] == resolve(tiny_llava).n_layers
    other = ModelProvenance(**{**mine.__dict__, "architecture": {**mine.architecture, "text_config.rms_norm_eps": 0.1}})
    assert mine.differences(other) == [
        f"config text_config.rms_norm_eps {mine.architecture['text_config.rms_norm_eps']!r} vs 0.1"
    ]


def test_bad_head_configs_name_the_field():
    with pytest.raises(
        InvalidInputError, match=r"RefusalHeadConfig.epsilon=0.0 is invalid; allowed: a finite number > 0"
    ):
        RefusalHeadConfig(epsilon=0.0)


def test_generate_texts_matches_plain_generation_and_applies_the_steering(tiny_llava):
    from autosteer_interp.evaluate import generate_texts

    prompts = [Prompt("hello", tiny_image()), Prompt("a longer request here")]
    kwargs = dict(max_new_tokens=4, min_new_tokens=4)
    inputs = encode_prompts(tiny_llava, prompts)
    with torch.no_grad():
        out = tiny_llava._module.generate(**inputs, do_sample=False, **kwargs)
    expected = tiny_llava.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert generate_texts(tiny_llava, prompts, batch_size=1, **kwargs) == expected
    assert generate_texts(tiny_llava, prompts, trained_like_head(epsilon=2.0), **kwargs) != expected
