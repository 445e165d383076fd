import hashlib
import json

import pytest
import torch

from autosteer_interp.artifacts import read_artifact, write_artifact
from autosteer_interp.errors import ArtifactError


def reseal(folder):
    """Recompute checksums.json as someone editing the folder on purpose would."""
    paths = [p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != "checksums.json"]
    files = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    (folder / "checksums.json").write_text(json.dumps({"algorithm": "sha256", "files": files}))


def save(path, value=1.0, **kwargs):
    return write_artifact(path, "thing", {"answer": value}, {"w": torch.full((3,), value)}, **kwargs)


def test_round_trip_keeps_config_and_tensors(tmp_path):
    save(tmp_path / "a")
    config, tensors = read_artifact(tmp_path / "a", "thing")
    assert config["answer"] == 1.0 and config["format_version"] == 2 and "library_version" in config
    assert torch.equal(tensors["w"], torch.ones(3))


def test_saving_never_silently_overwrites(tmp_path):
    save(tmp_path / "a", 1.0)
    with pytest.raises(ArtifactError, match="already exists; pass overwrite=True"):
        save(tmp_path / "a", 2.0)
    assert read_artifact(tmp_path / "a", "thing")[0]["answer"] == 1.0
    save(tmp_path / "a", 2.0, overwrite=True)
    assert read_artifact(tmp_path / "a", "thing")[0]["answer"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no staging or backup folders left


def test_a_failed_save_leaves_the_previous_artefact_intact(tmp_path):
    save(tmp_path / "a", 1.0)
    with pytest.raises(ArtifactError, match="non-finite"):
        save(tmp_path / "a", float("nan"), overwrite=True)
    with pytest.raises(ArtifactError, match="saving to .* failed.*unchanged"):
        write_artifact(tmp_path / "a", "thing", {"x": object()}, {"w": torch.ones(1)}, overwrite=True)
    assert read_artifact(tmp_path / "a", "thing")[0]["answer"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_overwrite_refuses_a_folder_that_is_not_an_artefact(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not an artefact folder"):
        save(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_tampered_tensor_file_is_refused(tmp_path):
    save(tmp_path / "a")
    path = tmp_path / "a" / "tensors.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match the checksum"):
        read_artifact(tmp_path / "a", "thing")


def test_a_truncated_tensor_file_is_refused(tmp_path):
    save(tmp_path / "a")
    path = tmp_path / "a" / "tensors.safetensors"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ArtifactError, match="modified or truncated"):
        read_artifact(tmp_path / "a", "thing")


def test_a_pickle_in_place_of_the_tensors_never_executes(tmp_path):
    save(tmp_path / "a")
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    (tmp_path / "a" / "tensors.safetensors").write_bytes(payload)
    reseal(tmp_path / "a")  # even with matching checksums
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        read_artifact(tmp_path / "a", "thing")
    assert not marker.exists()


def test_wrong_kind_unknown_version_and_bad_json_are_refused(tmp_path):
    save(tmp_path / "a")
    with pytest.raises(ArtifactError, match="holds a 'thing' artefact, expected 'other'"):
        read_artifact(tmp_path / "a", "other")
    config_path = tmp_path / "a" / "config.json"
    config = json.loads(config_path.read_text())
    config["format_version"] = 99
    config_path.write_text(json.dumps(config))
    reseal(tmp_path / "a")
    with pytest.raises(ArtifactError, match="format_version 99.*reads format_version 2"):
        read_artifact(tmp_path / "a", "thing")
    config_path.write_text("{broken")
    reseal(tmp_path / "a")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_artifact(tmp_path / "a", "thing")
