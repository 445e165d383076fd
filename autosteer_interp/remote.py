"""AutoSteer on NDIF: a steer whose trace-side code and tensors travel with a ``remote=True`` request.

nnsight ships the body of a remote trace as source text plus the objects it reads, pickled with cloudpickle;
classes of a registered package travel by value, everything else by reference, and the server has only
``torch, numpy, transformers, accelerate, diffusers, einops, peft, nnsight`` (and their dependencies). An
:class:`~autosteer_interp.steer.AutoSteer` itself cannot go: pickling its class by value drags in every
method's annotations and globals, so the server would need ``jaxtyping``, ``PIL``, ``tqdm`` ... (measured with
:func:`server_imports`). :func:`prepare_remote` therefore builds a :class:`RemoteSteer`: the same gate and
refusal head, whose trace-side code uses only torch, einops and nnsight:

* the prober travels as a ``torch.export`` program of ``steer.p_harmful`` (exact, dynamic batch);
* the refusal head's ``S`` travels as float32, float16, or low rank ``S ~ I + U V^T`` (truncated SVD of
  ``S - I``), with the approximation error reported in a :class:`TransportReport`;
* the package registers itself with nnsight (:func:`register`), so its classes travel by value even when it is
  pip-installed (nnsight only auto-registers modules that are not installed).

Annotations in the shipped class are plain ``Tensor`` on purpose: jaxtyping is not on the server.

Example:
    >>> remote_steer, report = prepare_remote(steer, model, transport="low_rank", rank=64)   # doctest: +SKIP
    >>> with model.trace(inputs, remote=True):                                             # doctest: +SKIP
    ...     gate = remote_steer.apply(model)
    ...     logits = model.lm_head.output.save()
"""

import io
import logging
import pickle
import sys
from dataclasses import dataclass
from typing import Any, no_type_check

import nnsight
import torch
from jaxtyping import Float
from nnsight.intervention.serialization import CustomCloudUnpickler, dumps
from torch import Tensor, nn

from .architectures import get_module, resolve
from .errors import InvalidInputError
from .gating import GateReport, GateSpec, steered_input
from .steer import AutoSteer
from .tracing import gate_and_steer

__all__ = [
    "SERVER_MODULES",
    "RemoteReport",
    "RemoteSteer",
    "TRANSPORTS",
    "TransportReport",
    "head_transport_bytes",
    "prepare_remote",
    "register",
    "server_imports",
]

logger = logging.getLogger(__name__)

TRANSPORTS = ("float32", "float16", "low_rank")
"""How the refusal head's ``S`` can travel (checked at run time, so a typo gets a clear error)."""

SERVER_MODULES = frozenset(
    {"torch", "numpy", "transformers", "accelerate", "diffusers", "einops", "peft", "nnsight"}
    | {"cloudpickle", "huggingface_hub", "safetensors", "tokenizers", "tqdm", "regex", "packaging", "yaml", "requests"}
)
"""Top-level modules an NDIF server has: nnsight's list (``intervention/backends/local.py``) plus the
dependencies of nnsight and transformers."""


def register() -> None:
    """Register ``autosteer_interp`` with nnsight, so its classes and functions travel by value.

    Needed when the package is pip-installed (nnsight auto-registers only modules that are not installed);
    harmless otherwise. :func:`prepare_remote` calls it.
    """
    nnsight.register(sys.modules[__name__.rpartition(".")[0]])


# The shipped classes carry @no_type_check: it keeps the test-time jaxtyping hook off them, whose beartype
# wrappers cannot be pickled.


_SETTINGS = (
    "layers",
    "layers_path",
    "lm_head_path",
    "threshold",
    "every_step",
    "epsilon",
    "eos_token_ids",
    "image_token_id",
)
"""The :class:`~autosteer_interp.gating.GateSpec` fields a :class:`RemoteSteer` carries (all but its functions)."""

RemoteReport = GateReport
"""The report a :class:`RemoteSteer` returns: the same type as every backend's."""


