"""The later tutorials (see ``test_tutorials.py``; a second file so that the two xdist workers share them)."""

import pytest

from .test_tutorials import LATE, run_tutorial

pytestmark = pytest.mark.real


@pytest.mark.parametrize("path", LATE, ids=[p.stem for p in LATE])
def test_tutorial_runs_and_is_a_valid_notebook(path, tmp_path):
    run_tutorial(path, tmp_path)
