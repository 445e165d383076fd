"""Artefacts that were edited, truncated, of an old format, or caught by a crash mid-save."""

import json
import os
import shutil
import signal
import sys

import pytest
import torch
from safetensors.torch import save_file

from autosteer_interp import artifacts
from autosteer_interp.artifacts import migrate_artifact, read_artifact, write_artifact
from autosteer_interp.errors import ArtifactError
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.steer import AutoSteer
from tests.unit.test_artifacts import reseal

D = 16


def make_steer(threshold=0.5, seed=0):
    torch.manual_seed(seed)
    prober = SafetyProber(D, ProberConfig(kind="linear"), layers=[2])
    head = RefusalHead(D, epsilon=0.1)
    with torch.no_grad():
        head.S.add_(0.1 * torch.randn(D, D))
    return AutoSteer(prober, head, threshold=threshold)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "steer"
    make_steer().save(path)
    return path


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------------------------------ tampering


@pytest.mark.parametrize(
    ("file", "change"),
    [
        ("prober/config.json", lambda c: c.update(threshold=1.0)),
        ("prober/config.json", lambda c: c.update(threshold=0.4)),
        ("prober/config.json", lambda c: c.update(layers=[3])),
        ("refusal_head/config.json", lambda c: c.update(epsilon=0.0001)),
        ("config.json", lambda c: c.update(gate_mode="every_step")),
    ],
)
def test_an_edited_config_is_refused(saved, file, change):
    edit_json(saved / file, change)
    with pytest.raises(ArtifactError, match=f"{file.split('/')[-1]} does not match the checksum"):
        AutoSteer.load(saved)
    if file.startswith("prober"):
        with pytest.raises(ArtifactError, match="does not match the checksum"):
            SafetyProber.load(saved / "prober")


def test_added_and_removed_files_are_refused(saved):
    (saved / "prober" / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"not part of the artefact: \['prober/extra.safetensors'\]"):
        AutoSteer.load(saved)
    (saved / "prober" / "extra.safetensors").unlink()
    (saved / "refusal_head" / "tensors.safetensors").unlink()
    with pytest.raises(ArtifactError, match="refusal_head/tensors.safetensors.*are missing"):
        AutoSteer.load(saved)


def test_a_resealed_head_of_the_wrong_shape_is_refused(saved):
    head = saved / "refusal_head"
    save_file({"S": torch.ones(1, D)}, head / "tensors.safetensors")
    edit_json(head / "config.json", lambda c: c["tensors"]["S"].update(shape=[1, D]))
    reseal(head)
    reseal(saved)
    with pytest.raises(ArtifactError, match=rf"tensor 'S' has shape \(1, {D}\), expected \({D}, {D}\)"):
        AutoSteer.load(saved)


def test_a_tensor_that_differs_from_its_declaration_is_refused(saved):
    head = saved / "refusal_head"
    save_file({"S": torch.ones(D, D, dtype=torch.float64)}, head / "tensors.safetensors")
    reseal(head)
    with pytest.raises(ArtifactError, match="tensor 'S' is .*float64.*config.json declares .*float32"):
        RefusalHead.load(head)
    edit_json(head / "config.json", lambda c: c["tensors"]["S"].update(dtype="float64"))
    reseal(head)
    with pytest.raises(ArtifactError, match="tensor 'S' has dtype torch.float64, expected torch.float32"):
        RefusalHead.load(head)


def test_a_head_holding_nan_is_refused(saved):
    head = saved / "refusal_head"
    save_file({"S": torch.full((D, D), float("nan"))}, head / "tensors.safetensors")
    reseal(head)
    with pytest.raises(ArtifactError, match="'S' holds NaN or infinite values"):
        RefusalHead.load(head)


def test_checksums_cover_every_file(saved):
    listed = json.loads((saved / "checksums.json").read_text())["files"]
    on_disk = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()} - {"checksums.json"}
    assert set(listed) == on_disk
    assert {"config.json", "prober/config.json", "prober/checksums.json", "refusal_head/tensors.safetensors"} <= on_disk


# ------------------------------------------------------------------------------------------------ format 1


def write_format_1_prober(path):
    """A prober artefact exactly as autosteer_interp 0.1 wrote it (config checksum over the tensors only)."""
    prober = SafetyProber(D, ProberConfig(kind="linear"), layers=[2])
    path.mkdir()
    save_file({k: v.contiguous() for k, v in prober.state_dict().items()}, path / "tensors.safetensors")
    config = {
        "kind": "safety_prober",
        "format_version": 1,
        "library_version": "0.1.0",
        "d_model": D,
        "layers": [2],
        "n_layers": 1,
        "threshold": 0.5,
        "prober": prober.config.to_dict(),
        "base_model": None,
        "best_epoch": 0,
        "tensors_sha256": artifacts.file_sha256(path / "tensors.safetensors"),
    }
    (path / "config.json").write_text(json.dumps(config))
    return prober


