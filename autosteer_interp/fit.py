"""The fitting pipeline: activations -> SAS -> gate data -> prober -> refusal head, driven by a config.

:func:`fit_autosteer` is what :meth:`AutoSteer.fit <autosteer_interp.steer.AutoSteer.fit>` runs;
:func:`fit_refusal_head` is what :meth:`RefusalHead.fit <autosteer_interp.refusal_head.RefusalHead.fit>` runs.
Both run on the model's devices: the forward passes where the model lives, the head's training on the LM head's
device (the cached inputs stay on the CPU).

Example:
    >>> from autosteer_interp.models import load_model
    >>> from autosteer_interp.prompts import builtin_pairs
    >>> model = load_model("tiny-llava-onevision")
    >>> config = FitConfig(candidate_layers=[1, 2, 3], builtin_gate_data=False, wrap_pairs=False, progress=False)
    >>> steer = fit_autosteer(model, builtin_pairs()[:8], config)
    >>> steer.layers
    (1, 2, 3)
"""

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from torch import Tensor

from .activations import TokenCache, cache_lm_head_inputs, collect_activations
from .architectures import resolve, unwrap
from .benchmark_data import BenchmarkSet
from .errors import InvalidInputError
from .gate import GateData, GateWeights, flagged_by_part, refit_gate, train_gate
from .prober import ProberConfig, ProberMetrics
from .prompts import (
    Prompt,
    PromptFormat,
    PromptPair,
    check_pairs,
    check_prompt_format,
    check_prompt_lengths,
    check_prompts,
    encode_prompts,
)
from .provenance import ModelProvenance
from .refusal_head import RefusalHead, RefusalHeadConfig, _lm_head
from .sas import LayerScores, safety_awareness_scores
from .steer import AutoSteer
from .validation import finite_number, layer_list, non_negative_int, positive_int

__all__ = [
    "DEFAULT_GATE_PROBER",
    "DEFAULT_PROBE_LAYERS",
    "GATE_LAYER_STEP",
    "MIN_PAIRS",
    "FitConfig",
    "default_gate_layers",
    "FitSummary",
    "fit_autosteer",
    "fit_refusal_head",
]

MIN_PAIRS = 4
"""The fewest contrastive pairs :func:`fit_autosteer` accepts (the SAS and a held-out split need a few)."""

GATE_LAYER_STEP = 2
"""The default gate reads every ``GATE_LAYER_STEP``-th candidate layer of the band :func:`default_gate_layers` spans."""

DEFAULT_PROBE_LAYERS = 5
"""The fallback for models too shallow for that band: the gate reads this many of the best SAS layers."""

DEFAULT_GATE_PROBER = ProberConfig(
    kind="logistic", weight_decay=100.0, validation_fraction=0.05, bagging=8, threshold=0.45
)
"""The default gate: an L2-regularised logistic probe (``C = 0.01``) over the concatenated standardised layers,
the mean of 8 bootstrap fits (``bagging``), flagging at P(harmful) > 0.45.

Chosen with ``benchmarks/eval_gate_default.py``: over the same layers and data, at threshold 0.5, the paper's MLP
flagged 83% of the held-out HarmBench behaviours and a logistic probe 97% (one seed). Over gate-data seeds 0-3,
bagging with :attr:`FitConfig.refit_gate` gave fewer everyday false alarms than one probe (2.0% against 2.5%) at
the same HarmBench mean. A logistic fit has no epoch to choose, so its own validation split (which only reports
a loss) keeps 5% of the gate's training data instead of 20%. The threshold 0.45 goes with the loss weights of
:class:`~autosteer_interp.gate.GateWeights` (the negatives count three times, which moves the probe's bias towards
"benign"): over seeds 0-3 it met the VLSafe goals where 0.5 missed VLSafe harmful on seed 0 by one request, with
everyday false alarms <= 1.9%. ``prober_config=ProberConfig()`` is the paper's MLP, at the paper's 0.5."""


