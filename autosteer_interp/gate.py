"""The gate's data and training: which requests the safety prober learns from, and what is held out.

The paper trains its prober on one pair dataset. A gate trained that way flags the dataset's phrasing rather
than harm (see :mod:`autosteer_interp.robustness`). :class:`GateData` assembles a broader training set:

* the user's contrastive pairs (e.g. VLSafe);
* the project's own gate pairs (:func:`~autosteer_interp.prompts.builtin_gate_pairs`, training split): harm
  categories and phrasings VLSafe lacks (questions, benchmark-style instructions, minimal contrasts), each with
  a minimally edited harmless twin (the instructions' plain twins are left out: :data:`TWINLESS_STYLES`);
* copies of pairs (a few hundred, chosen at random) inside jailbreak-style wrappers (training templates),
  applied to BOTH sides so the wrapper itself is never the signal;
* unpaired harmful requests of the user's (``gate_harmful``, e.g. AdvBench-style sets);
* negatives: everyday instructions and borderline-benign requests (training splits), and the user's own
  (``gate_benign``).

Every source is split into a training part and a held-out part, disjoint by text (:mod:`autosteer_interp.splits`;
whole pairs with their wrapped copies). The held-out part gives the validation metrics; the threshold is
calibrated on the held-out negatives (everyday and borderline requests: the false alarms users meet), not on
the harmless twins alone. The built-in TEST splits are never used here.

Example:
    >>> data = GateData.build(pairs, builtin=True, wrap=True)                          # doctest: +SKIP
    >>> {name: len(part) for name, part in data.parts.items()}                         # doctest: +SKIP
    >>> prober, held_out = train_gate(data.features(model, pairs, [16, 22, 23]), [16, 22, 23])  # doctest: +SKIP
"""

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .activations import LayerActivations, collect_activations
from .architectures import resolve
from .errors import InvalidInputError
from .prober import ProberConfig, ProberMetrics, SafetyProber
from .prompts import (
    INSTRUCTION_STYLES,
    TASK_STYLE,
    Prompt,
    PromptFormat,
    PromptPair,
    builtin_borderline,
    builtin_everyday,
    builtin_gate_pairs,
    jailbreak_wrappers,
    wrap_prompts,
)
from .splits import move_shared_to_train, split_by_keys

__all__ = [
    "TWINLESS_STYLES",
    "GateData",
    "GatePart",
    "GateWeights",
    "flagged_by_part",
    "held_out_sides",
    "refit_gate",
    "train_gate",
]


@dataclass
class GatePart:
    """The prompts of one part of the gate data.

    Attributes:
        side: ``"harmful"`` or ``"safe"`` (the label; extra negatives are ``"safe"``).
        pair_rows: Rows of the user's pairs in this part (their activations can be reused from the SAS).
        prompts: The other prompts of the part, after the ``pair_rows`` ones.
    """

    side: str
    pair_rows: list[int] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pair_rows) + len(self.prompts)

    def all_prompts(self, pairs: Sequence[PromptPair]) -> list[Prompt]:
        """Every prompt of the part, in order: the user's pair rows, then the others."""
        return [getattr(pairs[i], self.side) for i in self.pair_rows] + self.prompts


TWINLESS_STYLES: tuple[str, ...] = (*INSTRUCTION_STYLES, TASK_STYLE)
"""Built-in gate-pair styles whose plain harmless twins the default gate does not train on.

A twin of a benchmark-style instruction ("Write a message warning parents how gangs recruit ...") differs from its
harmful side by a few words; trained on, these twins pull the boundary onto blunt benchmark requests and cost
held-out HarmBench detection at the same everyday false-alarm rate (``benchmarks/eval_gate_default.py``). The
``task`` pairs (:data:`~autosteer_interp.prompts.TASK_STYLE`) measured the same: with their twins, HarmBench
validation 86.1-94.4% over seeds 0-2; without, 94.4-97.2%. The harmful sides stay; the wrapped copies keep both
sides (so a wrapper is never the signal); the question-style, minimal-contrast and ``benchmark`` pairs (whose
harmless side is another task in the same template) keep their twins; every twin is in the TEST families
(``plain_benign``), where its false alarms are reported."""