@no_type_check
class RemoteSteer:
    """AutoSteer's gate and refusal head as plain torch, for ``model.trace(..., remote=True)``.

    Build it with :func:`prepare_remote`. It computes what :meth:`AutoSteer.apply` computes (bit for bit with
    ``transport="float32"``) and can run locally too, so a local run predicts the remote one.

    Attributes:
        settings: The gate's settings, :class:`~autosteer_interp.gating.GateSpec`'s fields but its two functions
            (layers, paths, threshold, every_step, epsilon, end-of-sequence and image ids).
        prober_program: The exported prober (``torch.export``, dynamic batch).
        head_factors: ``{"S": ...}`` or ``{"U": ..., "V": ...}`` (low rank), as they travel.
    """

    def __init__(self, settings: dict[str, Any], prober_program: bytes, head_factors: dict[str, Tensor]) -> None:
        self.settings = dict(settings)
        self.prober_program = prober_program
        self.head_factors = head_factors
        self._prober: Any = None
        self._S: Tensor | None = None
        self._placed: dict[str, Tensor] = {}

    @property
    def layers(self) -> tuple[int, ...]:
        """Decoder layers whose inputs the gate reads, ascending."""
        return tuple(self.settings["layers"])

    def __getstate__(self) -> dict[str, Any]:
        # what travels: the compact forms only (the prober program and S are rebuilt where they are used)
        return {**self.__dict__, "_prober": None, "_S": None, "_placed": {}}

    @property
    def S(self) -> Tensor:
        """``[d_model, d_model]`` float32 refusal matrix, rebuilt from what travelled (``I + U V^T`` if low rank)."""
        if self._S is None:
            factors = self.head_factors
            if "S" in factors:
                self._S = factors["S"].float()
            else:
                U, V = factors["U"], factors["V"]
                self._S = torch.eye(U.shape[0], dtype=torch.float32) + U @ V.T
        return self._S

    def matrix_on(self, device: Any) -> Tensor:
        """:attr:`S` on ``device`` (copied once per device)."""
        key = str(device)
        if key not in self._placed:
            self._placed[key] = self.S.to(device)
        return self._placed[key]

    def p_harmful(self, h_last: Tensor) -> Tensor:
        """``[batch]`` float32 P(harmful) from ``[batch, n_layers, d_model]`` last-token inputs of :attr:`layers`.

        Any dtype (the exported prober runs in float32) and device (it follows the input).
        """
        if self._prober is None:
            self._prober = torch.export.load(io.BytesIO(self.prober_program)).module()
        self._prober.to(h_last.device)
        return self._prober(h_last.float())

    def steer_lm_input(self, h: Tensor, gate: Tensor) -> Tensor:
        """``h + eps h S^T`` on the rows where ``gate`` is true (``h``: ``[batch, ..., d_model]``)."""
        return steered_input(h, self.matrix_on(h.device), self.settings["epsilon"], gate)

    def gate_spec(self) -> GateSpec:
        """The adapters' view of this steer."""
        return GateSpec(**self.settings, p_harmful=self.p_harmful, refusal_matrix=self.matrix_on)

    def apply(self, model: Any, tracer: Any = None, steps: int | None = None) -> GateReport:
        """Gate and steer inside ``model.trace(...)`` / ``model.generate(...)``, local or remote.

        Same contract as :meth:`AutoSteer.apply` (the same adapter runs it).

        Returns:
            A saved :class:`~autosteer_interp.gating.GateReport` (``p_harmful``, ``gate`` per row).
        """
        return gate_and_steer(model, self.gate_spec(), tracer, steps)


@dataclass(frozen=True)
class TransportReport:
    """What a :class:`RemoteSteer` costs on the wire and how far its head is from the original.

    Attributes:
        transport: ``"float32"``, ``"float16"`` or ``"low_rank"``.
        rank: Rank of ``U V^T`` (low rank only).
        d_model: Width of the residual stream.
        head_bytes: Bytes of the refusal head's tensors as they travel.
        float32_head_bytes: Bytes of ``S`` in float32 (``4 d^2``), for comparison.
        prober_bytes: Bytes of the exported prober program.
        payload_bytes: The whole :class:`RemoteSteer` as nnsight serializes it (code, prober, head).
        max_abs_error: ``max |S_sent - S|``.
        relative_error: ``||S_sent - S||_F / ||S - I||_F`` (error relative to what training changed in ``S``).
    """

    transport: str
    rank: int | None
    d_model: int
    head_bytes: int
    float32_head_bytes: int
    prober_bytes: int
    payload_bytes: int
    max_abs_error: float
    relative_error: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dict(self.__dict__)


def head_transport_bytes(d_model: int, transport: str, rank: int | None = None) -> int:
    """Bytes of the refusal head on the wire for a model of width ``d_model`` (e.g. 3584 for a 7B model)."""
    if transport == "low_rank":
        return 2 * _check_rank(rank, d_model) * d_model * 4
    return d_model * d_model * (2 if transport == "float16" else 4)


def _check_rank(rank: Any, d_model: int) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= d_model:
        raise InvalidInputError(f"low-rank transport needs rank = an integer in [1, d_model={d_model}], got {rank!r}.")
    return rank


