"""The gate robustness report on a tiny model: prefill decisions and the every-step gate."""

import pytest

from autosteer_interp.activations import collect_activations
from autosteer_interp.errors import InvalidInputError
from autosteer_interp.prompts import Prompt, builtin_pairs, jailbreak_wrappers, wrap_prompts
from autosteer_interp.robustness import GateFamily, gate_robustness
from tests.integration.test_steer import make_steer, mixed_batch


def test_gate_robustness_reports_the_gates_own_decisions(tiny_llava):
    steer, _ = make_steer(tiny_llava, mixed_batch())
    pairs = builtin_pairs()[40:52]
    wrappers = jailbreak_wrappers("test")
    families = {
        "harmful": GateFamily([p.harmful for p in pairs], True),
        "wrapped_benign": GateFamily(wrap_prompts([p.safe for p in pairs], wrappers), False, ["w"] * len(pairs)),
        "plain": GateFamily([Prompt("How do I bake bread?"), Prompt("Hi")], False),
    }
    report = gate_robustness(tiny_llava, steer, families, batch_size=5, label="tiny", every_step_tokens=3)
    for result, family in zip(report.families, families.values()):
        acts = collect_activations(tiny_llava, family.prompts, list(steer.layers), progress=False)
        expected = float((steer.p_harmful(acts.values) > steer.threshold).float().mean())
        assert result.flagged == pytest.approx(expected) and result.n == len(family.prompts)
        assert result.flagged_every_step >= result.flagged  # the every-step gate never switches off
    assert report.families[1].by_group == {"w": report.families[1].flagged}
    assert "every step (3 tokens)" in report.to_markdown() and report.to_dict()["every_step_tokens"] == 3
    with pytest.raises(InvalidInputError, match="every_step_tokens must be a positive integer"):
        gate_robustness(tiny_llava, steer, families, every_step_tokens=0)
    assert steer.gate_mode == "prefill"
