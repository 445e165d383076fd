"""Safety prober: P(harmful) from the last-prompt-token activation of one layer (the paper) or several.

The paper's prober is an MLP ``d_model -> 64 -> 2`` on ``h_L``. We train it the way the paper describes, not the
way its code does: cross-entropy on LOGITS (the code applied it to softmax outputs), model selection on a
validation split of the TRAINING data (the code picked the epoch on its test sets), seeded. Inputs are
standardised with the training mean and standard deviation (stored in the module, so the prober takes raw
activations): residual streams have a few huge dimensions that otherwise dominate an MLP's first layer.

A prober may read several layers at once (e.g. the top-k SAS layers): each layer is standardised on its own,
then the layers are concatenated (``pool="concat"``) or averaged (``pool="mean"``) before the classifier.

Three kinds behind one interface: ``"mlp"`` (the paper's), ``"linear"`` (a linear probe trained the same way)
and ``"logistic"`` (scikit-learn ``LogisticRegression``, the classic baseline, converted to the same torch
module so it runs inside nnsight traces and remotely). Everything at inference time is plain torch.

Example:
    >>> import torch
    >>> harmful, safe = torch.randn(64, 16) + 1.0, torch.randn(64, 16) - 1.0
    >>> prober = SafetyProber.fit(harmful, safe, config=ProberConfig(epochs=20), layers=3)
    >>> prober.predict_proba(harmful).mean() > 0.9
    tensor(True)
"""

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from einops import rearrange, reduce
from jaxtyping import Float
from torch import Tensor, nn

from ._plotting import finish_figure, new_figure
from .artifacts import read_artifact, require_tensor, write_artifact
from .containers import LayerActivations, check_activations
from .errors import ArtifactError, InvalidInputError
from .provenance import ModelProvenance, provenance_of_artifact
from .splits import activation_keys, move_shared_to_train, split_by_keys

__all__ = ["ProberConfig", "ProberMetrics", "SafetyProber", "probe_sweep", "ProbeSweep"]

logger = logging.getLogger(__name__)

ProberKind = Literal["mlp", "linear", "logistic"]
_KINDS = ("mlp", "linear", "logistic")
LayerPool = Literal["concat", "mean"]
_POOLS = ("concat", "mean")
HARMFUL = 1
"""Index of the harmful class in the prober's logits."""


def _require(condition: bool, name: str, value: Any, allowed: str) -> None:
    if not condition:
        raise InvalidInputError(f"ProberConfig.{name}={value!r} is invalid; allowed: {allowed}.")


