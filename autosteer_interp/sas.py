"""Safety Awareness Score (SAS): which layer separates harmful from safe requests most consistently.

For pair ``i`` at layer ``L``, ``delta_i = h_L(safe_i) - h_L(harmful_i)``. ``SAS(L)`` is the mean cosine
similarity of the ``delta_i`` over all pairs ``i < j`` (Wu et al., 2025, Sec. 3.1). The paper's code builds
the full ``n x n`` cosine matrix; with unit vectors ``u_i = delta_i / |delta_i|`` the same number is

    SAS = (|sum_i u_i|^2 - n) / (n (n - 1)),

computed here in ``O(n d)`` time per layer and constant extra memory (float64 accumulation).

Example:
    >>> import torch
    >>> harmful = torch.randn(10, 3, 16)
    >>> safe = harmful + torch.randn(16)          # the same shift for every pair: perfectly consistent
    >>> scores = safety_awareness_scores(safe, harmful)
    >>> round(float(scores.scores[0]), 4)
    1.0
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import einsum, reduce
from jaxtyping import Float
from torch import Tensor

from ._plotting import finish_figure, new_figure
from .containers import LayerActivations, check_activations
from .errors import InvalidInputError

__all__ = ["LayerScores", "safety_awareness_scores"]


@dataclass
class LayerScores:
    """One score per candidate layer.

    Attributes:
        scores: ``[n_layers]`` float64 scores.
        layers: The decoder-layer index of each score.
        n_pairs: How many pairs the scores were computed from.
    """

    scores: Float[Tensor, " n_layers"]
    layers: list[int]
    n_pairs: int

    @property
    def best_layer(self) -> int:
        """The layer with the highest score (the earliest one on ties)."""
        return self.layers[int(torch.argmax(self.scores))]

    def top_k(self, k: int) -> list[int]:
        """The ``k`` best layers, best first."""
        order = torch.argsort(self.scores, descending=True, stable=True)[:k]
        return [self.layers[int(i)] for i in order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: ``{"layers", "scores", "best_layer", "n_pairs"}``."""
        return {
            "layers": list(self.layers),
            "scores": [float(s) for s in self.scores],
            "best_layer": self.best_layer,
            "n_pairs": self.n_pairs,
        }

    def plot(self, path: str | Path | None = None, ax: Any = None, title: str | None = None) -> Any:
        """Line plot of score against layer, best layer marked (needs the ``plot`` extra: matplotlib).

        Args:
            path: If given, save the figure there (PNG, SVG, PDF... by extension).
            ax: An existing matplotlib axes to draw on.
            title: Figure title.

        Returns:
            The matplotlib figure.
        """
        if ax is None:
            figure, ax = new_figure(path, (7.0, 3.5), "LayerScores.plot")
        else:
            figure = ax.figure
        scores = self.scores.detach().cpu().numpy()
        ax.plot(self.layers, scores, marker="o", color="tab:blue")
        ax.axvline(self.best_layer, color="tab:red", linestyle="--", label=f"best layer {self.best_layer}")
        ax.set_xlabel("layer (input of decoder layer L)")
        ax.set_ylabel("Safety Awareness Score")
        ax.set_title(title or f"Safety Awareness Score ({self.n_pairs} pairs)")
        ax.grid(alpha=0.3)
        ax.legend()
        return finish_figure(figure, path)


def _as_stack(values: Any, name: str) -> tuple[Tensor, list[int] | None]:
    if isinstance(values, LayerActivations):
        return values.values, values.layers
    if isinstance(values, Tensor):
        if values.ndim != 3:
            raise InvalidInputError(f"{name} must have shape [n_pairs, n_layers, d_model], got {tuple(values.shape)}.")
        return values, None
    raise InvalidInputError(f"{name} must be a tensor or LayerActivations, got {type(values).__name__}.")


_CHUNK = 64  # pairs per step: the working set stays in cache, so the cost is one read of the activations


