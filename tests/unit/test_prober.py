import json

import pytest
import torch

from autosteer_interp.activations import LayerActivations
from autosteer_interp.errors import ArtifactError, InvalidInputError
from autosteer_interp.prober import ProberConfig, SafetyProber, probe_sweep


def separable(n=120, d=32, shift=1.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=generator)
    base = torch.randn(n, d, generator=generator) * 3
    harmful = base + shift * direction + 0.3 * torch.randn(n, d, generator=generator)
    safe = base - shift * direction + 0.3 * torch.randn(n, d, generator=generator)
    return harmful, safe


@pytest.mark.parametrize("kind", ["mlp", "linear", "logistic"])
def test_every_kind_learns_a_separable_direction(kind):
    harmful, safe = separable()
    prober = SafetyProber.fit(harmful[:90], safe[:90], config=ProberConfig(kind=kind, epochs=60), layers=3)
    metrics = prober.evaluate(harmful[90:], safe[90:])
    assert metrics.auroc > 0.98 and metrics.accuracy > 0.9, metrics
    assert prober.layers == (3,) and prober.predict_proba(harmful[:4]).shape == (4,)


def test_logits_are_benign_then_harmful_and_probabilities_come_from_softmax():
    harmful, safe = separable()
    prober = SafetyProber.fit(harmful, safe, config=ProberConfig(kind="linear", epochs=10))
    logits = prober(harmful[:5])
    assert torch.allclose(prober.predict_proba(harmful[:5]), torch.softmax(logits, -1)[:, 1])
    assert prober.predict(harmful).float().mean() > 0.8


def test_the_kept_epoch_is_the_one_with_the_lowest_validation_loss():
    harmful, safe = separable(shift=0.3)
    prober = SafetyProber.fit(harmful, safe, config=ProberConfig(epochs=40, patience=None))
    history = prober.history
    assert len(history.validation_loss) == 40
    assert history.best_epoch == min(range(40), key=history.validation_loss.__getitem__)


def test_fitting_is_seeded():
    harmful, safe = separable()
    a = SafetyProber.fit(harmful, safe, config=ProberConfig(epochs=5, seed=7))
    b = SafetyProber.fit(harmful, safe, config=ProberConfig(epochs=5, seed=7))
    assert torch.equal(a.predict_proba(harmful), b.predict_proba(harmful))


def test_raw_activations_with_huge_dimensions_are_standardised_inside_the_module():
    harmful, safe = separable()
    harmful[:, 0] += 500.0
    safe[:, 0] += 500.0  # a massive activation shared by every prompt
    prober = SafetyProber.fit(harmful[:90], safe[:90], config=ProberConfig(epochs=40))
    assert prober.evaluate(harmful[90:], safe[90:]).auroc > 0.98


def test_calibration_meets_the_target_false_positive_rate_on_its_data():
    harmful, safe = separable(shift=0.4)
    prober = SafetyProber.fit(harmful[:90], safe[:90], config=ProberConfig(kind="logistic"))
    threshold = prober.calibrate(safe[90:], target_fpr=0.1)
    assert prober.threshold == threshold
    assert prober.evaluate(harmful[90:], safe[90:]).fpr <= 0.1 + 1e-6
    with pytest.raises(InvalidInputError, match=r"target_fpr must be in \[0, 1\)"):
        prober.calibrate(safe, target_fpr=1.5)


def test_extra_negatives_reduce_false_alarms_on_their_kind():
    harmful, safe = separable(n=200)
    generator = torch.Generator().manual_seed(3)
    confusable = harmful[:100] + 0.05 * torch.randn(100, 32, generator=generator)  # look harmful, labelled benign
    confusable[:, :4] += 4.0
    plain = SafetyProber.fit(harmful[100:], safe[100:], config=ProberConfig(kind="linear", epochs=60))
    with_extra = SafetyProber.fit(
        harmful[100:], safe[100:], config=ProberConfig(kind="linear", epochs=60), extra_negatives=confusable[:70]
    )
    assert with_extra.predict(confusable[70:]).float().mean() < plain.predict(confusable[70:]).float().mean()


def test_layer_activations_with_several_layers_need_a_layer():
    harmful, safe = separable(n=20)
    stack_h = LayerActivations(torch.stack([harmful, harmful], 1), [4, 9])
    stack_s = LayerActivations(torch.stack([safe, safe], 1), [4, 9])
    with pytest.raises(InvalidInputError, match=r"layers \[4, 9\]; pass layers="):
        SafetyProber.fit(stack_h, stack_s)
    assert SafetyProber.fit(stack_h, stack_s, layers=9, config=ProberConfig(epochs=2)).layers == (9,)