@dataclass
class ProberConfig:
    """How to build and train a :class:`SafetyProber`.

    Attributes:
        kind: ``"mlp"`` (paper), ``"linear"`` or ``"logistic"`` (scikit-learn baseline).
        hidden_sizes: Hidden widths of the MLP (paper: ``(64,)``).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay; for ``"logistic"``, the inverse of scikit-learn's ``C``.
        epochs: Maximum training epochs.
        batch_size: Mini-batch size.
        validation_fraction: Share of the training pairs held out to choose the best epoch.
        patience: Stop after this many epochs without a better validation loss (``None``: never).
        threshold: Decision threshold on P(harmful) (paper: 0.5); :meth:`SafetyProber.calibrate` can set it.
        seed: Seed for the split, the initialisation and the batch order.
        pool: How several layers are combined: ``"concat"`` (one feature vector of ``n_layers * d_model``) or
            ``"mean"`` (the average of the standardised layers, ``d_model`` features). Ignored for one layer.
        balance_classes: Weight the loss so that both classes count equally (for unbalanced training data).
        bagging: ``"logistic"`` only: fit this many probes, the first on the training data and the others on
            seeded bootstrap resamples of it, and keep their mean weights and bias (the mean of their logits: one
            linear probe, as fast as one), for a probe whose decisions move with its training rows. ``1``: one fit.
    """

    kind: ProberKind = "mlp"
    hidden_sizes: tuple[int, ...] = (64,)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    epochs: int = 100
    batch_size: int = 64
    validation_fraction: float = 0.2
    patience: int | None = 15
    threshold: float = 0.5
    seed: int = 0
    pool: LayerPool = "concat"
    balance_classes: bool = False
    bagging: int = 1

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(self.hidden_sizes)
        _require(self.kind in _KINDS, "kind", self.kind, " | ".join(_KINDS))
        _require(
            all(isinstance(h, int) and h > 0 for h in self.hidden_sizes),
            "hidden_sizes",
            self.hidden_sizes,
            "positive integers",
        )
        rate, decay = self.learning_rate, self.weight_decay
        _require(math.isfinite(rate) and rate > 0, "learning_rate", rate, "a finite number > 0")
        _require(math.isfinite(decay) and decay >= 0, "weight_decay", decay, "a finite number >= 0")
        _require(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        _require(0 < self.validation_fraction < 1, "validation_fraction", self.validation_fraction, "0 < x < 1")
        _require(self.patience is None or self.patience >= 1, "patience", self.patience, "None or >= 1")
        _require(0 <= self.threshold <= 1, "threshold", self.threshold, "0 <= x <= 1")
        _require(self.pool in _POOLS, "pool", self.pool, " | ".join(_POOLS))
        bagging = self.bagging
        _require(
            isinstance(bagging, int) and not isinstance(bagging, bool) and bagging >= 1, "bagging", bagging, ">= 1"
        )
        _require(bagging == 1 or self.kind == "logistic", "bagging", bagging, "1 unless kind='logistic'")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProberConfig":
        """Build from a dict, ignoring unknown keys (so files from other versions still load)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(values["hidden_sizes"])
        return cls(**values)


@dataclass
class ProberMetrics:
    """Classification quality on labelled activations.

    Attributes:
        accuracy: Share of correct decisions at ``threshold``.
        auroc: Area under the ROC curve of P(harmful).
        tpr: Share of harmful inputs flagged (detection rate).
        fpr: Share of benign inputs flagged (false alarms).
        threshold: The decision threshold used.
        n_harmful: Number of harmful inputs.
        n_benign: Number of benign inputs.
    """

    accuracy: float
    auroc: float
    tpr: float
    fpr: float
    threshold: float
    n_harmful: int
    n_benign: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass
class TrainingHistory:
    """Per-epoch losses of a fit and the epoch that was kept."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def _layer_tuple(layers: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if layers is None:
        return None
    if isinstance(layers, int) and not isinstance(layers, bool):
        return (layers,)
    result = tuple(layers) if isinstance(layers, Sequence) else ()
    if not result or not all(isinstance(layer, int) and not isinstance(layer, bool) for layer in result):
        raise InvalidInputError(f"layers must be an int or a non-empty sequence of ints, got {layers!r}.")
    if len(set(result)) != len(result):
        raise InvalidInputError(f"layers must not repeat, got {layers!r}.")
    return result


def _as_features(values: Any, name: str, layers: tuple[int, ...] | None) -> Float[Tensor, "n n_layers d_model"]:
    """Activations as ``[n, n_layers, d_model]`` float32, the layers in the order of ``layers``."""
    if isinstance(values, LayerActivations):
        if layers is None:
            if len(values.layers) != 1:
                raise InvalidInputError(
                    f"{name} holds layers {values.layers}; pass layers=... to choose the layer(s) the prober reads."
                )
            layers = (values.layers[0],)
        values = values.select(layers)
    if isinstance(values, Tensor) and values.ndim == 2:
        values = values[:, None]
    if not isinstance(values, Tensor) or values.ndim != 3:
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise InvalidInputError(f"{name} must be a [n, d_model] or [n, n_layers, d_model] tensor, got {shape}.")
    if layers is not None and values.shape[1] != len(layers):
        raise InvalidInputError(f"{name} has {values.shape[1]} layers, the prober reads {len(layers)}: {layers}.")
    return check_activations(values, name, layers).float()


class SafetyProber(nn.Module):
    """An MLP (or linear) classifier over the residual stream of one or more layers: logits ``[benign, harmful]``.

    Attributes:
        layers: The decoder layers the prober reads (their inputs), ascending, or ``None`` if unknown.
        n_layers: How many layers it reads (1 for the paper's prober).
        config: The :class:`ProberConfig` it was built with; ``config.threshold`` is the decision threshold.
        history: Losses per epoch of the last :meth:`fit` (empty after :meth:`load`).
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        d_model: int,
        config: ProberConfig | None = None,
        layers: int | Sequence[int] | None = None,
        n_layers: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config or ProberConfig()
        self.layers = _layer_tuple(layers)
        if self.layers is not None and self.layers != tuple(sorted(self.layers)):
            raise InvalidInputError(f"layers must be ascending (execution order), got {self.layers}.")
        self.n_layers = len(self.layers) if self.layers is not None else (n_layers or 1)
        self.d_model = d_model
        self.register_buffer("mean", torch.zeros(self.n_layers, d_model))
        self.register_buffer("std", torch.ones(self.n_layers, d_model))
        width = d_model * self.n_layers if self.config.pool == "concat" else d_model
        widths = [width] if self.config.kind != "mlp" else [width, *self.config.hidden_sizes]
        blocks: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(width_in, width_out), nn.ReLU()]
        blocks.append(nn.Linear(widths[-1], 2))
        self.net = nn.Sequential(*blocks)
        self.history = TrainingHistory()
        self.provenance: ModelProvenance | None = None

    @property
    def threshold(self) -> float:
        """Decision threshold on P(harmful)."""
        return self.config.threshold

    def forward(
        self, h: Float[Tensor, "batch d_model"] | Float[Tensor, "batch n_layers d_model"]
    ) -> Float[Tensor, "batch 2"]:
        """Logits ``[benign, harmful]`` for raw activations (``[batch, d_model]`` when reading one layer).

        Follows its input: computed in float32 on ``h``'s device (parameters are copied there when they live
        elsewhere; gradients still reach them), whatever ``h``'s dtype.

        Returns:
            float32 on ``h``'s device.
        """
        x = self._pooled(self._standardised(h))
        for block in self.net:
            if isinstance(block, nn.Linear):
                x = nn.functional.linear(x, block.weight.to(x.device), block.bias.to(x.device))
            else:
                x = block(x)
        return x

    def _standardised(self, h: Tensor) -> Float[Tensor, "batch n_layers d_model"]:
        if not isinstance(h, Tensor):
            raise InvalidInputError(
                f"the prober takes a torch.Tensor of activations, got {type(h).__name__} (convert with "
                "torch.as_tensor)."
            )
        stacked = h.unsqueeze(1) if h.ndim == 2 else h
        if stacked.shape[1:] != self.mean.shape:
            raise InvalidInputError(
                f"the prober reads {self.n_layers} layer(s) of width {self.d_model}, got activations of shape "
                f"{tuple(h.shape)}; expected [batch, {self.n_layers}, {self.d_model}]."
            )
        return (stacked.float() - self.mean.to(h.device)) / self.std.to(h.device)

    def _pooled(self, z: Float[Tensor, "batch n_layers d_model"]) -> Float[Tensor, "batch features"]:
        if self.config.pool == "mean":
            return reduce(z, "batch layer d -> batch d", "mean")
        return rearrange(z, "batch layer d -> batch (layer d)")

    def predict_proba(
        self, h: Float[Tensor, "batch d_model"] | Float[Tensor, "batch n_layers d_model"]
    ) -> Float[Tensor, " batch"]:
        """P(harmful) per row."""
        with torch.no_grad():
            return torch.softmax(self(h), dim=-1)[:, HARMFUL]

    def predict(self, h: Float[Tensor, "batch d_model"] | Float[Tensor, "batch n_layers d_model"]) -> Tensor:
        """``True`` where P(harmful) > threshold."""
        return self.predict_proba(h) > self.threshold

    # ---------------------------------------------------------------------------------------------- fit

    @classmethod
    def fit(
        cls,
        harmful: Tensor | LayerActivations,
        safe: Tensor | LayerActivations,
        config: ProberConfig | None = None,
        layers: int | Sequence[int] | None = None,
        extra_negatives: Tensor | LayerActivations | None = None,
        model: Any = None,
        extra_harmful: Tensor | LayerActivations | None = None,
        sample_weights: Mapping[str, Tensor] | None = None,
    ) -> "SafetyProber":
        """Train a prober on harmful vs. safe activations.

        When ``harmful`` and ``safe`` have the same length they are treated as pairs and split together
        (a pair is never on both sides of the validation split). ``extra_negatives`` (e.g. borderline-benign
        requests) and ``extra_harmful`` (unpaired harmful requests) are split with the same fraction.

        Args:
            harmful: Activations of harmful requests (label 1): ``[n, d_model]`` for one layer,
                ``[n, n_layers, d_model]`` for several, or :class:`LayerActivations`.
            safe: Activations of harmless requests (label 0), same layout.
            config: Training settings (default :class:`ProberConfig`).
            layers: The layer(s) the prober reads, ascending (required to pick them out of
                ``LayerActivations`` holding others; recorded for :class:`~autosteer_interp.steer.AutoSteer`).
            extra_negatives: More harmless activations (label 0), same layout.
            model: Optional model the activations came from, recorded as provenance for :meth:`save`.
            extra_harmful: More harmful activations without twins (label 1), same layout.
            sample_weights: How much each row counts in the loss, by argument name (:data:`WEIGHTED_INPUTS`):
                ``{"extra_negatives": torch.full((n,), 3.0)}`` makes those ``n`` rows count three times. Each value
                is ``[n]`` finite weights > 0 for that argument's rows; arguments not named weigh 1. The weights
                of the training rows are rescaled to mean 1, so ``weight_decay`` keeps its strength; the
                validation loss is weighted the same way.

        Returns:
            The prober with the best validation-loss epoch restored; ``history`` holds the losses.

        Raises:
            InvalidInputError: If shapes disagree, a class has fewer than 2 samples, or a weight vector is
                unknown, of the wrong length, or not finite and > 0.
        """
        config = config or ProberConfig()
        chosen = _layer_tuple(layers)
        if chosen is None and isinstance(harmful, LayerActivations) and len(harmful.layers) == 1:
            chosen = (harmful.layers[0],)
        x_harm = _as_features(harmful, "harmful", chosen)
        x_safe = _as_features(safe, "safe", chosen)
        x_extra = _as_features(extra_negatives, "extra_negatives", chosen) if extra_negatives is not None else None
        x_more = _as_features(extra_harmful, "extra_harmful", chosen) if extra_harmful is not None else None
        for name, x in (("safe", x_safe), ("extra_negatives", x_extra), ("extra_harmful", x_more)):
            if x is not None and x.shape[1:] != x_harm.shape[1:]:
                raise InvalidInputError(
                    f"{name} has [n_layers, d_model] {tuple(x.shape[1:])}, harmful has {tuple(x_harm.shape[1:])}."
                )
        if len(x_harm) < 2 or len(x_safe) < 2:
            raise InvalidInputError(f"need at least 2 harmful and 2 safe samples, got {len(x_harm)} and {len(x_safe)}.")
        inputs = {"harmful": x_harm, "safe": x_safe, "extra_negatives": x_extra, "extra_harmful": x_more}
        weights = _row_weights(sample_weights, inputs)
        generator = torch.Generator().manual_seed(config.seed)
        train, validation = _split(x_harm, x_safe, x_extra, config.validation_fraction, generator, x_more, weights)
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            prober = cls(x_harm.shape[2], copy.deepcopy(config), chosen, n_layers=x_harm.shape[1])
        prober.mean.copy_(train.x.mean(0))
        prober.std.copy_(train.x.std(0).clamp_min(1e-6))
        if config.kind == "logistic":
            prober._fit_logistic(train, validation)
        else:
            prober._fit_gradient(train, validation, generator)
        prober.provenance = ModelProvenance.of(model) if model is not None else None
        return prober.eval()

    def _fit_gradient(self, train: "_Rows", validation: "_Rows", generator: Any) -> None:
        config = self.config
        optimiser = torch.optim.AdamW(self.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        class_weight = _class_weights(train.y) if config.balance_classes else None
        best_loss, best_state, stale = float("inf"), copy.deepcopy(self.state_dict()), 0
        x_train, y_train, w_train = train
        for epoch in range(config.epochs):
            self.train()
            order = torch.randperm(len(x_train), generator=generator)
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                loss = _weighted_cross_entropy(self(x_train[batch]), y_train[batch], w_train[batch], class_weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            validation_loss = self._loss(validation)
            self.history.train_loss.append(total / len(x_train))
            self.history.validation_loss.append(validation_loss)
            if validation_loss < best_loss:
                best_loss, best_state, stale = validation_loss, copy.deepcopy(self.state_dict()), 0
                self.history.best_epoch = epoch
            else:
                stale += 1
                if config.patience is not None and stale >= config.patience:
                    break
        self.load_state_dict(best_state)
        logger.info("prober: best epoch %d, validation loss %.4f", self.history.best_epoch, best_loss)

    def _fit_logistic(self, train: "_Rows", validation: "_Rows") -> None:
        from sklearn.linear_model import LogisticRegression

        x_train, y_train, w_train = train
        standardised = self._pooled(self._standardised(x_train)).numpy()
        inverse_strength = 1.0 / self.config.weight_decay if self.config.weight_decay > 0 else np.inf
        labels, row_weights = y_train.numpy(), w_train.numpy()
        resample = np.random.default_rng(self.config.seed)
        weights, biases = [], []
        for member in range(self.config.bagging):
            rows = np.arange(len(labels)) if member == 0 else _stratified_bootstrap(labels, resample)
            classifier = LogisticRegression(
                C=inverse_strength,
                max_iter=2000,
                random_state=self.config.seed,
                class_weight="balanced" if self.config.balance_classes else None,
            )
            classifier.fit(standardised[rows], labels[rows], sample_weight=row_weights[rows])
            weights.append(classifier.coef_[0])
            biases.append(classifier.intercept_[0])
        linear = self.net[-1]
        assert isinstance(linear, nn.Linear)
        with torch.no_grad():  # softmax([0, w.x + b]) == sigmoid(w.x + b)
            linear.weight.zero_()
            linear.bias.zero_()
            linear.weight[HARMFUL] = torch.as_tensor(np.mean(weights, axis=0), dtype=torch.float32)
            linear.bias[HARMFUL] = float(np.mean(biases))
        self.history.validation_loss.append(self._loss(validation))

    def _loss(self, data: "_Rows") -> float:
        self.eval()
        with torch.no_grad():
            return float(_weighted_cross_entropy(self(data.x), data.y, data.w))

    # ---------------------------------------------------------------------------------------------- use

    def calibrate(self, benign: Tensor | LayerActivations, target_fpr: float) -> float:
        """Set the threshold so that at most ``target_fpr`` of ``benign`` activations are flagged.

        Use held-out benign data (harmless requests, borderline-benign requests), never the test set.

        Args:
            benign: Activations of harmless requests at the prober's layer(s).
            target_fpr: Highest acceptable share of false alarms, in ``[0, 1)``.

        Returns:
            The new threshold (also stored in ``config.threshold``).
        """
        if not 0 <= target_fpr < 1:
            raise InvalidInputError(f"target_fpr must be in [0, 1), got {target_fpr!r}.")
        p = torch.sort(self.predict_proba(_as_features(benign, "benign", self.layers)), descending=True).values
        allowed = int(np.floor(target_fpr * len(p)))
        threshold = float(p[allowed]) if allowed < len(p) else 0.0
        self.config.threshold = min(max(threshold, 0.0), 1.0)
        return self.config.threshold

    def evaluate(
        self,
        harmful: Tensor | LayerActivations,
        benign: Tensor | LayerActivations,
    ) -> ProberMetrics:
        """Accuracy, AUROC and detection / false-alarm rates at the current threshold."""
        from sklearn.metrics import roc_auc_score

        p_harm = self.predict_proba(_as_features(harmful, "harmful", self.layers))
        p_benign = self.predict_proba(_as_features(benign, "benign", self.layers))
        flagged_harm = (p_harm > self.threshold).float()
        flagged_benign = (p_benign > self.threshold).float()
        labels = np.r_[np.ones(len(p_harm)), np.zeros(len(p_benign))]
        return ProberMetrics(
            accuracy=float((flagged_harm.sum() + (1 - flagged_benign).sum()) / len(labels)),
            auroc=float(roc_auc_score(labels, torch.cat([p_harm, p_benign]).numpy())),
            tpr=float(flagged_harm.mean()),
            fpr=float(flagged_benign.mean()),
            threshold=self.threshold,
            n_harmful=len(p_harm),
            n_benign=len(p_benign),
        )

    # ---------------------------------------------------------------------------------------------- artefact

    KIND = "safety_prober"

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Save as ``config.json`` + ``tensors.safetensors`` (atomic; refuses to overwrite by default)."""
        config = {
            "d_model": self.d_model,
            "layers": list(self.layers) if self.layers is not None else None,
            "n_layers": self.n_layers,
            "threshold": self.threshold,
            "prober": self.config.to_dict(),
            "base_model": self.provenance.to_dict() if self.provenance else None,
            "best_epoch": self.history.best_epoch,
        }
        return write_artifact(directory, self.KIND, config, self.state_dict(), overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | Path, model: Any = None) -> "SafetyProber":
        """Load a saved prober; with ``model``, refuse one fitted on a different model.

        Raises:
            ArtifactError: If the folder is not a valid prober artefact, or does not match ``model``.
        """
        config, tensors = read_artifact(directory, cls.KIND)
        try:
            prober_config = ProberConfig.from_dict(config["prober"])
            d_model, layers, n_layers = int(config["d_model"]), config["layers"], int(config["n_layers"])
            prober = cls(d_model, prober_config, layers, n_layers=n_layers)
        except (KeyError, TypeError, ValueError, InvalidInputError) as error:
            raise ArtifactError(
                f"{directory}: config.json is missing or has invalid prober fields ({error})."
            ) from error
        expected = {name: tuple(t.shape) for name, t in prober.state_dict().items()}
        state = {name: require_tensor(tensors, name, shape, str(directory)) for name, shape in expected.items()}
        prober.load_state_dict(state)
        prober.provenance = provenance_of_artifact(config, model, f"the prober in {directory}")
        return prober.eval()


