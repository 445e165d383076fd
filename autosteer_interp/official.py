"""The paper's released checkpoints as an :class:`~autosteer_interp.steer.AutoSteer`.

The authors' training code (github.com/zjunlp/AutoSteer, ``source/steer/SteerLlava/rater.py`` and
``steer_model_llava_inference.py``) saves

* the prober with ``torch.save(state_dict)`` of ``LinearProber(hidden_sizes=[d, 64, 2])``: keys
  ``layers.0.weight`` ``[64, d]``, ``layers.0.bias``, ``layers.2.weight`` ``[2, 64]``, ``layers.2.bias`` (a ReLU
  between); its forward ends in a softmax and **index 0 is "toxic"**; it reads the raw (unstandardised) residual
  stream entering decoder layer ``L`` at the last prompt token, and gates when ``p_toxic > 0.5``;
* the refusal head with ``torch.save(tensor)`` of the ``[d, d]`` matrix ``S``, applied as
  ``logits = h (W + eps W S)^T`` on the final-norm output (``eps = 0.1``).

:func:`import_official` reads both with ``torch.load(..., weights_only=True)`` (no code runs), checks keys,
shapes and values, and builds the same computation from our parts: a :class:`~autosteer_interp.prober.SafetyProber`
with identity standardisation (mean 0, std 1: the official prober has none) whose output rows are swapped (ours
put "harmful" at index 1), so its P(harmful) is the official ``p_toxic``; and a
:class:`~autosteer_interp.refusal_head.RefusalHead` with that ``S`` (``h + eps h S^T`` then ``W`` equals
``h (W + eps W S)^T``). The files' names and SHA-256 are recorded in the artefact (``AutoSteer.origin``).

The official code probes another token than our default prompt format does (see the README, "Where we differ"):
a prober is only meaningful at the token it was trained on, so the import runs with ``prompt_format="paper"``
(:func:`~autosteer_interp.prompts.format_prompt`), stored in the artefact.

Example:
    >>> steer = import_official(prober="layer20/epoch_37.pt", steer_matrix="Epoch_12.pt", layer=20,
    ...                         model=model)                                            # doctest: +SKIP
    >>> with model.trace(**inputs):                                                     # doctest: +SKIP
    ...     report = steer.apply(model)
"""

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .artifacts import file_sha256
from .errors import ArtifactError, InvalidInputError
from .prober import HARMFUL, ProberConfig, SafetyProber
from .prompts import PromptFormat, check_prompt_format
from .provenance import ModelProvenance
from .refusal_head import RefusalHead
from .steer import AutoSteer
from .validation import finite_number, non_negative_int

__all__ = ["OFFICIAL_TOXIC_INDEX", "import_official"]

OFFICIAL_TOXIC_INDEX = 0
"""The official prober's softmax index of "toxic" (``rate = outputs[0]``); ours is ``prober.HARMFUL`` (1)."""

_PROBER_KEYS = ("layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias")


