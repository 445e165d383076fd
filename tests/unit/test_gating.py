"""The gate core on synthetic passes: when each row is decided, how long a decision lasts, who every_step may add."""

import pytest
import torch

from autosteer_interp.errors import InvalidInputError
from autosteer_interp.gating import GateState, forward_pass_inputs, layer_pass_inputs, steered_input

D = 4


def scorer(table):
    """A stand-in prober: P(harmful) = the first feature of the deepest layer (so tests choose it)."""

    def p_harmful(features):
        table.append(features.clone())
        return features[:, -1, 0]

    return p_harmful


def hidden_with(values, width):
    """``[batch, width, D]`` activations whose first feature at position j is ``values[row][j]``."""
    h = torch.zeros(len(values), width, D)
    h[..., 0] = torch.tensor(values, dtype=torch.float32)
    return h


def run_pass(state, ids, mask, past, hidden, calls):
    plan = state.begin_pass(ids, mask, past)
    if plan is not None:
        state.update([plan.gather(hidden)], scorer(calls))
    return plan


def test_each_row_is_read_at_its_last_real_token_with_right_padding():
    state, calls = GateState(0.5), []
    ids = torch.tensor([[3, 4, 5, 0], [3, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    run_pass(state, ids, mask, 0, hidden_with([[0, 0, 0.9, 0.1], [0, 0.2, 0.8, 0.8]], 4), calls)
    assert state.report.p_harmful.tolist() == pytest.approx([0.9, 0.2])
    assert state.report.gate.tolist() == [True, False]


def test_image_placeholders_are_never_the_last_prompt_token():
    state, calls = GateState(0.5, image_token_id=9), []
    ids = torch.tensor([[3, 4, 9]])
    run_pass(state, ids, None, 0, hidden_with([[0, 0.7, 0.1]], 3), calls)
    assert state.report.p_harmful.tolist() == pytest.approx([0.7])


def test_chunked_prefill_decides_once_the_prompt_is_complete_from_reads_of_earlier_chunks():
    state, calls = GateState(0.5), []
    state.expect(6)  # the prompt is 6 wide; it comes in chunks of 3
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])  # row 1: right-padded, ends in chunk 1
    plan = run_pass(
        state, torch.ones(2, 3, dtype=torch.long), mask[:, :3], 0, hidden_with([[0, 0, 0.1], [0, 0.9, 0]], 3), calls
    )
    assert not plan.decides and not state.report.decided  # the first chunk cannot decide
    run_pass(state, torch.ones(2, 3, dtype=torch.long), mask, 3, hidden_with([[0, 0, 0.6], [0.1, 0.1, 0.1]], 3), calls)
    assert state.report.p_harmful.tolist() == pytest.approx([0.6, 0.9])  # row 1 kept its read from chunk 1
    assert len(calls) == 1  # one decision


def test_a_decision_holds_for_cached_and_uncached_steps():
    for cached in (True, False):
        state, calls = GateState(0.5), []
        prompt = torch.tensor([[3, 4, 5], [6, 7, 8]])
        run_pass(state, prompt, None, 0, hidden_with([[0, 0, 0.9], [0, 0, 0.1]], 3), calls)
        for step in range(3):
            if cached:
                ids, past, width = torch.tensor([[1], [1]]), 3 + step, 1
            else:  # without a cache each step re-runs the whole sequence
                ids, past, width = torch.cat([prompt, torch.ones(2, step + 1, dtype=torch.long)], 1), 0, 4 + step
            mask = torch.ones(2, 4 + step, dtype=torch.long)
            assert run_pass(state, ids, mask, past, hidden_with([[0.0] * width, [1.0] * width], width), calls) is None
        assert state.report.gate.tolist() == [True, False] and len(calls) == 1


def test_an_unrelated_pass_starts_a_new_sequence():
    state, calls = GateState(0.5), []
    run_pass(state, torch.tensor([[3, 4, 5]]), None, 0, hidden_with([[0, 0, 0.9]], 3), calls)
    run_pass(state, torch.tensor([[6, 7, 8]]), None, 0, hidden_with([[0, 0, 0.1]], 3), calls)  # same width, new ids
    assert state.report.gate.tolist() == [False]
    run_pass(state, torch.tensor([[1]]), torch.ones(1, 9), 8, hidden_with([[0.8]], 1), calls)  # cache of another length
    assert state.report.gate.tolist() == [True] and len(calls) == 3


def test_every_step_ors_in_new_flags_but_skips_rows_that_have_finished():
    state, calls = GateState(0.5, every_step=True, eos_token_ids=(2,)), []
    run_pass(state, torch.tensor([[3, 4], [3, 5], [3, 6]]), None, 0, hidden_with([[0, 0.1]] * 3, 2), calls)
    assert state.report.gate.tolist() == [False, False, False]
    run_pass(state, torch.tensor([[7], [2], [7]]), torch.ones(3, 3), 2, hidden_with([[0.1], [0.9], [0.1]], 1), calls)
    assert state.report.gate.tolist() == [False, False, False]  # row 1 was fed its end-of-sequence token
    run_pass(state, torch.tensor([[7], [0], [7]]), torch.ones(3, 4), 3, hidden_with([[0.9], [0.9], [0.1]], 1), calls)
    assert state.report.gate.tolist() == [True, False, False]  # row 1 is padding now; it stays off


def test_a_row_without_any_real_token_is_refused():
    state = GateState(0.5)
    with pytest.raises(InvalidInputError, match="no real prompt token"):
        run_pass(
            state, torch.tensor([[3, 4], [0, 0]]), torch.tensor([[1, 1], [0, 0]]), 0, hidden_with([[0, 0]] * 2, 2), []
        )


def test_the_attention_mask_sets_the_past_length_even_when_a_cache_reports_none():
    state, calls = GateState(0.5), []
    run_pass(state, torch.tensor([[3, 4]]), None, 0, hidden_with([[0, 0.9]], 2), calls)
    assert run_pass(state, torch.tensor([[1]]), torch.ones(1, 3), 0, hidden_with([[0.1]], 1), calls) is None
    assert state.report.gate.tolist() == [True]  # a continuation (TransformerLens loses its cache length)


def test_pass_inputs_are_read_from_forward_keywords_and_layer_masks():
    ids, mask = torch.tensor([[5, 6]]), torch.tensor([[1, 1]])
    assert forward_pass_inputs((ids,), {"attention_mask": mask})[2:] == (0, 2)
    embeds_only = forward_pass_inputs((), {"inputs_embeds": torch.zeros(2, 3, D)})
    assert embeds_only[0] is None and embeds_only[1].shape == (2, 3)
    additive = torch.zeros(1, 1, 2, 3)
    additive[..., 0] = torch.finfo(torch.float32).min
    mask, past = layer_pass_inputs({"attention_mask": additive}, 2)
    assert mask.tolist() == [[False, True, True]] and past == 1
    assert layer_pass_inputs({}, 4) == (None, 0)
    with pytest.raises(InvalidInputError, match="BlockMask"):
        layer_pass_inputs({"attention_mask": object()}, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_steered_input_leaves_ungated_rows_bit_identical_and_keeps_autograd(dtype):
    h = torch.randn(3, 2, D, dtype=dtype, requires_grad=True)
    S = torch.randn(D, D)
    out = steered_input(h, S, 0.5, torch.tensor([True, False, True]))
    assert out.dtype == dtype and torch.equal(out[1], h[1])
    expected = (h.float() + 0.5 * h.float() @ S.T).to(dtype)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2  # einsum and @ round float32 differently
    scale = float(expected.detach().abs().max())
    assert torch.allclose(out[0].float(), expected[0].float(), atol=tolerance * scale, rtol=0)
    out.sum().backward()
    assert h.grad is not None and not torch.equal(h.grad[0], h.grad[1])
