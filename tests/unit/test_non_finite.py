"""Bad numbers are refused by the maths modules, naming what and where (issue 13, classes 3 and 5, in part)."""

import math

import pytest
import torch

from autosteer_interp.containers import LayerActivations, TokenCache
from autosteer_interp.errors import FitError, InvalidInputError
from autosteer_interp.gating import steered_input
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.refusal_head import RefusalHead, RefusalHeadConfig
from autosteer_interp.sas import safety_awareness_scores


def stacks(n=8, layers=3, d=16):
    torch.manual_seed(0)
    return torch.randn(n, layers, d), torch.randn(n, layers, d) + 1.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_the_sas_refuses_non_finite_activations_and_names_the_layer(bad):
    safe, harmful = stacks()
    harmful[2, 1, 5] = bad
    acts = LayerActivations(values=harmful, layers=[4, 8, 12])
    with pytest.raises(InvalidInputError, match="non-finite.*layer 8"):
        safety_awareness_scores(LayerActivations(values=safe, layers=[4, 8, 12]), acts)


def test_integer_activations_are_refused():
    safe, harmful = stacks()
    with pytest.raises(InvalidInputError, match="floating-point"):
        SafetyProber.fit(harmful[:, 0].long(), safe[:, 0].long(), config=ProberConfig(epochs=2))


def test_the_prober_refuses_nan_in_training_calibration_and_evaluation():
    safe, harmful = stacks()
    broken = harmful.clone()
    broken[0, 2, 0] = math.nan
    with pytest.raises(InvalidInputError, match="harmful holds 1 non-finite"):
        SafetyProber.fit(broken, safe, config=ProberConfig(epochs=2), layers=[1, 2, 3])
    prober = SafetyProber.fit(harmful, safe, config=ProberConfig(epochs=2), layers=[1, 2, 3])
    with pytest.raises(InvalidInputError, match="benign holds 1 non-finite.*layer 3"):
        prober.calibrate(broken, 0.1)
    with pytest.raises(InvalidInputError, match="non-finite"):
        prober.evaluate(broken, safe)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epsilon", math.inf),
        ("epsilon", math.nan),
        ("epsilon", 0.0),
        ("learning_rate", math.nan),
        ("retain_weight", -1.0),
    ],
)
def test_refusal_head_settings_are_refused_with_our_error(field, value):
    with pytest.raises(InvalidInputError, match=f"RefusalHeadConfig.{field}"):
        RefusalHeadConfig(**{field: value})


@pytest.mark.parametrize(("field", "value"), [("learning_rate", math.inf), ("weight_decay", math.nan), ("epochs", 0)])
def test_prober_settings_are_refused_with_our_error(field, value):
    with pytest.raises(InvalidInputError, match=f"ProberConfig.{field}"):
        ProberConfig(**{field: value})


def test_head_training_refuses_a_non_finite_cache_and_a_loss_that_diverges():
    head = RefusalHead(8, config=RefusalHeadConfig(epochs=1))
    lm_head = torch.nn.Linear(8, 20, bias=False)
    hidden = torch.randn(12, 8)
    hidden[3, 1] = math.inf
    with pytest.raises(InvalidInputError, match="cached LM-head inputs"):
        head.fit_on_cache(TokenCache(hidden=hidden, labels=torch.zeros(12, dtype=torch.long)), lm_head)
    with torch.no_grad():
        lm_head.weight.fill_(3e38)  # logits overflow to infinity: the loss is not finite
    with pytest.raises(FitError, match="epoch 0 is not finite"):
        head.fit_on_cache(
            TokenCache(hidden=torch.randn(12, 8) * 1e3, labels=torch.zeros(12, dtype=torch.long)), lm_head
        )


def test_a_head_of_the_wrong_width_or_a_gate_of_the_wrong_length_is_refused():
    with pytest.raises(InvalidInputError, match="width 32"):
        steered_input(torch.randn(2, 3, 32), torch.eye(64), 0.1)
    with pytest.raises(InvalidInputError, match="one value per row"):
        steered_input(torch.randn(2, 3, 8), torch.eye(8), 0.1, torch.tensor([True, False, True]))
    head = RefusalHead(64)
    with pytest.raises(InvalidInputError, match="width 20"):
        head.fit_on_cache(
            TokenCache(hidden=torch.randn(4, 64), labels=torch.zeros(4, dtype=torch.long)), torch.nn.Linear(20, 10)
        )
