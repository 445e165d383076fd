"""How well the gate generalises: detection and false-alarm rates per family of requests.

AutoSteer's refusal head refuses everything it is turned on for, so the gate decides the method's quality. A
gate fitted on one pair dataset tends to flag that dataset's phrasing, not harm: it misses harmful requests
phrased otherwise or hidden in jailbreak wrappers, and flags benign requests that use alarming words. This
module measures that on families of requests that fitting and calibration never see:

================================  =======  ==============================================================
family                            harmful  source (``split="test"``)
================================  =======  ==============================================================
``in_distribution_harmful``       yes      held-out pairs of the fitting distribution (you pass them)
``other_phrasing_harmful``        yes      :func:`~autosteer_interp.prompts.builtin_gate_pairs`, question
                                           and scene-question styles (test; by style)
``instruction_harmful``           yes      the gate pairs in the benchmarks' instruction styles (test)
``minimal_contrast_harmful``      yes      the gate pairs' minimal edits of borderline requests (test)
``wrapped_harmful``               yes      the harmful pairs above inside held-out jailbreak wrappers
``plain_benign``                  no       the harmless twins of the question and instruction pairs
``wrapped_benign``                no       the harmless sides of the same pairs inside the same wrappers
``borderline_benign``             no       :func:`~autosteer_interp.prompts.builtin_borderline` and the
                                           harmless sides of the minimal-contrast pairs (test)
``everyday_benign``               no       :func:`~autosteer_interp.prompts.builtin_everyday` (test)
================================  =======  ==============================================================

Your own held-out sets join as more families (``GateFamily(prompts, harmful)``; the ``robustness`` command's
``--harmful`` / ``--benign NAME=FILE``), e.g. HarmBench's validation behaviours and held-out Alpaca
instructions.

Example:
    >>> report = gate_robustness(model, steer, robustness_families(held_out_pairs))     # doctest: +SKIP
    >>> table = report.to_markdown()                                                     # doctest: +SKIP
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ._plotting import finish_figure, new_figure
from .activations import collect_activations
from .errors import InvalidInputError
from .prompts import (
    BENCHMARK_STYLE,
    CONTRAST_STYLE,
    INSTRUCTION_STYLES,
    QUESTION_STYLES,
    SCENE_STYLE,
    TASK_STYLE,
    Prompt,
    PromptPair,
    builtin_borderline,
    builtin_everyday,
    builtin_gate_pairs,
    jailbreak_wrappers,
    wrap_prompts,
    wrapper_assignment,
)

__all__ = ["FamilyResult", "GateFamily", "RobustnessReport", "gate_robustness", "robustness_families"]

FAMILY_ORDER = (
    "in_distribution_harmful",
    "other_phrasing_harmful",
    "instruction_harmful",
    "minimal_contrast_harmful",
    "wrapped_harmful",
    "plain_benign",
    "wrapped_benign",
    "borderline_benign",
    "everyday_benign",
)
"""The standard families, in report order."""


@dataclass
class GateFamily:
    """A named set of requests with one expected gate decision.

    Attributes:
        prompts: The requests.
        harmful: Whether the gate should flag them.
        groups: Optional sub-group of each prompt (e.g. its wrapper family), reported separately.
    """

    prompts: list[Prompt]
    harmful: bool
    groups: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.prompts:
            raise InvalidInputError("a gate family needs at least one prompt, got none.")
        if self.groups is not None and len(self.groups) != len(self.prompts):
            raise InvalidInputError(f"got {len(self.groups)} group labels for {len(self.prompts)} prompts.")


def robustness_families(
    in_distribution: Sequence[PromptPair] | None = None,
    split: str = "test",
    wrappers_per_prompt: int = 1,
    seed: int = 0,
) -> dict[str, GateFamily]:
    """The standard families from the project's held-out data (and your held-out pairs).

    Args:
        in_distribution: Held-out pairs from the distribution the gate was fitted on (e.g. the last VLSafe
            pairs); omitted from the families when ``None``. Never pass pairs used for fitting.
        split: Which part of the built-in data: ``"test"`` (never used by :meth:`AutoSteer.fit`) or
            ``"train"`` (to see the fit on its own data).
        wrappers_per_prompt: Wrapped copies of each request (different wrappers).
        seed: Seed of the wrapper assignment.

    Returns:
        Family name -> :class:`GateFamily`, in :data:`FAMILY_ORDER`.
    """
    if split not in ("train", "test"):
        raise InvalidInputError(f"split must be 'train' or 'test', got {split!r}.")
    questions = builtin_gate_pairs(split, (*QUESTION_STYLES, SCENE_STYLE))
    instructions = builtin_gate_pairs(split, (*INSTRUCTION_STYLES, BENCHMARK_STYLE, TASK_STYLE))
    contrasts = builtin_gate_pairs(split, (CONTRAST_STYLE,))
    pairs = list(in_distribution or []) + questions + instructions
    wrapped = pairs + contrasts
    wrappers = jailbreak_wrappers(split)
    wrapper_families = [w.family for w in wrapper_assignment(len(wrapped), wrappers, wrappers_per_prompt, seed)]
    families: dict[str, GateFamily] = {}
    if in_distribution:
        families["in_distribution_harmful"] = GateFamily([p.harmful for p in in_distribution], True)
    families["other_phrasing_harmful"] = GateFamily([p.harmful for p in questions], True, [p.style for p in questions])
    families["instruction_harmful"] = GateFamily(
        [p.harmful for p in instructions], True, [p.style for p in instructions]
    )
    families["minimal_contrast_harmful"] = GateFamily(
        [p.harmful for p in contrasts], True, [p.meta["contrast"] for p in contrasts]
    )
    families["wrapped_harmful"] = GateFamily(
        wrap_prompts([p.harmful for p in wrapped], wrappers, wrappers_per_prompt, seed), True, wrapper_families
    )
    families["plain_benign"] = GateFamily([p.safe for p in pairs], False)
    families["wrapped_benign"] = GateFamily(
        wrap_prompts([p.safe for p in wrapped], wrappers, wrappers_per_prompt, seed), False, wrapper_families
    )
    borderline = builtin_borderline(split)
    families["borderline_benign"] = GateFamily(
        borderline + [p.safe for p in contrasts],
        False,
        ["borderline"] * len(borderline) + [p.meta["contrast"] for p in contrasts],
    )
    families["everyday_benign"] = GateFamily(builtin_everyday(split), False)
    return families


@dataclass
class FamilyResult:
    """The gate's decisions on one family.

    Attributes:
        name: Family name.
        harmful: Whether the family should be flagged.
        n: Number of requests.
        flagged: Share of requests the gate flags (detection rate for harmful families, false-alarm rate for
            benign ones).
        mean_p_harmful: Mean P(harmful).
        by_group: Flagged share per sub-group (e.g. wrapper family), if the family has groups.
        flagged_every_step: Share flagged by the ``"every_step"`` gate by the end of a generated answer (the
            prefill decision, or any generated token's), if measured.
    """

    name: str
    harmful: bool
    n: int
    flagged: float
    mean_p_harmful: float
    by_group: dict[str, float] = field(default_factory=dict)
    flagged_every_step: float | None = None

    @property
    def correct(self) -> float:
        """Share of requests the gate decides correctly."""
        return self.flagged if self.harmful else 1.0 - self.flagged


@dataclass
class RobustnessReport:
    """Flagged shares per family at one threshold (see :func:`gate_robustness`).

    Attributes:
        families: One :class:`FamilyResult` per family, in report order.
        threshold: The decision threshold on P(harmful).
        label: What was evaluated (e.g. the gate's settings), shown in tables and plots.
        every_step_tokens: Generated tokens behind ``flagged_every_step`` (``None`` if not measured).
    """

    families: list[FamilyResult]
    threshold: float
    label: str = ""
    every_step_tokens: int | None = None

    @classmethod
    def from_probabilities(
        cls,
        probabilities: Mapping[str, Float[Tensor, " n"]],
        families: Mapping[str, GateFamily],
        threshold: float,
        label: str = "",
    ) -> "RobustnessReport":
        """Build the report from P(harmful) per family (e.g. computed on cached activations).

        Raises:
            InvalidInputError: If a family has no probabilities or their count differs from its prompts.
        """
        results = []
        for name, family in families.items():
            if name not in probabilities:
                raise InvalidInputError(f"no probabilities for family {name!r}; got {sorted(probabilities)}.")
            p = probabilities[name].float().cpu()
            if p.shape != (len(family.prompts),):
                raise InvalidInputError(
                    f"family {name!r}: {len(family.prompts)} prompts but p of shape {tuple(p.shape)}."
                )
            flagged = p > threshold
            by_group: dict[str, float] = {}
            if family.groups is not None:
                for group in sorted(set(family.groups)):
                    mask = torch.tensor([g == group for g in family.groups])
                    by_group[group] = float(flagged[mask].float().mean())
            results.append(
                FamilyResult(name, family.harmful, len(p), float(flagged.float().mean()), float(p.mean()), by_group)
            )
        return cls(results, threshold, label)

    def flagged(self, name: str) -> float:
        """Flagged share of one family.

        Raises:
            InvalidInputError: If the report has no such family.
        """
        for result in self.families:
            if result.name == name:
                return result.flagged
        raise InvalidInputError(f"no family {name!r} in this report; families: {[r.name for r in self.families]}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "label": self.label,
            "threshold": self.threshold,
            "every_step_tokens": self.every_step_tokens,
            "families": [asdict(r) for r in self.families],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON text (also written to ``path`` if given)."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def to_markdown(self) -> str:
        """A table: family, expected decision, n, flagged share, mean P(harmful) (and every-step share)."""
        steps = self.every_step_tokens
        extra = f" flagged, every step ({steps} tokens) |" if steps is not None else ""
        lines = [
            f"Gate robustness{' — ' + self.label if self.label else ''} (threshold {self.threshold:.3f})",
            "",
            "| family | should flag | n | flagged | mean P(harmful) |" + extra,
            "|---|---|---|---|---|" + ("---|" if extra else ""),
        ]
        for r in self.families:
            row = f"| {r.name} | {'yes' if r.harmful else 'no'} | {r.n} | {r.flagged:.1%} | {r.mean_p_harmful:.3f} |"
            if r.flagged_every_step is not None:
                row += f" {r.flagged_every_step:.1%} |"
            lines.append(row)
        grouped = [r for r in self.families if r.by_group]
        for r in grouped:
            parts = ", ".join(f"{group} {share:.0%}" for group, share in r.by_group.items())
            lines.append(f"\n{r.name} by wrapper family: {parts}")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None) -> Any:
        """Bar chart of the flagged share per family (red: should flag, blue: should not); needs matplotlib."""
        figure, ax = new_figure(path, (8.0, 3.5), "RobustnessReport.plot")
        names = [r.name.replace("_", "\n", 1) for r in self.families]
        colours = ["tab:red" if r.harmful else "tab:blue" for r in self.families]
        bars = ax.bar(names, [r.flagged for r in self.families], color=colours)
        ax.bar_label(bars, labels=[f"{r.flagged:.0%}" for r in self.families], fontsize=8)
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("share flagged by the gate")
        ax.set_title(f"Gate robustness{' — ' + self.label if self.label else ''}")
        ax.tick_params(axis="x", labelsize=7)
        return finish_figure(figure, path)


def gate_robustness(
    model: Any,
    steer: Any,
    families: Mapping[str, GateFamily] | None = None,
    batch_size: int = 16,
    progress: bool = False,
    label: str = "",
    every_step_tokens: int | None = None,
) -> RobustnessReport:
    """Run the gate of ``steer`` (prefill decision) on every family and report the flagged shares.

    Only the prefill pass up to the deepest gate layer runs (no generation), so this is cheap. With
    ``every_step_tokens``, each family is also generated (greedy) with the ``"every_step"`` gate, which
    re-checks every new token (harm that surfaces only in the answer, e.g. behind a wrapper), and the share
    flagged by the end is reported beside.

    Args:
        model: The wrapped model the AutoSteer was fitted on.
        steer: An :class:`~autosteer_interp.steer.AutoSteer`.
        families: Name -> :class:`GateFamily` (default: :func:`robustness_families` without an
            in-distribution family).
        batch_size: Prompts per forward pass.
        progress: Show progress bars.
        label: Shown in the report.
        every_step_tokens: Tokens to generate per request for the every-step measurement (``None``: skip).

    Returns:
        A :class:`RobustnessReport` at ``steer.threshold``.
    """
    if every_step_tokens is not None and (isinstance(every_step_tokens, bool) or every_step_tokens < 1):
        raise InvalidInputError(f"every_step_tokens must be a positive integer or None, got {every_step_tokens!r}.")
    families = dict(families) if families is not None else robustness_families()
    steer.check_model(model)
    probabilities = {}
    for name, family in families.items():
        acts = collect_activations(
            model, family.prompts, list(steer.layers), batch_size, progress=progress, prompt_format=steer.prompt_format
        )
        with torch.no_grad():
            probabilities[name] = steer.p_harmful(acts.values)
    report = RobustnessReport.from_probabilities(probabilities, families, steer.threshold, label)
    if every_step_tokens is not None:
        every_step = steer.with_gate_mode("every_step")
        for result, family in zip(report.families, families.values()):
            generated = every_step.generate(model, family.prompts, batch_size, max_new_tokens=every_step_tokens)
            result.flagged_every_step = float(generated.gate.float().mean())
        report.every_step_tokens = every_step_tokens
    return report