def import_official(
    prober: str | Path,
    steer_matrix: str | Path,
    layer: int,
    model: Any = None,
    epsilon: float = 0.1,
    threshold: float = 0.5,
    prompt_format: PromptFormat = "paper",
) -> AutoSteer:
    """An AutoSteer that computes exactly the paper's inference from its released files.

    Args:
        prober: The official prober file (a ``LinearProber`` state dict), e.g. ``layer20/epoch_37.pt``.
        steer_matrix: The official refusal-head file (a ``[d, d]`` tensor), e.g. ``Epoch_12.pt``.
        layer: The decoder layer the prober reads (its input), e.g. 20 for LLaVA-OV-7B, 24 for Chameleon-7B.
        model: The model they were trained on; when given, its width and depth are checked and its fingerprint
            recorded (so the result refuses other models).
        epsilon: The refusal-head scale (the paper: 0.1).
        threshold: Gate when P(harmful) exceeds it (the paper: 0.5).
        prompt_format: The prompt layout the prober was trained on: ``"paper"`` (the official code's, default)
            or ``"chat"`` (only for a prober you trained on our layout).

    Returns:
        The AutoSteer (gate mode ``"prefill"``); ``origin`` records the source files and their hashes.

    Raises:
        ArtifactError: A file is missing, not a weights-only torch file, or has other keys, shapes or values
            than the official format.
        InvalidInputError: Bad ``layer``, ``epsilon`` or ``threshold``, or the files do not fit ``model``.
    """
    layer = non_negative_int(layer, "layer")
    epsilon = finite_number(epsilon, "epsilon", low=0, low_open=True)
    threshold = finite_number(threshold, "threshold", 0, 1)
    prober_path, matrix_path = Path(prober), Path(steer_matrix)
    state = _load(prober_path, "prober")
    weights = _prober_weights(state, prober_path)
    matrix = _load(matrix_path, "steer matrix")
    d_model = weights["layers.0.weight"].shape[1]
    S = _steer_matrix(matrix, matrix_path, d_model)
    provenance = None
    if model is not None:
        from .architectures import resolve

        spec = resolve(model)
        if spec.d_model != d_model:
            raise InvalidInputError(
                f"the official files are for d_model {d_model}; this model ({spec.model_type}) has {spec.d_model}."
            )
        spec.check_layer(layer)
        provenance = ModelProvenance.of(model)
    hidden = weights["layers.0.weight"].shape[0]
    ours = SafetyProber(d_model, ProberConfig(kind="mlp", hidden_sizes=(hidden,), threshold=threshold), [layer])
    order = [0, 0]  # order[ours] = the official row: ours[HARMFUL] is the official "toxic" row
    order[HARMFUL], order[1 - HARMFUL] = OFFICIAL_TOXIC_INDEX, 1 - OFFICIAL_TOXIC_INDEX
    ours.load_state_dict(
        {
            "mean": torch.zeros(1, d_model),  # identity standardisation: the official prober reads raw activations
            "std": torch.ones(1, d_model),
            "net.0.weight": weights["layers.0.weight"],
            "net.0.bias": weights["layers.0.bias"],
            "net.2.weight": weights["layers.2.weight"][order],
            "net.2.bias": weights["layers.2.bias"][order],
        }
    )
    head = RefusalHead(d_model, epsilon)
    with torch.no_grad():
        head.S.copy_(S)
    ours.provenance = head.provenance = provenance
    steer = AutoSteer(ours.eval(), head.eval(), prompt_format=check_prompt_format(prompt_format))
    steer.origin = {
        "source": "official AutoSteer release (github.com/zjunlp/AutoSteer)",
        "prober": {"file": prober_path.name, "sha256": file_sha256(prober_path)},
        "steer_matrix": {"file": matrix_path.name, "sha256": file_sha256(matrix_path)},
        "layer": layer,
        "label_order": f"official softmax index {OFFICIAL_TOXIC_INDEX} = toxic, mapped to our index {HARMFUL}",
        "standardisation": "none (the official prober reads raw activations): identity mean 0, std 1",
    }
    return steer


def _load(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ArtifactError(f"the official {what} file {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ArtifactError(
            f"{path} is not a weights-only torch file ({type(error).__name__}: {str(error)[:200]}); the official "
            f"{what} is saved with torch.save. Refusing to load it with code execution."
        ) from error


def _prober_weights(state: Any, path: Path) -> dict[str, Tensor]:
    if not isinstance(state, dict) or sorted(state) != sorted(_PROBER_KEYS):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ArtifactError(
            f"{path} is not an official LinearProber state dict: expected the keys {list(_PROBER_KEYS)}, found {found}."
        )
    weights = {key: state[key] for key in _PROBER_KEYS}
    first, second = weights["layers.0.weight"], weights["layers.2.weight"]
    expected = {
        "layers.0.weight": (first.shape[0], first.shape[1]) if first.ndim == 2 else None,
        "layers.0.bias": (first.shape[0],) if first.ndim == 2 else None,
        "layers.2.weight": (2, first.shape[0]) if first.ndim == 2 else None,
        "layers.2.bias": (2,),
    }
    for key, tensor in weights.items():
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point() or tuple(tensor.shape) != expected[key]:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise ArtifactError(
                f"{path}: {key} has shape {shape}; the official prober is [hidden, d] -> [2, hidden] "
                f"(expected {expected[key] or '[hidden, d]'}, floating point). Second layer found: "
                f"{tuple(second.shape) if isinstance(second, Tensor) else type(second).__name__}."
            )
        if not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(f"{path}: {key} holds NaN or infinite values.")
    return {key: tensor.float() for key, tensor in weights.items()}


def _steer_matrix(matrix: Any, path: Path, d_model: int) -> Tensor:
    if isinstance(matrix, dict) and len(matrix) == 1:
        matrix = next(iter(matrix.values()))  # a state dict of the one parameter
    if not isinstance(matrix, Tensor) or not matrix.is_floating_point() or tuple(matrix.shape) != (d_model, d_model):
        shape = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__
        raise ArtifactError(
            f"{path}: the official steer matrix is a [d, d] floating-point tensor with d = {d_model} (the prober's "
            f"width), found {shape}."
        )
    if not bool(torch.isfinite(matrix).all()):
        raise ArtifactError(f"{path}: the steer matrix holds NaN or infinite values.")
    return matrix.detach().float()
