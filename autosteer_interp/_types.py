"""Tensor type aliases and the dimension glossary shared by the whole package.

The names follow TransformerLens' vocabulary so that annotations read the same across the ecosystem:

* ``batch``: rows of one forward pass.
* ``pos``: token positions of a (padded) sequence.
* ``d_model``: width of the residual stream.
* ``d_vocab``: size of the output vocabulary.
* ``n_samples``: prompts in a collection (activations gathered over several batches).
* ``n_layers``: decoder layers selected for a collection (not necessarily all of the model's).
* ``n_pairs``: contrastive (harmful, safe) pairs.

Shapes are checked at test time by the jaxtyping pytest hook, never in production code.
"""

from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = [
    "ActivationStack",
    "AttentionMask",
    "Bool",
    "Float",
    "Int",
    "LayerVector",
    "ResidualBatch",
    "Tensor",
    "TokenIds",
]

TokenIds = Int[Tensor, "batch pos"]
"""Token ids of a (padded) batch."""

AttentionMask = Int[Tensor, "batch pos"]
"""1 for real tokens, 0 for padding."""

ResidualBatch = Float[Tensor, "batch d_model"]
"""One residual-stream vector per row (e.g. at the last prompt token)."""

ActivationStack = Float[Tensor, "n_samples n_layers d_model"]
"""Residual-stream vectors of many prompts at several layers."""

LayerVector = Float[Tensor, " n_layers"]
"""One number per selected layer."""
