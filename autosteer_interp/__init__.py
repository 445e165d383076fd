"""autosteer_interp: AutoSteer (Wu et al., EMNLP 2025) for the nnsight / TransformerLens ecosystem.

Importing the package is cheap and has no side effects: submodules (and nnsight, transformers) are imported
on first use of a name below.

Example:
    >>> import autosteer_interp as asi
    >>> model = asi.load_model("tiny-llava-onevision")
    >>> pairs = asi.builtin_pairs()[:8]
    >>> harmful = asi.collect_activations(model, [p.harmful for p in pairs], layers=[1, 2, 3], progress=False)
    >>> safe = asi.collect_activations(model, [p.safe for p in pairs], layers=[1, 2, 3], progress=False)
    >>> asi.safety_awareness_scores(safe, harmful).best_layer in (1, 2, 3)
    True
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("autosteer-interp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    "load_model": "models",
    "wrap": "models",
    "Prompt": "prompts",
    "PromptPair": "prompts",
    "builtin_pairs": "prompts",
    "builtin_gate_pairs": "prompts",
    "builtin_everyday": "prompts",
    "JailbreakWrapper": "prompts",
    "jailbreak_wrappers": "prompts",
    "wrap_prompts": "prompts",
    "load_vlsafe": "prompts",
    "load_tovilag": "prompts",
    "load_queries": "prompts",
    "collect_activations": "activations",
    "LayerActivations": "activations",
    "safety_awareness_scores": "sas",
    "LayerScores": "sas",
    "resolve": "architectures",
    "AutosteerError": "errors",
    "AutoSteer": "steer",
    "SafetyProber": "prober",
    "ProberConfig": "prober",
    "RefusalHead": "refusal_head",
    "RefusalHeadConfig": "refusal_head",
    "ModelProvenance": "provenance",
    "migrate_artifact": "artifacts",
    "import_official": "official",
    "from_pretrained": "hub",
    "ChatModelJudge": "judges",
    "judge_agreement": "judges",
    "judge_accuracy": "judges",
    "load_benchmark": "benchmark_data",
    "load_requests": "benchmark_data",
    "BenchmarkSet": "benchmark_data",
    "FitConfig": "fit",
    "fit_autosteer": "fit",
    "GateReport": "gating",
    "encode_prompts": "prompts",
    "AutoSteerHooks": "hooks_tl",
    "boot_bridge": "hooks_tl",
    "RemoteSteer": "remote",
    "prepare_remote": "remote",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autosteer_interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
