import inspect
import json

import pytest
import torch

from autosteer_interp.activations import LayerActivations
from autosteer_interp.errors import InvalidInputError
from autosteer_interp.fit import default_gate_layers
from autosteer_interp.sas import LayerScores, safety_awareness_scores
from tests.reference.paper_formulas import pairwise_sas

# The jaxtyping pytest hook checks shapes before our own validation runs; this is the function as users run it.
unchecked_sas = inspect.unwrap(safety_awareness_scores)


def _pairs(n: int = 40, layers: int = 5, d: int = 32, consistency: float = 1.0):
    harmful = torch.randn(n, layers, d)
    direction = torch.randn(layers, d)
    safe = harmful + consistency * direction + torch.randn(n, layers, d)
    return safe, harmful


def test_closed_form_equals_the_pairwise_cosine_matrix_of_the_paper():
    safe, harmful = _pairs()
    closed = safety_awareness_scores(safe, harmful).scores
    reference = pairwise_sas(safe, harmful)
    assert torch.allclose(closed, reference, atol=1e-5), (closed - reference).abs().max()


@pytest.mark.parametrize("consistency", [0.0, 0.5, 3.0])
def test_closed_form_matches_reference_across_consistency_levels(consistency):
    safe, harmful = _pairs(n=25, layers=3, d=16, consistency=consistency)
    assert torch.allclose(safety_awareness_scores(safe, harmful).scores, pairwise_sas(safe, harmful), atol=1e-5)


def test_identical_shift_for_every_pair_scores_one_and_the_most_consistent_layer_wins():
    harmful = torch.randn(12, 3, 8)
    safe = harmful.clone()
    safe[:, 0] += torch.randn(8)  # perfectly consistent
    safe[:, 1] += torch.randn(12, 8)  # random directions
    safe[:, 2] += torch.randn(8) + 0.5 * torch.randn(12, 8)
    scores = safety_awareness_scores(safe, harmful, layers=[4, 8, 12])
    assert scores.scores[0] == pytest.approx(1.0, abs=1e-6)  # float32 unit vectors, float64 sums
    assert scores.best_layer == 4
    assert scores.top_k(2) == [4, 12]


def test_opposite_differences_give_the_minimum_score():
    harmful = torch.zeros(2, 1, 4)
    safe = torch.tensor([[[1.0, 0, 0, 0]], [[-1.0, 0, 0, 0]]])
    assert float(safety_awareness_scores(safe, harmful).scores[0]) == pytest.approx(-1.0)


def test_layer_activations_carry_their_layer_indices():
    safe, harmful = _pairs(n=6, layers=2, d=8)
    scores = safety_awareness_scores(LayerActivations(safe, [3, 7]), LayerActivations(harmful, [3, 7]))
    assert scores.layers == [3, 7] and scores.n_pairs == 6


def test_to_dict_is_json_serialisable():
    safe, harmful = _pairs(n=6, layers=3, d=8)
    payload = json.loads(json.dumps(safety_awareness_scores(safe, harmful).to_dict()))
    assert payload["layers"] == [0, 1, 2] and len(payload["scores"]) == 3 and payload["n_pairs"] == 6
    assert payload["best_layer"] in (0, 1, 2)


def test_plot_writes_an_image(tmp_path):
    safe, harmful = _pairs(n=6, layers=3, d=8)
    figure = safety_awareness_scores(safe, harmful).plot(tmp_path / "sas.png")
    assert (tmp_path / "sas.png").stat().st_size > 1000
    assert figure.axes[0].get_ylabel() == "Safety Awareness Score"


def test_mismatched_shapes_are_refused():
    with pytest.raises(InvalidInputError, match=r"same shape, got \(4, 2, 8\) and \(5, 2, 8\)"):
        unchecked_sas(torch.randn(4, 2, 8), torch.randn(5, 2, 8))


def test_fewer_than_two_pairs_are_refused():
    with pytest.raises(InvalidInputError, match="at least 2 pairs.*got 1"):
        safety_awareness_scores(torch.randn(1, 2, 8), torch.randn(1, 2, 8))


def test_a_zero_norm_difference_is_refused_naming_the_pair_and_layer():
    safe, harmful = _pairs(n=5, layers=2, d=8)
    safe[3, 1] = harmful[3, 1]
    with pytest.raises(InvalidInputError, match="pair 3 at layer 1"):
        safety_awareness_scores(safe, harmful)


def test_a_layer_where_every_pair_is_identical_gets_an_explanation():
    safe, harmful = _pairs(n=5, layers=2, d=8)
    safe[:, 0] = harmful[:, 0]
    with pytest.raises(InvalidInputError, match=r"layer\(s\) \[0\].*token embeddings"):
        safety_awareness_scores(safe, harmful)


def test_layers_collected_at_different_indices_are_refused():
    safe, harmful = _pairs(n=5, layers=2, d=8)
    with pytest.raises(InvalidInputError, match="different layers"):
        safety_awareness_scores(LayerActivations(safe, [1, 2]), LayerActivations(harmful, [1, 3]))


def test_wrong_rank_is_refused():
    with pytest.raises(InvalidInputError, match=r"\[n_pairs, n_layers, d_model\]"):
        unchecked_sas(torch.randn(2, 2, 2, 2), torch.randn(2, 2, 2, 2))


def test_layer_scores_best_layer_prefers_the_earliest_on_ties():
    scores = LayerScores(torch.tensor([0.1, 0.3, 0.3], dtype=torch.float64), [5, 6, 7], n_pairs=3)
    assert scores.best_layer == 6


def test_half_precision_inputs_are_upcast_before_subtracting():
    safe, harmful = _pairs(n=30, layers=2, d=16)
    safe, harmful = safe.half(), harmful.half()
    expected = pairwise_sas(safe.float(), harmful.float())
    assert torch.allclose(safety_awareness_scores(safe, harmful).scores, expected, atol=1e-5)


def test_more_pairs_than_one_chunk_give_the_reference_value():
    safe, harmful = _pairs(n=203, layers=2, d=8)  # several chunks and a ragged last one
    assert torch.allclose(safety_awareness_scores(safe, harmful).scores, pairwise_sas(safe, harmful), atol=1e-5)


def _scores(layers, best):
    values = torch.tensor([10.0 if layer == best else float(-layer) for layer in layers], dtype=torch.float64)
    return LayerScores(values, list(layers), n_pairs=8)


def test_the_default_gate_reads_a_spread_of_layers_plus_the_sas_best():
    smollm2 = list(range(1, 30))  # 30 decoder layers, candidates 1..29
    assert default_gate_layers(_scores(smollm2, 22), 30) == [8, 10, 12, 14, 16, 18, 20, 22, 24, 26]
    assert default_gate_layers(_scores(smollm2, 23), 30) == [8, 10, 12, 14, 16, 18, 20, 22, 23, 24, 26]
    every_fourth = [4, 8, 12, 16, 20, 24, 28]  # restricted candidates: only they are read
    assert default_gate_layers(_scores(every_fourth, 28), 30) == [8, 16, 24, 28]
    tiny = [1, 2, 3]  # too shallow for the band: the DEFAULT_PROBE_LAYERS best SAS layers
    assert default_gate_layers(_scores(tiny, 2), 4) == [1, 2, 3]
