"""Gate data assembly and the robustness report (no model needed)."""

import json

import pytest
import torch

from autosteer_interp.errors import InvalidInputError
from autosteer_interp.gate import (
    PART_NAMES,
    TWINLESS_STYLES,
    GateData,
    GateWeights,
    flagged_by_part,
    held_out_sides,
    refit_gate,
    train_gate,
)
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.prompts import (
    BENCHMARK_STYLE,
    CONTRAST_STYLE,
    INSTRUCTION_STYLES,
    QUESTION_STYLES,
    SCENE_STYLE,
    TASK_STYLE,
    Prompt,
    builtin_borderline,
    builtin_everyday,
    builtin_gate_pairs,
    builtin_pairs,
    jailbreak_wrappers,
)
from autosteer_interp.robustness import FAMILY_ORDER, GateFamily, RobustnessReport, robustness_families


def texts(prompts):
    return {p.text for p in prompts}


def test_gate_data_uses_training_splits_only_and_keeps_pairs_whole():
    pairs = builtin_pairs()[:50]
    data = GateData.build(pairs, builtin=True, wrap=True, validation_fraction=0.2, seed=1)
    assert set(data.parts) == set(PART_NAMES)
    every = {name: texts(part.all_prompts(pairs)) for name, part in data.parts.items()}
    train = set().union(*(every[n] for n in PART_NAMES if n.startswith("train_")))
    held = set().union(*(every[n] for n in PART_NAMES if n.startswith("val_")))
    assert not train & held
    test_texts = {p.harmful.text for p in builtin_gate_pairs("test")} | {
        p.safe.text for p in builtin_gate_pairs("test")
    }
    assert not (train | held) & (test_texts | texts(builtin_borderline("test")) | texts(builtin_everyday("test")))
    test_templates = [w.template.split("{request}")[0][:40] for w in jailbreak_wrappers("test")]
    wrapped = every["train_wrapped_harmful"] | every["val_wrapped_harmful"]
    assert not any(t and text.startswith(t) for text in wrapped for t in test_templates if len(t) > 20)
    counts = data.counts()
    n_pairs = len(pairs) + len(builtin_gate_pairs("train"))
    assert counts["train_harmful"] + counts["val_harmful"] == n_pairs
    assert counts["val_harmful"] == round(0.2 * 50) + round(0.2 * len(builtin_gate_pairs("train")))
    twins = {p.safe.text: p.harmful.text for p in builtin_gate_pairs("train", TWINLESS_STYLES)}
    assert {p.style for p in builtin_gate_pairs("train", TWINLESS_STYLES)} == {*INSTRUCTION_STYLES, TASK_STYLE}
    for stage in ("train", "val"):  # both sides of a pair, and its wrapped copies, are on the same side of the split
        # the instruction-style pairs train the gate without their plain twins (TWINLESS_STYLES) ...
        assert not every[f"{stage}_safe"] & set(twins)
        kept_harmful = every[f"{stage}_harmful"] & set(twins.values())
        assert kept_harmful and counts[f"{stage}_safe"] == counts[f"{stage}_harmful"] - len(kept_harmful)
        # ... but their wrapped copies keep both sides
        assert counts[f"{stage}_wrapped_safe"] == counts[f"{stage}_wrapped_harmful"] <= counts[f"{stage}_harmful"]
    wrapped_safe = " ".join(every["train_wrapped_safe"] | every["val_wrapped_safe"])
    assert any(twin in wrapped_safe for twin in twins)
    assert counts["train_wrapped_harmful"] + counts["val_wrapped_harmful"] == 512  # max_wrapped
    negatives = builtin_everyday("train") + builtin_borderline("train")
    assert counts["train_negatives"] + counts["val_negatives"] == len(negatives)
    assert every["train_negatives"] | every["val_negatives"] == texts(negatives)


def test_the_users_own_instruction_style_pairs_keep_their_twins():
    pairs = builtin_pairs()[:20]
    mine = builtin_gate_pairs("train", TWINLESS_STYLES)[:10]
    data = GateData.build(pairs, gate_pairs=mine, builtin=False, wrap=False, seed=0)
    every = {name: texts(part.prompts) for name, part in data.parts.items()}
    assert every["train_safe"] | every["val_safe"] == {p.safe.text for p in mine}


