import pytest
import torch

from autosteer_interp.errors import ModelLoadError
from autosteer_interp.models import (
    build_tiny_chameleon,
    build_tiny_llava_onevision,
    load_model,
    tiny_image,
    wrap,
)
from autosteer_interp.prompts import Prompt, encode_prompts


def test_tiny_models_are_seeded_and_reproducible():
    a, _, _ = build_tiny_llava_onevision(seed=3)
    b, _, _ = build_tiny_llava_onevision(seed=3)
    c, _, _ = build_tiny_llava_onevision(seed=4)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_tiny_llava_onevision_turns_an_image_into_36_tokens(tiny_llava):
    inputs = encode_prompts(tiny_llava, [Prompt("What is this?", tiny_image())])
    image_tokens = int((inputs["input_ids"] == tiny_llava._module.config.image_token_id).sum())
    assert image_tokens == 36 and inputs["pixel_values"].shape == (1, 2, 3, 32, 32)
    with torch.no_grad():
        logits = tiny_llava._module(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], resolve_vocab(tiny_llava))


def resolve_vocab(model):
    return model._module.lm_head.weight.shape[0]


def test_tiny_chameleon_turns_an_image_into_16_vq_tokens(tiny_chameleon):
    inputs = encode_prompts(tiny_chameleon, [Prompt("What is this?", tiny_image())])
    assert int((inputs["input_ids"] == tiny_chameleon._module.config.image_token_id).sum()) == 16
    with torch.no_grad():
        out = tiny_chameleon._module.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_different_texts_give_different_tokens_on_tiny_models(tiny_llava, tiny_chameleon):
    for model in (tiny_llava, tiny_chameleon):
        a = encode_prompts(model, [Prompt("kill a process")])["input_ids"]
        b = encode_prompts(model, [Prompt("kill a person!")])["input_ids"]
        assert not torch.equal(a, b)


def test_wrap_pads_on_the_left(tiny_llava, tiny_chameleon):
    assert tiny_llava.tokenizer.padding_side == "left"
    assert tiny_chameleon.processor.tokenizer.padding_side == "left"
    inputs = encode_prompts(tiny_chameleon, [Prompt("a"), Prompt("a much longer request")])
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][0, -1] == 1


def test_wrap_gives_a_tokenizer_without_pad_token_its_eos():
    model, tokenizer, processor = build_tiny_llava_onevision()
    tokenizer.pad_token = None
    wrapped = wrap(model, tokenizer, processor)
    assert wrapped.tokenizer.pad_token == "<|im_end|>"


def test_wrap_refuses_a_multimodal_model_without_its_processor():
    model, tokenizer, _ = build_tiny_llava_onevision()
    with pytest.raises(ModelLoadError, match="llava_onevision model needs its processor"):
        wrap(model, tokenizer)


def test_builtin_models_trace_with_nnsight(tiny_chameleon):
    inputs = encode_prompts(tiny_chameleon, [Prompt("hi", tiny_image())])
    with torch.no_grad(), tiny_chameleon.trace(**inputs):
        logits = tiny_chameleon.lm_head.output.save()
    with torch.no_grad():
        reference = tiny_chameleon._module(**inputs).logits
    # Chameleon masks its image-code columns in place after the LM head, so the saved output shows the mask too.
    assert torch.equal(logits, reference)


def test_unknown_name_offline_is_a_clear_load_error():
    with pytest.raises(ModelLoadError, match="not a built-in name.*tiny-llava-onevision"):
        load_model("no-such-org/no-such-model-anywhere")


def test_hub_checkpoints_go_through_the_same_loader(tmp_path):
    hf_model, tokenizer, processor = build_tiny_chameleon()
    hf_model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    inputs = encode_prompts(loaded, [Prompt("hello", tiny_image())])
    with torch.no_grad():
        assert torch.allclose(loaded._module(**inputs).logits, hf_model(**inputs).logits, atol=1e-6)


@pytest.mark.parametrize("name", ["tiny-llava-onevision", "tiny-chameleon", "tiny-qwen2"])
def test_the_layout_read_before_loading_matches_the_loaded_model(name):
    from autosteer_interp.architectures import resolve
    from autosteer_interp.models import load_model, model_layout

    layout, spec = model_layout(name), resolve(load_model(name))
    assert (layout.model_type, layout.n_layers, layout.d_model, layout.context_length) == (
        spec.model_type,
        spec.n_layers,
        spec.d_model,
        spec.context_length,
    )
