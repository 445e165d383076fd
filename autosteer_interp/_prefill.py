"""Shared-prefix prefill: run the token prefix every row of a batch shares once, reuse its key/value cache.

Chat-formatted prompts share a long prefix (system prompt, role markers). Running it once and reusing its
key/value cache for every row saves that much compute; positions stay exact because the rest of each row is
right-padded after the unpadded prefix. The prefix always stops before the first image token and leaves at
least one token to every row. Results equal the plain forward pass up to float32 rounding.
"""

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

__all__ = ["prepare_prefill"]

_MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate forward pass


def _split_shared_prefix(
    inputs: dict[str, Any], image_token_id: int | None
) -> tuple[Int[Tensor, "1 prefix"], dict[str, Any]] | None:
    """Split a left-padded batch into its common token prefix and right-padded suffixes.

    Returns:
        ``(prefix_ids, suffix_inputs)``, or ``None`` when the common prefix is too short to be worth it.
    """
    rows = [ids[mask.bool()] for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
    limit = min(len(row) for row in rows) - 1
    reference = rows[0]
    shared = 0
    while shared < limit and all(row[shared] == reference[shared] for row in rows[1:]):
        if image_token_id is not None and int(reference[shared]) == image_token_id:
            break
        shared += 1
    if shared < _MIN_SHARED_PREFIX:
        return None
    suffixes = [row[shared:] for row in rows]
    width = max(len(suffix) for suffix in suffixes)
    device = reference.device
    suffix_ids = torch.full((len(rows), width), int(reference[0]), dtype=reference.dtype, device=device)
    suffix_mask = torch.zeros((len(rows), width), dtype=inputs["attention_mask"].dtype, device=device)
    for i, suffix in enumerate(suffixes):
        suffix_ids[i, : len(suffix)] = suffix
        suffix_mask[i, : len(suffix)] = 1
    prefix_mask = torch.ones((len(rows), shared), dtype=suffix_mask.dtype, device=device)
    suffix_inputs = dict(
        inputs,
        input_ids=suffix_ids,
        attention_mask=torch.cat([prefix_mask, suffix_mask], dim=1),
    )
    return reference[:shared].unsqueeze(0), suffix_inputs


def _prefix_cache(model: Any, prefix_ids: Tensor, batch: int) -> Any:
    """Key/value cache of ``prefix_ids`` (one row), repeated for ``batch`` rows."""
    with torch.no_grad():
        cache = model._module(input_ids=prefix_ids, use_cache=True, logits_to_keep=1).cache
    cache.batch_repeat_interleave(batch)
    return cache


def prepare_prefill(
    model: Any, inputs: dict[str, Any], image_token_id: int | None, share_prefix: bool = True
) -> tuple[dict[str, Any], Int[Tensor, "batch pos"]]:
    """Forward-pass inputs for a left-padded batch, with the shared prefix cached when worth it.

    Args:
        model: A wrapped model.
        inputs: Encoded batch (``input_ids``, ``attention_mask``, image tensors).
        image_token_id: The image placeholder id (the prefix stops before it), or ``None``.
        share_prefix: Whether to try prefix sharing at all.

    Returns:
        ``(forward_inputs, row_mask)``: the kwargs for the forward pass (with ``cache`` when the prefix is
        shared) and the mask aligned with ``forward_inputs["input_ids"]`` (1 for real tokens), from which
        positions are read.
    """
    split = _split_shared_prefix(inputs, image_token_id) if share_prefix else None
    if split is None:
        return inputs, inputs["attention_mask"]
    prefix_ids, suffix_inputs = split
    row_mask = suffix_inputs["attention_mask"][:, prefix_ids.shape[1] :]
    suffix_inputs["cache"] = _prefix_cache(model, prefix_ids, len(row_mask))
    return suffix_inputs, row_mask