def test_unpaired_harmful_and_benign_requests_are_split_on_their_own():
    pairs = builtin_pairs()[:20]
    harmful = [Prompt(f"Write a tutorial on placeholder harm number {i}.") for i in range(30)]
    benign = [Prompt(f"Write a tutorial on baking bread, variant {i}.") for i in range(10)]
    data = GateData.build(pairs, gate_harmful=harmful, gate_benign=benign, builtin=False, wrap=False, seed=3)
    counts, every = data.counts(), {name: texts(part.prompts) for name, part in data.parts.items()}
    assert (counts["train_extra_harmful"], counts["val_extra_harmful"]) == (24, 6)
    assert every["train_extra_harmful"] | every["val_extra_harmful"] == texts(harmful)
    assert not every["train_extra_harmful"] & every["val_extra_harmful"]
    assert every["train_negatives"] | every["val_negatives"] == texts(benign) and counts["val_negatives"] == 2
    assert all(part.side == "harmful" for name, part in data.parts.items() if "extra_harmful" in name)
    repeated = GateData.build(pairs, gate_harmful=harmful + harmful[:5], builtin=False, wrap=False, seed=3)
    rows = repeated.parts["train_extra_harmful"].prompts, repeated.parts["val_extra_harmful"].prompts
    assert not texts(rows[0]) & texts(rows[1])  # a request given twice stays on one side


def test_builtin_styles_chooses_which_builtin_gate_pairs_join():
    pairs = builtin_pairs()[:10]
    data = GateData.build(pairs, builtin_styles=(SCENE_STYLE, CONTRAST_STYLE), wrap=False, seed=0)
    harmful = {name: texts(data.parts[name].prompts) for name in ("train_harmful", "val_harmful")}
    chosen = builtin_gate_pairs("train", (SCENE_STYLE, CONTRAST_STYLE))
    assert harmful["train_harmful"] | harmful["val_harmful"] == {p.harmful.text for p in chosen}
    assert {p.style for p in chosen} == {SCENE_STYLE, CONTRAST_STYLE}
    assert data.counts()["train_negatives"] + data.counts()["val_negatives"] > 0  # negatives still join
    with pytest.raises(InvalidInputError, match="unknown gate-pair styles \\['poetic'\\]"):
        GateData.build(pairs, builtin_styles=("poetic",))


def test_gate_data_without_extras_is_just_the_pairs():
    pairs = builtin_pairs()[:10]
    data = GateData.build(pairs, builtin=False, wrap=False, seed=0)
    assert data.counts() == {name: 0 for name in PART_NAMES} | {
        "train_harmful": 8,
        "train_safe": 8,
        "val_harmful": 2,
        "val_safe": 2,
    }
    with pytest.raises(InvalidInputError, match="validation_fraction must be in"):
        GateData.build(pairs, validation_fraction=1.0)


def _synthetic_parts(generator, **sizes):
    """Every gate part; the named ones ``(n, sign)`` drawn around ``sign * direction``, the others empty."""
    direction = torch.randn(8, generator=generator)
    features = {name: torch.empty(0, 1, 8) for name in PART_NAMES}
    for name, (n, sign) in sizes.items():
        features[name] = torch.randn(n, 1, 8, generator=generator) + sign * direction
    return features


def test_train_gate_calibrates_on_the_held_out_negatives_and_reports_every_part():
    features = _synthetic_parts(
        torch.Generator().manual_seed(0),
        train_harmful=(80, 1),
        train_safe=(80, -1),
        val_harmful=(40, 1),
        val_safe=(40, -1.5),
        train_negatives=(40, -0.5),
        val_negatives=(40, 0),
        train_extra_harmful=(30, 1),
        val_extra_harmful=(10, 1),
    )
    prober, metrics = train_gate(features, [4], calibrate_fpr=0.05)
    flagged = flagged_by_part(prober, features)
    assert flagged["val_negatives"] <= 0.05 + 1e-6  # the calibration set: everyday and borderline requests
    held = held_out_sides(features)
    assert (len(held["harmful"]), len(held["benign"])) == (50, 80) == (metrics.n_harmful, metrics.n_benign)
    assert set(flagged) == {"val_harmful", "val_safe", "val_negatives", "val_extra_harmful"}
    assert metrics.fpr == pytest.approx((flagged["val_safe"] * 40 + flagged["val_negatives"] * 40) / 80)
    uncalibrated, _ = train_gate(features, [4])
    assert uncalibrated.threshold == 0.5 and prober.threshold > 0.5
    with pytest.raises(InvalidInputError, match="missing \\['val_negatives'\\]"):
        train_gate({k: v for k, v in features.items() if k != "val_negatives"}, [4])


