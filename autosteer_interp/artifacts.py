"""Artefact folders: checksummed, saved atomically and crash-safely, loaded defensively.

An artefact (format 2) is a directory holding

* ``config.json``: ``kind``, ``format_version``, ``library_version``, the object's own fields, provenance
  (``base_model``, see :mod:`autosteer_interp.provenance`) and ``tensors``: each tensor's shape and dtype;
* ``tensors.safetensors``: the weights (never a pickle: loading executes nothing);
* sub-artefacts in sub-folders for composites (an AutoSteer's ``prober/`` and ``refusal_head/``);
* ``checksums.json``: the SHA-256 of every other file of the folder, sub-folders included (a Hub repository's
  top-level ``README.md`` and ``.gitattributes`` are metadata: not read, not checked).

Loading verifies every checksum (a file edited, added or removed is refused, ``config.json`` included), the
kind and format version, and that the tensors have the shapes and dtypes the config declares; the classes then
check those against their own fields, and (given a model) the model fingerprint.

Saving refuses to replace an existing artefact unless ``overwrite=True``. The new folder is written next to the
target, flushed to disk, and exchanged with the old one in a single atomic ``renameat2(RENAME_EXCHANGE)``
(Linux; elsewhere two renames), so the path holds the old or the new artefact at every instant. A process
killed mid-save leaves hidden ``.NAME.saving-PID-*`` / ``.NAME.previous-PID-*`` folders; the next load or save
of that path restores the old artefact if the path is empty and removes the leftovers, saying so in the log.
Every failure raises :class:`~autosteer_interp.errors.ArtifactError` with what was found and what was expected.
"""

import contextlib
import ctypes
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .errors import ArtifactError

