"""The nnsight adapter of the gate core: ``steer.apply(model)`` inside ``model.trace`` / ``model.generate``.

It maps nnsight's view of a run onto :class:`~autosteer_interp.gating.GateState`: each forward pass of the root
module (``model.inputs``: ids, attention mask, cache) starts a pass; the inputs of the gate's decoder layers are
read where the plan says; the LM head's input is replaced by the steered one. In generation the prompt's width
comes from the ids Hugging Face ``generate`` streams before its first pass (nnsight's ``model.generator.streamer``),
so chunked prefill keeps the prefill decision; a single trace is one whole sequence.

:class:`~autosteer_interp.steer.AutoSteer` and :class:`~autosteer_interp.remote.RemoteSteer` both run
:func:`gate_and_steer`; it uses torch and nnsight only, so it runs on an NDIF server too.
"""

import math
from typing import Any, no_type_check

import nnsight
import torch

from .architectures import get_module
from .errors import InvalidInputError
from .gating import GateReport, GateSpec, GateState, forward_pass_inputs, layer_pass_inputs

__all__ = ["apply_head", "forward_passes", "gate_and_steer", "read_gate"]


@no_type_check
def forward_passes(steps: int, prompt_width: int, prefill_chunk_size: int | None) -> int:
    """Forward passes of a generation of ``steps`` tokens: one per token, plus the extra prefill chunks."""
    chunks = 1 if not prefill_chunk_size else max(1, math.ceil(prompt_width / prefill_chunk_size))
    return steps + chunks - 1


@no_type_check
def _check_generation_kwargs(kwargs: dict[str, Any]) -> None:
    if (kwargs.get("num_beams") or 1) > 1 or kwargs.get("streamer") is not None:
        raise InvalidInputError(
            "steer.apply in model.generate needs nnsight's own streamer to learn the prompt's width, so it "
            "supports greedy or sampled decoding without a custom streamer; got "
            f"num_beams={kwargs.get('num_beams')!r}, streamer={kwargs.get('streamer')!r}."
        )


@no_type_check
def _pass_inputs(model: Any, first_gate_layer: Any, single_pass: bool) -> tuple[Any, Any, int, int]:
    """ids, attention mask, cache length and width of this pass.

    In generation they come from the model's own inputs (``model.inputs``, read first at every step). In a single
    trace they are read off the first gate layer's keywords instead, so that the user may read or patch any
    module before the gate (nnsight serves values in execution order, and the model's inputs come first); there
    are no ids then, which only matters for image placeholders, never a prompt's last token anyway. Layers get no
    mask when nothing is padded: then every position is real.
    """
    if not single_pass:
        args, kwargs = model.inputs
        return forward_pass_inputs(args, kwargs)
    layer_args, layer_kwargs = first_gate_layer.inputs
    hidden = layer_args[0] if layer_args else layer_kwargs["hidden_states"]
    mask, past = layer_pass_inputs(layer_kwargs, hidden.shape[1])
    if mask is None:  # the layers get no mask when nothing is padded (one prompt, or equal lengths)
        mask = torch.ones(hidden.shape[0], hidden.shape[1], dtype=torch.bool, device=hidden.device)
    return None, mask, past, hidden.shape[1]


@no_type_check
def _read_gate(model: Any, spec: GateSpec, state: GateState, decoder_layers: Any, single_pass: bool) -> None:
    ids, mask, past, n_new = _pass_inputs(model, decoder_layers[spec.layers[0]], single_pass)
    plan = state.begin_pass(ids, mask, past, n_new)
    if plan is not None:
        state.update([plan.gather(decoder_layers[layer].input) for layer in spec.layers], spec.p_harmful)


@no_type_check
def _steer_lm_head(lm_head: Any, spec: GateSpec, report: GateReport) -> None:
    if report.any_gated:
        lm_head.input = spec.steer(lm_head.input, report.gate)


@no_type_check
def read_gate(model: Any, spec: GateSpec) -> GateReport:
    """First half of a single-pass :func:`gate_and_steer`: read the gate's layers and decide per row."""
    state = spec.new_state()
    report = nnsight.save(state.report)
    state.expect(None)
    _read_gate(model, spec, state, get_module(model, spec.layers_path), True)
    return report


@no_type_check
def apply_head(model: Any, spec: GateSpec, report: GateReport) -> GateReport:
    """Second half: the refusal head on the LM-head input of the rows ``report`` gates."""
    _steer_lm_head(get_module(model, spec.lm_head_path), spec, report)
    return report


@no_type_check
def gate_and_steer(model: Any, spec: GateSpec, tracer: Any = None, steps: int | None = None) -> GateReport:
    """Run the gate and the refusal head inside a trace (``tracer=None``) or a generation.

    Args:
        model: The nnsight model being traced.
        spec: What to read and write (:class:`GateSpec`).
        tracer: The generation tracer, or ``None`` in a single-pass trace.
        steps: Tokens to generate (``max_new_tokens``; required with ``tracer``).

    Returns:
        The saved :class:`~autosteer_interp.gating.GateReport`, filled in as the passes run.
    """
    if tracer is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InvalidInputError(f"with a generation tracer, pass steps=max_new_tokens (>= 1), got {steps!r}.")
    state = spec.new_state()
    report = nnsight.save(state.report)
    decoder_layers = get_module(model, spec.layers_path)
    lm_head = get_module(model, spec.lm_head_path)
    if tracer is None:
        state.expect(None)
        _read_gate(model, spec, state, decoder_layers, True)
        _steer_lm_head(lm_head, spec, state.report)
        return report
    kwargs = dict(getattr(tracer, "kwargs", None) or {})
    _check_generation_kwargs(kwargs)
    prompt = model.generator.streamer.inputs[0][0]  # generate streams the prompt ids before its first pass
    width = prompt.shape[-1]
    state.expect(width)
    for _ in tracer.iter[: forward_passes(steps, width, kwargs.get("prefill_chunk_size"))]:
        _read_gate(model, spec, state, decoder_layers, False)
        _steer_lm_head(lm_head, spec, state.report)
    return report
