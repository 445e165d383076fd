"""Artefact folders: ``config.json`` + ``tensors.safetensors``, saved atomically, loaded defensively.

An artefact is a directory holding

* ``config.json``: ``kind``, ``format_version``, ``library_version``, the object's own fields, provenance
  (``base_model``: model id, ``d_model`` and a fingerprint of its LM head) and the SHA-256 of the tensor file;
* ``tensors.safetensors``: the weights (never a pickle: loading executes nothing).

Saving refuses to replace an existing artefact unless ``overwrite=True``, and is atomic: the new folder is
written next to the target and swapped in with renames, so a failed save leaves the previous artefact intact.
Loading checks the kind, the format version, the checksum and (given a model) the d_model and LM-head
fingerprint, raising :class:`~autosteer_interp.errors.ArtifactError` with what was found and what was expected.
"""

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .architectures import get_module, resolve, unwrap
from .errors import ArtifactError

__all__ = ["FORMAT_VERSION", "ModelProvenance", "provenance_of_artifact", "read_artifact", "write_artifact"]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSOR_FILE = "tensors.safetensors"
_SIGNATURE_ROWS = 16
_SIGNATURE_COLS = 8


@dataclass(frozen=True)
class ModelProvenance:
    """Which model an artefact was fitted on.

    Attributes:
        model_id: Hub id, built-in name or class name of the model.
        model_type: Its ``config.model_type``.
        d_model: Width of its residual stream.
        lm_head_shape: ``[d_vocab, d_model]`` of its LM head.
        lm_head_signature: 128 LM-head weights sampled at fixed positions. Compared with a tolerance of 1% of
            their scale, so float32 / bfloat16 / float16 copies of one checkpoint match and other checkpoints do not.
    """

    model_id: str
    model_type: str
    d_model: int
    lm_head_shape: tuple[int, int]
    lm_head_signature: tuple[float, ...]

    @classmethod
    def of(cls, model: Any) -> "ModelProvenance":
        """The provenance of a (wrapped) model."""
        spec = resolve(model)
        module = unwrap(model)
        weight = get_module(module, spec.row.lm_head_path).weight.detach()
        signature = _signature(weight)
        model_id = getattr(module.config, "_name_or_path", "") or type(module).__name__
        return cls(model_id, spec.model_type, spec.d_model, tuple(weight.shape), signature)

    @property
    def fingerprint(self) -> str:
        """A short display hash of the signature (rounded, so for reading, not for comparing)."""
        text = json.dumps([list(self.lm_head_shape), [f"{v:.2g}" for v in self.lm_head_signature]])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = dict(self.__dict__)
        data["lm_head_shape"] = list(self.lm_head_shape)
        data["lm_head_signature"] = list(self.lm_head_signature)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelProvenance":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                str(data["model_id"]),
                str(data["model_type"]),
                int(data["d_model"]),
                (int(data["lm_head_shape"][0]), int(data["lm_head_shape"][1])),
                tuple(float(v) for v in data["lm_head_signature"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ArtifactError(f"base_model in config.json is malformed ({error}).") from error

    def matches(self, other: "ModelProvenance") -> bool:
        """Same LM-head shape and signature within 1% of the signature's scale."""
        if self.lm_head_shape != other.lm_head_shape:
            return False
        mine, theirs = torch.tensor(self.lm_head_signature), torch.tensor(other.lm_head_signature)
        return bool((mine - theirs).abs().max() <= 1e-2 * mine.abs().max().clamp_min(1e-12))

    def check(self, model: Any, what: str) -> None:
        """Raise :class:`ArtifactError` if ``model`` is not the model this artefact was fitted on."""
        other = ModelProvenance.of(model)
        if other.d_model != self.d_model:
            raise ArtifactError(
                f"{what} was fitted on a model with d_model={self.d_model} ({self.model_id}); this model has "
                f"d_model={other.d_model} ({other.model_id}). Fit a new one on this model."
            )
        if not self.matches(other):
            raise ArtifactError(
                f"{what} was fitted on {self.model_id} (LM head {list(self.lm_head_shape)}, fingerprint "
                f"{self.fingerprint}); this model ({other.model_id}, LM head {list(other.lm_head_shape)}, fingerprint "
                f"{other.fingerprint}) is a different checkpoint. Fit a new one on this model."
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


def _signature(weight: Tensor) -> tuple[float, ...]:
    rows = torch.linspace(0, weight.shape[0] - 1, _SIGNATURE_ROWS).long()
    cols = torch.linspace(0, weight.shape[1] - 1, _SIGNATURE_COLS).long()
    return tuple(weight[rows][:, cols].float().flatten().tolist())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _clean_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ArtifactError(f"cannot save a non-finite number ({value}) in config.json.")
    if isinstance(value, dict):
        return {key: _clean_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(item) for item in value]
    return value


def write_artifact(
    directory: str | Path,
    kind: str,
    config: dict[str, Any],
    tensors: dict[str, Tensor],
    overwrite: bool = False,
    parts: Mapping[str, Callable[..., Any]] | None = None,
) -> Path:
    """Save an artefact folder atomically.

    Args:
        directory: Target folder (created).
        kind: Artefact kind, e.g. ``"safety_prober"``.
        config: JSON-serialisable fields (provenance included by the caller).
        tensors: Named tensors (stored as contiguous CPU tensors).
        overwrite: Replace an existing artefact at ``directory``.
        parts: Sub-artefacts, ``name -> save(folder)``: each writes its own artefact into ``directory/name``
            inside the same atomic swap (so a composite is replaced whole or not at all).

    Returns:
        The target folder.

    Raises:
        ArtifactError: If ``directory`` exists and ``overwrite`` is false (nothing is written), or it exists
            and is not an artefact folder, or writing fails (the previous artefact is kept).
    """
    from . import __version__

    target = Path(directory)
    if target.exists():
        if not overwrite:
            raise ArtifactError(f"{target} already exists; pass overwrite=True to replace it, or choose a new path.")
        if not target.is_dir() or not (target / CONFIG_FILE).is_file():
            raise ArtifactError(f"{target} exists and is not an artefact folder; refusing to replace it.")
    payload = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        **_clean_json(config),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        save_file({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}, staging / TENSOR_FILE)
        payload["tensors_sha256"] = _sha256(staging / TENSOR_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        for path in staging.iterdir():
            path.chmod(0o666 & ~umask)
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        for name, save_part in (parts or {}).items():
            save_part(staging / name)
        staging.chmod(0o777 & ~umask)
        _swap_in(staging, target)
    except ArtifactError:
        raise
    except Exception as error:
        raise ArtifactError(
            f"saving to {target} failed ({error}); any previous artefact there is unchanged."
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _swap_in(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.previous-", dir=target.parent))
    backup.rmdir()
    target.rename(backup)
    try:
        staging.rename(target)
    except Exception:
        backup.rename(target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def read_artifact(directory: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Load and validate an artefact folder.

    Args:
        directory: The folder written by :func:`write_artifact`.
        kind: The expected kind.

    Returns:
        ``(config, tensors)``.

    Raises:
        ArtifactError: If files are missing, ``config.json`` is malformed, the kind or format version is not
            the expected one, or the tensor file does not match its recorded checksum (tampered or truncated).
    """
    source = Path(directory)
    config_path, tensor_path = source / CONFIG_FILE, source / TENSOR_FILE
    for path in (config_path, tensor_path):
        if not path.is_file():
            raise ArtifactError(f"{source} is not a complete artefact: {path.name} is missing.")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{config_path} is not valid JSON ({error}).") from error
    if not isinstance(config, dict):
        raise ArtifactError(f"{config_path} must hold a JSON object, got {type(config).__name__}.")
    if config.get("kind") != kind:
        raise ArtifactError(f"{source} holds a {config.get('kind')!r} artefact, expected {kind!r}.")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{source} has format_version {version!r}; this version of autosteer_interp reads format_version "
            f"{FORMAT_VERSION}. Upgrade the library or re-save the artefact."
        )
    expected = config.get("tensors_sha256")
    if expected != _sha256(tensor_path):
        raise ArtifactError(
            f"{tensor_path} does not match the checksum recorded in config.json: the file was modified or "
            "truncated. Refusing to load it."
        )
    try:
        tensors = load_file(tensor_path)
    except (SafetensorError, OSError) as error:
        raise ArtifactError(f"{tensor_path} is not a readable safetensors file ({error}).") from error
    return config, tensors


def require_tensor(tensors: dict[str, Tensor], name: str, shape: tuple[int, ...], source: str) -> Tensor:
    """Fetch one tensor of an artefact and check its shape, or raise :class:`ArtifactError`."""
    if name not in tensors:
        raise ArtifactError(f"{source}: tensor {name!r} is missing (found {sorted(tensors)}).")
    tensor = tensors[name]
    if tuple(tensor.shape) != shape:
        raise ArtifactError(f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, expected {shape}.")
    return tensor