def test_a_format_1_artefact_is_refused_with_the_way_to_convert_it(tmp_path):
    write_format_1_prober(tmp_path / "old")
    with pytest.raises(ArtifactError, match="format-1 artefact.*autosteer-interp migrate"):
        SafetyProber.load(tmp_path / "old")


def test_migration_converts_a_format_1_artefact(tmp_path):
    original = write_format_1_prober(tmp_path / "old")
    migrate_artifact(tmp_path / "old", tmp_path / "new")
    loaded = SafetyProber.load(tmp_path / "new")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), original.state_dict().values()))
    assert loaded.threshold == 0.5 and (tmp_path / "old" / "config.json").is_file()
    with pytest.raises(ArtifactError, match="not a format-1 artefact"):
        migrate_artifact(tmp_path / "new", tmp_path / "newer")
    with pytest.raises(ArtifactError, match="already exists"):
        migrate_artifact(tmp_path / "old", tmp_path / "new")


def test_migration_refuses_a_format_1_artefact_with_a_bad_tensor_checksum(tmp_path):
    write_format_1_prober(tmp_path / "old")
    save_file({"w": torch.ones(1)}, tmp_path / "old" / "tensors.safetensors")
    with pytest.raises(ArtifactError, match="does not match the checksum recorded in config.json"):
        migrate_artifact(tmp_path / "old", tmp_path / "new")
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------------ saving


def test_a_parent_that_is_a_file_is_an_artefact_error(tmp_path):
    (tmp_path / "file").write_text("keep")
    with pytest.raises(ArtifactError, match="saving to .*file/steer failed.*NotADirectoryError|FileExistsError"):
        make_steer().save(tmp_path / "file" / "steer")
    assert (tmp_path / "file").read_text() == "keep"


def test_leftovers_of_a_dead_save_are_restored_or_removed(tmp_path, caplog):
    path = tmp_path / "a"
    write_artifact(path, "thing", {"v": 1}, {"w": torch.ones(2)})
    dead = _dead_pid()
    path.rename(tmp_path / f".a.previous-{dead}-xyz")
    (tmp_path / f".a.saving-{dead}-abc").mkdir()
    (tmp_path / f".a.saving-{dead}-abc" / "config.json").write_text("{half")
    with caplog.at_level("WARNING", logger="autosteer_interp.artifacts"):
        config, _ = read_artifact(path, "thing")
    assert config["v"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert "restored" in caplog.text and "removed" in caplog.text


def test_the_leftovers_of_a_live_save_are_left_alone(tmp_path):
    write_artifact(tmp_path / "a", "thing", {"v": 1}, {"w": torch.ones(2)})
    live = tmp_path / f".a.saving-{os.getppid()}-abc"
    live.mkdir()
    read_artifact(tmp_path / "a", "thing")
    assert live.is_dir()


def _dead_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# The functions of a save that touch the disk in order (checksum and listing loops are not stages).
STAGES = {"write_artifact", "_swap_in", "_exchange", "_make_durable", "_fsync_dir", "recover_leftovers"}


def _save_and_die_at_line(n, path, exchange):
    """In a forked child: save over ``path`` and SIGKILL ourselves at the n-th line run by a save stage."""
    pid = os.fork()
    if pid == 0:
        if not exchange:
            artifacts._exchange = lambda first, second: False
        seen = [0]

        def trace(frame, event, arg):
            if frame.f_code.co_filename != artifacts.__file__:
                return None
            if event == "line" and frame.f_code.co_name in STAGES:
                seen[0] += 1
                if seen[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
            return trace

        sys.settrace(trace)
        try:
            make_steer(threshold=0.7, seed=1).save(path, overwrite=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_a_save_killed_at_any_line_leaves_a_loadable_artefact(tmp_path, exchange):
    path = tmp_path / "steer"
    outcomes = []
    for n in range(1, 5000):
        shutil.rmtree(path, ignore_errors=True)
        make_steer(threshold=0.5).save(path)
        killed = _save_and_die_at_line(n, path, exchange)
        steer = AutoSteer.load(path)  # old or new, never neither; leftovers cleaned
        assert sorted(p.name for p in tmp_path.iterdir()) == ["steer"]
        outcomes.append(steer.threshold)
        if not killed:
            break
    assert outcomes[-1] == 0.7 and outcomes[0] == 0.5
    assert set(outcomes) == {0.5, 0.7}
    assert len(outcomes) > 100  # every line of every stage of a save (three folders) was a kill point
    first_new = outcomes.index(0.7)
    assert all(t == 0.7 for t in outcomes[first_new:])  # once the swap is done, the new artefact stays
