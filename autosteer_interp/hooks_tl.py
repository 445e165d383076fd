"""AutoSteer as TransformerLens hooks on a ``TransformerBridge`` (extra ``tl``: TransformerLens 4.x).

The same per-sample gate and refusal head as :meth:`AutoSteer.apply <autosteer_interp.steer.AutoSteer.apply>`,
as hook functions for ``bridge.run_with_hooks(..., fwd_hooks=...)``, ``with bridge.hooks(fwd_hooks=...)`` and
``bridge.generate(...)`` inside that context:

* ``blocks.{L}.hook_in`` (the input of decoder layer ``L``) for every ``L`` in ``steer.layers``: the gate reads
  position -1 (batches are left-padded) and decides per row in the prefill pass;
* ``unembed.hook_in`` (the LM head's input): ``h -> h + eps h S^T`` on the gated rows, untouched elsewhere;
* ``embed.hook_in`` (the token ids): tells a new sequence from a generation step of the current one.

:func:`boot_bridge` boots the bridge safely: on a copy of the model (TransformerLens rewrites the Hugging Face
module tree in place, so one model object must never serve nnsight and TransformerLens), with a fresh
tokenizer (TransformerLens mutates the one it gets), and with TransformerLens' run-time ``pip install
torchvision`` switched off during the boot (it would replace the pinned torch). TransformerLens has no
Chameleon adapter: Chameleon raises :class:`~autosteer_interp.errors.UnsupportedModelError`.

Known limitation of TransformerLens 4.3 with transformers 5.x (measured): ``bridge.generate`` with its default
``use_past_kv_cache=True`` reads ``output.past_key_values``, which transformers 5 renamed ``cache``, so every
cached step runs without its context. Pass ``use_past_kv_cache=False`` to get the tokens Hugging Face
``generate`` gives; the hooks work either way.

Example:
    >>> bridge = boot_bridge(model)                                                  # doctest: +SKIP
    >>> tl_steer = AutoSteerHooks(steer, bridge)                                     # doctest: +SKIP
    >>> logits = bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=tl_steer.fwd_hooks())  # doctest: +SKIP
    >>> with bridge.hooks(fwd_hooks=tl_steer.fwd_hooks()):                          # doctest: +SKIP
    ...     out = bridge.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
    ...                           use_past_kv_cache=False, verbose=False)
    >>> tl_steer.report.gate                                                         # doctest: +SKIP
    tensor([ True, False])
"""

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from .architectures import resolve, unwrap
from .errors import ArtifactError, InvalidInputError, LayerIndexError, ModelLoadError, UnsupportedModelError
from .steer import AutoSteer, SteerReport

__all__ = ["AutoSteerHooks", "boot_bridge"]

logger = logging.getLogger(__name__)

_NO_TL_ADAPTER = {"chameleon"}
"""``config.model_type`` values TransformerLens 4.3 cannot boot."""

HookFn = Callable[[Tensor, Any], Tensor | None]


@contextlib.contextmanager
def _no_runtime_installs() -> Iterator[None]:
    """Switch off TransformerLens' ``pip install torchvision`` fallback while booting (restored afterwards)."""
    from transformer_lens.model_bridge.sources.transformers import helpers

    original = helpers._ensure_torchvision

    def refuse() -> bool:
        logger.info("TransformerLens wanted to pip-install torchvision at run time; refused (no processor loaded).")
        return False

    helpers._ensure_torchvision = refuse
    try:
        yield
    finally:
        helpers._ensure_torchvision = original


def _is_bridged(module: nn.Module) -> bool:
    return any(type(sub).__module__.startswith("transformer_lens.") for sub in module.modules())


def boot_bridge(model: Any, tokenizer: Any = None, copy_model: bool = True, device: str | None = None) -> Any:
    """Boot a TransformerLens ``TransformerBridge`` on a model, without touching the original.

    Args:
        model: An nnsight-wrapped model (:func:`~autosteer_interp.models.load_model`) or a Hugging Face model.
        tokenizer: The tokenizer (default: ``model.tokenizer`` of the wrapper); the bridge gets a copy.
        copy_model: Boot on a deep copy (default). ``False`` hands a plain Hugging Face model over to
            TransformerLens, which rewrites it in place (saves memory for large models; do not use it elsewhere).
        device: Device for the bridge (default: where the model's weights are).

    Returns:
        The ``TransformerBridge``.

    Raises:
        UnsupportedModelError: The architecture has no TransformerLens adapter (Chameleon) or is not supported.
        InvalidInputError: ``copy_model=False`` on an nnsight-wrapped model, or a model TransformerLens already
            converted.
        ModelLoadError: TransformerLens is not installed.
    """
    spec = resolve(model)
    if spec.model_type in _NO_TL_ADAPTER:
        raise UnsupportedModelError(
            f"TransformerLens 4.3 has no adapter for {spec.model_type!r} models (TransformerBridge cannot boot "
            "them). Use nnsight (`steer.apply(model)` inside `model.trace`) or plain Hugging Face hooks "
            "(`steer.attach(hf_model)`) instead."
        )
    hf_model = unwrap(model)
    if _is_bridged(hf_model):
        raise InvalidInputError(
            "this model was already converted by TransformerLens (its modules are bridge components); pass the "
            "original model, or use the bridge you booted from it."
        )
    if not copy_model and hf_model is not model:
        raise InvalidInputError(
            "copy_model=False on an nnsight-wrapped model: TransformerLens rewrites the module tree in place, which "
            "would break the nnsight wrapper. Keep copy_model=True, or pass a plain Hugging Face model you hand over."
        )
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise InvalidInputError("boot_bridge needs a tokenizer: pass tokenizer=..., or the nnsight wrapper.")
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as error:
        raise ModelLoadError(
            f"TransformerLens is not installed ({error}); `pip install autosteer-interp[tl]`."
        ) from error
    target = copy.deepcopy(hf_model) if copy_model else hf_model
    name = getattr(target.config, "_name_or_path", "") or type(target).__name__
    device = device or str(next(target.parameters()).device)
    with _no_runtime_installs():
        return TransformerBridge.boot_transformers(
            name, hf_model=target, tokenizer=copy.deepcopy(tokenizer), device=device
        )


