"""GateData.features: every part's activations at the gate layers, reusing the pairs' rows when it can."""

import pytest
import torch

import autosteer_interp as asi
from autosteer_interp.errors import InvalidInputError
from autosteer_interp.gate import PART_NAMES, GateData, train_gate
from autosteer_interp.prompts import builtin_borderline


@pytest.fixture(scope="module")
def small_data():
    pairs = asi.builtin_pairs()[:10]
    data = GateData.build(
        pairs,
        gate_pairs=asi.builtin_gate_pairs("train")[:6],
        gate_benign=builtin_borderline("train")[:5],
        builtin=False,
        max_wrapped=4,
    )
    return pairs, data


def test_every_part_gets_one_row_per_prompt_at_the_gate_layers(tiny_llava, small_data):
    pairs, data = small_data
    features = data.features(tiny_llava, pairs, [1, 3])
    assert set(features) == set(PART_NAMES)
    for name, part in data.parts.items():
        assert features[name].shape == (len(part), 2, 64), name
    prober, metrics = train_gate(features, [1, 3])
    assert prober.layers == (1, 3) and metrics.n_harmful == len(data.parts["val_harmful"]) + len(
        data.parts["val_wrapped_harmful"]
    )


def test_reused_pair_rows_equal_collected_ones(tiny_llava, small_data):
    pairs, data = small_data
    harmful = asi.collect_activations(tiny_llava, [p.harmful for p in pairs], [0, 1, 2, 3], progress=False)
    safe = asi.collect_activations(tiny_llava, [p.safe for p in pairs], [0, 1, 2, 3], progress=False)
    reused = data.features(tiny_llava, pairs, [1, 3], pair_activations=(harmful, safe))
    collected = data.features(tiny_llava, pairs, [1, 3])
    for name in PART_NAMES:
        torch.testing.assert_close(reused[name], collected[name], rtol=1e-4, atol=1e-5)
    only_layer_0 = asi.LayerActivations(harmful.values[:, :1], [0])  # lacks the gate layers: collected afresh
    other_layers = data.features(tiny_llava, pairs, [1, 3], pair_activations=(only_layer_0, safe))
    assert all(other_layers[name].shape == collected[name].shape for name in PART_NAMES)


def test_empty_parts_are_empty_tensors(tiny_llava):
    pairs = asi.builtin_pairs()[:6]
    data = GateData.build(pairs, builtin=False, wrap=False)
    features = data.features(tiny_llava, pairs, [2])
    assert features["train_wrapped_harmful"].shape == (0, 1, 64)
    assert features["train_negatives"].shape == (0, 1, 64)


def test_pair_activations_of_other_pairs_are_refused(tiny_llava, small_data):
    pairs, data = small_data
    harmful = asi.collect_activations(tiny_llava, [p.harmful for p in pairs[:4]], [1], progress=False)
    with pytest.raises(InvalidInputError, match="one row per pair"):
        data.features(tiny_llava, pairs, [1], pair_activations=(harmful, harmful))
