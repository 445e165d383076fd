import pytest
import torch

from autosteer_interp.errors import InvalidInputError
from autosteer_interp.models import load_model, tiny_image
from autosteer_interp.prompts import Prompt, encode_prompts, format_prompt


def test_llava_onevision_prompts_use_the_chat_template_with_generation_prompt(tiny_llava):
    text = format_prompt(tiny_llava, Prompt("Describe it.", tiny_image()))
    assert text == "<|im_start|>user\n<image>Describe it.<|im_end|>\n<|im_start|>assistant\n"
    assert format_prompt(tiny_llava, Prompt("Hi")) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_chameleon_prompts_end_with_the_separator_that_starts_the_answer(tiny_chameleon):
    assert format_prompt(tiny_chameleon, Prompt("Describe it.", tiny_image())) == "<image>Describe it."
    ids = encode_prompts(tiny_chameleon, [Prompt("Describe it.", tiny_image())])["input_ids"][0]
    tokenizer = tiny_chameleon.tokenizer
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.sep_token_id


def test_a_batch_can_mix_prompts_with_and_without_images(tiny_llava):
    inputs = encode_prompts(tiny_llava, [Prompt("a", tiny_image()), Prompt("b"), Prompt("c", tiny_image(2))])
    assert inputs["pixel_values"].shape[0] == 2
    assert inputs["input_ids"].shape[0] == 3


def test_an_image_for_a_text_only_model_is_refused():
    model = load_model("tiny-qwen2")
    with pytest.raises(InvalidInputError, match="text-only"):
        format_prompt(model, Prompt("x", tiny_image()))
    inputs = encode_prompts(model, [Prompt("hello"), Prompt("hi")])
    assert inputs["input_ids"].shape[0] == 2 and set(inputs) == {"input_ids", "attention_mask"}


def test_empty_prompt_list_is_refused(tiny_llava):
    with pytest.raises(InvalidInputError, match="at least one prompt"):
        encode_prompts(tiny_llava, [])


def test_load_model_builds_each_tiny_model_fresh():
    a, b = load_model("tiny-chameleon"), load_model("tiny-chameleon")
    assert a._module is not b._module
    assert torch.equal(a._module.lm_head.weight, b._module.lm_head.weight)
