"""The containers of activations: residual streams at the last prompt token, and cached LM-head inputs.

Plain dataclasses over tensors (torch only), so the maths modules (:mod:`~autosteer_interp.sas`,
:mod:`~autosteer_interp.prober`, :mod:`~autosteer_interp.refusal_head`) take them without importing nnsight or
prompt code; :mod:`~autosteer_interp.activations` fills them from a model.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import InvalidInputError

__all__ = ["LayerActivations", "TokenCache", "check_activations"]


def check_activations(values: Tensor, name: str, layers: Sequence[int] | None = None) -> Tensor:
    """Refuse activations that are not floating point or not finite, naming the first bad layer.

    Args:
        values: ``[n, d_model]`` or ``[n, n_layers, d_model]``.
        name: What they are (for the message).
        layers: The layer index of each slice along ``n_layers``, if known.

    Returns:
        ``values`` unchanged.

    Raises:
        InvalidInputError: Integer (or bool) activations, or a NaN / infinity.
    """
    if not values.is_floating_point():
        raise InvalidInputError(f"{name} must be floating-point activations, got dtype {values.dtype}.")
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        stacked = finite if finite.ndim == 3 else finite.unsqueeze(1)
        bad = int((~stacked).flatten(2).any(-1).any(0).nonzero()[0, 0])
        where = f"layer {layers[bad]}" if layers is not None and bad < len(layers) else f"slice {bad}"
        count = int((~finite).sum())
        raise InvalidInputError(
            f"{name} holds {count} non-finite value(s) (NaN or infinity), first at {where}; the model or the data "
            "produced them. Check the model's dtype (float16 overflows) and the prompts."
        )
    return values


@dataclass
class LayerActivations:
    """Residual-stream vectors of ``n_samples`` prompts at ``n_layers`` layers.

    Attributes:
        values: ``[n_samples, n_layers, d_model]``, float32 (memory-mapped when streamed to disk).
        layers: The decoder-layer index of each slice along ``n_layers``.
    """

    values: Float[Tensor, "n_samples n_layers d_model"]
    layers: list[int]

    def at(self, layer: int) -> Float[Tensor, "n_samples d_model"]:
        """The ``[n_samples, d_model]`` slice of one decoder layer.

        Raises:
            InvalidInputError: If ``layer`` was not collected.
        """
        if layer not in self.layers:
            raise InvalidInputError(f"layer {layer} was not collected; collected layers: {self.layers}.")
        return self.values[:, self.layers.index(layer)]

    def select(self, layers: Sequence[int]) -> Float[Tensor, "n_samples n_selected d_model"]:
        """The ``[n_samples, len(layers), d_model]`` slices of several decoder layers, in the order given.

        Raises:
            InvalidInputError: If a layer was not collected.
        """
        missing = [layer for layer in layers if layer not in self.layers]
        if missing:
            raise InvalidInputError(f"layers {missing} were not collected; collected layers: {self.layers}.")
        return self.values[:, [self.layers.index(layer) for layer in layers]]


@dataclass
class TokenCache:
    """LM-head inputs at target positions and the tokens they must predict.

    Attributes:
        hidden: ``[n_tokens, d_model]`` LM-head inputs (float32).
        labels: ``[n_tokens]`` the next token at each position.
        is_retain: ``[n_tokens]`` ``True`` for retain-set tokens.
    """

    hidden: Float[Tensor, "n_tokens d_model"]
    labels: Int[Tensor, " n_tokens"]
    is_retain: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
