"""Where things live inside each supported model: one data table, one ``resolve`` function.

Model quirks are data, not code. Each row of :data:`ARCHITECTURES` says, for one Hugging Face
``config.model_type``, where the decoder layers, the final norm, the LM head and the token embedding are,
whether a decoder layer returns a tensor or a tuple, and which config attribute names the image token.
Everything else in the package (activation collection, steering, hooks) reads these paths instead of
branching on the model class, so supporting a new architecture means adding one row.

Example:
    >>> from autosteer_interp.models import build_tiny_llava_onevision
    >>> spec = resolve(build_tiny_llava_onevision().model)
    >>> spec.layers_path, spec.n_layers, spec.d_model
    ('model.language_model.layers', 4, 64)
"""

from dataclasses import dataclass
from typing import Any

from torch import nn

from .errors import LayerIndexError, UnsupportedModelError

__all__ = ["ARCHITECTURES", "ArchSpec", "ArchitectureRow", "get_module", "input_placement", "resolve", "unwrap"]


@dataclass(frozen=True)
class ArchitectureRow:
    """Static layout of one architecture (module paths are relative to the HF top-level model).

    Attributes:
        layers_path: Dotted path of the ``nn.ModuleList`` of decoder layers.
        final_norm_path: Dotted path of the norm applied before the LM head.
        lm_head_path: Dotted path of the LM head (``nn.Linear(d_model, d_vocab)``).
        embed_path: Dotted path of the token embedding.
        layer_returns_tuple: ``True`` if a decoder layer returns ``(hidden_states, ...)``,
            ``False`` if it returns the hidden-state tensor itself.
        text_config_attr: Name of the sub-config holding the language model's sizes, or ``None`` if the
            top-level config holds them.
        image_token_attr: Config attribute holding the image placeholder token id, or ``None`` for
            text-only models.
    """

    layers_path: str
    final_norm_path: str
    lm_head_path: str
    embed_path: str
    layer_returns_tuple: bool
    text_config_attr: str | None = None
    image_token_attr: str | None = None


_DECODER_ONLY = ArchitectureRow(
    layers_path="model.layers",
    final_norm_path="model.norm",
    lm_head_path="lm_head",
    embed_path="model.embed_tokens",
    layer_returns_tuple=False,
)

ARCHITECTURES: dict[str, ArchitectureRow] = {
    "llava_onevision": ArchitectureRow(
        layers_path="model.language_model.layers",
        final_norm_path="model.language_model.norm",
        lm_head_path="lm_head",
        embed_path="model.language_model.embed_tokens",
        layer_returns_tuple=False,
        text_config_attr="text_config",
        image_token_attr="image_token_id",
    ),
    "chameleon": ArchitectureRow(
        layers_path="model.layers",
        final_norm_path="model.norm",
        lm_head_path="lm_head",
        embed_path="model.embed_tokens",
        layer_returns_tuple=True,
        image_token_attr="image_token_id",
    ),
    "llama": _DECODER_ONLY,
    "qwen2": _DECODER_ONLY,
    "qwen3": _DECODER_ONLY,
    "mistral": _DECODER_ONLY,
}
"""Supported ``config.model_type`` values and their layout (transformers 5.x)."""


@dataclass(frozen=True)
class ArchSpec:
    """The layout of one concrete model: its architecture row plus its sizes.

    Attributes:
        model_type: The Hugging Face ``config.model_type``.
        row: The static layout from :data:`ARCHITECTURES`.
        n_layers: Number of decoder layers of the language model.
        d_model: Width of the residual stream.
        d_vocab: Number of rows of the LM head.
        image_token_id: Id of the image placeholder token, or ``None`` for text-only models.
        context_length: The most positions the language model takes (``max_position_embeddings``), if known.
    """

    model_type: str
    row: ArchitectureRow
    n_layers: int
    d_model: int
    d_vocab: int
    image_token_id: int | None
    context_length: int | None = None

    @property
    def layers_path(self) -> str:
        """Dotted path of the decoder layers."""
        return self.row.layers_path

    @property
    def is_multimodal(self) -> bool:
        """Whether the model takes images."""
        return self.image_token_id is not None

    def check_layer(self, layer: Any) -> int:
        """Validate a decoder-layer index (the input of decoder layer ``layer``).

        Args:
            layer: 0-based decoder-layer index.

        Returns:
            The same index.

        Raises:
            LayerIndexError: If ``layer`` is not an int in ``[0, n_layers)``. Negative indices are refused
                on purpose: a layer index is stored in artefacts and must mean the same thing everywhere.
        """
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise LayerIndexError(
                f"layer {layer!r} is out of range for this {self.model_type} model: valid layers are the "
                f"integers 0..{self.n_layers - 1} (layer L = the input of decoder layer L)."
            )
        return layer

    def layer_output_hidden(self, output: Any) -> Any:
        """Return the hidden-state tensor of a decoder layer's output (tensor or tuple)."""
        return output[0] if self.row.layer_returns_tuple else output


def unwrap(model: Any) -> nn.Module:
    """Return the underlying ``torch.nn.Module`` of an nnsight wrapper, or ``model`` itself.

    Args:
        model: A Hugging Face model or an nnsight ``Envoy`` / ``TransformersModel`` around one.

    Returns:
        The plain PyTorch module.

    Raises:
        UnsupportedModelError: If ``model`` is neither.
    """
    module = getattr(model, "_module", model)
    if not isinstance(module, nn.Module):
        raise UnsupportedModelError(
            f"expected a Hugging Face model or an nnsight wrapper around one, got {type(model).__name__}."
        )
    return module


def get_module(model: Any, path: str) -> Any:
    """Follow a dotted attribute path (``"model.language_model.norm"``) on a model or an nnsight envoy."""
    obj = model
    for name in path.split("."):
        obj = obj[int(name)] if name.isdigit() else getattr(obj, name)
    return obj


def input_placement(model: Any) -> tuple[Any, Any]:
    """``(device, dtype)`` of the token embedding: where a model's inputs go (the first shard under ``device_map``)."""
    module = unwrap(model)
    weight = get_module(module, resolve(module).row.embed_path).weight
    return weight.device, weight.dtype


def _supported_list() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def resolve(model: Any) -> ArchSpec:
    """Describe where decoder layers, final norm and LM head live in ``model``.

    Args:
        model: A Hugging Face model or an nnsight wrapper around one.

    Returns:
        The :class:`ArchSpec` of the model.

    Raises:
        UnsupportedModelError: If ``config.model_type`` has no row in :data:`ARCHITECTURES`.
    """
    module = unwrap(model)
    config: Any = getattr(module, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"unsupported architecture {model_type!r} ({type(module).__name__}). Supported model_type values: "
            f"{_supported_list()}. To add one, append a row to autosteer_interp.architectures.ARCHITECTURES "
            "giving the paths of its decoder layers, final norm, LM head and token embedding."
        )
    row = ARCHITECTURES[model_type]
    text_config: Any = getattr(config, row.text_config_attr) if row.text_config_attr else config
    lm_head = get_module(module, row.lm_head_path)
    image_token_id = getattr(config, row.image_token_attr, None) if row.image_token_attr else None
    return ArchSpec(
        model_type=model_type,
        row=row,
        n_layers=len(get_module(module, row.layers_path)),
        d_model=int(text_config.hidden_size),
        d_vocab=int(lm_head.weight.shape[0]),
        image_token_id=None if image_token_id is None else int(image_token_id),
        context_length=_int_or_none(getattr(text_config, "max_position_embeddings", None)),
    )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