__all__ = ["FORMAT_VERSION", "file_sha256", "migrate_artifact", "read_artifact", "require_tensor", "write_artifact"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
TENSOR_FILE = "tensors.safetensors"
CHECKSUM_FILE = "checksums.json"
_LEFTOVER_KINDS = ("saving", "previous")
HUB_METADATA = frozenset({"README.md", ".gitattributes"})
"""Top-level files a Hub repository adds beside an artefact (model card, LFS rules): never read, so tolerated."""
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# Set only inside migrate_artifact (a plain dict, so that the module still pickles by value for NDIF).
_READ_OPTIONS = {"format_1": False}


# ------------------------------------------------------------------------------------------------ writing


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
        directory: Target folder (created, with its parents).
        kind: Artefact kind, e.g. ``"safety_prober"``.
        config: JSON-serialisable fields (provenance included by the caller); finite numbers only.
        tensors: Named tensors (stored as contiguous CPU tensors).
        overwrite: Replace an existing artefact at ``directory``.
        parts: Sub-artefacts, ``name -> save(folder)``: each writes its own artefact into ``directory/name``
            inside the same atomic swap (so a composite is replaced whole or not at all).

    Returns:
        The target folder.

    Raises:
        ArtifactError: If ``directory`` exists and ``overwrite`` is false (nothing is written), or it exists
            and is not an artefact folder, or it cannot be created, or writing fails (the previous artefact is
            kept).
    """
    from . import __version__

    target = Path(directory)
    recover_leftovers(target)
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
        "tensors": {name: _tensor_entry(tensor) for name, tensor in tensors.items()},
    }
    staging: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-{os.getpid()}-", dir=target.parent))
        save_file({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}, staging / TENSOR_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        for name, save_part in (parts or {}).items():
            save_part(staging / name)
        checksums = {"algorithm": "sha256", "files": _checksums(staging)}
        (staging / CHECKSUM_FILE).write_text(json.dumps(checksums, indent=2, sort_keys=True) + "\n")
        _make_durable(staging)
        _swap_in(staging, target)
    except ArtifactError:
        raise
    except Exception as error:
        raise ArtifactError(
            f"saving to {target} failed ({type(error).__name__}: {error}); any previous artefact there is unchanged."
        ) from error
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _tensor_entry(tensor: Tensor) -> dict[str, Any]:
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}


def _clean_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ArtifactError(f"cannot save a non-finite number ({value}) in config.json.")
    if isinstance(value, dict):
        return {key: _clean_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(item) for item in value]
    return value


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() or path.is_symlink())


def _checksums(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): file_sha256(path) for path in _files(root)}


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _make_durable(root: Path) -> None:
    """Set the usual permissions (``mkdtemp`` makes 0700) and flush every file and folder to disk."""
    umask = os.umask(0)
    os.umask(umask)
    folders = [root] + sorted(path for path in root.rglob("*") if path.is_dir())
    for path in _files(root):
        path.chmod(0o666 & ~umask)
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    for folder in reversed(folders):
        folder.chmod(0o777 & ~umask)
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _swap_in(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target``; the old artefact, if any, ends at ``staging`` (removed by the caller)."""
    if not target.exists():
        staging.rename(target)
    elif not _exchange(staging, target):
        backup = staging.with_name(staging.name.replace(".saving-", ".previous-", 1))
        target.rename(backup)
        try:
            staging.rename(target)
        except Exception:
            backup.rename(target)
            raise
        backup.rename(staging)
    _fsync_dir(target.parent)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with Linux's ``renameat2(RENAME_EXCHANGE)``; ``False`` where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(error, os.strerror(error), str(second))


# ------------------------------------------------------------------------------------------------ recovery


def recover_leftovers(target: str | Path) -> None:
    """Clean up after a save of ``target`` that was killed: restore the old artefact if the path is empty.

    Leftovers are the hidden ``.NAME.saving-PID-*`` and ``.NAME.previous-PID-*`` folders next to ``target`` whose
    process is gone. If ``target`` is missing and a complete previous artefact is among them, it is moved back;
    the rest are removed. Each action is logged (warning).
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    leftovers = [path for kind in _LEFTOVER_KINDS for path in parent.glob(f".{target.name}.{kind}-*")]
    leftovers = [path for path in leftovers if not _owner_alive(path)]
    if not target.exists():
        for path in sorted(leftovers, key=lambda p: ".previous-" not in p.name):
            if _is_complete(path):
                path.rename(target)
                leftovers.remove(path)
                logger.warning("restored %s from %s, left by a save that was interrupted", target, path.name)
                break
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
        logger.warning("removed %s, left by an interrupted save of %s", path, target.name)


def _owner_alive(path: Path) -> bool:
    pid_text = path.name.rsplit(".", 1)[-1].split("-")[1] if "-" in path.name else ""
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process's own saves clean up after themselves
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_complete(folder: Path) -> bool:
    try:
        _verify_checksums(folder)
    except ArtifactError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ reading


def read_artifact(directory: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Load and validate an artefact folder.

    Args:
        directory: The folder written by :func:`write_artifact`.
        kind: The expected kind.

    Returns:
        ``(config, tensors)``; every tensor has the shape and dtype ``config["tensors"]`` declares.

    Raises:
        ArtifactError: If files are missing, added or modified (checksums), ``config.json`` is malformed, the
            kind or format version is not the expected one, or a tensor differs from its declared shape/dtype.
    """
    source = Path(directory)
    recover_leftovers(source)
    config_path, tensor_path = source / CONFIG_FILE, source / TENSOR_FILE
    if not source.is_dir():
        raise ArtifactError(f"{source} is not an artefact folder (no such directory).")
    for path in (config_path, tensor_path):
        if not path.is_file():
            raise ArtifactError(f"{source} is not a complete artefact: {path.name} is missing.")
    if not (source / CHECKSUM_FILE).is_file():
        config = _read_config(config_path)
        version = config.get("format_version")
        if version == 1 and _READ_OPTIONS["format_1"]:
            return _read_format_1(source, config, kind)
        if version == 1:
            raise ArtifactError(
                f"{source} is a format-1 artefact (autosteer_interp 0.1), whose checksum does not cover its "
                "config. Convert it once with `autosteer-interp migrate SOURCE NEW_FOLDER --model MODEL` or "
                "autosteer_interp.artifacts.migrate_artifact(source, destination, model)."
            )
        raise ArtifactError(f"{source} is not a complete artefact: {CHECKSUM_FILE} is missing.")
    _verify_checksums(source)
    config = _read_config(config_path)
    _check_kind_and_version(source, config, kind)
    tensors = _load_tensors(tensor_path)
    _check_declared(source, config.get("tensors"), tensors)
    return config, tensors


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON ({error}).") from error
    if not isinstance(config, dict):
        raise ArtifactError(f"{path} must hold a JSON object, got {type(config).__name__}.")
    return config


def _verify_checksums(source: Path) -> None:
    record = _read_config(source / CHECKSUM_FILE)
    files = record.get("files")
    if record.get("algorithm") != "sha256" or not isinstance(files, dict):
        raise ArtifactError(f"{source / CHECKSUM_FILE} is malformed (expected an algorithm 'sha256' and files).")
    present = {path.relative_to(source).as_posix() for path in _files(source)} - {CHECKSUM_FILE} - HUB_METADATA
    missing, added = sorted(set(files) - present), sorted(present - set(files))
    if missing:
        raise ArtifactError(f"{source} is incomplete: {missing} listed in {CHECKSUM_FILE} are missing.")
    if added:
        raise ArtifactError(f"{source} holds files that are not part of the artefact: {added}. Refusing to load it.")
    for name in sorted(files):
        if file_sha256(source / name) != files[name]:
            raise ArtifactError(
                f"{source / name} does not match the checksum recorded in {CHECKSUM_FILE}: the file was modified "
                "or truncated. Refusing to load it."
            )


def _check_kind_and_version(source: Path, config: dict[str, Any], kind: str) -> None:
    if config.get("kind") != kind:
        raise ArtifactError(f"{source} holds a {config.get('kind')!r} artefact, expected {kind!r}.")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{source} has format_version {version!r}; this version of autosteer_interp reads format_version "
            f"{FORMAT_VERSION}. Upgrade the library or re-save the artefact."
        )