def _sum_of_unit_differences(
    safe: Float[Tensor, "n_pairs n_layers d_model"], harmful: Float[Tensor, "n_pairs n_layers d_model"]
) -> tuple[Float[Tensor, "n_layers d_model"], list[tuple[int, int]]]:
    """``sum_i delta_i / |delta_i|`` per layer (float64 accumulator) and the ``(pair, layer)`` zero-norm deltas."""
    n_pairs, n_layers, d_model = safe.shape
    work_dtype = torch.float64 if safe.dtype == torch.float64 else torch.float32
    total = torch.zeros(n_layers, d_model, dtype=torch.float64, device=safe.device)
    buffer = torch.empty(min(_CHUNK, n_pairs), n_layers, d_model, dtype=work_dtype, device=safe.device)
    zero: list[tuple[int, int]] = []
    for start in range(0, n_pairs, _CHUNK):
        stop = min(start + _CHUNK, n_pairs)
        delta = buffer[: stop - start]
        if safe.dtype == work_dtype:
            torch.sub(safe[start:stop], harmful[start:stop], out=delta)
        else:  # upcast first: half-precision differences would lose the signal
            delta.copy_(safe[start:stop]).sub_(harmful[start:stop])
        norms = torch.linalg.vector_norm(delta, dim=-1)
        is_zero = norms == 0
        if bool(is_zero.any()):
            zero.extend((start + i, j) for i, j in is_zero.nonzero().tolist())
            norms = torch.where(is_zero, 1.0, norms)
        total += einsum(delta, norms.reciprocal(), "n_pairs n_layers d_model, n_pairs n_layers -> n_layers d_model")
    return total, zero


def safety_awareness_scores(
    safe: Float[Tensor, "n_pairs n_layers d_model"] | LayerActivations,
    harmful: Float[Tensor, "n_pairs n_layers d_model"] | LayerActivations,
    layers: Sequence[int] | None = None,
) -> LayerScores:
    """Safety Awareness Score of every layer, in closed form.

    Args:
        safe: Activations of the harmless side of each pair, ``[n_pairs, n_layers, d_model]``
            (or :class:`~autosteer_interp.activations.LayerActivations`).
        harmful: Activations of the harmful side, aligned with ``safe`` row by row.
        layers: Layer index of each slice; taken from ``LayerActivations`` when given, else ``0..n_layers-1``.

    Returns:
        :class:`LayerScores`; ``best_layer`` is the layer whose safe-minus-harmful direction is most
        consistent across pairs.

    Raises:
        InvalidInputError: If the shapes or layers differ, there are fewer than 2 pairs, a value is not finite
            or not floating point, or a pair's difference has zero norm (identical activations: the cosine is
            undefined).
    """
    safe_values, safe_layers = _as_stack(safe, "safe")
    harmful_values, harmful_layers = _as_stack(harmful, "harmful")
    check_activations(safe_values, "safe", safe_layers or (list(layers) if layers is not None else None))
    check_activations(harmful_values, "harmful", harmful_layers or (list(layers) if layers is not None else None))
    if safe_values.shape != harmful_values.shape:
        raise InvalidInputError(
            f"safe and harmful activations must have the same shape, got {tuple(safe_values.shape)} and "
            f"{tuple(harmful_values.shape)}."
        )
    if safe_layers is not None and harmful_layers is not None and safe_layers != harmful_layers:
        raise InvalidInputError(
            f"safe and harmful were collected at different layers: {safe_layers} vs {harmful_layers}."
        )
    n_pairs, n_layers, _ = safe_values.shape
    if n_pairs < 2:
        raise InvalidInputError(f"the SAS needs at least 2 pairs (it averages over pairs of pairs), got {n_pairs}.")
    layer_ids = list(layers) if layers is not None else (safe_layers or harmful_layers or list(range(n_layers)))
    if len(layer_ids) != n_layers:
        raise InvalidInputError(f"got {len(layer_ids)} layer indices for {n_layers} layers of activations.")

    summed, zero = _sum_of_unit_differences(safe_values, harmful_values)
    zeros_per_layer = Counter(j for _, j in zero)
    dead_layers = [layer_ids[j] for j in range(n_layers) if zeros_per_layer[j] == n_pairs]
    if dead_layers:
        raise InvalidInputError(
            f"at layer(s) {dead_layers} every pair gives identical safe and harmful activations, so the SAS is "
            "undefined there. At layer 0 (the token embeddings) this is expected: the last prompt token is the "
            "same generation-prompt token for every prompt. Leave such layers out (e.g. layers 1..n_layers-1)."
        )
    if zero:
        shown = ", ".join(f"pair {i} at layer {layer_ids[j]}" for i, j in zero[:5])
        raise InvalidInputError(
            f"{len(zero)} safe-minus-harmful difference(s) have zero norm ({shown}{', ...' if len(zero) > 5 else ''}): "
            "the two prompts of a pair give identical activations. Remove duplicate pairs."
        )
    squared_norm = reduce(summed**2, "n_layers d_model -> n_layers", "sum")
    scores = (squared_norm - n_pairs) / (n_pairs * (n_pairs - 1))
    return LayerScores(scores=scores, layers=layer_ids, n_pairs=n_pairs)
