"""Which model an artefact was fitted on: a fingerprint of the architecture and sampled weights.

A prober or refusal head is only meaningful on the checkpoint it was fitted on. :class:`ModelProvenance`
records that checkpoint's architecture (the structural fields of its config: widths, depths, heads, vocabulary,
positions, norms, tying) and 128 weights sampled at fixed positions from the token embedding, the LM head and
the first weight matrix of four decoder layers (first, one third, two thirds, last). Reading the samples touches
six small slices, never a full hash of the weights, so it is instant on a 7B model. Two checkpoints that share
an LM head (tied or frozen) but differ elsewhere are told apart by the layer samples; float32, bfloat16 and
float16 copies of one checkpoint match (samples are compared within 1% of their scale).
"""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .architectures import get_module, resolve, unwrap
from .errors import ArtifactError

__all__ = ["ModelProvenance", "provenance_of_artifact"]

_SIGNATURE_ROWS = 16
_SIGNATURE_COLS = 8
_TOLERANCE = 1e-2
# Config fields that fix the computation's shape and numerics (read from the config and its text/vision parts).
_ARCHITECTURE_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "rope_theta",
    "rope_parameters",
    "rms_norm_eps",
    "layer_norm_eps",
    "hidden_act",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "qk_layernorm",
    "image_token_id",
    "image_token_index",
)
_SUB_CONFIGS = ("text_config", "vision_config")
_BRIDGE_SEGMENT = "_original_component."