def _stratified_bootstrap(labels: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """Row indices of a bootstrap resample drawn within each class (so every class keeps its size)."""
    rows = [generator.choice(np.flatnonzero(labels == label), int((labels == label).sum())) for label in (0, 1)]
    return np.concatenate(rows)


def _class_weights(labels: Tensor) -> Tensor:
    """Cross-entropy weights ``n / (2 n_c)`` per class, so that both classes weigh the same."""
    counts = torch.bincount(labels, minlength=2).float().clamp_min(1)
    return len(labels) / (2 * counts)


WEIGHTED_INPUTS = ("harmful", "safe", "extra_negatives", "extra_harmful")
"""The arguments of :meth:`SafetyProber.fit` that ``sample_weights`` may weigh."""


class _Rows(NamedTuple):
    """Rows of a training or validation split: activations, labels, loss weights."""

    x: Tensor
    y: Tensor
    w: Tensor


def _row_weights(sample_weights: Mapping[str, Tensor] | None, inputs: Mapping[str, Tensor | None]) -> dict[str, Tensor]:
    """One float weight per row of every given input (1 where ``sample_weights`` does not name it), checked."""
    given = dict(sample_weights or {})
    unknown = sorted(set(given) - set(WEIGHTED_INPUTS))
    if unknown:
        raise InvalidInputError(f"sample_weights has unknown keys {unknown}; allowed: {list(WEIGHTED_INPUTS)}.")
    weights = {}
    for name, x in inputs.items():
        if x is None:
            if name in given:
                raise InvalidInputError(f"sample_weights[{name!r}] was given but {name} was not.")
            continue
        w = torch.as_tensor(given[name], dtype=torch.float32) if name in given else torch.ones(len(x))
        if w.shape != (len(x),):
            raise InvalidInputError(f"sample_weights[{name!r}] must have shape ({len(x)},), got {tuple(w.shape)}.")
        if not bool(torch.isfinite(w).all() and (w > 0).all()):
            raise InvalidInputError(f"sample_weights[{name!r}] must be finite and > 0, got min {float(w.min())}.")
        weights[name] = w
    return weights


def _weighted_cross_entropy(
    logits: Tensor, labels: Tensor, weights: Tensor, class_weight: Tensor | None = None
) -> Tensor:
    """Cross-entropy on logits, each row counting ``weights[row]`` (times its class weight), normalised by the sum."""
    per_row = nn.functional.cross_entropy(logits, labels, reduction="none")
    if class_weight is not None:
        weights = weights * class_weight.to(weights.device)[labels]
    return (per_row * weights).sum() / weights.sum()


def _split(
    harmful: Tensor,
    safe: Tensor,
    extra: Tensor | None,
    fraction: float,
    generator: Any,
    extra_harmful: Tensor | None = None,
    weights: Mapping[str, Tensor] | None = None,
) -> tuple[_Rows, _Rows]:
    """Random train/validation split, disjoint by request: identical rows (one prompt) never straddle it.

    Paired rows (equal counts) stay on the same side; ``extra`` (benign) and ``extra_harmful`` rows are split
    on their own. ``weights`` (by :data:`WEIGHTED_INPUTS` name, default 1) follow their rows; the training
    weights are rescaled to mean 1.
    """
    extra = extra if extra is not None and len(extra) >= 2 else None
    extra_harmful = extra_harmful if extra_harmful is not None and len(extra_harmful) >= 2 else None
    present: dict[str, tuple[Tensor, int]] = {"harmful": (harmful, HARMFUL), "safe": (safe, 0)}
    for name, x, label in (("extra_negatives", extra, 0), ("extra_harmful", extra_harmful, HARMFUL)):
        if x is not None:
            present[name] = (x, label)
    ids = dict(zip(present, activation_keys(*(x for x, _ in present.values()))))
    # Each source: (the inputs it indexes, the keys of its rows).
    sources: list[tuple[list[str], list[set[Any]]]] = []
    if len(harmful) == len(safe):
        sources.append((["harmful", "safe"], [{h, s} for h, s in zip(ids["harmful"], ids["safe"])]))
    else:
        sources += [(["harmful"], [{i} for i in ids["harmful"]]), (["safe"], [{i} for i in ids["safe"]])]
    for name in ("extra_negatives", "extra_harmful"):
        if name in present:
            sources.append(([name], [{i} for i in ids[name]]))
    splits = [(*split_by_keys(keys, fraction, generator), keys) for _, keys in sources]
    move_shared_to_train(splits)
    sides: dict[str, tuple[list[Tensor], list[Tensor], list[Tensor]]] = {"train": ([], [], []), "val": ([], [], [])}
    for (names, _), (train_rows, val_rows, _) in zip(sources, splits):
        for side, rows in (("train", train_rows), ("val", val_rows)):
            for name in names:
                x, label = present[name]
                w = weights[name] if weights and name in weights else torch.ones(len(x))
                sides[side][0].append(x[rows])
                sides[side][1].append(torch.full((len(rows),), label))
                sides[side][2].append(w[rows])
    train, val = (_Rows(torch.cat(xs), torch.cat(ys), torch.cat(ws)) for xs, ys, ws in sides.values())
    scale = len(train.w) / float(train.w.sum())
    return train._replace(w=train.w * scale), val._replace(w=val.w * scale)


@dataclass
class ProbeSweep:
    """Validation AUROC of a probe at every candidate layer, beside the SAS (the paper's layer study).

    Attributes:
        layers: Candidate layers.
        auroc: Validation AUROC of a probe trained at each layer.
        sas: The Safety Awareness Score of each layer, if given.
    """

    layers: list[int]
    auroc: list[float]
    sas: list[float] | None = None

    @property
    def best_layer(self) -> int:
        """The layer with the highest validation AUROC (earliest on ties)."""
        return self.layers[int(np.argmax(self.auroc))]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self) | {"best_layer": self.best_layer}

    def plot(self, path: str | Path | None = None, title: str | None = None) -> Any:
        """AUROC and SAS against layer on twin axes (needs matplotlib)."""
        figure, ax = new_figure(path, (7.0, 3.5), "ProbeSweep.plot")
        ax.plot(self.layers, self.auroc, marker="o", color="tab:green", label="probe validation AUROC")
        ax.set_xlabel("layer (input of decoder layer L)")
        ax.set_ylabel("validation AUROC", color="tab:green")
        if self.sas is not None:
            twin = ax.twinx()
            twin.plot(self.layers, self.sas, marker="s", color="tab:blue", label="SAS")
            twin.set_ylabel("Safety Awareness Score", color="tab:blue")
        ax.set_title(title or "Probe quality and SAS per layer")
        ax.grid(alpha=0.3)
        return finish_figure(figure, path)


