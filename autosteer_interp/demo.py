"""The end-to-end demo behind ``make demo`` / ``autosteer-interp demo``: one function per stage.

On the real SmolLM2-135M-Instruct inside a LLaVA-OneVision shell (real language model, untrained vision tower,
text requests only), offline, in a few minutes on two CPU cores:

1. :func:`load_stage`: the model;
2. :func:`data_stage`: the built-in contrastive pairs, three quarters to fit and every fourth pair held out, plus
   the held-out borderline-benign requests; with ``AUTOSTEER_DATA_DIR`` pointing at a folder with ``vlsafe/``,
   also VLSafe pairs (the first ones to fit, the last ones as two more held-out sets);
3. :func:`fit_stage`: SAS -> prober -> refusal head (:meth:`AutoSteer.fit`), with what each stage found;
4. :func:`robustness_stage`: how often the gate flags held-out harmful requests in other phrasings and inside
   jailbreak wrappers, and benign, wrapped benign and borderline-benign ones
   (:func:`~autosteer_interp.robustness.gate_robustness`);
5. :func:`evaluate_stage`: Orig / Steer / AutoSteer on every held-out set (:func:`~autosteer_interp.evaluate.evaluate`);
6. :func:`report_stage`: the tables, the plots and the JSON files.

To add a section (e.g. a report on your own prompt set), write a function taking and returning the
:class:`DemoState` and insert it into :data:`STAGES`. Printed output shows rates, never harmful texts.
"""

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInputError
from .evaluate import EvalReport, EvalSet, evaluate
from .prompts import PromptPair, builtin_borderline, builtin_pairs, load_vlsafe
from .robustness import RobustnessReport, gate_robustness, robustness_families
from .validation import check_new_folder, positive_int

__all__ = ["DEMO_MODEL", "STAGES", "DemoState", "run_demo"]

logger = logging.getLogger(__name__)

DEMO_MODEL = "smollm2-llava-onevision"
VLSAFE_FIT, VLSAFE_TEST = 160, 48  # VLSafe pairs added to fitting / held out, when the data is available
NEW_TOKENS = 32


@dataclass
class DemoState:
    """What the stages share.

    Attributes:
        out: Output folder (created by the first stage that writes).
        batch_size: Prompts per forward pass / ``generate`` call.
        n_pairs: Use only the first ``n_pairs`` built-in pairs (``None``: all).
        data_dir: Folder with ``vlsafe/`` (``None``: built-in pairs only).
        model: The wrapped model.
        fit_pairs: Pairs to fit on.
        test_sets: Held-out sets to evaluate.
        held_out_pairs: The held-out pairs of the fitting distribution (built-in, and VLSafe when available).
        steer: The fitted AutoSteer.
        robustness: The gate robustness report.
        report: The evaluation report.
        seconds: Wall time per stage.
        say: Where progress lines and tables go (the CLI passes ``print``; default: this module's logger).
    """

    out: Path
    batch_size: int = 16
    n_pairs: int | None = None
    data_dir: Path | None = None
    model: Any = None
    fit_pairs: list[PromptPair] = field(default_factory=list)
    test_sets: list[EvalSet] = field(default_factory=list)
    held_out_pairs: list[PromptPair] = field(default_factory=list)
    steer: Any = None
    robustness: RobustnessReport | None = None
    report: EvalReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    say: Callable[[str], None] = field(default=lambda message: logger.info("%s", message))


def load_stage(state: DemoState) -> DemoState:
    """Load the real SmolLM2 inside LLaVA-OneVision."""
    from .models import load_model

    state.say(f"[1/6] Loading {DEMO_MODEL} (real SmolLM2-135M-Instruct language model, untrained vision tower) ...")
    state.model = load_model(DEMO_MODEL)
    return state


def data_stage(state: DemoState) -> DemoState:
    """Split the built-in pairs (every fourth held out) and add VLSafe pairs when the data is there."""
    pairs = builtin_pairs()[: state.n_pairs]
    held_out = [p for i, p in enumerate(pairs) if i % 4 == 3]
    state.fit_pairs = [p for i, p in enumerate(pairs) if i % 4 != 3]
    state.held_out_pairs = list(held_out)
    state.test_sets = [
        EvalSet("held-out harmful", [p.harmful for p in held_out], "harmful"),
        EvalSet("held-out safe twins", [p.safe for p in held_out], "benign"),
        EvalSet("borderline benign", builtin_borderline("test"), "benign"),
    ]
    source = f"{len(state.fit_pairs)} built-in pairs to fit, {len(held_out)} held out"
    if state.data_dir is not None:
        vlsafe = load_vlsafe(state.data_dir / "vlsafe")
        state.fit_pairs += vlsafe[:VLSAFE_FIT]
        test = vlsafe[-VLSAFE_TEST:]
        state.held_out_pairs += test
        state.test_sets[2:2] = [
            EvalSet("VLSafe harmful", [p.harmful for p in test], "harmful"),
            EvalSet("VLSafe safe", [p.safe for p in test], "benign"),
        ]
        source += f"; VLSafe from {state.data_dir}: first {VLSAFE_FIT} pairs to fit, last {VLSAFE_TEST} held out"
    state.say(f"[2/6] Data: {source}; {len(state.test_sets[-1].prompts)} held-out borderline-benign requests.")
    return state


