"""The plain Hugging Face adapter of the gate core: PyTorch hooks, for ``model(...)`` and ``model.generate(...)``.

Three kinds of hook map the host's events onto :class:`~autosteer_interp.gating.GateState`: a forward pre-hook on
the whole model (ids, attention mask, cache: a pass starts), pre-hooks on the gate's decoder layers (their inputs
at the planned positions) and a pre-hook on the LM head (its input is replaced by the steered one). While hooks
are attached, the model's ``generate`` also announces each new sequence with its prompt width, so chunked prefill
and ``use_cache=False`` keep the prefill decision. No hook cuts autograd.

Example:
    >>> with attach_gate(hf_model, spec) as handle:                 # doctest: +SKIP
    ...     out = hf_model.generate(**inputs, max_new_tokens=8)
    >>> handle.report.gate                                           # doctest: +SKIP
    tensor([ True, False])
"""

import functools
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .architectures import get_module, unwrap
from .gating import GateReport, GateSpec, GateState, forward_pass_inputs, steered_input

__all__ = ["GateHandle", "HookHandle", "attach_gate", "attach_head"]


class HookHandle:
    """Registered PyTorch hooks; ``remove()`` (or leaving the ``with`` block) restores the model."""

    def __init__(self, *handles: Any) -> None:
        self._handles = list(handles)

    def remove(self) -> None:
        """Remove the hooks (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> "HookHandle":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


class _GenerateWrapper:
    """Replaces a model's ``generate`` on the instance (so it announces its prompt) until removed."""

    def __init__(self, module: nn.Module, on_prompt: Callable[[int], None]) -> None:
        self.module = module
        self.previous = module.__dict__.get("generate")  # an instance attribute someone else set, if any
        original: Any = getattr(module, "generate")  # nn.Module attributes are typed Tensor | Module

        @functools.wraps(original)
        def generate(*args: Any, **kwargs: Any) -> Any:
            prompt = kwargs.get("input_ids", args[0] if args else None)
            if prompt is None:
                prompt = kwargs.get("inputs_embeds")
            if isinstance(prompt, Tensor):
                on_prompt(prompt.shape[1])
            return original(*args, **kwargs)

        self.wrapper = generate
        setattr(module, "generate", generate)  # on the instance: remove() restores what was there

    def remove(self) -> None:
        if self.module.__dict__.get("generate") is not self.wrapper:
            return  # already removed, or wrapped again by someone else: leave theirs
        if self.previous is None:
            del self.module.generate
        else:
            setattr(self.module, "generate", self.previous)


class GateHandle(HookHandle):
    """Hooks installed by :func:`attach_gate`; ``report`` is the gate of the current (or last) sequence."""

    def __init__(self, state: GateState, handles: list[Any]) -> None:
        super().__init__(*handles)
        self.state = state

    def __enter__(self) -> "GateHandle":
        return self

    @property
    def report(self) -> GateReport:
        """``p_harmful`` and ``gate`` per row of the current (or last) sequence."""
        return self.state.report


def attach_gate(model: Any, spec: GateSpec, state: GateState | None = None) -> GateHandle:
    """Install the gate and the refusal head on a Hugging Face model with PyTorch hooks.

    Args:
        model: A Hugging Face model (or an nnsight wrapper: its module gets the hooks).
        spec: What to read and write.
        state: The gate state to drive (default: a new one from ``spec``).

    Returns:
        A :class:`GateHandle`; ``remove()`` it (or use ``with``) to restore the model.
    """
    module = unwrap(model)
    state = state if state is not None else spec.new_state()
    deepest = spec.layers[-1]
    reads: list[Tensor] = []

    def on_model(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        reads.clear()
        state.begin_pass(*forward_pass_inputs(args, kwargs))

    def on_layer(layer: int) -> Any:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            plan = state.plan
            if plan is None:
                return
            reads.append(plan.gather(args[0] if args else kwargs["hidden_states"]))
            if layer == deepest:
                state.update(list(reads), spec.p_harmful)
                reads.clear()

        return hook

    def on_lm_head(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not state.report.any_gated:
            return None
        return (spec.steer(args[0], state.report.gate), *args[1:])

    decoder_layers = get_module(module, spec.layers_path)
    handles: list[Any] = [_GenerateWrapper(module, state.expect)] if callable(getattr(module, "generate", None)) else []
    handles += [
        module.register_forward_pre_hook(on_model, with_kwargs=True),
        *(decoder_layers[layer].register_forward_pre_hook(on_layer(layer), with_kwargs=True) for layer in spec.layers),
        get_module(module, spec.lm_head_path).register_forward_pre_hook(on_lm_head),  # last (benchmarks rely on it)
    ]
    return GateHandle(state, handles)


def attach_head(
    lm_head: nn.Module, S: Callable[[Any], Tensor], epsilon: float, gate: float | Tensor = 1.0
) -> HookHandle:
    """The refusal head on every forward of an LM head, always on or with a fixed per-row gate.

    Args:
        lm_head: The model's LM head.
        S: ``device -> [d_model, d_model]`` refusal matrix on that device.
        epsilon: Steering scale.
        gate: A scale (``1.0``: on; ``0.0``: off), or a ``[batch]`` bool tensor of rows to steer.
    """

    def pre_hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        h = args[0]
        if isinstance(gate, Tensor):
            return (steered_input(h, S(h.device), epsilon, gate.bool()), *args[1:])
        return (steered_input(h, S(h.device), epsilon * float(gate)), *args[1:])

    return HookHandle(lm_head.register_forward_pre_hook(pre_hook))