def _load_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise ArtifactError(f"{path} is not a readable safetensors file ({error}).") from error


def _check_declared(source: Path, declared: Any, tensors: dict[str, Tensor]) -> None:
    if not isinstance(declared, dict):
        raise ArtifactError(f"{source / CONFIG_FILE}: 'tensors' must map tensor names to shape and dtype.")
    if set(declared) != set(tensors):
        raise ArtifactError(
            f"{source}: the tensor file holds {sorted(tensors)}, config.json declares {sorted(declared)}."
        )
    for name, tensor in tensors.items():
        if declared[name] != _tensor_entry(tensor):
            raise ArtifactError(
                f"{source}: tensor {name!r} is {_tensor_entry(tensor)}, config.json declares {declared[name]}."
            )


def require_tensor(
    tensors: dict[str, Tensor], name: str, shape: tuple[int, ...], source: str, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Fetch one tensor of an artefact and check its shape and dtype, or raise :class:`ArtifactError`."""
    if name not in tensors:
        raise ArtifactError(f"{source}: tensor {name!r} is missing (found {sorted(tensors)}).")
    tensor = tensors[name]
    if tuple(tensor.shape) != shape:
        raise ArtifactError(f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, expected {shape}.")
    if tensor.dtype != dtype:
        raise ArtifactError(f"{source}: tensor {name!r} has dtype {tensor.dtype}, expected {dtype}.")
    if not bool(torch.isfinite(tensor).all()):
        raise ArtifactError(f"{source}: tensor {name!r} holds NaN or infinite values.")
    return tensor


# ------------------------------------------------------------------------------------------------ format 1


def _read_format_1(source: Path, config: dict[str, Any], kind: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    if config.get("kind") != kind:
        raise ArtifactError(f"{source} holds a {config.get('kind')!r} artefact, expected {kind!r}.")
    if config.get("tensors_sha256") != file_sha256(source / TENSOR_FILE):
        raise ArtifactError(
            f"{source / TENSOR_FILE} does not match the checksum recorded in config.json: the file was modified "
            "or truncated. Refusing to load it."
        )
    return config, _load_tensors(source / TENSOR_FILE)


@contextlib.contextmanager
def _reading_format_1() -> Iterator[None]:
    _READ_OPTIONS["format_1"] = True
    try:
        yield
    finally:
        _READ_OPTIONS["format_1"] = False


def migrate_artifact(source: str | Path, destination: str | Path, model: Any = None) -> Path:
    """Convert a format-1 artefact (prober, refusal head or AutoSteer) to the current format.

    Format 1 checksummed only the tensor file and fingerprinted only the LM head. The conversion loads it (its
    tensor checksum verified; with ``model``, its LM-head fingerprint checked against that model) and saves it
    at ``destination`` with every file checksummed and, given ``model``, the full fingerprint of that model.

    Args:
        source: The format-1 folder (left unchanged).
        destination: A new folder.
        model: The model the artefact was fitted on; required when the artefact records a base model.

    Returns:
        ``destination``.

    Raises:
        ArtifactError: If ``source`` is not a format-1 artefact, ``model`` is missing or different, or
            ``destination`` exists.
    """
    from .prober import SafetyProber
    from .provenance import ModelProvenance
    from .refusal_head import RefusalHead
    from .steer import AutoSteer

    source = Path(source)
    config = _read_config(source / CONFIG_FILE) if (source / CONFIG_FILE).is_file() else {}
    if config.get("format_version") != 1 or (source / CHECKSUM_FILE).exists():
        raise ArtifactError(f"{source} is not a format-1 artefact (format_version {config.get('format_version')!r}).")
    classes: dict[str, Any] = {cls.KIND: cls for cls in (SafetyProber, RefusalHead, AutoSteer)}
    if config.get("kind") not in classes:
        raise ArtifactError(f"{source}: unknown artefact kind {config.get('kind')!r}; allowed: {sorted(classes)}.")
    if config.get("base_model") and model is None:
        raise ArtifactError(
            f"{source} records its base model by the LM head only; pass the model it was fitted on (model=, or "
            "--model) so that the conversion checks it and records its full fingerprint."
        )
    if Path(destination).exists():
        raise ArtifactError(f"{destination} already exists; choose a new folder for the converted artefact.")
    with _reading_format_1():
        loaded = classes[config["kind"]].load(source, model=model)
    if model is not None:
        provenance = ModelProvenance.of(model)
        for part in (loaded, getattr(loaded, "prober", None), getattr(loaded, "head", None)):
            if part is not None and hasattr(part, "provenance"):
                part.provenance = provenance
    path = Path(loaded.save(destination))
    logger.warning("converted %s (format 1) to %s (format %d)", source, path, FORMAT_VERSION)
    return path
