"""The layering contract: the maths modules import neither nnsight nor prompt code (they run without a model)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["sas", "prober", "refusal_head", "gating", "containers"])
def test_a_maths_module_imports_no_nnsight_and_no_prompt_code(module):
    forbidden = ("nnsight", "autosteer_interp.prompts", "autosteer_interp.activations")
    code = f"import sys, autosteer_interp.{module}; print(','.join(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"autosteer_interp.{module} imports {out}"