def probe_sweep(
    harmful: LayerActivations,
    safe: LayerActivations,
    layers: Sequence[int] | None = None,
    config: ProberConfig | None = None,
    sas: Any = None,
) -> ProbeSweep:
    """Train a probe at each candidate layer and report its validation AUROC (beside the SAS if given).

    Args:
        harmful: Activations of the harmful side of the pairs, at several layers.
        safe: Activations of the safe side, same layers.
        layers: Layers to sweep (default: all collected).
        config: Probe settings (default: a logistic probe, fast and stable).
        sas: Optional :class:`~autosteer_interp.sas.LayerScores` to report beside.

    Returns:
        A :class:`ProbeSweep`.
    """
    from sklearn.metrics import roc_auc_score

    config = config or ProberConfig(kind="logistic")
    layers = list(layers) if layers is not None else list(harmful.layers)
    auroc = []
    for layer in layers:
        x_harm, x_safe = harmful.at(layer), safe.at(layer)
        generator = torch.Generator().manual_seed(config.seed)
        train, (x_val, y_val, _) = _split(x_harm, x_safe, None, config.validation_fraction, generator)
        prober = SafetyProber.fit(train.x[train.y == 1], train.x[train.y == 0], config=config, layers=layer)
        auroc.append(float(roc_auc_score(y_val.numpy(), prober.predict_proba(x_val).numpy())))
    sas_values = None
    if sas is not None:
        by_layer = dict(zip(sas.layers, sas.scores.tolist()))
        sas_values = [by_layer.get(layer, float("nan")) for layer in layers]
    return ProbeSweep(layers=layers, auroc=auroc, sas=sas_values)
