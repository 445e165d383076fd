"""Gate data assembly and the robustness report (no model needed)."""

import json

import pytest
import torch

from autosteer_interp.errors import InvalidInputError
from autosteer_interp.gate import PART_NAMES, GateData, train_gate
from autosteer_interp.prompts import Prompt, builtin_borderline, builtin_gate_pairs, builtin_pairs, jailbreak_wrappers
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
    assert not (train | held) & (test_texts | texts(builtin_borderline("test")))
    test_templates = [w.template.split("{request}")[0][:40] for w in jailbreak_wrappers("test")]
    wrapped = every["train_wrapped_harmful"] | every["val_wrapped_harmful"]
    assert not any(t and text.startswith(t) for text in wrapped for t in test_templates if len(t) > 20)
    counts = data.counts()
    n_pairs = len(pairs) + len(builtin_gate_pairs("train"))
    assert counts["train_harmful"] + counts["val_harmful"] == n_pairs
    assert counts["val_harmful"] == round(0.2 * 50) + round(0.2 * len(builtin_gate_pairs("train")))
    for stage in ("train", "val"):  # both sides of a pair, and its wrapped copies, are on the same side of the split
        assert counts[f"{stage}_safe"] == counts[f"{stage}_harmful"]
        assert counts[f"{stage}_wrapped_safe"] == counts[f"{stage}_wrapped_harmful"] <= counts[f"{stage}_harmful"]
    assert counts["train_wrapped_harmful"] + counts["val_wrapped_harmful"] == 512  # max_wrapped
    assert counts["train_negatives"] + counts["val_negatives"] == len(builtin_borderline("train"))


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


def test_train_gate_calibrates_on_the_held_out_benign_parts():
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(8, generator=generator)

    def part(n, sign):
        return (torch.randn(n, 1, 8, generator=generator) + sign * direction) if n else torch.empty(0, 1, 8)

    features = {name: part(0, 0) for name in PART_NAMES}
    features |= {"train_harmful": part(80, 1), "train_safe": part(80, -1), "val_harmful": part(40, 1)}
    features |= {"val_safe": part(40, -0.2), "train_negatives": part(20, -1), "val_negatives": part(20, 0)}
    prober, metrics = train_gate(features, [4], calibrate_fpr=0.05)
    assert prober.layers == (4,) and metrics.fpr <= 0.05 + 1e-6 and metrics.n_benign == 60 and metrics.n_harmful == 40
    with pytest.raises(InvalidInputError, match="missing \\['val_negatives'\\]"):
        train_gate({k: v for k, v in features.items() if k != "val_negatives"}, [4])


def test_robustness_families_come_from_the_test_splits():
    held_out = builtin_pairs()[-20:]
    families = robustness_families(held_out)
    assert tuple(families) == FAMILY_ORDER
    n_pairs = 20 + len(builtin_gate_pairs("test"))
    assert len(families["wrapped_harmful"].prompts) == len(families["plain_benign"].prompts) == n_pairs
    assert texts(families["borderline_benign"].prompts) == texts(builtin_borderline("test"))
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