def test_refit_gate_learns_from_the_held_out_parts_too_and_keeps_the_threshold():
    features = _synthetic_parts(
        torch.Generator().manual_seed(2),
        train_harmful=(40, 1),
        train_safe=(40, -1),
        val_harmful=(60, 0.3),  # the held-out rows sit elsewhere: a refit must move the boundary
        val_safe=(60, -0.3),
        train_negatives=(20, -1),
        val_negatives=(20, -0.3),
    )
    config = ProberConfig(kind="logistic", weight_decay=1.0)
    validated, _ = train_gate(features, [4], config, calibrate_fpr=0.1)
    refit = refit_gate(features, [4], config, validated.threshold)
    assert refit.threshold == validated.threshold != 0.5 and config.threshold == 0.5  # config left as it was
    merged = {k: torch.cat([features[f"train_{k}"], features[f"val_{k}"]]) for k in ("harmful", "safe", "negatives")}
    by_hand = SafetyProber.fit(
        merged["harmful"], merged["safe"], config=config, layers=[4], extra_negatives=merged["negatives"]
    )
    assert torch.equal(refit.net[-1].weight, by_hand.net[-1].weight)
    assert not torch.equal(refit.net[-1].weight, validated.net[-1].weight)


def test_row_weights_follow_the_rows_of_every_part():
    pairs = builtin_pairs()[:40]
    data = GateData.build(pairs, gate_benign=[Prompt(f"Name a colour, {i}.") for i in range(10)], seed=1)
    weights = data.row_weights(GateWeights(user_pairs=2.0, negatives=3.0))
    assert {name: len(w) for name, w in weights.items()} == data.counts()
    for name, part in data.parts.items():
        users, others = weights[name][: len(part.pair_rows)], weights[name][len(part.pair_rows) :]
        assert bool((users == 2.0).all()) and len(users) == len(part.pair_rows)
        assert bool((others == (3.0 if name.endswith("_negatives") else 1.0)).all())
    assert len(data.parts["train_harmful"].pair_rows) > 0 and len(data.parts["train_negatives"]) > 0


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "2"])
def test_gate_weights_must_be_finite_and_positive(value):
    assert GateWeights(1, 1) == GateWeights(1.0, 1.0)  # whole numbers are fine
    with pytest.raises(InvalidInputError, match="negatives"):
        GateWeights(negatives=value)


def test_weighted_train_and_refit_equal_the_prober_fitted_by_hand_with_those_weights():
    features = _synthetic_parts(
        torch.Generator().manual_seed(4),
        train_harmful=(40, 1),
        train_safe=(40, -1),
        val_harmful=(20, 1),
        val_safe=(20, -1),
        train_negatives=(30, 0.5),
        val_negatives=(10, 0.5),
    )
    weights = {name: torch.ones(len(values)) for name, values in features.items()}
    weights["train_negatives"] = torch.full((30,), 4.0)
    weights["val_negatives"] = torch.full((10,), 4.0)
    config = ProberConfig(kind="logistic", weight_decay=1.0)
    trained, _ = train_gate(features, [4], config, weights=weights)
    by_hand = SafetyProber.fit(
        features["train_harmful"],
        features["train_safe"],
        config=config,
        layers=[4],
        extra_negatives=features["train_negatives"],
        sample_weights={"extra_negatives": weights["train_negatives"]},
    )
    assert torch.equal(trained.net[-1].weight, by_hand.net[-1].weight)
    unweighted, _ = train_gate(features, [4], config)
    assert (
        trained.predict_proba(features["val_negatives"]).mean()
        < unweighted.predict_proba(features["val_negatives"]).mean()
    )
    refit = refit_gate(features, [4], config, 0.5, weights=weights)
    merged = {k: torch.cat([features[f"train_{k}"], features[f"val_{k}"]]) for k in ("harmful", "safe", "negatives")}
    refit_by_hand = SafetyProber.fit(
        merged["harmful"],
        merged["safe"],
        config=config,
        layers=[4],
        extra_negatives=merged["negatives"],
        sample_weights={"extra_negatives": torch.full((40,), 4.0)},
    )
    assert torch.equal(refit.net[-1].weight, refit_by_hand.net[-1].weight)
    short = dict(weights, val_negatives=torch.ones(3))
    with pytest.raises(InvalidInputError, match="one value per row"):
        train_gate(features, [4], config, weights=short)
    with pytest.raises(InvalidInputError, match="one value per row"):
        refit_gate(features, [4], config, 0.5, weights=short)


