"""AutoSteer: the prober gates the refusal head per sample, inside nnsight traces, generation and plain HF hooks.

In the prefill pass, ``p = prober(h_L[last prompt token])`` is computed for EVERY row of the batch (the paper's
code looked at row 0 only); rows with ``p > threshold`` get the refusal head ``h -> h + eps h S^T`` on the LM
head's input at every step; the other rows are left bit-for-bit as the unsteered model computes them.
``gate_mode="every_step"`` also re-checks the newest token's activation at each generated step and turns the
head on from the first step that crosses the threshold (harm that surfaces mid-answer).

Example:
    >>> steer = AutoSteer.load("artifacts/autosteer")                       # doctest: +SKIP
    >>> with model.trace(**inputs):                                         # doctest: +SKIP
    ...     report = steer.apply(model)
    ...     logits = model.lm_head.output.save()
    >>> report.gate                                                         # doctest: +SKIP
    tensor([ True, False])
"""

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, no_type_check

import nnsight
import torch
from jaxtyping import Float
from torch import Tensor, nn

from .activations import collect_activations
from .architectures import get_module, resolve, unwrap
from .artifacts import provenance_of_artifact, read_artifact, write_artifact
from .errors import ArtifactError, InvalidInputError
from .gate import GateData, train_gate
from .prober import ProberConfig, ProberMetrics, SafetyProber
from .prompts import Prompt, PromptPair, encode_prompts
from .refusal_head import HookHandle, RefusalHead, RefusalHeadConfig
from .sas import LayerScores, safety_awareness_scores

__all__ = ["AutoSteer", "FitSummary", "GenerationResult", "SteerHandle", "SteerReport", "gate_and_steer"]

logger = logging.getLogger(__name__)

GateMode = Literal["prefill", "every_step"]
DEFAULT_PROBE_LAYERS = 3
"""How many of the best SAS layers the gate reads by default (the paper: 1; see benchmarks/eval_gate.py)."""
_GATE_MODES = ("prefill", "every_step")


@dataclass
class SteerReport:
    """What the gate decided, per sample (values saved out of the trace).

    Attributes:
        p_harmful: ``[batch]`` P(harmful) from the prefill pass.
        gate: ``[batch]`` whether the refusal head is on for the row (after the last step seen).
    """

    p_harmful: Tensor
    gate: Tensor


@dataclass
class GenerationResult:
    """Output of :meth:`AutoSteer.generate`.

    Attributes:
        texts: The generated continuations (special tokens removed).
        p_harmful: ``[batch]`` P(harmful) per prompt.
        gate: ``[batch]`` whether the refusal head was on.
        token_ids: ``[batch, new_tokens]`` the generated ids (padding after end of sequence).
    """

    texts: list[str]
    p_harmful: Tensor
    gate: Tensor
    token_ids: Tensor


