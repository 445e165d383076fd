"""Collect residual-stream activations at the last prompt token, and the LM-head inputs the refusal head trains on.

"Layer L" means the input of decoder layer ``L`` (== Hugging Face ``output_hidden_states[L]``), 0-based.
Activations are read in the prefill pass with nnsight traces, one trace per batch, and the forward pass is
stopped right after the deepest requested layer.

Example:
    >>> from autosteer_interp.models import load_model
    >>> from autosteer_interp.prompts import Prompt
    >>> model = load_model("tiny-llava-onevision")
    >>> acts = collect_activations(model, [Prompt("Hello"), Prompt("How are you?")], layers=[1, 3], progress=False)
    >>> tuple(acts.values.shape), acts.layers
    ((2, 2, 64), [1, 3])
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nnsight
import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from ._prefill import prepare_prefill
from .architectures import ArchSpec, get_module, resolve
from .containers import LayerActivations, TokenCache
from .errors import InvalidInputError
from .prompts import Prompt, PromptFormat, check_prompt_format, check_prompt_lengths, check_prompts, encode_prompts
from .validation import positive_int

__all__ = ["LayerActivations", "TokenCache", "cache_lm_head_inputs", "collect_activations", "last_prompt_positions"]


def last_prompt_positions(
    input_ids: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    image_token_id: int | None = None,
) -> Int[Tensor, " batch"]:
    """Index of the last real (non-padding, non-image) token of each row; works for left and right padding.

    Args:
        input_ids: Token ids.
        attention_mask: 1 for real tokens, 0 for padding.
        image_token_id: Image placeholder id, never counted as "last".

    Returns:
        One position per row.

    Raises:
        InvalidInputError: If a row has no real text token.
    """
    valid = attention_mask.bool()
    if image_token_id is not None:
        valid &= input_ids != image_token_id
    if not bool(valid.any(dim=-1).all()):
        raise InvalidInputError("a row of the batch has no text token (all padding or image tokens).")
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
    return torch.where(valid, positions, -1).amax(dim=-1)


def _check_layers(spec: ArchSpec, layers: Sequence[int] | None) -> list[int]:
    if layers is None:
        return list(range(spec.n_layers))
    layers = list(layers)
    if not layers:
        raise InvalidInputError("expected at least one layer index, got an empty list.")
    if len(set(layers)) != len(layers):
        raise InvalidInputError(f"layer indices must be unique, got {layers}.")
    return [spec.check_layer(layer) for layer in layers]


def _trace_batch(model: Any, spec: ArchSpec, inputs: dict[str, Any], layers: list[int], share_prefix: bool) -> Tensor:
    """One prefill trace; returns ``[batch, len(layers), d_model]`` at the last prompt token."""
    inputs, row_mask = prepare_prefill(model, inputs, spec.image_token_id, share_prefix)
    positions = last_prompt_positions(inputs["input_ids"], row_mask, spec.image_token_id)
    rows = torch.arange(len(positions))
    decoder_layers = get_module(model, spec.layers_path)
    ascending = sorted(layers)
    with torch.no_grad(), model.trace(**inputs) as tracer:
        gathered = {}
        for layer in ascending:  # nnsight values must be requested in execution order
            hidden = decoder_layers[layer].input
            gathered[layer] = hidden[rows.to(hidden.device), positions.to(hidden.device)].float().cpu()
        stacked = nnsight.save(torch.stack([gathered[layer] for layer in layers], dim=1))
        tracer.stop()
    return stacked


def collect_activations(
    model: Any,
    prompts: Sequence[Prompt],
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    stream_to: str | Path | None = None,
    progress: bool = True,
    share_prefix: bool = True,
    prompt_format: PromptFormat = "chat",
) -> LayerActivations:
    """Residual stream entering each requested decoder layer, at the last prompt token of each prompt.

    Prompts are formatted with the model's chat template and generation prompt, sorted by length into
    left-padded batches (so little compute goes to padding) and returned in their original order. The
    result does not depend on the batch size (up to float32 rounding).

    Args:
        model: A wrapped model from :func:`~autosteer_interp.models.load_model` or
            :func:`~autosteer_interp.models.wrap`.
        prompts: The requests (text, optionally with images for multimodal models).
        layers: Decoder-layer indices (``0 <= L < n_layers``); ``None`` means all layers.
        batch_size: Prompts per forward pass.
        stream_to: Optional ``.npy`` path: the values are written there batch by batch and returned as a
            memory-mapped tensor, so large collections need not fit in memory. Never overwrites a file.
        progress: Show a progress bar.
        share_prefix: Run the token prefix that all prompts of a batch share (system prompt, role markers)
            once and reuse its key/value cache; the results equal the unshared computation up to float32
            rounding, and chat-formatted batches run up to about twice as fast.
        prompt_format: ``"chat"`` (default) or ``"paper"`` (the official code's layout and probed token; see
            :func:`~autosteer_interp.prompts.format_prompt`).

    Returns:
        :class:`LayerActivations` with ``values`` of shape ``[n_samples, n_layers, d_model]`` (float32) and
        the layer indices in the order requested.

    Raises:
        InvalidInputError: If ``prompts`` is empty or not a list of :class:`Prompt`, a prompt is longer than
            the model's context, ``batch_size < 1``, ``layers`` is empty or repeats an
            index, or ``stream_to`` already exists.
        LayerIndexError: If a layer index is out of range.
    """
    spec = resolve(model)
    layers = _check_layers(spec, layers)
    prompts = check_prompts(prompts)
    batch_size = positive_int(batch_size, "batch_size")
    check_prompt_lengths(model, prompts, prompt_format=check_prompt_format(prompt_format))
    shape = (len(prompts), len(layers), spec.d_model)
    if stream_to is not None:
        stream_to = Path(stream_to)
        if stream_to.exists():
            raise InvalidInputError(f"stream_to={str(stream_to)!r} already exists; choose a new path.")
        stream_to.parent.mkdir(parents=True, exist_ok=True)
        buffer = np.lib.format.open_memmap(stream_to, mode="w+", dtype=np.float32, shape=shape)
        values = torch.from_numpy(buffer)
    else:
        values = torch.empty(shape, dtype=torch.float32)

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].text), reverse=True)
    with tqdm(total=len(prompts), desc="activations", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            inputs = encode_prompts(model, [prompts[i] for i in indices], prompt_format)
            values[torch.tensor(indices)] = _trace_batch(model, spec, inputs, layers, share_prefix)
            bar.update(len(indices))
    if stream_to is not None:
        buffer.flush()
    return LayerActivations(values=values, layers=layers)


def cache_lm_head_inputs(
    model: Any,
    prompts: Sequence[Prompt],
    targets: Tensor,
    batch_size: int = 16,
    progress: bool = True,
    share_prefix: bool = True,
    prompt_format: PromptFormat = "chat",
) -> TokenCache:
    """Run the frozen model once over ``prompt + target`` (teacher forcing) and keep the LM-head inputs.

    Args:
        model: A wrapped model (:func:`~autosteer_interp.models.load_model`).
        prompts: The prompts.
        targets: ``[n_targets]`` token ids appended to every prompt, or ``[n_prompts, n_targets]`` one row each.
        batch_size: Prompts per forward pass.
        progress: Show a progress bar.
        share_prefix: Run the prefix shared by a batch once (see :mod:`autosteer_interp._prefill`).
        prompt_format: ``"chat"`` (default) or ``"paper"``.

    Returns:
        The LM-head inputs at the positions that predict each target token, and those tokens.
    """
    prompts = check_prompts(prompts)
    check_prompt_lengths(model, prompts, prompt_format=check_prompt_format(prompt_format))
    targets = targets.expand(len(prompts), -1) if targets.ndim == 1 else targets
    if targets.shape[0] != len(prompts):
        raise InvalidInputError(f"got {targets.shape[0]} target rows for {len(prompts)} prompts.")
    n_targets = targets.shape[1]
    spec = resolve(model)
    lm_head = get_module(model, spec.row.lm_head_path)
    hidden, labels = [], []
    with tqdm(total=len(prompts), desc="caching", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            inputs = encode_prompts(model, prompts[start : start + batch_size], prompt_format)
            batch_targets = targets[start : start + batch_size].to(inputs["input_ids"].device)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], batch_targets], dim=1)
            inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(batch_targets)], dim=1)
            inputs, row_mask = prepare_prefill(model, inputs, spec.image_token_id, share_prefix)
            # position t predicts token t + 1: the n_targets positions before each row's last token
            last = last_prompt_positions(inputs["input_ids"], row_mask)
            positions = last[:, None] - n_targets + torch.arange(n_targets, device=last.device)
            rows = torch.arange(len(last), device=last.device)[:, None]
            with torch.no_grad(), model.trace(**inputs) as tracer:
                h = lm_head.input
                states = nnsight.save(h[rows.to(h.device), positions.to(h.device)].float().cpu())
                tracer.stop()
            hidden.append(states.reshape(-1, states.shape[-1]))
            labels.append(batch_targets.reshape(-1).cpu())
            bar.update(len(batch_targets))
    return TokenCache(hidden=torch.cat(hidden), labels=torch.cat(labels))