def test_bad_configs_name_the_field_and_the_allowed_values():
    config = ProberConfig()
    config.kind = "svm"  # the jaxtyping test hook would refuse the Literal at construction, before our check
    with pytest.raises(ValueError, match=r"ProberConfig.kind='svm' is invalid; allowed: mlp \| linear \| logistic"):
        config.__post_init__()
    with pytest.raises(ValueError, match=r"threshold=1.5.*0 <= x <= 1"):
        ProberConfig(threshold=1.5)
    assert ProberConfig.from_dict({"kind": "linear", "from_the_future": 1}).kind == "linear"


def test_too_few_samples_are_refused():
    with pytest.raises(InvalidInputError, match="at least 2 harmful and 2 safe"):
        SafetyProber.fit(torch.randn(1, 4), torch.randn(5, 4))


def test_save_and_load_round_trip(tmp_path):
    harmful, safe = separable()
    prober = SafetyProber.fit(harmful, safe, config=ProberConfig(epochs=5), layers=2)
    prober.calibrate(safe, 0.05)
    prober.save(tmp_path / "prober")
    loaded = SafetyProber.load(tmp_path / "prober")
    assert torch.equal(loaded.predict_proba(harmful), prober.predict_proba(harmful))
    assert (loaded.layers, loaded.threshold, loaded.config) == ((2,), prober.threshold, prober.config)
    config = json.loads((tmp_path / "prober" / "config.json").read_text())
    assert config["kind"] == "safety_prober" and config["format_version"] == 2 and config["d_model"] == 32


def test_probe_sweep_reports_auroc_per_layer_beside_sas(tmp_path):
    from autosteer_interp.sas import safety_awareness_scores

    harmful, safe = separable(n=60)
    noise_h, noise_s = torch.randn(60, 32), torch.randn(60, 32)
    acts_h = LayerActivations(torch.stack([noise_h, harmful], 1), [1, 2])
    acts_s = LayerActivations(torch.stack([noise_s, safe], 1), [1, 2])
    sweep = probe_sweep(acts_h, acts_s, sas=safety_awareness_scores(acts_s, acts_h))
    assert sweep.layers == [1, 2] and sweep.best_layer == 2
    assert sweep.auroc[1] > 0.95 and sweep.auroc[0] < 0.8 and len(sweep.sas) == 2
    sweep.plot(tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").exists()


def test_loading_something_else_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="config.json is missing"):
        SafetyProber.load(tmp_path)