@dataclass(frozen=True)
class GateWeights:
    """How much each source of gate data counts in the gate's loss; every other row counts 1.

    Attributes:
        user_pairs: The user's contrastive pairs (``pairs``, both sides; not ``gate_pairs``, not the wrapped
            copies): the distribution the gate is deployed on.
        negatives: The everyday and borderline requests (built-in and ``gate_benign``): the false alarms users
            meet, which the gate data holds far fewer of than pairs.

    The default (3, 3) was chosen on held-out sets over split seeds 0-3 on the real SmolLM2
    (``benchmarks/eval_gate_default.py``), together with the default gate's threshold 0.45
    (:data:`~autosteer_interp.fit.DEFAULT_GATE_PROBER`): unweighted at 0.5, the gate flagged 1.9% of everyday
    requests and 2.9% of VLSafe's safe side (means), and missed VLSafe harmful >= 98% on seed 0; weighted at 0.45
    it flags 1.8% and 2.6% and detects 98.4% of VLSafe harmful (98.0-98.8%), at the same HarmBench detection.
    ``GateWeights(1, 1)`` is the unweighted gate.
    """

    user_pairs: float | int = 3.0
    negatives: float | int = 3.0

    def __post_init__(self) -> None:
        for name in ("user_pairs", "negatives"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise InvalidInputError(f"GateWeights.{name} must be a finite number > 0, got {value!r}.")


PART_NAMES = tuple(
    f"{stage}_{kind}"
    for stage in ("train", "val")
    for kind in ("harmful", "safe", "wrapped_harmful", "wrapped_safe", "extra_harmful", "negatives")
)
"""The parts of :class:`GateData`: training (``train_``) and held-out (``val_``)."""


def _twinless(pair: PromptPair, index: int, n_user: int) -> bool:
    """Whether the (unwrapped) harmless twin of this gate pair is left out of the gate data: built-in pairs
    (after the ``n_user`` pairs of the user's) of :data:`TWINLESS_STYLES`."""
    return index >= n_user and pair.style in TWINLESS_STYLES


@dataclass
class GateData:
    """The gate's training and held-out prompts (see the module docstring).

    Attributes:
        parts: Part name (:data:`PART_NAMES`) -> :class:`GatePart`.
    """

    parts: dict[str, GatePart]

    @classmethod
    def build(
        cls,
        pairs: Sequence[PromptPair],
        gate_pairs: Sequence[PromptPair] | None = None,
        gate_benign: Sequence[Prompt] | None = None,
        builtin: bool = True,
        wrap: bool = True,
        validation_fraction: float = 0.2,
        seed: int = 0,
        max_wrapped: int | None = 512,
        gate_harmful: Sequence[Prompt] | None = None,
        builtin_styles: Sequence[str] | None = None,
    ) -> "GateData":
        """Assemble and split the gate data.

        Args:
            pairs: The user's contrastive pairs.
            gate_pairs: More pairs for the gate only.
            gate_benign: More benign requests (negatives), e.g. your own everyday or borderline set.
            builtin: Add the built-in gate pairs (without the plain twins of :data:`TWINLESS_STYLES`), everyday
                instructions and borderline-benign requests (training splits).
            wrap: Add wrapped copies of pairs, inside training jailbreak wrappers (both sides alike).
            validation_fraction: Share of pairs (and of negatives) held out.
            seed: Seed of the split, of the choice of pairs to wrap and of the wrapper assignment.
            max_wrapped: Wrap at most this many pairs (a seeded random choice; ``None``: every pair). Wrapped
                prompts are long, and a few hundred teach the gate to look through wrappers.
            gate_harmful: More harmful requests without twins (e.g. AdvBench-style instruction sets).
            builtin_styles: With ``builtin``, add only the built-in gate pairs of these styles (default: every
                style of :data:`~autosteer_interp.prompts.GATE_STYLES`).

        Raises:
            InvalidInputError: If ``validation_fraction`` is not in ``(0, 1)`` or a style is unknown.
        """
        if not 0 < validation_fraction < 1:
            raise InvalidInputError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}.")
        generator = torch.Generator().manual_seed(seed)
        others = list(gate_pairs or []) + (builtin_gate_pairs("train", builtin_styles) if builtin else [])
        builtin_negatives = builtin_everyday("train") + builtin_borderline("train") if builtin else []
        negatives = list(gate_benign or []) + builtin_negatives
        unpaired = list(gate_harmful or [])
        n_user_others = len(gate_pairs or [])
        # Split by text: a request (or a pair sharing one) is held out or trained on, never both.
        sources = [[{p.harmful.text, p.safe.text} for p in pairs], [{p.harmful.text, p.safe.text} for p in others]]
        sources += [[{p.text} for p in unpaired], [{p.text} for p in negatives]]
        splits = [(*split_by_keys(keys, validation_fraction, generator), keys) for keys in sources]
        move_shared_to_train(splits)
        (user_split, other_split, unpaired_split, negative_split) = ((train, val) for train, val, _ in splits)
        wrappers = jailbreak_wrappers("train")
        n_pairs = len(pairs) + len(others)
        n_wrapped = 0 if not wrap else n_pairs if max_wrapped is None else min(max_wrapped, n_pairs)
        to_wrap = set(torch.randperm(n_pairs, generator=generator)[:n_wrapped].tolist())
        parts: dict[str, GatePart] = {}
        for stage, user_rows, other_rows in zip(("train", "val"), user_split, other_split):
            chosen = [pairs[i] for i in user_rows if i in to_wrap]
            chosen += [others[i] for i in other_rows if len(pairs) + i in to_wrap]
            for side in ("harmful", "safe"):
                kept = [i for i in other_rows if side == "harmful" or not _twinless(others[i], i, n_user_others)]
                parts[f"{stage}_{side}"] = GatePart(side, user_rows, [getattr(others[i], side) for i in kept])
                wrapped = wrap_prompts([getattr(p, side) for p in chosen], wrappers, seed=seed)
                parts[f"{stage}_wrapped_{side}"] = GatePart(side, [], wrapped)
        for stage, rows, more in zip(("train", "val"), negative_split, unpaired_split):
            parts[f"{stage}_negatives"] = GatePart("safe", [], [negatives[i] for i in rows])
            parts[f"{stage}_extra_harmful"] = GatePart("harmful", [], [unpaired[i] for i in more])
        return cls(parts)

    def features(
        self,
        model: Any,
        pairs: Sequence[PromptPair],
        layers: Sequence[int],
        batch_size: int = 8,
        progress: bool = False,
        pair_activations: tuple[LayerActivations, LayerActivations] | None = None,
        prompt_format: PromptFormat = "chat",
    ) -> dict[str, Tensor]:
        """The activations of every part at ``layers``, ready for :func:`train_gate`.

        Args:
            model: The wrapped model.
            pairs: The user's pairs this data was built from.
            layers: The layers the gate reads, ascending.
            batch_size: Prompts per forward pass.
            progress: Show progress bars.
            pair_activations: ``(harmful, safe)`` activations of ``pairs`` already collected (e.g. for the SAS);
                their rows are reused when they hold every layer of ``layers``, else everything is collected.
            prompt_format: How the prompts are laid out (the format the gate will run with).

        Returns:
            Part name -> ``[n, len(layers), d_model]`` (``n = 0`` for an empty part).

        Raises:
            InvalidInputError: If ``pair_activations`` does not have one row per pair.
        """
        layers = list(layers)
        if pair_activations is not None and any(len(a.values) != len(pairs) for a in pair_activations):
            rows = [len(a.values) for a in pair_activations]
            raise InvalidInputError(f"pair_activations must have one row per pair ({len(pairs)}), got {rows}.")
        holds_layers = pair_activations is not None and all(set(layers) <= set(a.layers) for a in pair_activations)
        reused = pair_activations if holds_layers else None
        d_model = resolve(model).d_model
        features = {}
        for name, part in self.parts.items():
            chunks = []
            if reused is not None:
                source = reused[0] if part.side == "harmful" else reused[1]
                chunks.append(source.select(layers)[part.pair_rows])
            prompts = part.all_prompts(pairs) if reused is None else part.prompts
            if prompts:
                acts = collect_activations(
                    model, prompts, layers, batch_size, progress=progress, prompt_format=prompt_format
                )
                chunks.append(acts.values)
            features[name] = torch.cat(chunks) if chunks else torch.empty(0, len(layers), d_model)
        return features

    def counts(self) -> dict[str, int]:
        """Number of prompts per part."""
        return {name: len(part) for name, part in self.parts.items()}

    def row_weights(self, weights: GateWeights) -> dict[str, Tensor]:
        """Part name -> ``[n]`` loss weights, row for row as :meth:`features` lays the part out."""
        rows = {}
        for name, part in self.parts.items():
            other = weights.negatives if name.endswith("_negatives") else 1.0
            rows[name] = torch.tensor([weights.user_pairs] * len(part.pair_rows) + [other] * len(part.prompts))
        return rows