class AutoSteerHooks:
    """AutoSteer's per-sample gate and refusal head as TransformerLens hook functions for one bridge.

    Each call of :meth:`fwd_hooks` starts afresh. Within one set of hooks, a forward pass whose tokens extend
    the current prompt (a generation step without key/value cache) or that feeds a single token per row (a
    cached step) continues the current sequence and keeps its gate; any other pass is a new sequence, gated
    afresh from its own last token.

    Args:
        steer: The fitted AutoSteer.
        bridge: A ``TransformerBridge`` booted on the model ``steer`` was fitted on (:func:`boot_bridge`).

    Attributes:
        report: The gate of the current sequence (``p_harmful``, ``gate`` per row), ``None`` before the first pass.

    Raises:
        ArtifactError: ``steer`` was fitted on another model.
        LayerIndexError: The bridge lacks one of ``steer.layers``.
    """

    def __init__(self, steer: AutoSteer, bridge: Any) -> None:
        cfg = bridge.cfg
        if cfg.d_model != steer.head.d_model:
            raise ArtifactError(f"this AutoSteer expects d_model {steer.head.d_model}, the bridge has {cfg.d_model}.")
        for layer in steer.layers:
            if not 0 <= layer < cfg.n_layers:
                raise LayerIndexError(
                    f"layer {layer} is out of range for this bridge: valid layers are 0..{cfg.n_layers - 1}."
                )
        steer.check_model(bridge.original_model)
        self.steer = steer
        self.report: SteerReport | None = None
        self._prompt: Tensor | None = None
        self._continuing = False
        self._read: list[Tensor] = []

    def reset(self) -> None:
        """Forget the current sequence: the next forward pass is gated afresh."""
        self.report, self._prompt, self._continuing, self._read = None, None, False, []

    def fwd_hooks(self) -> list[tuple[str, HookFn]]:
        """``(hook name, function)`` pairs for ``run_with_hooks(fwd_hooks=...)`` or ``hooks(fwd_hooks=...)``."""
        self.reset()
        last = max(self.steer.layers)
        hooks: list[tuple[str, HookFn]] = [("embed.hook_in", self._on_tokens)]
        hooks += [(f"blocks.{layer}.hook_in", self._reader(layer == last)) for layer in self.steer.layers]
        hooks.append(("unembed.hook_in", self._on_lm_input))
        return hooks

    def _on_tokens(self, tokens: Int[Tensor, "batch pos"], hook: Any) -> None:
        prompt = self._prompt
        extends = (
            prompt is not None
            and tokens.shape[1] > prompt.shape[1]
            and torch.equal(tokens[:, : prompt.shape[1]], prompt)
        )
        self._continuing = (
            prompt is not None and tokens.shape[0] == prompt.shape[0] and (tokens.shape[1] == 1 or extends)
        )
        if not self._continuing:
            self.report, self._prompt = None, tokens.detach().clone()
        self._read = []

    def _reader(self, decides: bool) -> HookFn:
        def read(resid: Float[Tensor, "batch pos d_model"], hook: Any) -> None:
            if self._continuing and self.steer.gate_mode == "prefill":
                return
            self._read.append(resid[:, -1].detach())
            if decides:
                with torch.no_grad():
                    p = self.steer.p_harmful(torch.stack(self._read, dim=1))
                if self.report is None:
                    self.report = SteerReport(p_harmful=p, gate=p > self.steer.threshold)
                else:
                    self.report.gate = self.report.gate | (p > self.steer.threshold)

        return read

    def _on_lm_input(self, h: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor | None:
        if self.report is None or not bool(self.report.gate.any()):
            return None
        with torch.no_grad():
            return self.steer.steer_lm_input(h, self.report.gate)