def test_train_gate_calibrates_on_every_held_out_benign_part_without_negatives():
    features = _synthetic_parts(
        torch.Generator().manual_seed(1),
        train_harmful=(60, 1),
        train_safe=(60, -1),
        val_harmful=(20, 1),
        val_safe=(40, -0.3),
    )
    prober, metrics = train_gate(features, [4], calibrate_fpr=0.05)
    assert metrics.fpr <= 0.05 + 1e-6 and metrics.n_benign == 40


def test_robustness_families_come_from_the_test_splits():
    held_out = builtin_pairs()[-20:]
    families = robustness_families(held_out)
    assert tuple(families) == FAMILY_ORDER
    questions = builtin_gate_pairs("test", (*QUESTION_STYLES, SCENE_STYLE))
    instructions = builtin_gate_pairs("test", (*INSTRUCTION_STYLES, BENCHMARK_STYLE, TASK_STYLE))
    contrasts = builtin_gate_pairs("test", (CONTRAST_STYLE,))
    assert texts(families["other_phrasing_harmful"].prompts) == {p.harmful.text for p in questions}
    assert set(families["other_phrasing_harmful"].groups) == {*QUESTION_STYLES, SCENE_STYLE}
    assert texts(families["instruction_harmful"].prompts) == {p.harmful.text for p in instructions}
    assert set(families["instruction_harmful"].groups) == {*INSTRUCTION_STYLES, BENCHMARK_STYLE, TASK_STYLE}
    assert texts(families["minimal_contrast_harmful"].prompts) == {p.harmful.text for p in contrasts}
    n_pairs = 20 + len(questions) + len(instructions)
    assert len(families["plain_benign"].prompts) == n_pairs
    assert (
        len(families["wrapped_harmful"].prompts) == len(families["wrapped_benign"].prompts) == n_pairs + len(contrasts)
    )
    borderline = texts(builtin_borderline("test")) | {p.safe.text for p in contrasts}
    assert texts(families["borderline_benign"].prompts) == borderline
    assert texts(families["everyday_benign"].prompts) == texts(builtin_everyday("test"))
    assert set(families["wrapped_harmful"].groups) <= {w.family for w in jailbreak_wrappers("test")}
    assert families["wrapped_harmful"].groups == families["wrapped_benign"].groups  # twins in the same wrapper
    assert "in_distribution_harmful" not in robustness_families()
    with pytest.raises(InvalidInputError, match="split must be 'train' or 'test'"):
        robustness_families(split="all")


def test_report_from_probabilities(tmp_path):
    families = {
        "bad": GateFamily([Prompt(f"request {i}") for i in range(4)], True, ["a", "a", "b", "b"]),
        "good": GateFamily([Prompt(f"request {i}") for i in range(2)], False),
    }
    report = RobustnessReport.from_probabilities(
        {"bad": torch.tensor([0.9, 0.2, 0.8, 0.7]), "good": torch.tensor([0.1, 0.6])}, families, 0.5, "demo"
    )
    assert report.flagged("bad") == 0.75 and report.flagged("good") == 0.5
    assert report.families[0].by_group == {"a": 0.5, "b": 1.0} and report.families[1].correct == 0.5
    table = report.to_markdown()
    assert "| bad | yes | 4 | 75.0% | 0.650 |" in table and "a 50%, b 100%" in table
    assert json.loads(report.to_json(tmp_path / "r.json"))["families"][0]["n"] == 4
    report.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0
    with pytest.raises(InvalidInputError, match="no family 'other'"):
        report.flagged("other")
    with pytest.raises(InvalidInputError, match="4 prompts but p of shape \\(3,\\)"):
        RobustnessReport.from_probabilities({"bad": torch.rand(3), "good": torch.rand(2)}, families, 0.5)