def train_gate(
    features: Mapping[str, Tensor],
    layers: Sequence[int],
    config: ProberConfig | None = None,
    calibrate_fpr: float | None = None,
    model: Any = None,
    weights: Mapping[str, Tensor] | None = None,
) -> tuple[SafetyProber, ProberMetrics]:
    """Train the prober on the training parts; calibrate and validate on the held-out parts.

    Args:
        features: Part name -> ``[n, n_layers, d_model]`` activations at ``layers`` (every name of
            :data:`PART_NAMES`; empty tensors for empty parts).
        layers: The layers the prober reads, ascending.
        config: Prober settings.
        calibrate_fpr: If set, the threshold is set so that this share of the held-out negatives (everyday and
            borderline requests, ``val_negatives``) is flagged; of every held-out benign request when there are
            fewer than 2 negatives.
        model: The model the activations came from (recorded as provenance).
        weights: Part name -> ``[n]`` loss weights of its rows (:meth:`GateData.row_weights`); ``None``: every
            row counts 1.

    Returns:
        The prober and its metrics on the held-out parts (at the final threshold).

    Raises:
        InvalidInputError: If a part is missing, ``calibrate_fpr`` is outside ``[0, 1)`` or a part's weights do
            not have one value per row.
    """
    missing = [name for name in PART_NAMES if name not in features]
    if missing:
        raise InvalidInputError(f"train_gate needs every part of the gate data; missing {missing}.")
    if calibrate_fpr is not None and not 0 <= calibrate_fpr < 1:
        raise InvalidInputError(f"calibrate_fpr must be in [0, 1), got {calibrate_fpr!r}.")

    _check_weights(features, weights)
    prober = _fit_training_parts(features, layers, config, model, weights)
    held = held_out_sides(features)
    if calibrate_fpr is not None:
        negatives = features["val_negatives"]
        prober.calibrate(negatives if len(negatives) >= 2 else held["benign"], calibrate_fpr)
    return prober, prober.evaluate(held["harmful"], held["benign"])


