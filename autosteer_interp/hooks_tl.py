"""AutoSteer as TransformerLens hooks on a ``TransformerBridge`` (extra ``tl``: TransformerLens 4.x).

The same per-sample gate and refusal head as :meth:`AutoSteer.apply <autosteer_interp.steer.AutoSteer.apply>`,
as hook functions for ``bridge.run_with_hooks(..., fwd_hooks=...)``, ``with bridge.hooks(fwd_hooks=...)`` and
``bridge.generate(...)`` inside that context:

* ``blocks.{L}.hook_in`` (the input of decoder layer ``L``) for every ``L`` in ``steer.layers``: the gate reads
  each row's last real prompt token (from the attention mask; left or right padding) and decides per row;
* ``unembed.hook_in`` (the LM head's input): ``h -> h + eps h S^T`` on the gated rows, untouched elsewhere;
* a forward pre-hook on the wrapped Hugging Face model: ids, attention mask and cache of each pass, which tell
  a new sequence from a generation step of the current one (:mod:`autosteer_interp.gating`).

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

from jaxtyping import Float
from torch import Tensor, nn

from .architectures import resolve, unwrap
from .errors import ArtifactError, InvalidInputError, LayerIndexError, ModelLoadError, UnsupportedModelError
from .gating import forward_pass_inputs
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

    The bridge runs the Hugging Face model it wraps, so a forward pre-hook on ``bridge.original_model`` (installed
    here, removed by :meth:`remove` or on leaving a ``with`` block) records each pass's ids, attention mask and
    cache; the TransformerLens hooks hand them to the gate core (``embed.hook_in``), read the gate's layers and
    edit the LM head's input, so passes run without these hooks leave the gate alone. A
    pass continues the current sequence when its cache holds exactly the positions seen so far, or, without a
    cache (``use_past_kv_cache=False``), when its tokens extend the current prompt; any other pass starts a new
    sequence. Pass ``attention_mask=`` with padded batches, as with Hugging Face. Autograd is kept.

    Args:
        steer: The fitted AutoSteer.
        bridge: A ``TransformerBridge`` booted on the model ``steer`` was fitted on (:func:`boot_bridge`).

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
        self.spec = steer.gate_spec(bridge.original_model)
        self.state = self.spec.new_state()
        self._reads: list[Tensor] = []
        self._pass: tuple[Any, ...] | None = None
        self._handle = bridge.original_model.register_forward_pre_hook(self._on_model, with_kwargs=True)

    @property
    def report(self) -> SteerReport:
        """The gate of the current sequence (``p_harmful``, ``gate`` per row); empty before the first pass."""
        return self.state.report

    def reset(self) -> None:
        """Forget the current sequence: the next forward pass is gated afresh."""
        self.state = self.spec.new_state()
        self._reads = []

    def remove(self) -> None:
        """Remove the pre-hook on the wrapped model (the TransformerLens hooks go with their context)."""
        self._handle.remove()

    def __enter__(self) -> "AutoSteerHooks":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def fwd_hooks(self) -> list[tuple[str, HookFn]]:
        """``(hook name, function)`` pairs for ``run_with_hooks(fwd_hooks=...)`` or ``hooks(fwd_hooks=...)``.

        Each call starts afresh (a new gate state).
        """
        self.reset()
        deepest = self.spec.layers[-1]
        hooks: list[tuple[str, HookFn]] = [("embed.hook_in", self._on_tokens)]
        hooks += [(f"blocks.{layer}.hook_in", self._reader(layer == deepest)) for layer in self.spec.layers]
        hooks.append(("unembed.hook_in", self._on_lm_input))
        return hooks

    def _on_model(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._pass = forward_pass_inputs(args, kwargs)  # only recorded: passes without our hooks change nothing

    def _on_tokens(self, tokens: Tensor, hook: Any) -> None:
        if self._pass is None:
            raise InvalidInputError(
                "the bridge ran without calling its Hugging Face model, so the gate cannot see the attention mask; "
                "use AutoSteerHooks on a bridge from boot_bridge()."
            )
        self._reads = []
        self.state.begin_pass(*self._pass)
        self._pass = None

    def _reader(self, decides: bool) -> HookFn:
        def read(resid: Float[Tensor, "batch pos d_model"], hook: Any) -> None:
            plan = self.state.plan
            if plan is None:
                return
            self._reads.append(plan.gather(resid))
            if decides:
                self.state.update(self._reads, self.spec.p_harmful)
                self._reads = []

        return read

    def _on_lm_input(self, h: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor | None:
        if not self.state.report.any_gated:
            return None
        return self.spec.steer(h, self.state.report.gate)
