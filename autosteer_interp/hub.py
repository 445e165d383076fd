"""Sharing fitted AutoSteers on the Hugging Face Hub: ``from_pretrained`` and ``push_to_hub``.

A Hub repository holds the same artefact folder as a local save (``config.json``, ``checksums.json``,
``prober/``, ``refusal_head/``) plus a model card (``README.md``) and the Hub's ``.gitattributes``; those two
top-level files are Hub metadata, never read by :func:`~autosteer_interp.artifacts.read_artifact`, and are the only
files it tolerates beside the checksummed ones. Loading goes through ``huggingface_hub.snapshot_download``, so
``HF_HUB_OFFLINE=1`` reads the local cache, and then through the same checks as a local folder (every checksum,
tensor shapes and dtypes, the model fingerprint).

Example:
    >>> steer = AutoSteer.from_pretrained("org/autosteer-llava-ov-7b", model=model)      # doctest: +SKIP
    >>> steer.push_to_hub("me/autosteer-smollm2")                                          # doctest: +SKIP
"""

import json
import tempfile
from pathlib import Path
from typing import Any

from .errors import ArtifactError, InvalidInputError, ModelLoadError

__all__ = ["from_pretrained", "model_card", "push_to_hub"]

_ARTEFACT_PATTERNS = ["config.json", "checksums.json", "tensors.safetensors", "prober/*", "refusal_head/*"]


def from_pretrained(
    repo_id_or_path: str | Path,
    model: Any = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
) -> Any:
    """Load an AutoSteer from a local folder or a Hub repository (offline: from the local Hub cache).

    Args:
        repo_id_or_path: A folder saved by ``AutoSteer.save``, or a Hub model id ``"org/name"``.
        model: When given, the artefact must have been fitted on it (fingerprint checked).
        revision: Hub branch, tag or commit (default: the main branch).
        cache_dir: Hub cache folder (default: huggingface_hub's, ``$HF_HUB_CACHE``).
        token: Hub token for private repositories.

    Returns:
        The :class:`~autosteer_interp.steer.AutoSteer`.

    Raises:
        ModelLoadError: The repository (or revision) is not reachable and not in the local cache.
        ArtifactError: The files are not a valid AutoSteer artefact, or do not match ``model``.
    """
    from .steer import AutoSteer

    path = Path(repo_id_or_path)
    if path.is_dir():
        return AutoSteer.load(path, model=model)
    repo_id = str(repo_id_or_path)
    if not _is_repo_id(repo_id):
        raise InvalidInputError(
            f"{repo_id!r} is neither a folder nor a Hub id like 'org/name' (no such directory: {path.absolute()})."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, token=token, allow_patterns=_ARTEFACT_PATTERNS
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        raise ModelLoadError(
            f"could not get {repo_id} (revision {revision or 'main'}) from the Hub or its local cache "
            f"({type(error).__name__}: {str(error)[:300]})."
        ) from error
    return AutoSteer.load(Path(str(folder)), model=model)


def _is_repo_id(text: str) -> bool:
    """``"org/name"``: exactly two non-empty parts."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts)


def model_card(steer: Any, repo_id: str) -> str:
    """The README.md of a pushed AutoSteer: base model, data, layers, measured gate metrics, use and limits."""
    provenance = steer.provenance
    summary = steer.summary
    lines = [
        "---",
        "library_name: autosteer_interp",
        "tags: [autosteer, steering, safety, interpretability, nnsight]",
        *([f"base_model: {provenance.model_id}"] if provenance is not None and "/" in provenance.model_id else []),
        "---",
        "",
        f"# {repo_id}",
        "",
        "An AutoSteer (Wu et al., EMNLP 2025, arXiv 2507.13255) for `autosteer_interp`: a safety prober reads the",
        f"residual stream entering decoder layer(s) {list(steer.layers)} at the last prompt token and, when",
        f"P(harmful) > {steer.threshold:g}, turns on a refusal head (epsilon {steer.epsilon:g}) on the LM head's",
        "input.",
        "",
        "## Base model",
        "",
        f"- {provenance.model_id if provenance else 'not recorded'} ({provenance.model_type if provenance else ''}, "
        f"d_model {steer.prober.d_model}; fingerprint {provenance.fingerprint if provenance else 'none'}): the",
        "  artefact refuses any other model.",
        "",
        "## Use",
        "",
        "```python",
        "from autosteer_interp.steer import AutoSteer",
        f'steer = AutoSteer.from_pretrained("{repo_id}", model=model)',
        "with model.trace(**inputs):",
        "    report = steer.apply(model)",
        "```",
        "",
    ]
    if summary is not None:
        val = summary.validation
        lines += [
            "## Measured when fitted (held-out part of the gate data)",
            "",
            f"AUROC {val.auroc:.3f}, detection {val.tpr:.1%}, false alarms {val.fpr:.1%} at threshold "
            f"{val.threshold:g}; {val.n_harmful} harmful and {val.n_benign} benign held-out requests.",
            f"Gate data: `{json.dumps(summary.gate_data)}`.",
            "",
        ]
    if steer.origin:
        lines += ["## Origin", "", f"`{json.dumps(steer.origin)}`", ""]
    lines += [
        "## Intended use and limits",
        "",
        "For research on inference-time safety steering. The gate is a classifier trained on a few thousand",
        "requests: it misses some harmful requests (especially rephrased or wrapped ones) and flags some benign",
        "ones; measure it on your own traffic (`autosteer-interp robustness`, `autosteer-interp eval`) before",
        "relying on it. It is not a substitute for safety training or moderation.",
        "",
    ]
    return "\n".join(lines)


def push_to_hub(
    steer: Any,
    repo_id: str,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str = "Upload AutoSteer",
    api: Any = None,
) -> str:
    """Upload an AutoSteer (its artefact folder and a model card) to a Hub model repository.

    Args:
        steer: The AutoSteer.
        repo_id: ``"org/name"`` (created if missing).
        private: Create the repository as private.
        token: Hub token (default: the logged-in one).
        commit_message: The commit's message.
        api: A ``huggingface_hub.HfApi`` (default: a new one).

    Returns:
        The URL of the commit.

    Raises:
        InvalidInputError: A malformed ``repo_id``.
        ArtifactError: The upload failed (nothing is left half-written locally).
    """
    if not isinstance(repo_id, str) or not _is_repo_id(repo_id):
        raise InvalidInputError(f"repo_id must look like 'org/name', got {repo_id!r}.")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="autosteer-push-") as staging:
        folder = Path(staging) / "autosteer"
        steer.save(folder)
        (folder / "README.md").write_text(model_card(steer, repo_id))
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=commit_message, repo_type="model"
            )
        except Exception as error:  # network, authentication, quota: report it as ours, with the cause
            raise ArtifactError(f"pushing to {repo_id} failed ({type(error).__name__}: {error}).") from error
    return str(getattr(commit, "commit_url", commit))
