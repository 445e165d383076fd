"""The gate core: per-row decision state over the passes of a sequence, the steered-input formula, the report.

Every backend (nnsight trace and generate, plain Hugging Face hooks, TransformerLens hooks, NDIF remote) runs
this code and only translates its host's events into three calls per forward pass:

1. :meth:`GateState.begin_pass` with what the model's forward receives (token ids, attention mask, length of
   the key/value cache): which rows read which position at this pass, if any;
2. :meth:`GateState.update` with the gate layers' inputs at those positions: the decision;
3. :meth:`GateSpec.steer` on the LM head's input when :attr:`GateReport.any_gated`: the refusal head on the
   gated rows.

**When a row is decided.** A sequence has a prompt of width ``P`` (padded). Each row is decided from the
inputs of the gate layers at its LAST REAL prompt token: the last position below ``P`` whose attention mask is
1 and that is not an image placeholder. That position is read in whichever pass holds it (left or right
padding, chunked prefill: a right-padded row's last token may sit in an earlier chunk), and the decision is
made in the pass that holds position ``P - 1`` (the pass whose logits give the first generated token). The
decision is kept for the rest of the sequence: later passes (cached steps, or no-cache steps that re-run the
whole sequence) never decide again. With ``every_step``, each generated step also reads its newest token and
ORs new flags in, only for rows still generating (a row that has been fed an end-of-sequence token is done).

**When a sequence starts.** A host announces it with :meth:`GateState.expect` (a ``generate`` call knows its
prompt width; so does a single trace). Otherwise a pass continues the current sequence if it extends it (its
cache holds exactly the positions seen so far, or, without a cache, its ids start with the sequence's prompt),
and starts a new one, whose prompt is the whole pass, if not.

Only torch, einops and the package's error types are used here, and the classes carry ``@no_type_check``
(no test-time jaxtyping wrappers), so this module travels by value to an NDIF server.

Example:
    >>> import torch
    >>> state = GateState(threshold=0.5)
    >>> ids, mask = torch.tensor([[0, 5, 6], [4, 5, 6]]), torch.tensor([[0, 1, 1], [1, 1, 1]])
    >>> plan = state.begin_pass(ids, mask, past_length=0)
    >>> hidden = torch.randn(2, 3, 8)
    >>> state.update([plan.gather(hidden)], lambda h: torch.tensor([0.9, 0.1]))
    >>> state.report.gate
    tensor([ True, False])
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, no_type_check

import torch
from einops import einsum
from torch import Tensor

from .errors import InvalidInputError

__all__ = [
    "GateReport",
    "GateSpec",
    "GateState",
    "PassPlan",
    "forward_pass_inputs",
    "layer_pass_inputs",
    "steered_input",
]


@no_type_check
@dataclass
class GateReport:
    """What the gate decided, per row; the one report type of every backend.

    Attributes:
        p_harmful: ``[batch]`` float32 P(harmful) at each row's last prompt token (empty before the decision),
            on the device of the gate's deepest layer.
        gate: ``[batch]`` bool: whether the refusal head is on for the row (after the last pass seen).
    """

    p_harmful: Tensor
    gate: Tensor

    @classmethod
    def empty(cls) -> "GateReport":
        """A report with no decision yet (empty tensors)."""
        return cls(p_harmful=torch.empty(0), gate=torch.empty(0, dtype=torch.bool))

    @property
    def decided(self) -> bool:
        """Whether the prefill decision has been made."""
        return self.p_harmful.numel() > 0

    @property
    def any_gated(self) -> bool:
        """Whether any row has the refusal head on (adapters leave the LM head alone otherwise)."""
        return self.gate.numel() > 0 and bool(self.gate.any())


@no_type_check
def steered_input(h: Tensor, S: Tensor, epsilon: float, gate: Tensor | None = None) -> Tensor:
    """The refusal head on the LM head's input: ``h + eps h S^T`` on the gated rows, ``h`` itself elsewhere.

    This is the only place the formula lives. It equals the paper's ``logits = h (W + eps W S)^T`` once the LM
    head multiplies it by ``W^T``. Computed in float32 on ``h``'s device (``S`` is moved there if needed), returned
    in ``h``'s dtype; ungated rows are returned bit for bit; autograd is kept.

    Args:
        h: ``[batch, ..., d_model]`` LM-head inputs.
        S: ``[d_model, d_model]`` refusal matrix.
        epsilon: Steering scale.
        gate: ``[batch]`` bool, or ``None`` to steer every row.

    Returns:
        Same shape, dtype and device as ``h``.
    """
    d_model = h.shape[-1]
    if tuple(S.shape) != (d_model, d_model):
        raise InvalidInputError(f"the refusal matrix S is {tuple(S.shape)}; the LM head's input has width {d_model}.")
    if gate is not None and (gate.ndim != 1 or gate.shape[0] != h.shape[0]):
        raise InvalidInputError(f"gate must be one value per row ([{h.shape[0]}]), got shape {tuple(gate.shape)}.")
    h32 = h.float()
    delta = einsum(h32, S.to(h.device, torch.float32), "... d_in, d_out d_in -> ... d_out")
    steered = (h32 + epsilon * delta).to(h.dtype)
    if gate is None:
        return steered
    mask = gate.to(h.device).reshape(gate.shape + (1,) * (h.ndim - 1))
    return torch.where(mask, steered, h)


@no_type_check
def forward_pass_inputs(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Tensor | None, Tensor | None, int, int]:
    """What :meth:`GateState.begin_pass` needs, from the arguments of a Hugging Face model's ``forward``.

    Args:
        args: Positional arguments (``input_ids`` may be the first).
        kwargs: Keyword arguments (``input_ids``, ``inputs_embeds``, ``attention_mask``, ``cache`` or
            ``past_key_values``).

    Returns:
        ``(input_ids or None, attention_mask or None, past_length, n_new)``.
    """
    ids = kwargs.get("input_ids")
    if ids is None and args and isinstance(args[0], Tensor):
        ids = args[0]
    embeds = kwargs.get("inputs_embeds")
    n_new = ids.shape[1] if ids is not None else embeds.shape[1]
    mask = kwargs.get("attention_mask")
    if ids is None and mask is None:  # embeddings without a mask: every position is real
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
    return ids, mask, past, n_new


@no_type_check
def layer_pass_inputs(kwargs: dict[str, Any], n_new: int) -> tuple[Tensor | None, int]:
    """The padding mask and cache length of a pass, read off a decoder layer's ``attention_mask`` keyword.

    For hosts that can no longer see the model's own inputs (a trace whose user already read past them). The
    layer gets a 2-D padding mask (flash attention), a 4-D ``[batch, 1, query, key]`` mask (bool, or additive
    float with 0 where attended) whose last query row attends exactly the real positions, or ``None`` (no
    padding).

    Returns:
        ``(attention_mask [batch, past + n_new] or None, past_length)``.
    """
    mask = kwargs.get("attention_mask")
    if mask is None:
        return None, 0
    if not isinstance(mask, Tensor):
        raise InvalidInputError(
            f"cannot read the padding from a decoder layer's attention mask of type {type(mask).__name__} (e.g. "
            "flex attention's BlockMask); load the model with attn_implementation='sdpa' or 'eager' to use "
            "steer.apply in a single trace, or use steer.attach."
        )
    if mask.ndim == 4:
        row = mask.select(1, 0).select(1, -1)
        mask = row if row.dtype == torch.bool else row == 0
    return mask.bool(), max(mask.shape[-1] - n_new, 0)


@no_type_check
@dataclass
class PassPlan:
    """What the gate reads in one forward pass.

    Attributes:
        positions: ``[batch]`` position, within this pass, that each row reads.
        rows: ``[batch]`` bool, the rows whose reads count.
        decides: Whether the prefill decision is made in this pass.
    """

    positions: Tensor
    rows: Tensor
    decides: bool

    def gather(self, hidden: Tensor) -> Tensor:
        """``[batch, d_model]``: ``hidden[row, positions[row]]`` for a ``[batch, pos, d_model]`` layer input."""
        index = self.positions.to(hidden.device).reshape(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        return hidden.gather(1, index).squeeze(1)


@no_type_check
class GateState:
    """The per-row gate of the sequence being run: when to read, what was decided, which rows to steer.

    Args:
        threshold: Decision threshold on P(harmful).
        every_step: Also re-check each generated token (rows still generating only) and OR new flags in.
        eos_token_ids: End-of-sequence ids: a row fed one of them has finished (``every_step`` skips it).
        image_token_id: Image placeholder id, never a row's "last prompt token".

    Attributes:
        report: The :class:`GateReport` of the current sequence (the same object for the state's lifetime, so
            it can be saved out of an nnsight trace before it is filled in).
    """

    def __init__(
        self,
        threshold: float,
        every_step: bool = False,
        eos_token_ids: Sequence[int] = (),
        image_token_id: int | None = None,
    ) -> None:
        self.threshold = float(threshold)
        self.every_step = every_step
        self.eos_token_ids = tuple(int(i) for i in eos_token_ids)
        self.image_token_id = image_token_id
        self.report = GateReport.empty()
        self._expected: tuple[int | None] | None = None
        self._plan: PassPlan | None = None
        self._prompt_width = 0
        self._prompt_ids: Tensor | None = None
        self._batch = -1
        self._seen = 0
        self._candidates: list[Tensor] | None = None
        self._has_candidate: Tensor | None = None
        self._finished: Tensor | None = None

    # ------------------------------------------------------------------------------------------ sequences

    def expect(self, prompt_width: int | None = None) -> None:
        """Announce that the next pass starts a new sequence, whose prompt is ``prompt_width`` tokens wide.

        ``None``: the prompt is the whole next pass (a single trace). A ``generate`` call knows the width of its
        prompt, which keeps chunked prefill (several passes before the first token) exact.
        """
        self._expected = (prompt_width,)

    def _start(self, prompt_width: int, batch: int, ids: Tensor | None, past: int) -> None:
        self._prompt_width, self._batch = prompt_width, batch
        whole_prompt = ids is not None and past == 0 and ids.shape[1] >= prompt_width
        self._prompt_ids = ids.narrow(1, 0, prompt_width) if ids is not None and whole_prompt else None
        self._candidates, self._has_candidate, self._finished = None, None, None
        self.report.p_harmful = torch.empty(0)
        self.report.gate = torch.empty(0, dtype=torch.bool)

    def _continues(self, ids: Tensor | None, batch: int, past: int, total: int) -> bool:
        if batch != self._batch or self._seen == 0:
            return False
        if past > 0:
            return past == self._seen
        prompt = self._prompt_ids
        return (
            prompt is not None
            and ids is not None
            and total > prompt.shape[1]
            and torch.equal(ids.narrow(1, 0, prompt.shape[1]).to(prompt.device), prompt)
        )

    @property
    def plan(self) -> PassPlan | None:
        """What the current pass reads (``None``: nothing)."""
        return self._plan

    # ------------------------------------------------------------------------------------------ passes

    def begin_pass(
        self, input_ids: Tensor | None, attention_mask: Tensor | None, past_length: int, n_new: int | None = None
    ) -> PassPlan | None:
        """Start a forward pass; returns what to read in it, or ``None`` when the gate reads nothing.

        Args:
            input_ids: ``[batch, n_new]`` ids of this pass (``None`` with ``inputs_embeds``: then give ``n_new``).
            attention_mask: ``[batch, past_length + n_new]`` (Hugging Face's convention; ``None``: no padding).
                When given, its width decides how many positions came before this pass.
            past_length: Positions already in the key/value cache (0 without a cache), used without a mask.
            n_new: Positions in this pass (default: ``input_ids.shape[1]``).

        Returns:
            The :class:`PassPlan`, also kept for :meth:`update`.
        """
        reference = input_ids if input_ids is not None else attention_mask
        if reference is None:
            raise InvalidInputError("a forward pass needs input_ids or an attention_mask for the gate to read.")
        n_new = reference.shape[1] if n_new is None else n_new
        batch = reference.shape[0]
        if attention_mask is not None and attention_mask.shape[1] >= n_new:
            past_length = attention_mask.shape[1] - n_new  # the mask covers every position: it is the authority
        total = past_length + n_new
        expected, self._expected = self._expected, None
        if expected is not None:
            self._start(total if expected[0] is None else expected[0], batch, input_ids, past_length)
        elif not self._continues(input_ids, batch, past_length, total):
            self._start(total, batch, input_ids, past_length)
        self._seen = total
        device = reference.device
        mask = self._full_mask(attention_mask, batch, total, device)
        if not self.report.decided:
            self._plan = self._prefill_plan(input_ids, mask, past_length, total)
        elif self.every_step and total > self._prompt_width:
            self._plan = self._step_plan(input_ids, past_length, total, n_new, batch, device)
        else:
            self._plan = None
        return self._plan

    @staticmethod
    def _full_mask(mask: Tensor | None, batch: int, total: int, device: Any) -> Tensor:
        if mask is None:
            return torch.ones(batch, total, dtype=torch.bool, device=device)
        mask = mask.bool()
        if mask.shape[1] < total:  # a mask of the new positions only: earlier ones are real
            mask = torch.cat([torch.ones(batch, total - mask.shape[1], dtype=torch.bool, device=mask.device), mask], 1)
        return mask.narrow(1, 0, total)

    def _prefill_plan(self, ids: Tensor | None, mask: Tensor, past: int, total: int) -> PassPlan | None:
        end = min(total, self._prompt_width)
        if end <= past:  # the prompt ended before this pass (cannot happen before a decision, kept safe)
            return None
        real = mask.narrow(1, past, end - past)
        if ids is not None and self.image_token_id is not None:
            real = real & (ids.narrow(1, 0, end - past).to(real.device) != self.image_token_id)
        positions = torch.arange(end - past, device=real.device)
        last = torch.where(real, positions, -1).amax(dim=-1)
        return PassPlan(positions=last.clamp_min(0), rows=last >= 0, decides=total >= self._prompt_width)

    def _step_plan(
        self, ids: Tensor | None, past: int, total: int, n_new: int, batch: int, device: Any
    ) -> PassPlan | None:
        finished = self._finished if self._finished is not None else torch.zeros(batch, dtype=torch.bool, device=device)
        if ids is not None and self.eos_token_ids:
            start = max(self._prompt_width - past, 0)
            fed = ids.narrow(1, start, ids.shape[1] - start)  # generated tokens fed in this pass
            eos = torch.tensor(self.eos_token_ids, device=fed.device)
            finished = finished.to(fed.device) | torch.isin(fed, eos).any(dim=-1)
        self._finished = finished
        if bool(finished.all()):
            return None
        return PassPlan(positions=torch.full((batch,), n_new - 1, device=device), rows=~finished, decides=False)

    def update(self, features: Sequence[Tensor], p_harmful: Callable[[Tensor], Tensor]) -> None:
        """Record this pass's reads (one ``[batch, d_model]`` per gate layer, ascending) and decide if it is time.

        Args:
            features: :meth:`PassPlan.gather` of each gate layer's input (any devices: they are stacked on the
                deepest layer's device).
            p_harmful: ``[batch, n_layers, d_model] -> [batch]`` P(harmful) (the prober).
        """
        plan = self._plan
        if plan is None:
            return
        device = features[-1].device
        reads = [f.to(device) for f in features]
        if not self.report.decided:
            rows = plan.rows.to(device)
            if self._candidates is None:
                self._candidates, self._has_candidate = reads, rows
            else:
                keep = rows.unsqueeze(1)
                self._candidates = [torch.where(keep, new, old.to(device)) for new, old in zip(reads, self._candidates)]
                previous = self._has_candidate if self._has_candidate is not None else rows
                self._has_candidate = previous.to(device) | rows
            if plan.decides:
                if not bool(self._has_candidate.all()):
                    raise InvalidInputError(
                        "a row of the batch has no real prompt token (all padding or image tokens); every row needs "
                        "at least one token whose attention mask is 1."
                    )
                p = p_harmful(torch.stack(self._candidates, dim=1)).float()
                self.report.p_harmful, self.report.gate = p, p > self.threshold
                self._candidates = None
        else:
            p = p_harmful(torch.stack(reads, dim=1)).float()
            flagged = (p > self.threshold) & plan.rows.to(p.device)
            self.report.gate = self.report.gate | flagged.to(self.report.gate.device)


@no_type_check
class GateSpec:
    """Everything a host adapter needs to run one AutoSteer: where to read and write, and the two functions.

    Attributes:
        layers: Decoder layers whose inputs the gate reads, ascending.
        layers_path: Dotted path of the decoder layers.
        lm_head_path: Dotted path of the LM head.
        threshold: Decision threshold on P(harmful).
        every_step: Re-check every generated token.
        epsilon: Refusal-head scale.
        p_harmful: ``[batch, n_layers, d_model] -> [batch]`` float32 P(harmful), on the input's device.
        refusal_matrix: ``device -> [d_model, d_model]`` ``S`` on that device.
        eos_token_ids: End-of-sequence ids (rows fed one have finished).
        image_token_id: Image placeholder id, or ``None``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        layers_path: str,
        lm_head_path: str,
        threshold: float,
        every_step: bool,
        epsilon: float,
        p_harmful: Callable[[Tensor], Tensor],
        refusal_matrix: Callable[[Any], Tensor],
        eos_token_ids: Sequence[int] = (),
        image_token_id: int | None = None,
    ) -> None:
        self.layers = tuple(layers)
        self.layers_path = layers_path
        self.lm_head_path = lm_head_path
        self.threshold = threshold
        self.every_step = every_step
        self.epsilon = epsilon
        self.p_harmful = p_harmful
        self.refusal_matrix = refusal_matrix
        self.eos_token_ids = tuple(eos_token_ids)
        self.image_token_id = image_token_id

    def steer(self, h: Tensor, gate: Tensor) -> Tensor:
        """The LM head's input ``h`` with the refusal head on the rows ``gate`` selects."""
        return steered_input(h, self.refusal_matrix(h.device), self.epsilon, gate)

    def new_state(self) -> GateState:
        """A fresh :class:`~autosteer_interp.gating.GateState` with this spec's settings."""
        return GateState(self.threshold, self.every_step, self.eos_token_ids, self.image_token_id)
