"""Refusal head: a trained ``d x d`` matrix that changes the LM head's input.

Paper form: ``logits = h (W + eps W S)^T`` with ``W`` the LM-head weight and ``h`` the final-norm hidden state.
Identical and far cheaper: ``logits = (h + eps h S^T) W^T``, i.e. replace the LM head's INPUT ``h`` by
``h + eps h S^T``: ``O(d^2)`` per token instead of ``O(V d^2)`` per step.

Training (:meth:`RefusalHead.fit`): the base model is frozen and ``S`` acts only after the last hidden state,
so the LM-head inputs of the training sequences (prompt + refusal target, teacher forcing) are computed ONCE
with an nnsight trace and cached; ``S`` is then fitted on the cache with cross-entropy on the target tokens
only (the prompt is masked; the paper's code also trained on prompt tokens). An optional retain set (benign
prompts with the model's own greedy continuations as targets) keeps the head from rewriting ordinary answers.

Example:
    >>> head = RefusalHead(d_model=8, epsilon=0.1)
    >>> h = torch.randn(2, 3, 8)
    >>> torch.allclose(head(h, gate=torch.zeros(2)), h)   # gate 0: untouched
    True
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from .architectures import get_module, resolve, unwrap
from .artifacts import read_artifact, require_tensor, write_artifact
from .containers import TokenCache, check_activations
from .errors import ArtifactError, FitError, InvalidInputError
from .gating import steered_input
from .hooks import HookHandle, attach_head
from .provenance import ModelProvenance, provenance_of_artifact

__all__ = ["DEFAULT_REFUSAL", "RefusalHead", "RefusalHeadConfig", "HookHandle"]

logger = logging.getLogger(__name__)

DEFAULT_REFUSAL = "I'm sorry, but I can't assist with that."


@dataclass
class RefusalHeadConfig:
    """How to train a :class:`RefusalHead`.

    Attributes:
        epsilon: Steering scale (paper: 0.1).
        target: The refusal the head is trained to produce (the end-of-turn token is appended).
        epochs: Passes over the cached tokens.
        learning_rate: AdamW learning rate for ``S``.
        batch_size: Cached tokens per optimisation step.
        retain_weight: Weight of the retain loss (benign prompts, the model's own continuations).
        retain_tokens: Length of the continuation generated for each retain prompt.
        forward_batch_size: Prompts per forward pass while caching.
        seed: Seed of the batch order.
    """

    epsilon: float = 0.1
    target: str = DEFAULT_REFUSAL
    epochs: int = 5
    learning_rate: float = 1e-3
    batch_size: int = 256
    retain_weight: float = 1.0
    retain_tokens: int = 16
    forward_batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (
                "epsilon",
                isinstance(self.epsilon, int | float) and math.isfinite(self.epsilon) and self.epsilon > 0,
                "a finite number > 0",
            ),
            ("target", isinstance(self.target, str) and bool(self.target.strip()), "a non-empty string"),
            ("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("learning_rate", math.isfinite(self.learning_rate) and self.learning_rate > 0, "a finite number > 0"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
            ("retain_weight", math.isfinite(self.retain_weight) and self.retain_weight >= 0, "a finite number >= 0"),
            ("retain_tokens", isinstance(self.retain_tokens, int) and self.retain_tokens >= 1, "an integer >= 1"),
            ("forward_batch_size", isinstance(self.forward_batch_size, int) and self.forward_batch_size >= 1, ">= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise InvalidInputError(
                    f"RefusalHeadConfig.{name}={getattr(self, name)!r} is invalid; allowed: {allowed}."
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RefusalHeadConfig":
        """Build from a dict, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def _lm_head(model: Any) -> nn.Linear:
    module = get_module(unwrap(model), resolve(model).row.lm_head_path)
    if not isinstance(module, nn.Linear):
        raise InvalidInputError(f"expected the LM head to be nn.Linear, got {type(module).__name__}.")
    return module


class RefusalHead(nn.Module):
    """``h -> h + gate * eps * h S^T`` on the LM head's input (``S`` starts as the identity).

    Attributes:
        S: ``[d_model, d_model]`` trained matrix.
        epsilon: Steering scale.
        config: The training configuration.
        history: Mean training loss per epoch of the last :meth:`fit`.
    """

    def __init__(self, d_model: int, epsilon: float = 0.1, config: RefusalHeadConfig | None = None) -> None:
        super().__init__()
        self.config = replace(config, epsilon=epsilon) if config is not None else RefusalHeadConfig(epsilon=epsilon)
        self.d_model = d_model
        self.S = nn.Parameter(torch.eye(d_model))
        self.history: list[float] = []
        self.provenance: ModelProvenance | None = None
        self._placed: tuple[tuple[str, int, int], Tensor] | None = None

    @property
    def epsilon(self) -> float:
        """Steering scale."""
        return self.config.epsilon

    def matrix_on(self, device: Any) -> Tensor:
        """``S`` as float32 on ``device`` (``S`` itself when it is there already, so gradients reach it).

        Copies to another device are cached until ``S`` changes, so a head on the CPU serving a GPU model
        copies ``S`` once, not at every step.
        """
        S = self.S
        if S.device == torch.device(device) and S.dtype == torch.float32:
            return S
        key = (str(device), S._version, S.data_ptr())
        if self._placed is None or self._placed[0] != key:
            self._placed = (key, S.detach().to(device, torch.float32))
        return self._placed[1]

    def forward(
        self, h: Float[Tensor, "*batch d_model"], gate: Bool[Tensor, " batch"] | Float[Tensor, " batch"] | float = 1.0
    ) -> Float[Tensor, "*batch d_model"]:
        """The steered LM-head input ``h + eps h S^T`` (:func:`~autosteer_interp.gating.steered_input`).

        (``nn.Module.apply`` is PyTorch's recursive initialiser, so the head is applied by calling it.)

        Args:
            h: LM-head inputs, e.g. ``[batch, pos, d_model]``, any dtype and device.
            gate: A scale on ``eps`` (``1.0``: on, ``0.0``: off), or a ``[batch]`` tensor whose nonzero rows are
                steered (the others are returned bit for bit).

        Returns:
            Same shape as ``h``, on its device, in its dtype (computed in float32).
        """
        if not isinstance(h, Tensor):
            raise InvalidInputError(
                f"the refusal head takes a torch.Tensor of LM-head inputs, got {type(h).__name__} (convert with "
                "torch.as_tensor)."
            )
        S = self.S.to(h.device)
        if isinstance(gate, Tensor):
            return steered_input(h, S, self.epsilon, gate.to(torch.bool))
        return steered_input(h, S, self.epsilon * float(gate))

    # ---------------------------------------------------------------------------------------------- fit

    @classmethod
    def fit(
        cls,
        model: Any,
        harmful_prompts: Sequence[Any],
        config: RefusalHeadConfig | None = None,
        retain_prompts: Sequence[Any] | None = None,
        progress: bool = True,
    ) -> "RefusalHead":
        """Fit ``S`` on a model: runs :func:`~autosteer_interp.fit.fit_refusal_head` with the same arguments."""
        from .fit import fit_refusal_head  # the pipeline (model, prompts) lives above the maths

        return fit_refusal_head(model, harmful_prompts, config, retain_prompts, progress)

    def fit_on_cache(self, cache: TokenCache, lm_head: nn.Linear, progress: bool = False) -> list[float]:
        """Fit ``S`` on cached LM-head inputs with cross-entropy (retain tokens weighted by ``retain_weight``).

        Runs on the LM head's device (batches of the cache are moved there; ``S`` stays where it is and receives
        its gradient through the copy), so a CPU cache trains a head for a GPU model.

        Returns:
            Mean loss per epoch.
        """
        config = self.config
        check_activations(cache.hidden, "the cached LM-head inputs")
        if lm_head.in_features != self.d_model:
            raise InvalidInputError(
                f"this refusal head has d_model {self.d_model}; the LM head takes inputs of width "
                f"{lm_head.in_features}."
            )
        weight = lm_head.weight.detach().float()
        device = weight.device
        bias = lm_head.bias.detach().float() if lm_head.bias is not None else None
        optimiser = torch.optim.AdamW([self.S], lr=config.learning_rate, weight_decay=0.0)
        generator = torch.Generator().manual_seed(config.seed)
        token_weight = torch.where(cache.is_retain, config.retain_weight, 1.0) if len(cache.is_retain) else None
        if token_weight is not None:
            token_weight = token_weight.to(device)
        self.train()
        for _ in tqdm(range(config.epochs), desc="refusal head", disable=not progress):
            order = torch.randperm(len(cache.labels), generator=generator)
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                batch_weight = token_weight[batch.to(device)] if token_weight is not None else None
                loss = self.batch_loss(cache.hidden[batch], cache.labels[batch], weight, bias, batch_weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            if not math.isfinite(total):
                raise FitError(
                    f"refusal head: the training loss of epoch {len(self.history)} is not finite ({total}); lower "
                    f"learning_rate (now {config.learning_rate}) or check the cached inputs."
                )
            self.history.append(total / len(order))
            logger.info("refusal head: epoch loss %.4f", self.history[-1])
        return self.eval().history

    def batch_loss(
        self,
        hidden: Float[Tensor, "n_tokens d_model"],
        labels: Int[Tensor, " n_tokens"],
        weight: Float[Tensor, "d_vocab d_model"],
        bias: Float[Tensor, " d_vocab"] | None = None,
        token_weight: Float[Tensor, " n_tokens"] | None = None,
    ) -> Float[Tensor, ""]:
        """Mean cross-entropy of the steered LM head on cached inputs, on ``weight``'s device.

        ``hidden`` and ``labels`` may live elsewhere (a CPU cache): they are moved to the LM head's device; ``S``
        receives its gradient wherever it lives.
        """
        device = weight.device
        logits = nn.functional.linear(self(hidden.to(device)), weight, bias)
        losses = nn.functional.cross_entropy(logits, labels.to(device), reduction="none")
        if token_weight is not None:
            losses = losses * token_weight.to(device)
        return losses.mean()

    # ---------------------------------------------------------------------------------------------- hooks

    def attach(self, model: Any, gate: float | Tensor = 1.0) -> HookHandle:
        """Apply the head to every forward of ``model`` with plain PyTorch hooks (always on, or a fixed gate).

        Autograd is kept (gradients flow through the steered input). ``gate``: see :meth:`forward`.

        Returns:
            A handle; call ``.remove()`` or use it as a context manager to restore the model.
        """
        if self.provenance is not None:
            self.provenance.check(model, "this refusal head")
        lm_head = _lm_head(model)
        if lm_head.in_features != self.d_model:
            raise InvalidInputError(
                f"this refusal head has d_model {self.d_model}; the model's LM head takes inputs of width "
                f"{lm_head.in_features}. Use a head fitted on this model."
            )
        return attach_head(lm_head, self.matrix_on, self.epsilon, gate)

    # ---------------------------------------------------------------------------------------------- artefact

    KIND = "refusal_head"

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Save as ``config.json`` + ``tensors.safetensors`` (atomic; refuses to overwrite by default)."""
        config = {
            "d_model": self.d_model,
            "epsilon": self.epsilon,
            "refusal_head": self.config.to_dict(),
            "base_model": self.provenance.to_dict() if self.provenance else None,
            "final_loss": self.history[-1] if self.history else None,
        }
        return write_artifact(directory, self.KIND, config, {"S": self.S.detach()}, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | Path, model: Any = None) -> "RefusalHead":
        """Load a saved head; with ``model``, refuse one fitted on a different model.

        Raises:
            ArtifactError: If the folder is not a valid refusal-head artefact, or does not match ``model``.
        """
        config, tensors = read_artifact(directory, cls.KIND)
        try:
            head_config = RefusalHeadConfig.from_dict(config["refusal_head"])
            d_model = int(config["d_model"])
        except (KeyError, TypeError, ValueError) as error:
            raise ArtifactError(f"{directory}: config.json has invalid refusal-head fields ({error}).") from error
        head = cls(d_model, head_config.epsilon, head_config)
        with torch.no_grad():
            head.S.copy_(require_tensor(tensors, "S", (d_model, d_model), str(directory)))
        head.provenance = provenance_of_artifact(config, model, f"the refusal head in {directory}")
        return head.eval()
