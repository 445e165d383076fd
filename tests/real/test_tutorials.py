"""Every tutorial runs, as a script, in a fresh process (so notebooks in the docs can never rot).

The tutorials are split over two test files (this one and ``test_tutorials_late.py``) so that pytest-xdist's
``--dist loadfile`` runs them on both workers.
"""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

pytestmark = pytest.mark.real

TUTORIALS = sorted((Path(__file__).resolve().parents[2] / "tutorials").glob("[0-9][0-9]_*.py"))
EARLY, LATE = TUTORIALS[:3], TUTORIALS[3:]


def run_tutorial(path: Path, tmp_path: Path) -> None:
    """Run one tutorial with the test suite's small sizes; it must exit cleanly and save a figure."""
    notebook = jupytext.read(path)
    assert sum(cell.cell_type == "markdown" for cell in notebook.cells) >= 2
    env = dict(os.environ, TUTORIAL_OUT=str(tmp_path), TUTORIAL_PAIRS="48", TUTORIAL_WRAPPED="64")
    env.update(TUTORIAL_GATE_PAIRS="32", TUTORIAL_FAMILY="24")
    env.update(HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env["OMP_NUM_THREADS"] = "1"  # beside the other worker on a 2-core machine
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert any(tmp_path.glob("*.png")), result.stdout[-2000:]


def test_there_are_six_tutorials():
    assert [p.name[:2] for p in TUTORIALS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", EARLY, ids=[p.stem for p in EARLY])
def test_tutorial_runs_and_is_a_valid_notebook(path, tmp_path):
    run_tutorial(path, tmp_path)
