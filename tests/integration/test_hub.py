"""AutoSteer on the Hugging Face Hub, without a network: a local cache laid out as huggingface_hub lays it out.

No Hub is reachable from the tests, so ``push_to_hub`` runs against a recording stand-in for ``HfApi`` (the only
mock here); what it uploads is then laid out as a Hub cache and read back by ``from_pretrained`` offline.
"""

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from autosteer_interp.errors import ArtifactError, InvalidInputError, ModelLoadError
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.provenance import ModelProvenance
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.steer import AutoSteer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def steer(tiny_llava):
    torch.manual_seed(0)
    prober = SafetyProber(64, ProberConfig(kind="linear"), layers=[2])
    head = RefusalHead(64, epsilon=0.1)
    with torch.no_grad():
        head.S.add_(0.1 * torch.randn(64, 64))
    prober.provenance = head.provenance = ModelProvenance.of(tiny_llava)
    return AutoSteer(prober, head, threshold=0.4)


def as_hub_cache(folder: Path, cache: Path, repo_id: str, commit: str = COMMIT) -> Path:
    """Lay ``folder`` out as huggingface_hub's cache does: blobs by hash, snapshot symlinks, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


class RecordingHubApi:
    """Stands in for huggingface_hub.HfApi (no network here): records the calls, keeps a copy of the upload."""

    def __init__(self, remote: Path, fail: bool = False) -> None:
        self.remote, self.fail, self.calls = remote, fail, []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, repo_id, folder_path, **kwargs):
        if self.fail:
            raise ConnectionError("no route to the Hub")
        self.calls.append(("upload_folder", repo_id, kwargs))
        shutil.copytree(folder_path, self.remote / repo_id)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/{COMMIT}"})()


def test_from_pretrained_reads_a_folder(steer, tmp_path, tiny_llava):
    steer.save(tmp_path / "local")
    loaded = AutoSteer.from_pretrained(tmp_path / "local", model=tiny_llava)
    assert loaded.threshold == 0.4 and torch.equal(loaded.head.S, steer.head.S)


def test_push_then_from_pretrained_offline_from_the_cache(steer, tmp_path, tiny_llava):
    api = RecordingHubApi(tmp_path / "remote")
    url = steer.push_to_hub("me/autosteer-tiny", api=api)
    assert url.endswith(COMMIT) and [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    uploaded = tmp_path / "remote" / "me" / "autosteer-tiny"
    card = (uploaded / "README.md").read_text()
    assert "library_name: autosteer_interp" in card and "layer(s) [2]" in card and "Intended use and limits" in card
    (uploaded / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    as_hub_cache(uploaded, tmp_path / "cache", "me/autosteer-tiny")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    loaded = AutoSteer.from_pretrained("me/autosteer-tiny", model=tiny_llava, cache_dir=tmp_path / "cache")
    assert loaded.threshold == 0.4 and torch.equal(loaded.head.S, steer.head.S) and loaded.layers == (2,)
    pinned = AutoSteer.from_pretrained("me/autosteer-tiny", revision=COMMIT, cache_dir=tmp_path / "cache")
    assert torch.equal(pinned.head.S, steer.head.S)


def test_the_hub_copy_gets_the_same_checks_as_a_folder(steer, tmp_path, tiny_qwen2):
    steer.save(tmp_path / "artefact")
    snapshot = as_hub_cache(tmp_path / "artefact", tmp_path / "cache", "me/steer")
    with pytest.raises(ArtifactError, match="fitted on"):
        AutoSteer.from_pretrained("me/steer", model=tiny_qwen2, cache_dir=tmp_path / "cache")
    target = (snapshot / "prober" / "config.json").resolve()
    target.write_text(target.read_text().replace('"threshold": 0.4', '"threshold": 1.0'))
    with pytest.raises(ArtifactError, match="does not match the checksum"):
        AutoSteer.from_pretrained("me/steer", cache_dir=tmp_path / "cache")


def test_what_is_not_in_the_cache_is_a_clear_error(tmp_path, steer):
    with pytest.raises(ModelLoadError, match="could not get me/absent"):
        AutoSteer.from_pretrained("me/absent", cache_dir=tmp_path / "cache")
    steer.save(tmp_path / "artefact")
    as_hub_cache(tmp_path / "artefact", tmp_path / "cache", "me/steer")
    with pytest.raises(ModelLoadError, match="revision v2"):
        AutoSteer.from_pretrained("me/steer", revision="v2", cache_dir=tmp_path / "cache")
    with pytest.raises(InvalidInputError, match="neither a folder nor a Hub id"):
        AutoSteer.from_pretrained(tmp_path / "nowhere" / "deep")


def test_a_failed_push_is_an_artefact_error(steer, tmp_path):
    with pytest.raises(ArtifactError, match="pushing to me/x failed.*no route"):
        steer.push_to_hub("me/x", api=RecordingHubApi(tmp_path / "remote", fail=True))
    with pytest.raises(InvalidInputError, match="org/name"):
        steer.push_to_hub("no-slash", api=RecordingHubApi(tmp_path / "remote"))
