import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from autosteer_interp.architectures import ARCHITECTURES, get_module, resolve
from autosteer_interp.errors import LayerIndexError, UnsupportedModelError

SIZES = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)
DECODER_LMS = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}


@pytest.mark.parametrize("model_type", sorted(DECODER_LMS))
def test_every_decoder_lm_row_matches_the_real_module_tree(model_type):
    config_class, model_class = DECODER_LMS[model_type]
    model = model_class(config_class(**SIZES)).eval()
    spec = resolve(model)
    assert (spec.model_type, spec.n_layers, spec.d_model, spec.d_vocab) == (model_type, 3, 32, 64)
    assert not spec.is_multimodal
    assert get_module(model, spec.row.final_norm_path) is model.model.norm
    assert get_module(model, spec.row.lm_head_path) is model.lm_head
    assert get_module(model, spec.row.embed_path) is model.model.embed_tokens
    seen = {}
    get_module(model, spec.layers_path)[0].register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    model(torch.tensor([[1, 2, 3]]))
    assert isinstance(seen["out"], tuple) == spec.row.layer_returns_tuple


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_chameleon"])
def test_multimodal_rows_match_layer_output_kind_and_image_token(fixture, request):
    model = request.getfixturevalue(fixture)
    spec = resolve(model)
    hf = model._module
    assert spec.is_multimodal and spec.n_layers == 4 and spec.d_model == 64
    assert spec.image_token_id == model.tokenizer.convert_tokens_to_ids("<image>")
    seen = {}
    handle = get_module(hf, spec.layers_path)[1].register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    try:
        hf(input_ids=torch.tensor([[1, 2, 3]]))
    finally:
        handle.remove()
    assert isinstance(seen["out"], tuple) == spec.row.layer_returns_tuple
    assert spec.layer_output_hidden(seen["out"]).shape == (1, 3, 64)


def test_resolve_accepts_the_nnsight_wrapper_and_the_plain_model(tiny_llava):
    assert resolve(tiny_llava) == resolve(tiny_llava._module)


def test_unknown_architecture_names_the_supported_ones_and_how_to_add_one():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    with pytest.raises(UnsupportedModelError, match=r"'gpt2'.*chameleon, llama, llava_onevision.*append a row"):
        resolve(model)


def test_something_that_is_not_a_model_is_refused():
    with pytest.raises(UnsupportedModelError, match="got str"):
        resolve("llama")


@pytest.mark.parametrize("bad", [-1, 4, 2.0, True])
def test_layer_indices_outside_the_model_are_refused_with_the_range(tiny_llava, bad):
    with pytest.raises(LayerIndexError, match=r"valid layers are the integers 0\.\.3"):
        resolve(tiny_llava).check_layer(bad)


def test_table_rows_cover_the_paper_models():
    assert {"llava_onevision", "chameleon", "llama", "qwen2"} <= set(ARCHITECTURES)
