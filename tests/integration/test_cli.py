"""The real CLI, run as a subprocess on a tiny model."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "autosteer_interp.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def sas_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sas"
    result = run_cli("sas", "--model", "tiny-llava-onevision", "--limit", "8", "--out", str(out), cwd=out.parent)
    return result, out


def test_sas_command_prints_the_table_and_saves_json_and_plot(sas_run):
    result, out = sas_run
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads((out / "sas.json").read_text())
    assert payload["layers"] == [1, 2, 3] and payload["n_pairs"] == 8 and payload["model"] == "tiny-llava-onevision"
    assert f"Best layer: {payload['best_layer']}" in result.stdout
    assert (out / "sas.png").stat().st_size > 1000


def test_a_non_empty_output_directory_is_refused_with_exit_code_2(sas_run):
    _, out = sas_run
    before = sorted(p.name for p in out.iterdir())
    result = run_cli("sas", "--model", "tiny-llava-onevision", "--limit", "8", "--out", str(out), cwd=out.parent)
    assert result.returncode == 2 and "exists and is not empty" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_missing_vlsafe_directory_is_a_clear_error(tmp_path):
    result = run_cli(
        "sas",
        "--model",
        "tiny-llava-onevision",
        "--vlsafe",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_bad_layers_are_a_clear_error(tmp_path):
    result = run_cli(
        "sas",
        "--model",
        "tiny-llava-onevision",
        "--layers",
        "1,x",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "comma-separated integers" in result.stderr
    result = run_cli(
        "sas",
        "--model",
        "tiny-llava-onevision",
        "--layers",
        "1,9",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "valid layers are the integers 0..3" in result.stderr
    assert not (tmp_path / "o").exists()