@dataclass(frozen=True)
class ModelProvenance:
    """The fingerprint of the model an artefact was fitted on.

    Attributes:
        model_id: Hub id, built-in name or class name of the model (for messages; not compared).
        model_type: Its ``config.model_type``.
        d_model: Width of its residual stream.
        lm_head_shape: ``[d_vocab, d_model]`` of its LM head.
        architecture: The structural config fields (``text_config.hidden_size``, ...), compared exactly.
        signatures: Parameter name -> 128 weights sampled at fixed positions, compared within 1% of their scale.
    """

    model_id: str
    model_type: str
    d_model: int
    lm_head_shape: tuple[int, int]
    architecture: dict[str, Any] = field(default_factory=dict)
    signatures: dict[str, tuple[float, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, model: Any) -> "ModelProvenance":
        """The provenance of a (wrapped) model."""
        spec = resolve(model)
        module = unwrap(model)
        lm_head = get_module(module, spec.row.lm_head_path).weight
        sampled = {f"{spec.row.embed_path}.weight": get_module(module, spec.row.embed_path).weight}
        for layer in sorted({0, spec.n_layers // 3, 2 * spec.n_layers // 3, spec.n_layers - 1}):
            path = f"{spec.layers_path}.{layer}"
            name, weight = _first_matrix(get_module(module, path))
            sampled[f"{path}.{name}"] = weight
        sampled[f"{spec.row.lm_head_path}.weight"] = lm_head
        model_id = getattr(module.config, "_name_or_path", "") or type(module).__name__
        return cls(
            model_id,
            spec.model_type,
            spec.d_model,
            (int(lm_head.shape[0]), int(lm_head.shape[1])),
            _architecture(module.config),
            {name: _signature(weight.detach()) for name, weight in sampled.items()},
        )

    @property
    def fingerprint(self) -> str:
        """A short display hash (samples rounded, so for reading, not for comparing)."""
        rounded = {name: [f"{v:.2g}" for v in values] for name, values in sorted(self.signatures.items())}
        text = json.dumps([self.architecture, rounded], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "model_id": self.model_id,
            "model_type": self.model_type,
            "d_model": self.d_model,
            "lm_head_shape": list(self.lm_head_shape),
            "architecture": self.architecture,
            "signatures": {name: list(values) for name, values in self.signatures.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelProvenance":
        """Inverse of :meth:`to_dict`; reads the LM-head-only fingerprint of format 1 as well.

        Raises:
            ArtifactError: If a field is missing or has the wrong type.
        """
        try:
            signatures = {str(k): tuple(float(v) for v in vs) for k, vs in dict(data.get("signatures", {})).items()}
            if "lm_head_signature" in data:
                signatures["lm_head"] = tuple(float(v) for v in data["lm_head_signature"])
            if not signatures or any(len(values) == 0 for values in signatures.values()):
                raise ValueError("no weight signatures")
            architecture = data.get("architecture", {})
            if not isinstance(architecture, dict):
                raise TypeError(f"architecture must be an object, got {type(architecture).__name__}")
            return cls(
                str(data["model_id"]),
                str(data["model_type"]),
                int(data["d_model"]),
                (int(data["lm_head_shape"][0]), int(data["lm_head_shape"][1])),
                architecture,
                signatures,
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ArtifactError(f"base_model in config.json is malformed ({error}).") from error

    def differences(self, other: "ModelProvenance") -> list[str]:
        """What differs between two fingerprints (empty if they are the same checkpoint)."""
        found = []
        if self.lm_head_shape != other.lm_head_shape:
            found.append(f"LM head {list(self.lm_head_shape)} vs {list(other.lm_head_shape)}")
        for key in sorted(set(self.architecture) | set(other.architecture)):
            mine, theirs = self.architecture.get(key), other.architecture.get(key)
            if mine != theirs and self.architecture and other.architecture:
                found.append(f"config {key} {mine!r} vs {theirs!r}")
        for name, values in self.signatures.items():
            theirs_values = other.signatures.get(name)
            if name == "lm_head":  # format 1 recorded the LM head alone under this name
                theirs_values = next((v for k, v in other.signatures.items() if k.endswith("lm_head.weight")), None)
            if theirs_values is None:
                found.append(f"weights {name} missing")
            elif not _close(values, theirs_values):
                found.append(f"weights {name} differ")
        return found

    def matches(self, other: "ModelProvenance") -> bool:
        """Same architecture, LM-head shape and weight samples (within 1% of their scale)."""
        return not self.differences(other)

    def check(self, model: Any, what: str) -> None:
        """Raise :class:`ArtifactError` if ``model`` is not the model this artefact was fitted on."""
        other = ModelProvenance.of(model)
        if other.d_model != self.d_model:
            raise ArtifactError(
                f"{what} was fitted on a model with d_model={self.d_model} ({self.model_id}); this model has "
                f"d_model={other.d_model} ({other.model_id}). Fit a new one on this model."
            )
        differences = self.differences(other)
        if differences:
            shown = "; ".join(differences[:4]) + ("; ..." if len(differences) > 4 else "")
            raise ArtifactError(
                f"{what} was fitted on {self.model_id} (fingerprint {self.fingerprint}); this model "
                f"({other.model_id}, fingerprint {other.fingerprint}) is a different checkpoint: {shown}. "
                "Fit a new one on this model."
            )


def provenance_of_artifact(config: dict[str, Any], model: Any, what: str) -> ModelProvenance | None:
    """The recorded base model of a loaded artefact, checked against ``model`` when one is given.

    Raises:
        ArtifactError: If ``model`` is given and the artefact records no base model or a different one.
    """
    provenance = ModelProvenance.from_dict(config["base_model"]) if config.get("base_model") else None
    if model is not None:
        if provenance is None:
            raise ArtifactError(f"{what} records no base model, so it cannot be checked against this one.")
        provenance.check(model, what)
    return provenance


def _first_matrix(layer: nn.Module) -> tuple[str, Tensor]:
    # TransformerLens' bridge wraps each submodule in place (``mlp._original_component.down_proj``...): the
    # wrapper segments are dropped so a bridged model has the same fingerprint as the model it wraps.
    named = ((name.replace(_BRIDGE_SEGMENT, ""), parameter) for name, parameter in layer.named_parameters())
    for name, parameter in sorted(named, key=lambda item: item[0]):
        if parameter.ndim == 2:
            return name, parameter
    raise ArtifactError(f"decoder layer {type(layer).__name__} has no weight matrix to fingerprint.")


def _signature(weight: Tensor) -> tuple[float, ...]:
    rows = torch.linspace(0, weight.shape[0] - 1, _SIGNATURE_ROWS).long().to(weight.device)
    cols = torch.linspace(0, weight.shape[1] - 1, _SIGNATURE_COLS).long().to(weight.device)
    return tuple(weight.index_select(0, rows).index_select(1, cols).float().flatten().tolist())


def _close(mine: tuple[float, ...], theirs: tuple[float, ...]) -> bool:
    if len(mine) != len(theirs):
        return False
    a, b = torch.tensor(mine), torch.tensor(theirs)
    return bool((a - b).abs().max() <= _TOLERANCE * a.abs().max().clamp_min(1e-12))


def _architecture(config: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for prefix, part in [("", config)] + [(f"{name}.", getattr(config, name, None)) for name in _SUB_CONFIGS]:
        if part is None:
            continue
        for key in _ARCHITECTURE_FIELDS:
            value = getattr(part, key, None)
            if value is not None:
                found[prefix + key] = json.loads(json.dumps(value, default=str))
    return found