def two_layer_signal(n=120, d=32, seed=0):
    """Half the signal in each of two layers: neither layer alone separates as well as both together."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    sign = (2 * labels - 1).float()[:, None]
    layer_a = torch.randn(n, d, generator=generator) * 2 + 0.6 * sign * torch.randn(d, generator=generator)
    layer_b = torch.randn(n, d, generator=generator) * 2 + 0.6 * sign * torch.randn(d, generator=generator)
    stack = torch.stack([layer_a, layer_b], 1)
    return stack[labels == 1], stack[labels == 0]


@pytest.mark.parametrize("pool", ["concat", "mean"])
@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_a_prober_on_several_layers_reads_each_layer(pool, kind):
    harmful, safe = two_layer_signal(n=400)
    config = ProberConfig(kind=kind, pool=pool, epochs=60)
    both = SafetyProber.fit(harmful[:150], safe[:150], config=config, layers=[5, 8])
    assert both.layers == (5, 8) and both.n_layers == 2 and both.mean.shape == (2, 32)
    only_a = SafetyProber.fit(harmful[:150, 0], safe[:150, 0], config=config, layers=5)
    held_h, held_s = harmful[150:], safe[150:]
    assert both.evaluate(held_h, held_s).auroc > only_a.evaluate(held_h[:, 0], held_s[:, 0]).auroc
    acts_h = LayerActivations(torch.stack([held_h[:, 1], held_h[:, 0]], 1), [8, 5])  # any collection order
    assert torch.allclose(both.predict_proba(acts_h.select([5, 8])), both.predict_proba(held_h))


def test_several_layer_prober_refuses_wrong_shapes_and_unsorted_layers():
    harmful, safe = two_layer_signal()
    prober = SafetyProber.fit(harmful, safe, config=ProberConfig(kind="linear", epochs=2), layers=[1, 2])
    with pytest.raises(InvalidInputError, match=r"reads 2 layer\(s\) of width 32.*expected \[batch, 2, 32\]"):
        prober.predict_proba(harmful[:, 0])
    with pytest.raises(InvalidInputError, match="ascending"):
        SafetyProber(32, layers=[9, 4])
    with pytest.raises(InvalidInputError, match="must not repeat"):
        SafetyProber(32, layers=[4, 4])


def test_several_layer_prober_round_trips(tmp_path):
    harmful, safe = two_layer_signal()
    prober = SafetyProber.fit(harmful, safe, config=ProberConfig(pool="mean", epochs=3), layers=[3, 7])
    prober.save(tmp_path / "prober")
    loaded = SafetyProber.load(tmp_path / "prober")
    assert loaded.layers == (3, 7) and loaded.config.pool == "mean"
    assert torch.equal(loaded.predict_proba(harmful), prober.predict_proba(harmful))


def test_balanced_classes_raise_recall_of_the_rare_class():
    harmful, safe = separable(n=400, shift=0.25, seed=3)
    rare = harmful[:40]
    plain = SafetyProber.fit(rare, safe, config=ProberConfig(kind="logistic"))
    balanced = SafetyProber.fit(rare, safe, config=ProberConfig(kind="logistic", balance_classes=True))
    assert balanced.evaluate(harmful[40:], safe[:100]).tpr > plain.evaluate(harmful[40:], safe[:100]).tpr


def test_bagged_logistic_probe_is_one_seeded_linear_probe_near_the_plain_fit(tmp_path):
    harmful, safe = separable(n=120, shift=0.4, seed=5)
    config = ProberConfig(kind="logistic", weight_decay=10.0, bagging=4, validation_fraction=0.1)
    bagged = SafetyProber.fit(harmful, safe, config=config)
    single = SafetyProber.fit(
        harmful, safe, config=ProberConfig(kind="logistic", weight_decay=10.0, validation_fraction=0.1)
    )
    assert len(bagged.net) == 1  # still one linear layer: as fast as one probe
    w_bag, w_one = bagged.net[-1].weight[1], single.net[-1].weight[1]
    assert not torch.allclose(w_bag, w_one)  # the resampled members moved it ...
    assert torch.nn.functional.cosine_similarity(w_bag, w_one, dim=0) > 0.9  # ... but not its direction
    assert bagged.evaluate(harmful, safe).auroc > 0.9
    assert SafetyProber.fit(harmful, safe, config=config).net[-1].weight.equal(bagged.net[-1].weight)  # seeded
    bagged.save(tmp_path / "bag")
    assert SafetyProber.load(tmp_path / "bag").config.bagging == 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"bagging": 0}, "bagging=0 is invalid"), ({"bagging": 3}, "bagging=3 is invalid.*unless kind='logistic'")],
)
def test_bagging_is_checked_on_construction(fields, message):
    with pytest.raises(InvalidInputError, match=message):
        ProberConfig(**fields)


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_uniform_sample_weights_change_nothing_since_they_are_rescaled_to_mean_one(kind):
    harmful, safe = separable(n=80)
    config = ProberConfig(kind=kind, epochs=10)
    plain = SafetyProber.fit(harmful, safe, config=config)
    heavy = {"harmful": torch.full((80,), 5.0), "safe": torch.full((80,), 5.0)}
    weighted = SafetyProber.fit(harmful, safe, config=config, sample_weights=heavy)
    assert torch.allclose(weighted.net[-1].weight, plain.net[-1].weight, atol=1e-4)
    assert torch.allclose(weighted.predict_proba(safe), plain.predict_proba(safe), atol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_weighting_the_extra_negatives_lowers_false_alarms_on_their_kind(kind):
    harmful, safe = separable(n=200)
    generator = torch.Generator().manual_seed(3)
    confusable = harmful[:100] + 0.05 * torch.randn(100, 32, generator=generator)  # look harmful, labelled benign
    confusable[:, :4] += 4.0
    config = ProberConfig(kind=kind, epochs=30)
    args = (harmful[100:], safe[100:])
    plain = SafetyProber.fit(*args, config=config, extra_negatives=confusable[:10])
    weighted = SafetyProber.fit(
        *args,
        config=config,
        extra_negatives=confusable[:10],
        sample_weights={"extra_negatives": torch.full((10,), 8.0)},
    )
    held_out = confusable[70:]
    assert weighted.predict_proba(held_out).mean() < plain.predict_proba(held_out).mean()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"negatives": torch.ones(8)}, "unknown keys \\['negatives'\\]"),
        ({"harmful": torch.ones(3)}, "must have shape \\(8,\\), got \\(3,\\)"),
        ({"safe": torch.zeros(8)}, "must be finite and > 0"),
        ({"safe": torch.full((8,), float("nan"))}, "must be finite and > 0"),
        ({"extra_harmful": torch.ones(8)}, "was given but extra_harmful was not"),
    ],
)
def test_bad_sample_weights_are_refused_before_training(weights, message):
    harmful, safe = separable(n=8)
    with pytest.raises(InvalidInputError, match=message):
        SafetyProber.fit(harmful, safe, config=ProberConfig(kind="logistic"), sample_weights=weights)