def refit_gate(
    features: Mapping[str, Tensor],
    layers: Sequence[int],
    config: ProberConfig | None,
    threshold: float,
    model: Any = None,
    weights: Mapping[str, Tensor] | None = None,
) -> SafetyProber:
    """Train the deployed prober on every part, training and held-out, once :func:`train_gate` has validated.

    The held-out parts measure the recipe (:func:`train_gate`'s metrics, :func:`flagged_by_part`); the prober
    that runs then learns from all of the data, with the same settings and ``threshold`` (the 0.5 default or the
    calibrated one). With bagging, on the real SmolLM2, this gave the default gate fewer everyday false alarms
    over split seeds (``benchmarks/eval_gate_default.py``).

    Args:
        features: Part name -> activations, as for :func:`train_gate`.
        layers: The layers the prober reads, ascending.
        config: Prober settings (those :func:`train_gate` used).
        threshold: The decision threshold to keep.
        model: The model the activations came from (recorded as provenance).
        weights: Part name -> row weights, as for :func:`train_gate`.

    Returns:
        The prober trained on ``train_`` and ``val_`` parts together.

    Raises:
        InvalidInputError: If a part's weights do not have one value per row.
    """
    _check_weights(features, weights)
    trained = [name for name in PART_NAMES if name.startswith("train_")]

    def merge(parts: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {name: torch.cat([parts[name], parts["val_" + name.removeprefix("train_")]]) for name in trained}

    config = copy.deepcopy(config) if config is not None else ProberConfig()
    config.threshold = threshold
    return _fit_training_parts(merge(features), layers, config, model, merge(weights) if weights else None)


def _check_weights(features: Mapping[str, Tensor], weights: Mapping[str, Tensor] | None) -> None:
    """Every part's weights have one value per row of its features (``None``: nothing to check)."""
    if weights is None:
        return
    wrong = {name: (len(weights.get(name, ())), len(features[name])) for name in PART_NAMES}
    wrong = {name: sizes for name, sizes in wrong.items() if sizes[0] != sizes[1]}
    if wrong:
        raise InvalidInputError(f"gate weights need one value per row of each part; (weights, rows): {wrong}.")


def _fit_training_parts(
    features: Mapping[str, Tensor],
    layers: Sequence[int],
    config: ProberConfig | None,
    model: Any,
    weights: Mapping[str, Tensor] | None = None,
) -> SafetyProber:
    """The prober fitted on the ``train_`` parts of ``features`` (harmful, wrapped, extra; their negatives)."""
    inputs = {
        "harmful": ("train_harmful", "train_wrapped_harmful"),
        "safe": ("train_safe", "train_wrapped_safe"),
        "extra_negatives": ("train_negatives",),
        "extra_harmful": ("train_extra_harmful",),
    }
    stacked = {name: torch.cat([features[part] for part in parts]) for name, parts in inputs.items()}
    for name in ("extra_negatives", "extra_harmful"):
        if len(stacked[name]) < 2:
            del stacked[name]
    row_weights = None
    if weights is not None:
        row_weights = {name: torch.cat([weights[part] for part in inputs[name]]) for name in stacked}
    return SafetyProber.fit(
        stacked.pop("harmful"),
        stacked.pop("safe"),
        config=config,
        layers=list(layers),
        model=model,
        sample_weights=row_weights,
        **stacked,
    )


def held_out_sides(features: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The held-out activations by label: ``{"harmful": [...], "benign": [...]}`` (every ``val_`` part)."""
    harmful = ("harmful", "wrapped_harmful", "extra_harmful")
    benign = ("safe", "wrapped_safe", "negatives")
    return {
        "harmful": torch.cat([features[f"val_{kind}"] for kind in harmful]),
        "benign": torch.cat([features[f"val_{kind}"] for kind in benign]),
    }


def flagged_by_part(prober: SafetyProber, features: Mapping[str, Tensor]) -> dict[str, float]:
    """Share of each non-empty held-out part the prober flags at its threshold (detection or false alarms).

    Args:
        prober: The trained (and possibly calibrated) prober.
        features: Part name -> activations, as for :func:`train_gate`.

    Returns:
        ``val_`` part name -> flagged share, e.g. ``{"val_harmful": 0.99, "val_negatives": 0.02, ...}``.
    """
    return {
        name: float(prober.predict(values).float().mean())
        for name, values in features.items()
        if name.startswith("val_") and len(values)
    }
