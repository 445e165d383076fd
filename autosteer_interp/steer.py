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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from . import tracing
from .architectures import resolve, unwrap
from .artifacts import read_artifact, write_artifact
from .errors import ArtifactError, InvalidInputError
from .gating import GateReport, GateSpec, steered_input
from .hooks import GateHandle, attach_gate
from .prober import ProberConfig, SafetyProber
from .prompts import (
    Prompt,
    PromptFormat,
    PromptPair,
    check_prompt_format,
    check_prompt_lengths,
    check_prompts,
    encode_prompts,
)
from .provenance import provenance_of_artifact
from .refusal_head import RefusalHead, RefusalHeadConfig
from .validation import positive_int

__all__ = ["AutoSteer", "GenerationResult", "SteerHandle", "SteerReport", "eos_token_ids"]

logger = logging.getLogger(__name__)

GateMode = Literal["prefill", "every_step"]
_GATE_MODES = ("prefill", "every_step")


SteerReport = GateReport
"""What the gate decided, per row: every backend's one report type (:class:`~autosteer_interp.gating.GateReport`)."""

SteerHandle = GateHandle
"""Hooks installed by :meth:`AutoSteer.attach` (see :class:`~autosteer_interp.hooks.GateHandle`)."""


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


def eos_token_ids(model: Any) -> tuple[int, ...]:
    """End-of-sequence ids of a model: its generation config's and its tokenizer's (a row fed one has finished)."""
    ids: set[int] = set()
    configured = getattr(getattr(unwrap(model), "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids |= {int(i) for i in (configured if isinstance(configured, list | tuple) else [configured])}
    tokenizer_eos = getattr(getattr(model, "tokenizer", None), "eos_token_id", None)
    if tokenizer_eos is not None:
        ids.add(int(tokenizer_eos))
    return tuple(sorted(ids))


_PROBER_PART, _HEAD_PART = "prober", "refusal_head"
"""Sub-folders of an AutoSteer artefact."""


def _with_threshold(prober: SafetyProber, threshold: Any) -> SafetyProber:
    """The same prober (shared parameters) with another decision threshold."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise InvalidInputError(f"threshold must be a number in [0, 1], got {threshold!r}.")
    if float(threshold) == prober.threshold:
        return prober
    clone = copy.copy(prober)
    clone.config = replace(prober.config, threshold=float(threshold))
    return clone


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
        prompt_format: PromptFormat = "chat",
    ) -> None:
        if prober.layers is None:
            raise InvalidInputError("the prober has no layers; fit it with layers=... (the layer(s) it reads).")
        if prober.d_model != head.d_model:
            raise InvalidInputError(
                f"prober d_model {prober.d_model} differs from refusal head d_model {head.d_model}."
            )
        if gate_mode not in _GATE_MODES:
            raise InvalidInputError(f"gate_mode must be one of {_GATE_MODES}, got {gate_mode!r}.")
        self.prober = prober if threshold is None else _with_threshold(prober, threshold)
        self.head = head
        self.gate_mode: GateMode = gate_mode
        self.prompt_format: PromptFormat = check_prompt_format(prompt_format)
        self.provenance = prober.provenance or head.provenance
        self.summary: Any = None  # a fit.FitSummary after AutoSteer.fit
        self.origin: dict[str, Any] | None = None  # where imported parts came from (official.import_official)

    def to(self, *args: Any, **kwargs: Any) -> "AutoSteer":
        """Move (or cast) the prober and the head, like ``nn.Module.to``; returns ``self``."""
        self.prober.to(*args, **kwargs)
        self.head.to(*args, **kwargs)
        return self

    @property
    def threshold(self) -> float:
        """Decision threshold on P(harmful): the prober's (stored once)."""
        return self.prober.threshold

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
            h_last: ``[batch, n_layers, d_model]`` (``[batch, d_model]`` is accepted for a one-layer gate), any
                dtype and device.

        Returns:
            float32 on ``h_last``'s device.
        """
        return torch.softmax(self.prober(h_last), dim=-1).select(-1, 1)

    def steer_lm_input(
        self, h: Float[Tensor, "batch *pos d_model"], gate: Bool[Tensor, " batch"]
    ) -> Float[Tensor, "batch *pos d_model"]:
        """The LM head's input with the refusal head on the gated rows; other rows returned untouched.

        Returns:
            Same shape, device and dtype as ``h``.
        """
        return steered_input(h, self.head.matrix_on(h.device), self.epsilon, gate)

    def gate_spec(self, model: Any) -> GateSpec:
        """What every backend adapter needs to run this AutoSteer on ``model`` (paths, settings, functions)."""
        spec = resolve(model)
        return GateSpec(
            layers=self.layers,
            layers_path=spec.layers_path,
            lm_head_path=spec.row.lm_head_path,
            threshold=self.threshold,
            every_step=self.gate_mode == "every_step",
            epsilon=self.epsilon,
            p_harmful=self.p_harmful,
            refusal_matrix=self.head.matrix_on,
            eos_token_ids=eos_token_ids(model),
            image_token_id=spec.image_token_id,
        )

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
        number of tokens to generate: ``steer.apply(model, tracer, steps=max_new_tokens)``. Each row is decided at
        its last real prompt token (left or right padding; chunked prefill included) and the head acts on the
        gated rows at every later pass. Generate exactly ``steps`` tokens (``min_new_tokens=max_new_tokens``):
        nnsight does not run code placed after a loop over steps that never come. Composable: read or patch any
        activation before or after the call, in execution order.

        Args:
            model: The nnsight-wrapped model being traced.
            tracer: The generation tracer (``None`` for a single forward pass).
            steps: Tokens to generate (required with ``tracer``).

        Returns:
            A :class:`SteerReport` whose tensors are saved (readable after the ``with`` block).

        Raises:
            InvalidInputError: If called outside a trace, or with a tracer but no ``steps``.
        """
        self._check_tracing(model)
        self.check_model(model)
        return tracing.gate_and_steer(model, self.gate_spec(model), tracer, steps)

    def read_gate(self, model: Any) -> SteerReport:
        """First half of :meth:`apply` in a single-pass trace: read the gate's layers and decide per sample.

        Split :meth:`apply` into :meth:`read_gate` and :meth:`apply_head` to read or patch modules between the
        deepest gate layer and the LM head in the same trace (nnsight values are requested in execution order).
        """
        self._check_tracing(model)
        self.check_model(model)
        return tracing.read_gate(model, self.gate_spec(model))

    def apply_head(self, model: Any, report: SteerReport) -> SteerReport:
        """Second half of :meth:`apply`: the refusal head on the LM-head input of the gated rows."""
        self._check_tracing(model)
        return tracing.apply_head(model, self.gate_spec(model), report)

    @staticmethod
    def _check_tracing(model: Any) -> None:
        if not getattr(getattr(model, "interleaver", None), "interleaving", False):
            raise InvalidInputError(
                "AutoSteer.apply must be called inside `with model.trace(...)` or `with model.generate(...)`; "
                "outside a trace use steer.attach(hf_model) or steer.generate(model, prompts)."
            )

    # ---------------------------------------------------------------------------------------------- hooks

    def attach(self, model: Any) -> SteerHandle:
        """Install AutoSteer on a plain Hugging Face model with PyTorch hooks (no nnsight), e.g. for serving.

        Works with ``model(...)`` and ``model.generate(...)`` (cache on or off, chunked prefill, left or right
        padding): each row is decided at its last real prompt token and the head acts on the gated rows at every
        later step. Autograd is kept.

        Args:
            model: A Hugging Face model or an nnsight wrapper (its underlying module gets the hooks).

        Returns:
            A :class:`SteerHandle`; ``remove()`` it (or use ``with``) to restore the model; ``handle.report`` is
            the gate of the current (or last) sequence.
        """
        self.check_model(model)
        return attach_gate(model, self.gate_spec(model))

    def encode(self, model: Any, prompts: Sequence[Prompt]) -> dict[str, Any]:
        """``encode_prompts`` in this AutoSteer's prompt format: the inputs to trace or generate with."""
        return encode_prompts(model, prompts, self.prompt_format)

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
        prompts = check_prompts(prompts)
        batch_size = positive_int(batch_size, "batch_size")
        self.check_model(model)
        kwargs = {"max_new_tokens": 64, "do_sample": False, **generation_kwargs}
        positive_int(kwargs["max_new_tokens"], "max_new_tokens")
        check_prompt_lengths(model, prompts, prompt_format=self.prompt_format)
        kwargs.setdefault("pad_token_id", model.tokenizer.pad_token_id)
        texts, p_all, gate_all, ids_all = [], [], [], []
        hf_model: Any = unwrap(model)
        with self.attach(model) as handle:
            for start in range(0, len(prompts), batch_size):
                inputs = self.encode(model, prompts[start : start + batch_size])
                with torch.no_grad():
                    out = hf_model.generate(**inputs, **kwargs)
                new = out[:, inputs["input_ids"].shape[1] :].cpu()
                texts += model.tokenizer.batch_decode(new, skip_special_tokens=True)
                p_all.append(handle.report.p_harmful.cpu())
                gate_all.append(handle.report.gate.cpu())
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
        config: Any = None,
        gate_pairs: Sequence[PromptPair] | None = None,
        gate_benign: Any = None,
        gate_harmful: Any = None,
        **settings: Any,
    ) -> "AutoSteer":
        """The whole pipeline: activations -> SAS -> prober (the gate) -> refusal head (the front door).

        Runs :func:`~autosteer_interp.fit.fit_autosteer`. Settings come as a
        :class:`~autosteer_interp.fit.FitConfig` or as its fields by keyword (``candidate_layers=``,
        ``probe_layers=``, ``prober_config=``, ``head_config=``, ``calibrate_fpr=``, ...; see that class).

        Args:
            model: The wrapped model to steer.
            pairs: Contrastive (harmful, safe) pairs to fit on (the SAS and the refusal head use them).
            config: The settings (default: :class:`~autosteer_interp.fit.FitConfig` with ``settings``).
            gate_pairs: More contrastive pairs for the gate only (not the SAS, not the head).
            gate_benign: More benign requests for the gate (your own everyday or borderline set): prompts or a
                :class:`~autosteer_interp.benchmark_data.BenchmarkSet`.
            gate_harmful: More harmful requests for the gate without twins (e.g. an AdvBench-style set).
            **settings: :class:`~autosteer_interp.fit.FitConfig` fields, when ``config`` is not given.

        Returns:
            The fitted AutoSteer; ``summary`` holds a :class:`~autosteer_interp.fit.FitSummary`.

        Raises:
            InvalidInputError: Bad settings (unknown names included) or too few pairs, before any work.
        """
        from .fit import FitConfig, fit_autosteer

        if config is not None and settings:
            raise InvalidInputError(f"pass either config= or settings by keyword, not both (got {sorted(settings)}).")
        config = config or FitConfig.from_settings(settings)
        return fit_autosteer(model, pairs, config, gate_pairs, gate_benign, gate_harmful)

    # ---------------------------------------------------------------------------------------------- artefact

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Save as one artefact folder holding the prober's and the head's own artefacts (atomic as a whole).

        Layout: ``config.json`` (kind ``autosteer``: gate mode, base model), ``prober/`` (a
        :class:`~autosteer_interp.prober.SafetyProber` artefact: its layers and the threshold, stored once) and
        ``refusal_head/`` (a :class:`~autosteer_interp.refusal_head.RefusalHead` artefact); each part loads alone
        with its class's ``load``. Refuses to overwrite by default.
        """
        config = {
            "layout": "parts",
            "gate_mode": self.gate_mode,
            "prompt_format": self.prompt_format,
            "base_model": self.provenance.to_dict() if self.provenance else None,
            "origin": self.origin,
        }
        parts = {_PROBER_PART: self.prober.save, _HEAD_PART: self.head.save}
        return write_artifact(directory, self.KIND, config, {}, overwrite=overwrite, parts=parts)

    @classmethod
    def load(cls, directory: str | Path, model: Any = None) -> "AutoSteer":
        """Load a saved AutoSteer; with ``model``, refuse one fitted on a different model.

        Reads the layout :meth:`save` writes, and the single-file layout of version 0.1 (prober and head tensors
        in one file).

        Raises:
            ArtifactError: If the folder is not a valid AutoSteer artefact or does not match ``model``.
        """
        config, tensors = read_artifact(directory, cls.KIND)
        if config.get("layout") == "parts":
            prober = SafetyProber.load(Path(directory) / _PROBER_PART, model)
            head = RefusalHead.load(Path(directory) / _HEAD_PART, model)
            try:
                steer = cls(
                    prober,
                    head,
                    gate_mode=config.get("gate_mode", "prefill"),
                    prompt_format=config.get("prompt_format", "chat"),
                )
            except InvalidInputError as error:
                raise ArtifactError(
                    f"{directory}: its prober and refusal head do not fit together ({error})."
                ) from error
        else:
            steer = cls._load_single_file(directory, config, tensors)
        origin = config.get("origin")
        steer.origin = origin if isinstance(origin, dict) else None
        if model is not None:
            steer.check_model(model)
        return steer

    @classmethod
    def _load_single_file(
        cls, directory: str | Path, config: dict[str, Any], tensors: dict[str, Tensor]
    ) -> "AutoSteer":
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
            return cls(prober.eval(), head.eval(), float(config["threshold"]), config.get("gate_mode", "prefill"))
        except (KeyError, TypeError, ValueError, RuntimeError, InvalidInputError) as error:
            raise ArtifactError(f"{directory}: not a consistent AutoSteer artefact ({error}).") from error

    @classmethod
    def from_pretrained(
        cls, repo_id_or_path: str | Path, model: Any = None, revision: str | None = None, **hub_kwargs: Any
    ) -> "AutoSteer":
        """Load from a folder or a Hugging Face Hub repository (offline: its local cache).

        See :func:`autosteer_interp.hub.from_pretrained` (``cache_dir=``, ``token=``).
        """
        from .hub import from_pretrained

        steer: AutoSteer = from_pretrained(repo_id_or_path, model=model, revision=revision, **hub_kwargs)
        return steer

    def push_to_hub(self, repo_id: str, **hub_kwargs: Any) -> str:
        """Upload this AutoSteer and a model card to a Hub model repository; returns the commit URL."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, **hub_kwargs)

    def with_threshold(self, threshold: float) -> "AutoSteer":
        """A copy with another decision threshold (the prober is shared; only its threshold differs)."""
        steer = copy.copy(self)
        steer.prober = _with_threshold(self.prober, threshold)
        return steer

    def with_gate_mode(self, gate_mode: GateMode) -> "AutoSteer":
        """A copy with another gate mode (``"prefill"`` or ``"every_step"``)."""
        if gate_mode not in _GATE_MODES:
            raise InvalidInputError(f"gate_mode must be one of {_GATE_MODES}, got {gate_mode!r}.")
        steer = copy.copy(self)
        steer.gate_mode = gate_mode
        return steer