def fit_stage(state: DemoState) -> DemoState:
    """SAS -> prober -> refusal head, printing what each part found."""
    from .steer import AutoSteer

    state.say(
        f"[3/6] Fitting AutoSteer on {len(state.fit_pairs)} pairs: SAS over all layers -> gate (prober, with the "
        f"built-in gate data and jailbreak-wrapped pairs, the library defaults) -> refusal head ..."
    )
    state.steer = steer = AutoSteer.fit(state.model, state.fit_pairs, batch_size=state.batch_size, progress=True)
    summary = steer.summary
    assert summary is not None
    sas, val, loss = summary.sas, summary.validation, summary.head_loss
    best = f"best layer {sas.best_layer} (SAS {float(sas.scores.max()):.3f})"
    state.say(f"      SAS: {best}; the gate reads layers {list(steer.layers)}")
    state.say(
        f"      gate (held-out part of its training data): AUROC {val.auroc:.3f}, detects {val.tpr:.0%}, "
        f"false alarms {val.fpr:.0%} at threshold {steer.threshold}"
    )
    state.say(f"      refusal head: epsilon {steer.epsilon}, training loss {loss[0]:.2f} -> {loss[-1]:.2f}")
    return state


def robustness_stage(state: DemoState) -> DemoState:
    """The gate alone on held-out families: other phrasings, jailbreak wrappers, borderline-benign requests."""
    families = robustness_families(state.held_out_pairs)
    n = sum(len(f.prompts) for f in families.values())
    state.say(f"[4/6] Gate robustness on {n} held-out requests in {len(families)} families (prefill only) ...")
    state.robustness = gate_robustness(
        state.model, state.steer, families, batch_size=state.batch_size, label="held-out families"
    )
    return state


def evaluate_stage(state: DemoState) -> DemoState:
    """Orig / Steer (always on) / AutoSteer on every held-out set, greedy answers."""
    n = sum(len(s.prompts) for s in state.test_sets)
    state.say(f"[5/6] Generating {NEW_TOKENS}-token answers to {n} held-out requests, three ways ...")
    state.report = evaluate(
        state.model, state.steer, state.test_sets, batch_size=state.batch_size, max_new_tokens=NEW_TOKENS
    )
    return state


def report_stage(state: DemoState) -> DemoState:
    """Save the artefact, JSON, Markdown and plots; print the table."""
    assert state.report is not None and state.steer is not None and state.robustness is not None
    out = state.out
    out.mkdir(parents=True, exist_ok=True)
    state.steer.save(out / "autosteer")
    (out / "fit.json").write_text(json.dumps(state.steer.summary.to_dict(), indent=2))
    (out / "report.json").write_text(state.report.to_json())
    (out / "report.md").write_text(state.report.to_markdown() + "\n")
    state.robustness.to_json(out / "robustness.json")
    (out / "robustness.md").write_text(state.robustness.to_markdown() + "\n")
    plots = ""
    try:
        state.steer.summary.sas.plot(out / "sas.png", title="SAS per layer (SmolLM2 in LLaVA-OneVision)")
        state.report.plot(out / "report.png", title="Held-out sets: Orig / Steer / AutoSteer")
        state.robustness.plot(out / "robustness.png")
        plots = ", sas.png, report.png, robustness.png"
    except ImportError:
        plots = " (install matplotlib for the plots)"
    state.say(f"[6/6] Saved to {out}: autosteer/, fit.json, report.json, report.md, robustness.json/.md{plots}.\n")
    state.say(state.robustness.to_markdown() + "\n")
    state.say(state.report.to_markdown(compact=True))
    return state


STAGES: list[Callable[[DemoState], DemoState]] = [
    load_stage,
    data_stage,
    fit_stage,
    robustness_stage,
    evaluate_stage,
    report_stage,
]
"""The demo's stages, in order; each takes and returns the shared :class:`DemoState`."""


def run_demo(
    out: Path | None = None,
    n_pairs: int | None = None,
    batch_size: int = 16,
    say: Callable[[str], None] | None = None,
) -> int:
    """Run every stage of :data:`STAGES`; returns the exit code 0.

    Args:
        out: New output folder (default ``outputs/demo-<timestamp>``); refused if it exists and is not empty.
        n_pairs: Use only the first ``n_pairs`` built-in pairs.
        batch_size: Prompts per forward pass.
        say: Where progress lines and tables go (default: this module's logger, level INFO).

    Raises:
        InvalidInputError: If ``out`` exists and is not empty or cannot be created, or ``n_pairs`` is outside
            16..the number of built-in pairs.
    """
    out = check_new_folder(out or Path(time.strftime("outputs/demo-%Y%m%d-%H%M%S")), "--out")
    batch_size = positive_int(batch_size, "batch_size")
    available = len(builtin_pairs())
    if n_pairs is not None and not 16 <= positive_int(n_pairs, "--limit") <= available:
        raise InvalidInputError(
            f"the demo needs at least 16 built-in pairs and there are {available} (--limit), got {n_pairs}."
        )
    env_dir = os.environ.get("AUTOSTEER_DATA_DIR")
    data_dir = Path(env_dir) if env_dir and (Path(env_dir) / "vlsafe").is_dir() else None
    state = DemoState(out=out, batch_size=batch_size, n_pairs=n_pairs, data_dir=data_dir)
    if say is not None:
        state.say = say
    started = time.perf_counter()
    for stage in STAGES:
        stage_start = time.perf_counter()
        state = stage(state)
        state.seconds[stage.__name__] = round(time.perf_counter() - stage_start, 1)
    total = time.perf_counter() - started
    (out / "timing.json").write_text(json.dumps({"stages": state.seconds, "total": round(total, 1)}, indent=2))
    stages = ", ".join(f"{name[:-6]} {seconds:.0f} s" for name, seconds in state.seconds.items())
    state.say(f"\nDemo took {total / 60:.1f} min ({stages}).")
    return 0