@dataclass
class FitSummary:
    """What :meth:`AutoSteer.fit` did.

    Attributes:
        sas: Safety Awareness Scores of the candidate layers.
        layers: The layers the gate reads.
        validation: Gate metrics on the held-out part of the gate data (after calibration, if any).
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "sas": self.sas.to_dict(),
            "layers": self.layers,
            "validation": self.validation.to_dict(),
            "head_loss": self.head_loss,
            "seconds": self.seconds,
            "gate_data": self.gate_data,
        }


@no_type_check  # shipped by value to NDIF by remote.RemoteSteer: plain annotations, no test-time type hook
def gate_and_steer(
    steps: Any,
    read_p_harmful: Callable[[], Tensor],
    steer_lm_input: Callable[[Tensor, Tensor], Tensor],
    lm_head: Any,
    threshold: float,
    every_step: bool,
    report: Any,
) -> Any:
    """The gate-and-steer loop every nnsight path runs (:meth:`AutoSteer.apply`, ``RemoteSteer.apply``).

    At the first step the gate decides per row (``report.p_harmful`` is still empty); with ``every_step`` each
    later step may switch more rows on, never off; at every step the LM head's input of the gated rows is
    steered. Uses torch and nnsight only, so it can run on an NDIF server.

    Args:
        steps: What to loop over: ``tracer.iter[:n]`` in generation, ``[None]`` for one forward pass.
        read_p_harmful: Reads the gate's layers at the current step and returns ``[batch]`` P(harmful).
        steer_lm_input: ``(h, gate) -> h`` with the refusal head on the gated rows.
        lm_head: The model's LM-head envoy.
        threshold: Decision threshold on P(harmful).
        every_step: Re-check the gate at every generated step.
        report: A saved report with empty ``p_harmful`` and ``gate`` tensors; filled in and returned.
    """
    for _ in steps:
        if report.p_harmful.numel() == 0:  # the prefill step decides
            p = read_p_harmful()
            report.p_harmful, report.gate = p, p > threshold
        elif every_step:
            report.gate = report.gate | (read_p_harmful() > threshold)
        lm_head.input = steer_lm_input(lm_head.input, report.gate)
    return report


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise InvalidInputError(f"threshold must be a number in [0, 1], got {threshold!r}.")
    return float(threshold)


class AutoSteer:
    """A safety prober (on one layer or several) gating a refusal head, per sample.

    Not an ``nn.Module`` on purpose: its ``apply(model)`` is the nnsight intervention, which would shadow
    PyTorch's recursive ``Module.apply``. The two trained parts, ``prober`` and ``head``, are modules.

    Args:
        prober: The fitted prober (its ``layers`` are the layers the gate reads).
        head: The fitted refusal head.
        threshold: Decision threshold on P(harmful); default: the prober's.
        gate_mode: ``"prefill"`` (the paper: decide once from the prompt) or ``"every_step"``. A prober trained
            on prompts (all of ours) flags almost every answer token in ``"every_step"`` mode (measured: 100% of
            benign requests within 32 tokens on SmolLM2); use it only with a prober trained on answer tokens.
    """

    KIND = "autosteer"

    def __init__(
        self,
        prober: SafetyProber,
        head: RefusalHead,
        threshold: float | None = None,
        gate_mode: GateMode = "prefill",
    ) -> None:
        if prober.layers is None:
            raise InvalidInputError("the prober has no layers; fit it with layers=... (the layer(s) it reads).")
        if prober.d_model != head.d_model:
            raise InvalidInputError(
                f"prober d_model {prober.d_model} differs from refusal head d_model {head.d_model}."
            )
        if gate_mode not in _GATE_MODES:
            raise InvalidInputError(f"gate_mode must be one of {_GATE_MODES}, got {gate_mode!r}.")
        self.prober = prober
        self.head = head
        self.threshold = _check_threshold(prober.threshold if threshold is None else threshold)
        self.gate_mode: GateMode = gate_mode
        self.provenance = prober.provenance or head.provenance
        self.summary: FitSummary | None = None

    def to(self, *args: Any, **kwargs: Any) -> "AutoSteer":
        """Move (or cast) the prober and the head, like ``nn.Module.to``; returns ``self``."""
        self.prober.to(*args, **kwargs)
        self.head.to(*args, **kwargs)
        return self

    @property
    def layers(self) -> tuple[int, ...]:
        """The decoder layers whose inputs the prober reads, ascending (one layer for the paper's prober)."""
        assert self.prober.layers is not None
        return self.prober.layers

    @property
    def epsilon(self) -> float:
        """The refusal head's steering scale."""
        return self.head.epsilon

    # ---------------------------------------------------------------------------------------------- maths

    def p_harmful(
        self, h_last: Float[Tensor, "batch n_layers d_model"] | Float[Tensor, "batch d_model"]
    ) -> Float[Tensor, " batch"]:
        """P(harmful) from the last-token inputs of :attr:`layers`, stacked in that order.

        Args:
            h_last: ``[batch, n_layers, d_model]`` (``[batch, d_model]`` is accepted for a one-layer gate).
        """
        logits = self.prober(h_last)
        return torch.softmax(logits.float(), dim=-1)[:, 1]

    def steer_lm_input(self, h: Tensor, gate: Tensor) -> Tensor:
        """The LM head's input with the refusal head on the gated rows; other rows returned untouched."""
        steered = self.head(h, 1.0)
        mask = gate.to(h.device).reshape(gate.shape + (1,) * (h.ndim - 1))
        return torch.where(mask, steered, h)

    # ---------------------------------------------------------------------------------------------- checks

    def check_model(self, model: Any) -> None:
        """Refuse a model this AutoSteer was not fitted on, or one without the gate's layers.

        Raises:
            ArtifactError: d_model or LM-head signature mismatch.
            LayerIndexError: the model lacks one of :attr:`layers`.
        """
        if self.provenance is not None:
            self.provenance.check(model, "this AutoSteer")
        spec = resolve(model)
        if spec.d_model != self.prober.d_model:
            raise ArtifactError(f"this AutoSteer expects d_model {self.prober.d_model}, the model has {spec.d_model}.")
        for layer in self.layers:
            spec.check_layer(layer)

    # ---------------------------------------------------------------------------------------------- nnsight

    def apply(self, model: Any, tracer: Any = None, steps: int | None = None) -> SteerReport:
        """Gate and steer inside ``with model.trace(...)`` or ``with model.generate(...) as tracer``.

        In a trace (one forward pass), call ``steer.apply(model)``. In generation, pass the tracer and the
        number of steps to steer (``max_new_tokens``): ``steer.apply(model, tracer, steps=n)``; the prober
        decides in the prefill step and the head acts on the gated rows at every step. Generate exactly
        ``steps`` tokens (``min_new_tokens=max_new_tokens=steps``): nnsight does not run code placed after a
        loop over steps that never come, so saving the result would be skipped. Batches must be
        left-padded (as :func:`~autosteer_interp.models.wrap` sets up), so position -1 is each row's last
        prompt token. Composable: read or patch any activation before or after the call, in execution order.

        Args:
            model: The nnsight-wrapped model being traced.
            tracer: The generation tracer (``None`` for a single forward pass).
            steps: Generated steps to steer (required with ``tracer``).

        Returns:
            A :class:`SteerReport` whose tensors are saved (readable after the ``with`` block).

        Raises:
            InvalidInputError: If called outside a trace, or with a tracer but no ``steps``.
        """
        self._check_tracing(model)
        if tracer is not None and (not isinstance(steps, int) or steps < 1):
            raise InvalidInputError(f"with a generation tracer, pass steps=max_new_tokens (>= 1), got {steps!r}.")
        if tracer is None:
            return self.apply_head(model, self.read_gate(model))
        self.check_model(model)
        spec = resolve(model)
        lm_head = get_module(model, spec.row.lm_head_path)
        report = nnsight.save(SteerReport(p_harmful=torch.empty(0), gate=torch.empty(0, dtype=torch.bool)))
        return gate_and_steer(
            tracer.iter[:steps],
            lambda: self.p_harmful(self._read_layers(model)),
            self.steer_lm_input,
            lm_head,
            self.threshold,
            self.gate_mode == "every_step",
            report,
        )

    def _read_layers(self, model: Any) -> Tensor:
        """``[batch, n_layers, d_model]``: the inputs of :attr:`layers` at the last position (in a trace)."""
        decoder_layers = get_module(model, resolve(model).layers_path)
        return torch.stack([decoder_layers[layer].input[:, -1] for layer in self.layers], dim=1)

    def read_gate(self, model: Any) -> SteerReport:
        """First half of :meth:`apply` in a single-pass trace: read the gate's layers and decide per sample.

        Split :meth:`apply` into :meth:`read_gate` and :meth:`apply_head` to read or patch modules between the
        deepest gate layer and the LM head in the same trace (nnsight values are requested in execution order).
        """
        self._check_tracing(model)
        self.check_model(model)
        p = self.p_harmful(self._read_layers(model))
        return nnsight.save(SteerReport(p_harmful=p, gate=p > self.threshold))

    def apply_head(self, model: Any, report: SteerReport) -> SteerReport:
        """Second half of :meth:`apply`: the refusal head on the LM-head input of the gated rows."""
        self._check_tracing(model)
        lm_head = get_module(model, resolve(model).row.lm_head_path)
        lm_head.input = self.steer_lm_input(lm_head.input, report.gate)
        return report

    @staticmethod
    def _check_tracing(model: Any) -> None:
        if not getattr(getattr(model, "interleaver", None), "interleaving", False):
            raise InvalidInputError(
                "AutoSteer.apply must be called inside `with model.trace(...)` or `with model.generate(...)`; "
                "outside a trace use steer.attach(hf_model) or steer.generate(model, prompts)."
            )

    # ---------------------------------------------------------------------------------------------- hooks

    def attach(self, model: Any) -> "SteerHandle":
        """Install AutoSteer on a plain Hugging Face model with PyTorch hooks (no nnsight), e.g. for serving.

        Works with ``model(...)`` and ``model.generate(...)``: each new sequence (empty key/value cache) is
        gated in its prefill pass; the head then acts on the gated rows at every step. Inputs must be
        left-padded.

        Args:
            model: A Hugging Face model or an nnsight wrapper (its underlying module gets the hooks).

        Returns:
            A :class:`SteerHandle`; ``remove()`` it (or use ``with``) to restore the model.
        """
        self.check_model(model)
        module = unwrap(model)
        spec = resolve(module)
        state = SteerHandle.State()

        def on_model(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            if cache is None or cache.get_seq_length() == 0:
                state.gate = None  # a new sequence: decide again

        read: dict[int, Tensor] = {}

        def on_layer(layer: int) -> Any:
            def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                if state.gate is not None and self.gate_mode == "prefill":
                    return  # decided in this sequence's prefill pass
                read[layer] = (args[0] if args else kwargs["hidden_states"])[:, -1]
                if layer != self.layers[-1]:
                    return  # the deepest gate layer decides
                with torch.no_grad():
                    p = self.p_harmful(torch.stack([read.pop(index) for index in self.layers], dim=1))
                if state.gate is None:
                    state.p_harmful, state.gate = p, p > self.threshold
                elif self.gate_mode == "every_step":
                    state.gate = state.gate | (p > self.threshold)

            return hook

        def on_lm_head(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if state.gate is None or not bool(state.gate.any()):
                return None
            with torch.no_grad():
                return (self.steer_lm_input(args[0], state.gate), *args[1:])

        decoder_layers = get_module(module, spec.layers_path)
        handles = [
            module.register_forward_pre_hook(on_model, with_kwargs=True),
            *(
                decoder_layers[layer].register_forward_pre_hook(on_layer(layer), with_kwargs=True)
                for layer in self.layers
            ),
            get_module(module, spec.row.lm_head_path).register_forward_pre_hook(on_lm_head),
        ]
        return SteerHandle(state, handles)

    def generate(
        self, model: Any, prompts: Sequence[Prompt], batch_size: int = 8, **generation_kwargs: Any
    ) -> GenerationResult:
        """Generate with AutoSteer for a list of prompts (batched; results per prompt).

        Args:
            model: A wrapped model.
            prompts: The requests (images allowed for multimodal models).
            batch_size: Prompts per ``generate`` call.
            **generation_kwargs: Passed to Hugging Face ``generate`` (default: greedy, 64 new tokens).

        Returns:
            Texts, P(harmful) and gate per prompt.
        """
        if len(prompts) == 0:
            raise InvalidInputError("expected at least one prompt, got an empty list.")
        self.check_model(model)
        kwargs = {"max_new_tokens": 64, "do_sample": False, **generation_kwargs}
        kwargs.setdefault("pad_token_id", model.tokenizer.pad_token_id)
        texts, p_all, gate_all, ids_all = [], [], [], []
        hf_model: Any = unwrap(model)
        handle = self.attach(model)
        with handle:
            for start in range(0, len(prompts), batch_size):
                inputs = encode_prompts(model, prompts[start : start + batch_size])
                with torch.no_grad():
                    out = hf_model.generate(**inputs, **kwargs)
                new = out[:, inputs["input_ids"].shape[1] :]
                texts += model.tokenizer.batch_decode(new, skip_special_tokens=True)
                assert handle.state.p_harmful is not None and handle.state.gate is not None
                p_all.append(handle.state.p_harmful)
                gate_all.append(handle.state.gate)
                ids_all += list(new)
        width = max(len(row) for row in ids_all)
        token_ids = torch.full((len(ids_all), width), model.tokenizer.pad_token_id, dtype=torch.long)
        for i, row in enumerate(ids_all):
            token_ids[i, : len(row)] = row
        return GenerationResult(texts, torch.cat(p_all), torch.cat(gate_all), token_ids)

    # ---------------------------------------------------------------------------------------------- fit

    @classmethod
    def fit(
        cls,
        model: Any,
        pairs: Sequence[PromptPair],
        candidate_layers: Sequence[int] | None = None,
        probe_layers: int | Sequence[int] | None = None,
        prober_config: ProberConfig | None = None,
        head_config: RefusalHeadConfig | None = None,
        gate_pairs: Sequence[PromptPair] | None = None,
        extra_negatives: Sequence[Prompt] | None = None,
        builtin_gate_data: bool = True,
        wrap_pairs: bool = True,
        max_wrapped: int | None = 512,
        calibrate_fpr: float | None = None,
        validation_fraction: float = 0.2,
        gate_mode: GateMode = "prefill",
        batch_size: int = 16,
        progress: bool = True,
        seed: int = 0,
    ) -> "AutoSteer":
        """The whole pipeline: activations -> SAS -> prober (the gate) -> refusal head.

        The SAS and the refusal head use ``pairs`` (the method). The gate is trained on more than ``pairs``
        when asked (the defaults): the project's own gate pairs (harm categories and phrasings VLSafe lacks),
        wrapped copies of a few hundred pairs in jailbreak-style templates (both sides alike, so the wrapper is never
        the signal) and borderline-benign requests as extra negatives — all from the built-in TRAINING splits,
        so :func:`~autosteer_interp.robustness.robustness_families` (test splits) stays unseen. A
        ``validation_fraction`` of the gate data (whole pairs, with their wrapped copies) is held out from
        training: the validation metrics and the threshold calibration use it.

        Args:
            model: The wrapped model to steer.
            pairs: Contrastive (harmful, safe) pairs to fit on.
            candidate_layers: Layers the SAS chooses from (default: ``1..n_layers-1``; the paper: every 4th).
            probe_layers: The layers the gate reads: ``k`` -> the ``k`` best layers by SAS (``1``: the paper),
                or an explicit list; default: the :data:`DEFAULT_PROBE_LAYERS` best (fewer if there are fewer
                candidates), chosen with ``benchmarks/eval_gate.py``.
            prober_config: Prober settings (default: :class:`~autosteer_interp.prober.ProberConfig`).
            head_config: Refusal-head settings (default: epsilon 0.1, the standard refusal target).
            gate_pairs: More contrastive pairs for the gate only (not the SAS, not the head).
            extra_negatives: More benign requests for the gate (e.g. your own borderline set).
            builtin_gate_data: Add the built-in gate pairs and borderline-benign requests (training splits).
            wrap_pairs: Add wrapped copies of gate pairs, inside training jailbreak wrappers (both sides alike).
            max_wrapped: Wrap at most this many pairs (seeded random choice; ``None``: all).
            calibrate_fpr: If set, set the threshold so that this share of held-out benign requests is flagged.
            validation_fraction: Share of the gate data held out for validation and calibration.
            gate_mode: See :class:`AutoSteer`.
            batch_size: Prompts per forward pass.
            progress: Show progress bars.
            seed: Seed of the held-out split and the wrapper assignment.

        Returns:
            The fitted AutoSteer; ``summary`` holds a :class:`FitSummary`.
        """
        if len(pairs) < 4:
            raise InvalidInputError(f"AutoSteer.fit needs at least 4 contrastive pairs, got {len(pairs)}.")
        if not 0 < validation_fraction < 1:
            raise InvalidInputError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}.")
        if calibrate_fpr is not None and not 0 <= calibrate_fpr < 1:
            raise InvalidInputError(f"calibrate_fpr must be in [0, 1), got {calibrate_fpr!r}.")
        spec = resolve(model)
        layers = list(candidate_layers) if candidate_layers is not None else list(range(1, spec.n_layers))
        for layer in layers:
            spec.check_layer(layer)
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        harmful = collect_activations(model, [p.harmful for p in pairs], layers, batch_size, progress=progress)
        safe = collect_activations(model, [p.safe for p in pairs], layers, batch_size, progress=progress)
        sas = safety_awareness_scores(safe, harmful)
        gate_layers = _choose_gate_layers(sas, probe_layers, spec)
        seconds["activations_and_sas"] = time.perf_counter() - start

        start = time.perf_counter()
        data = GateData.build(
            pairs, gate_pairs, extra_negatives, builtin_gate_data, wrap_pairs, validation_fraction, seed, max_wrapped
        )
        x = data.features(model, pairs, gate_layers, batch_size, progress, pair_activations=(harmful, safe))
        prober, validation = train_gate(x, gate_layers, prober_config, calibrate_fpr, model)
        seconds["gate"] = time.perf_counter() - start

        start = time.perf_counter()
        head = RefusalHead.fit(model, [p.harmful for p in pairs], head_config, progress=progress)
        seconds["refusal_head"] = time.perf_counter() - start
        steer = cls(prober, head, gate_mode=gate_mode)
        steer.summary = FitSummary(sas, gate_layers, validation, list(head.history), seconds, data.counts())
        return steer

    # ---------------------------------------------------------------------------------------------- artefact

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Save prober and head as one artefact folder (atomic; refuses to overwrite by default)."""
        config = {
            "d_model": self.prober.d_model,
            "layers": list(self.layers),
            "threshold": self.threshold,
            "epsilon": self.epsilon,
            "gate_mode": self.gate_mode,
            "prober": self.prober.config.to_dict(),
            "refusal_head": self.head.config.to_dict(),
            "base_model": self.provenance.to_dict() if self.provenance else None,
        }
        tensors = {f"prober.{name}": t for name, t in self.prober.state_dict().items()}
        tensors["head.S"] = self.head.S.detach()
        return write_artifact(directory, self.KIND, config, tensors, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | Path, model: Any = None) -> "AutoSteer":
        """Load a saved AutoSteer; with ``model``, refuse one fitted on a different model.

        Raises:
            ArtifactError: If the folder is not a valid AutoSteer artefact or does not match ``model``.
        """
        config, tensors = read_artifact(directory, cls.KIND)
        try:
            d_model, layers = int(config["d_model"]), [int(layer) for layer in config["layers"]]
            prober = SafetyProber(d_model, ProberConfig.from_dict(config["prober"]), layers)
            head_config = RefusalHeadConfig.from_dict(config["refusal_head"])
            head = RefusalHead(d_model, head_config.epsilon, head_config)
            prober_state = {k.removeprefix("prober."): v for k, v in tensors.items() if k.startswith("prober.")}
            prober.load_state_dict(prober_state)
            with torch.no_grad():
                head.S.copy_(tensors["head.S"])
            prober.provenance = head.provenance = provenance_of_artifact(config, None, str(directory))
            steer = cls(prober.eval(), head.eval(), float(config["threshold"]), config.get("gate_mode", "prefill"))
        except (KeyError, TypeError, ValueError, RuntimeError, InvalidInputError) as error:
            raise ArtifactError(f"{directory}: not a consistent AutoSteer artefact ({error}).") from error
        if model is not None:
            steer.check_model(model)
        return steer

    def with_threshold(self, threshold: float) -> "AutoSteer":
        """A copy with another decision threshold."""
        steer = copy.copy(self)
        steer.threshold = _check_threshold(threshold)
        return steer

    def with_gate_mode(self, gate_mode: GateMode) -> "AutoSteer":
        """A copy with another gate mode (``"prefill"`` or ``"every_step"``)."""
        if gate_mode not in _GATE_MODES:
            raise InvalidInputError(f"gate_mode must be one of {_GATE_MODES}, got {gate_mode!r}.")
        steer = copy.copy(self)
        steer.gate_mode = gate_mode
        return steer


def _choose_gate_layers(sas: LayerScores, probe_layers: int | Sequence[int] | None, spec: Any) -> list[int]:
    """The ``k`` best SAS layers (ascending), or the explicit list checked against the model."""
    if probe_layers is None:
        probe_layers = min(DEFAULT_PROBE_LAYERS, len(sas.layers))
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


class SteerHandle(HookHandle):
    """Hooks installed by :meth:`AutoSteer.attach`, with the gate of the current sequence in ``state``."""

    @dataclass
    class State:
        """The gate of the sequence being generated (``None`` before its prefill pass)."""

        p_harmful: Tensor | None = None
        gate: Tensor | None = None

    def __init__(self, state: "SteerHandle.State", handles: list[Any]) -> None:
        super().__init__(*handles)
        self.state = state