@dataclass
class FitConfig:
    """Settings of :func:`fit_autosteer` (validated on construction, before any work).

    Attributes:
        candidate_layers: Layers the SAS chooses from (default: ``1..n_layers-1``; the paper: every 4th).
        probe_layers: The layers the gate reads: ``k`` -> the ``k`` best layers by SAS (``1``: the paper), or an
            explicit list; default: :func:`default_gate_layers` (a spread of middle and upper layers plus the
            SAS-best one), chosen with ``benchmarks/eval_gate_default.py``.
        prober_config: Prober settings (default: :data:`DEFAULT_GATE_PROBER`, a regularised logistic probe;
            ``ProberConfig()`` is the paper's MLP).
        head_config: Refusal-head settings (default: epsilon 0.1, the standard refusal target).
        builtin_gate_data: Add the built-in gate pairs, everyday instructions and borderline-benign requests
            (training splits) to the gate's training data, so
            :func:`~autosteer_interp.robustness.robustness_families` (test splits) stays unseen.
        wrap_pairs: Add wrapped copies of gate pairs, inside training jailbreak wrappers (both sides alike, so
            the wrapper is never the signal).
        max_wrapped: Wrap at most this many pairs (seeded random choice; ``None``: all).
        calibrate_fpr: Set the threshold so that this share of the held-out negatives (everyday and borderline
            requests, plus ``gate_benign``) is flagged (see :func:`~autosteer_interp.gate.train_gate`); default
            ``None``: the prober's own threshold (0.45 for :data:`DEFAULT_GATE_PROBER`, 0.5 for the paper's
            ``ProberConfig()``). The default gate's false alarms are measured in
            ``benchmarks/eval_gate_default.py``; with the built-in data alone the held-out negatives are about
            150 requests, too few for a stable 2-3% quantile, so calibrate on your own (larger) ``gate_benign``.
        validation_fraction: Share of the gate data (whole pairs, with their wrapped copies) held out for
            validation and calibration.
        gate_weights: How much the user's pairs and the everyday and borderline negatives count in the gate's
            loss (:class:`~autosteer_interp.gate.GateWeights`; default 3 each, every other row 1;
            ``GateWeights(1, 1)``: unweighted).
        refit_gate: Once validated (and calibrated) on the held-out part, train the gate that runs on all of the
            gate data, held-out part included (:func:`~autosteer_interp.gate.refit_gate`); the summary's
            validation figures stay those of the recipe trained without the held-out part. ``False``: the gate
            that runs is the one validated.
        gate_mode: ``"prefill"`` or ``"every_step"`` (see :class:`~autosteer_interp.steer.AutoSteer`).
        prompt_format: ``"chat"`` (ours) or ``"paper"`` (the official code's prompts and probed token; see
            :func:`~autosteer_interp.prompts.format_prompt`); stored in the AutoSteer, which always runs with it.
        batch_size: Prompts per forward pass.
        progress: Show progress bars.
        seed: Seed of the held-out split and the wrapper assignment.
    """

    candidate_layers: Sequence[int] | None = None
    probe_layers: int | Sequence[int] | None = None
    prober_config: ProberConfig | None = None
    head_config: RefusalHeadConfig | None = None
    builtin_gate_data: bool = True
    wrap_pairs: bool = True
    max_wrapped: int | None = 512
    calibrate_fpr: float | None = None
    validation_fraction: float = 0.2
    gate_weights: GateWeights = GateWeights()
    refit_gate: bool = True
    gate_mode: Literal["prefill", "every_step"] = "prefill"
    prompt_format: PromptFormat = "chat"
    batch_size: int = 16
    progress: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        finite_number(self.validation_fraction, "validation_fraction", 0, 1, low_open=True, high_open=True)
        if self.calibrate_fpr is not None:
            finite_number(self.calibrate_fpr, "calibrate_fpr", 0, 1, high_open=True)
        check_prompt_format(self.prompt_format)
        if not isinstance(self.gate_weights, GateWeights):
            raise InvalidInputError(f"gate_weights must be a GateWeights, got {type(self.gate_weights).__name__}.")
        if self.gate_mode not in ("prefill", "every_step"):
            raise InvalidInputError(f"gate_mode must be 'prefill' or 'every_step', got {self.gate_mode!r}.")
        positive_int(self.batch_size, "batch_size")
        if self.max_wrapped is not None:
            non_negative_int(self.max_wrapped, "max_wrapped")
        non_negative_int(self.seed, "seed")
        if self.candidate_layers is not None:
            self.candidate_layers = layer_list(self.candidate_layers, "candidate_layers")
        if isinstance(self.probe_layers, int) and not isinstance(self.probe_layers, bool):
            positive_int(self.probe_layers, "probe_layers")
        elif self.probe_layers is not None:
            self.probe_layers = layer_list(self.probe_layers, "probe_layers")
        for name in ("builtin_gate_data", "wrap_pairs", "refit_gate", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"{name} must be True or False, got {getattr(self, name)!r}.")

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "FitConfig":
        """Build from keyword settings, refusing unknown names (a typo must not be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InvalidInputError(f"unknown fit settings {unknown}; allowed: {sorted(known)}.")
        return cls(**settings)


@dataclass
class FitSummary:
    """What :func:`fit_autosteer` did.

    Attributes:
        sas: Safety Awareness Scores of the candidate layers.
        layers: The layers the gate reads.
        validation: Gate metrics on the held-out part of the gate data (after calibration, if any).
        flagged: Share of each held-out part flagged (``val_harmful``, ``val_negatives``, ...): detection on the
            harmful parts, false alarms on the others, so the false alarms on everyday requests and on the
            harmless twins are reported apart.
        head_loss: Refusal-head training loss per epoch.
        seconds: Wall time per stage.
        gate_data: Number of prompts in each part of the gate data (training and held-out).
    """

    sas: LayerScores
    layers: list[int]
    validation: ProberMetrics
    head_loss: list[float]
    seconds: dict[str, float] = field(default_factory=dict)
    gate_data: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "sas": self.sas.to_dict(),
            "layers": self.layers,
            "validation": self.validation.to_dict(),
            "head_loss": self.head_loss,
            "seconds": self.seconds,
            "gate_data": self.gate_data,
            "flagged": self.flagged,
        }


def fit_autosteer(
    model: Any,
    pairs: Sequence[PromptPair],
    config: FitConfig | None = None,
    gate_pairs: Sequence[PromptPair] | None = None,
    gate_benign: Sequence[Prompt] | Any | None = None,
    gate_harmful: Sequence[Prompt] | Any | None = None,
) -> AutoSteer:
    """The whole pipeline: activations -> SAS -> prober (the gate) -> refusal head.

    The SAS and the refusal head use ``pairs`` (the method). The gate is trained on more than ``pairs`` when asked
    (the defaults): the project's own gate pairs (harm categories and phrasings VLSafe lacks, benchmark-style
    instructions, minimal contrasts), wrapped copies of a few hundred pairs in jailbreak-style templates, and
    everyday instructions and borderline-benign requests as negatives, all from the built-in TRAINING splits
    (:class:`~autosteer_interp.gate.GateData`). A share of the gate data is held out for validation and
    calibration.

    Args:
        model: The wrapped model to steer.
        pairs: Contrastive (harmful, safe) pairs to fit on.
        config: The settings (default :class:`FitConfig`).
        gate_pairs: More contrastive pairs for the gate only (not the SAS, not the head).
        gate_benign: More benign requests for the gate (your own everyday or borderline set): a prompt list or
            a :class:`~autosteer_interp.benchmark_data.BenchmarkSet` (its benign items).
        gate_harmful: More harmful requests for the gate, without twins (e.g. an AdvBench-style set): a prompt
            list or a :class:`~autosteer_interp.benchmark_data.BenchmarkSet` (its harmful items).

    Returns:
        The fitted AutoSteer; ``summary`` holds a :class:`FitSummary`.

    Raises:
        InvalidInputError: Fewer than :data:`MIN_PAIRS` pairs, anything but :class:`PromptPair` lists, prompts
            longer than the model's context, or bad layers, before any work.
    """
    config = config or FitConfig()
    pairs = check_pairs(pairs, "pairs", minimum=MIN_PAIRS)
    gate_pairs = check_pairs(gate_pairs, "gate_pairs") if gate_pairs is not None else None
    gate_benign = _gate_prompts(gate_benign, "gate_benign", "benign")
    gate_harmful = _gate_prompts(gate_harmful, "gate_harmful", "harmful")
    spec = resolve(model)
    layers = list(config.candidate_layers) if config.candidate_layers is not None else list(range(1, spec.n_layers))
    for layer in layers:
        spec.check_layer(layer)
    prompts = [prompt for pair in [*pairs, *(gate_pairs or [])] for prompt in (pair.harmful, pair.safe)]
    prompt_format = config.prompt_format
    extra = list(gate_benign or []) + list(gate_harmful or [])
    check_prompt_lengths(model, prompts + extra, "the gate's prompts", prompt_format)
    batch_size, progress = config.batch_size, config.progress
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    harmful, safe = (
        collect_activations(model, side, layers, batch_size, progress=progress, prompt_format=prompt_format)
        for side in ([p.harmful for p in pairs], [p.safe for p in pairs])
    )
    sas = safety_awareness_scores(safe, harmful)
    gate_layers = _choose_gate_layers(sas, config.probe_layers, spec)
    seconds["activations_and_sas"] = time.perf_counter() - start

    start = time.perf_counter()
    data = GateData.build(
        pairs,
        gate_pairs,
        gate_benign,
        config.builtin_gate_data,
        config.wrap_pairs,
        config.validation_fraction,
        config.seed,
        config.max_wrapped,
        gate_harmful,
    )
    x = data.features(model, pairs, gate_layers, batch_size, progress, (harmful, safe), prompt_format)
    weights = data.row_weights(config.gate_weights)
    prober_config = config.prober_config or DEFAULT_GATE_PROBER
    prober, validation = train_gate(x, gate_layers, prober_config, config.calibrate_fpr, model, weights)
    flagged = flagged_by_part(prober, x)
    if config.refit_gate:
        prober = refit_gate(x, gate_layers, prober_config, prober.threshold, model, weights)
    seconds["gate"] = time.perf_counter() - start

    start = time.perf_counter()
    head = fit_refusal_head(
        model, [p.harmful for p in pairs], config.head_config, progress=progress, prompt_format=prompt_format
    )
    seconds["refusal_head"] = time.perf_counter() - start
    steer = AutoSteer(prober, head, gate_mode=config.gate_mode, prompt_format=prompt_format)
    steer.summary = FitSummary(sas, gate_layers, validation, list(head.history), seconds, data.counts(), flagged)
    return steer


def fit_refusal_head(
    model: Any,
    harmful_prompts: Sequence[Prompt],
    config: RefusalHeadConfig | None = None,
    retain_prompts: Sequence[Prompt] | None = None,
    progress: bool = True,
    prompt_format: PromptFormat = "chat",
) -> RefusalHead:
    """Fit ``S`` so that the model answers ``harmful_prompts`` with the refusal target.

    The LM-head inputs of ``prompt + target`` are cached once (the base model is frozen), then ``S`` is trained
    on the cache on the LM head's device (:meth:`RefusalHead.fit_on_cache`).

    Args:
        model: The frozen wrapped model.
        harmful_prompts: Requests to refuse.
        config: Settings (target, epsilon, epochs, ...).
        retain_prompts: Optional benign requests whose own continuations the head must keep.
        progress: Show progress bars.
        prompt_format: How the prompts are laid out (``"chat"`` or ``"paper"``).

    Returns:
        The fitted head (``history`` holds the loss per epoch), its parameters float32 on the CPU.
    """
    config = copy.deepcopy(config) if config is not None else RefusalHeadConfig()
    harmful_prompts = check_prompts(harmful_prompts, "harmful_prompts")
    retain_prompts = check_prompts(retain_prompts, "retain_prompts") if retain_prompts else None
    spec = resolve(model)
    cache = cache_lm_head_inputs(
        model,
        harmful_prompts,
        _target_ids(model, config.target),
        config.forward_batch_size,
        progress,
        prompt_format=prompt_format,
    )
    cache.is_retain = torch.zeros(len(cache.labels), dtype=torch.bool)
    if retain_prompts:
        batch = config.forward_batch_size
        targets = _own_continuations(model, retain_prompts, config.retain_tokens, batch, prompt_format)
        retain = cache_lm_head_inputs(model, retain_prompts, targets, batch, progress, prompt_format=prompt_format)
        cache = TokenCache(
            hidden=torch.cat([cache.hidden, retain.hidden]),
            labels=torch.cat([cache.labels, retain.labels]),
            is_retain=torch.cat([cache.is_retain, torch.ones(len(retain.labels), dtype=torch.bool)]),
        )
    head = RefusalHead(spec.d_model, config.epsilon, config)
    head.fit_on_cache(cache, _lm_head(model), progress=progress)
    head.provenance = ModelProvenance.of(model)
    return head


def _gate_prompts(prompts: Any, name: str, label: str) -> list[Prompt] | None:
    """A prompt list, or the ``label`` items of a benchmark set, checked (``None`` stays ``None``)."""
    if prompts is None:
        return None
    if isinstance(prompts, BenchmarkSet):
        chosen = [item.prompt for item in prompts.items if item.label == label]
        if not chosen:
            raise InvalidInputError(f"{name}: the benchmark set {prompts.name!r} has no {label} items.")
        return chosen
    return check_prompts(prompts, name)


def _choose_gate_layers(sas: LayerScores, probe_layers: int | Sequence[int] | None, spec: Any) -> list[int]:
    """:func:`default_gate_layers`, the ``k`` best SAS layers (ascending), or the explicit list checked."""
    if probe_layers is None:
        return default_gate_layers(sas, spec.n_layers)
    if isinstance(probe_layers, int) and not isinstance(probe_layers, bool):
        if not 1 <= probe_layers <= len(sas.layers):
            raise InvalidInputError(
                f"probe_layers={probe_layers} must be between 1 and the {len(sas.layers)} candidate layers."
            )
        return sorted(sas.top_k(probe_layers))
    chosen = sorted(probe_layers) if isinstance(probe_layers, Sequence) else []
    if not chosen or len(set(chosen)) != len(chosen):
        raise InvalidInputError(f"probe_layers must be an int or distinct layer indices, got {probe_layers!r}.")
    return [spec.check_layer(layer) for layer in chosen]


def default_gate_layers(sas: LayerScores, n_layers: int) -> list[int]:
    """The layers the default gate reads: a spread over the middle and upper layers, plus the SAS-best one.

    Every :data:`GATE_LAYER_STEP`-th candidate layer from a quarter of the depth to four layers before the
    end (SmolLM2's 30 layers: 8, 10, ..., 26), and the layer with the best Safety Awareness Score. A gate
    reading one narrow band of layers learns the phrasing of its training data; the spread holds on held-out
    benchmarks (``benchmarks/eval_gate_default.py``). Models too shallow for the band (fewer than 2 candidate
    layers in it) get the :data:`DEFAULT_PROBE_LAYERS` best SAS layers.

    Args:
        sas: Safety Awareness Scores of the candidate layers.
        n_layers: Decoder layers of the model.

    Returns:
        Ascending layer indices, all among ``sas.layers``.
    """
    low, high = math.ceil(n_layers / 4), n_layers - 4
    band = [layer for layer in sorted(sas.layers) if low <= layer <= high]
    if len(band) < 2:
        return sorted(sas.top_k(min(DEFAULT_PROBE_LAYERS, len(sas.layers))))
    spread = band[::GATE_LAYER_STEP]
    return sorted({*spread, *sas.top_k(1)})


def _target_ids(model: Any, target: str) -> Tensor:
    tokenizer = model.tokenizer
    ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = [*ids, tokenizer.eos_token_id]
    return torch.tensor(ids, dtype=torch.long)


def _own_continuations(
    model: Any, prompts: Sequence[Prompt], n_tokens: int, batch_size: int, prompt_format: PromptFormat
) -> Tensor:
    """The unsteered model's greedy continuations, exactly ``n_tokens`` long."""
    rows = []
    hf_model: Any = unwrap(model)
    for start in range(0, len(prompts), batch_size):
        inputs = encode_prompts(model, prompts[start : start + batch_size], prompt_format)
        with torch.no_grad():
            out = hf_model.generate(
                **inputs,
                max_new_tokens=n_tokens,
                min_new_tokens=n_tokens,
                do_sample=False,
                pad_token_id=model.tokenizer.pad_token_id,
            )
        rows.append(out[:, inputs["input_ids"].shape[1] :].cpu())
    return torch.cat(rows)