def _head_factors(S: Float[Tensor, "d_model d_model"], transport: str, rank: int | None) -> dict[str, Tensor]:
    S = S.detach().float().cpu()
    if transport == "float32":
        return {"S": S.clone()}
    if transport == "float16":
        return {"S": S.half()}
    k = _check_rank(rank, S.shape[0])
    U, sigma, Vh = torch.linalg.svd(S.double() - torch.eye(S.shape[0], dtype=torch.float64))
    return {"U": (U[:, :k] * sigma[:k]).float().contiguous(), "V": Vh[:k].T.float().contiguous()}


class _ProberProgram(nn.Module):
    """``steer.p_harmful`` as a module, to export."""

    def __init__(self, steer: AutoSteer) -> None:
        super().__init__()
        self.prober = steer.prober
        self.steer = steer

    def forward(self, h_last: Float[Tensor, "batch n_layers d_model"]) -> Float[Tensor, " batch"]:
        return self.steer.p_harmful(h_last)


def _export_prober(steer: AutoSteer, d_model: int) -> bytes:
    example = torch.zeros(3, len(steer.layers), d_model, device=steer.head.S.device)
    with torch.no_grad():
        program = torch.export.export(
            _ProberProgram(steer).eval(), (example,), dynamic_shapes={"h_last": {0: torch.export.Dim("batch")}}
        )
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def prepare_remote(
    steer: AutoSteer, model: Any, transport: str = "float32", rank: Any = None
) -> tuple[RemoteSteer, TransportReport]:
    """Build the :class:`RemoteSteer` of ``steer`` for ``model`` and register the package with nnsight.

    Args:
        steer: A fitted AutoSteer.
        model: The nnsight model it will run on (a remote model's meta weights are fine: only its layout and
            sizes are read; the LM-head fingerprint is checked when the weights are real).
        transport: How ``S`` travels: ``"float32"`` (exact), ``"float16"`` (half the bytes) or ``"low_rank"``
            (``S ~ I + U V^T``, ``2 rank d`` float32 numbers).
        rank: Rank for ``"low_rank"``.

    Returns:
        ``(remote_steer, report)``; ``report`` gives the request size and the head's approximation error.

    Raises:
        InvalidInputError: Unknown transport, or a bad rank.
        ArtifactError / LayerIndexError: ``steer`` does not fit ``model``.
    """
    if transport not in TRANSPORTS:
        raise InvalidInputError(f"transport must be one of {TRANSPORTS}, got {transport!r}.")
    arch = resolve(model)
    rank = _check_rank(rank, arch.d_model) if transport == "low_rank" else None
    if get_module(model, arch.row.lm_head_path).weight.device.type == "meta":
        for layer in steer.layers:
            arch.check_layer(layer)
    else:
        steer.check_model(model)
    factors = _head_factors(steer.head.S, transport, rank)
    spec = steer.gate_spec(model)
    settings = {name: getattr(spec, name) for name in _SETTINGS}
    remote = RemoteSteer(settings, _export_prober(steer, arch.d_model), factors)
    register()
    S = steer.head.S.detach().float().cpu()
    error = remote.S - S
    trained = torch.linalg.matrix_norm(S - torch.eye(S.shape[0]))
    report = TransportReport(
        transport=transport,
        rank=rank,
        d_model=arch.d_model,
        head_bytes=sum(t.numel() * t.element_size() for t in factors.values()),
        float32_head_bytes=S.numel() * 4,
        prober_bytes=len(remote.prober_program),
        payload_bytes=len(dumps(remote)),
        max_abs_error=float(error.abs().max()),
        relative_error=float(torch.linalg.matrix_norm(error) / trained) if trained > 0 else 0.0,
    )
    logger.info("remote steer: %s", report)
    return remote, report


class _RecordingUnpickler(CustomCloudUnpickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file, {})
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module.split(".")[0])
        return super().find_class(module, name)


def server_imports(obj: Any) -> set[str]:
    """Top-level modules that unpickling ``obj`` (as nnsight ships it) imports, beyond the standard library.

    Whatever is not in :data:`SERVER_MODULES` would raise ``ModuleNotFoundError`` on an NDIF server. (nnsight's
    ``remote="local"`` dry run cannot see this: it keeps site-packages importable.)

    Args:
        obj: Anything a trace body would read, e.g. a :class:`RemoteSteer` or an AutoSteer.

    Returns:
        The module names, e.g. ``{"torch", "einops", "nnsight"}``.
    """
    unpickler = _RecordingUnpickler(io.BytesIO(dumps(obj)))
    try:
        unpickler.load()
    except pickle.UnpicklingError as error:  # persistent ids (model modules) are bound on the server only
        logger.debug("stopped at a persistent id: %s", error)
    return {name for name in unpickler.modules if name not in sys.stdlib_module_names}
