import inspect

import numpy as np
import pytest
import torch

from autosteer_interp.activations import collect_activations, last_prompt_positions
from autosteer_interp.errors import InvalidInputError, LayerIndexError
from autosteer_interp.models import tiny_image
from autosteer_interp.prompts import Prompt, encode_prompts


def mixed_prompts():
    """Different lengths, some with images of different sizes, some without."""
    return [
        Prompt("How do I get to the station from here, please?", tiny_image(1)),
        Prompt("Hi"),
        Prompt("What is shown in this picture?", tiny_image(2, (20, 30))),
        Prompt("Tell me a short story about a cat who learns to swim in the sea."),
        Prompt("Why?", tiny_image(3, (64, 64))),
    ]


def hidden_states_reference(model, prompts, layers):
    """One prompt at a time through plain Hugging Face with output_hidden_states."""
    rows = []
    for prompt in prompts:
        inputs = encode_prompts(model, [prompt])
        with torch.no_grad():
            states = model._module(**inputs, output_hidden_states=True).hidden_states
        position = last_prompt_positions(inputs["input_ids"], inputs["attention_mask"])[0]
        rows.append(torch.stack([states[layer][0, position] for layer in layers]))
    return torch.stack(rows)


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_chameleon"])
def test_activations_equal_hugging_face_hidden_states_with_images(fixture, request):
    model = request.getfixturevalue(fixture)
    prompts = mixed_prompts()
    acts = collect_activations(model, prompts, batch_size=2, progress=False)
    assert acts.layers == [0, 1, 2, 3] and acts.values.dtype == torch.float32
    assert torch.allclose(acts.values, hidden_states_reference(model, prompts, acts.layers), atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_chameleon"])
def test_activations_are_batch_invariant_with_mixed_lengths(fixture, request):
    model = request.getfixturevalue(fixture)
    prompts = mixed_prompts()
    together = collect_activations(model, prompts, layers=[1, 3], batch_size=5, progress=False).values
    alone = collect_activations(model, prompts, layers=[1, 3], batch_size=1, progress=False).values
    assert torch.allclose(together, alone, atol=1e-5)


def test_images_change_the_activations(tiny_llava):
    with_image = collect_activations(tiny_llava, [Prompt("What is this?", tiny_image(1))], [2], progress=False)
    other_image = collect_activations(tiny_llava, [Prompt("What is this?", tiny_image(9))], [2], progress=False)
    assert not torch.allclose(with_image.values, other_image.values)


def test_layers_come_back_in_the_requested_order(tiny_llava):
    prompts = mixed_prompts()[:2]
    ascending = collect_activations(tiny_llava, prompts, layers=[1, 3], progress=False)
    descending = collect_activations(tiny_llava, prompts, layers=[3, 1], progress=False)
    assert descending.layers == [3, 1]
    assert torch.equal(descending.values[:, 0], ascending.values[:, 1])
    assert torch.equal(descending.at(1), ascending.at(1))


def test_streaming_to_disk_gives_the_same_values_and_never_overwrites(tiny_llava, tmp_path):
    prompts = mixed_prompts()
    in_memory = collect_activations(tiny_llava, prompts, layers=[2], progress=False)
    path = tmp_path / "acts.npy"
    streamed = collect_activations(tiny_llava, prompts, layers=[2], stream_to=path, progress=False)
    assert torch.equal(streamed.values, in_memory.values)
    assert np.array_equal(np.load(path), in_memory.values.numpy())
    with pytest.raises(InvalidInputError, match="already exists"):
        collect_activations(tiny_llava, prompts, layers=[2], stream_to=path, progress=False)


def test_bad_arguments_are_refused_before_any_forward(tiny_llava):
    prompts = mixed_prompts()[:1]
    with pytest.raises(LayerIndexError, match=r"0\.\.3"):
        collect_activations(tiny_llava, prompts, layers=[4], progress=False)
    with pytest.raises(InvalidInputError, match="empty list"):
        collect_activations(tiny_llava, [], progress=False)
    with pytest.raises(InvalidInputError, match="unique"):
        collect_activations(tiny_llava, prompts, layers=[1, 1], progress=False)
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer, got 0"):
        inspect.unwrap(collect_activations)(tiny_llava, prompts, batch_size=0, progress=False)


def test_an_unknown_layer_lookup_is_refused(tiny_llava):
    acts = collect_activations(tiny_llava, mixed_prompts()[:1], layers=[1], progress=False)
    with pytest.raises(InvalidInputError, match=r"layer 2 was not collected; collected layers: \[1\]"):
        acts.at(2)


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_chameleon"])
def test_sharing_the_prompt_prefix_changes_nothing_but_rounding(fixture, request):
    model = request.getfixturevalue(fixture)
    prompts = [Prompt("Tell me about cats, please."), Prompt("Tell me about dogs, please."), *mixed_prompts()]
    shared = collect_activations(model, prompts, batch_size=4, share_prefix=True, progress=False).values
    unshared = collect_activations(model, prompts, batch_size=4, share_prefix=False, progress=False).values
    assert torch.allclose(shared, unshared, atol=1e-5)


def test_the_shared_prefix_stops_before_images_and_leaves_every_row_a_token(tiny_llava, monkeypatch):
    from autosteer_interp import _prefill
    from autosteer_interp._prefill import _split_shared_prefix

    monkeypatch.setattr(_prefill, "_MIN_SHARED_PREFIX", 1)  # the tiny chat template has a 6-token prefix
    image_token = tiny_llava._module.config.image_token_id
    inputs = encode_prompts(
        tiny_llava, [Prompt("Same words here", tiny_image()), Prompt("Same words here", tiny_image())]
    )
    prefix, suffix = _split_shared_prefix(inputs, image_token)
    assert image_token not in prefix.tolist()[0]
    assert suffix["input_ids"][:, 0].eq(image_token).all()
    text_only = encode_prompts(tiny_llava, [Prompt("Same words here"), Prompt("Same words here")])
    prefix, suffix = _split_shared_prefix(text_only, None)
    assert suffix["input_ids"].shape[1] == 1  # identical prompts: the last token is still computed per row
