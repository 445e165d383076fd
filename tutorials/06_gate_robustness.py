# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · How far does the gate generalise?
#
# The refusal head refuses whatever it is turned on for, so AutoSteer is only as good as its **gate**: the
# prober that decides, per request, whether to turn the head on. A gate fitted on one pair dataset learns that
# dataset's phrasing. This tutorial builds two gates by hand, the paper's and the library's default, and
# measures both on request families that fitting never saw:
#
# | family | should the gate flag it? |
# |---|---|
# | in-distribution harmful (held-out pairs of the fitting set) | yes |
# | other-phrasing harmful (`builtin_gate_pairs("test")`) | yes |
# | wrapped harmful (both inside held-out jailbreak templates) | yes |
# | plain benign (the harmless twins) | no |
# | wrapped benign (the twins inside the same templates) | no |
# | borderline benign (`builtin_borderline("test")`) | no |
#
# Printed output shows rates only, never request texts. The environment variables at the top shrink the run for
# the test suite; unset, it uses all the data (a few minutes on a laptop CPU).

# %%
import os
from pathlib import Path

import autosteer_interp as asi
from autosteer_interp.gate import GateData, train_gate
from autosteer_interp.prober import ProberConfig
from autosteer_interp.prompts import builtin_borderline
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.robustness import GateFamily, RobustnessReport, gate_robustness, robustness_families
from autosteer_interp.steer import AutoSteer

OUT = Path(os.environ.get("TUTORIAL_OUT", "outputs/tutorials"))
N_PAIRS = int(os.environ.get("TUTORIAL_PAIRS", "196"))
MAX_WRAPPED = int(os.environ.get("TUTORIAL_WRAPPED", "512"))
N_GATE = int(os.environ.get("TUTORIAL_GATE_PAIRS", "100000"))  # built-in gate pairs and negatives used
N_FAMILY = int(os.environ.get("TUTORIAL_FAMILY", "100000"))  # requests per test family

model = asi.load_model("smollm2-llava-onevision")
pairs = asi.builtin_pairs()[:N_PAIRS]
fit_pairs, held_out = pairs[: -N_PAIRS // 4], pairs[-N_PAIRS // 4 :]

# %% [markdown]
# ## 1 · Layers
# The Safety Awareness Score ranks the layers on the fitting pairs (tutorial 01). The paper's gate reads the best
# layer; here the gate reads the three best, each standardised, concatenated (`AutoSteer.fit`'s default reads a
# spread of layers, see `fit.default_gate_layers`).


# %%
def activations(prompts, layers):
    return asi.collect_activations(model, prompts, layers, batch_size=16, progress=False)


all_layers = list(range(1, asi.resolve(model).n_layers))
sas = asi.safety_awareness_scores(
    activations([p.safe for p in fit_pairs], all_layers), activations([p.harmful for p in fit_pairs], all_layers)
)
top3 = sorted(sas.top_k(3))
print("best layer", sas.best_layer, "| top-3", top3)

# %% [markdown]
# ## 2 · Two gates
# `GateData.build` assembles a gate's training data and holds out 20% of it (whole pairs) for validation and
# threshold calibration; `data.features` collects every part's activations at the gate's layers, and
# `train_gate` fits the prober on the training parts.
#
# * **paper**: the fitting pairs only, on the best layer;
# * **default**: the fitting pairs **plus** our gate pairs (questions in 11 harm categories and six phrasing
#   styles, benchmark-style instructions, minimal contrasts, questions about a photo's objects; each with a
#   minimally edited harmless twin),
#   jailbreak-wrapped copies of some pairs (both sides wrapped, so the wrapper is never the signal), everyday
#   instructions and borderline-benign negatives. `builtin=True` adds all of these at once (what `AutoSteer.fit`
#   does, leaving out the instructions' plain twins, with a logistic gate on a spread of layers); here a few of
#   each are passed explicitly (`gate_benign=`; unpaired harmful requests go in `gate_harmful=`) so the test suite
#   can use fewer, on the top-3 layers.

# %%
paper_data = GateData.build(fit_pairs, builtin=False, wrap=False)
default_data = GateData.build(
    fit_pairs,
    gate_pairs=asi.builtin_gate_pairs("train")[:N_GATE],
    gate_benign=builtin_borderline("train")[:N_GATE] + asi.builtin_everyday("train")[:N_GATE],
    builtin=False,
    max_wrapped=MAX_WRAPPED,
)
print("default gate data:", default_data.counts())


def fit_gate(data, layers):
    features = data.features(model, fit_pairs, layers, batch_size=16)  # part name -> [n, len(layers), d_model]
    return train_gate(features, layers, ProberConfig())


paper_gate, paper_validation = fit_gate(paper_data, [sas.best_layer])
default_gate, default_validation = fit_gate(default_data, top3)
for name, metrics in (("paper", paper_validation), ("default", default_validation)):
    print(f"{name:>8} gate, held-out part of its own data: AUROC {metrics.auroc:.3f}, FPR {metrics.fpr:.1%}")

# %% [markdown]
# ## 3 · The families
# `robustness_families(held_out)` builds the six families from data fitting never touches: your held-out pairs
# and the TEST splits of the built-in gate pairs, wrappers and borderline requests. Activations are collected
# once (at the top-3 layers, which include the best layer), so both gates are scored on the same numbers.

# %%
families = {
    name: GateFamily(f.prompts[:N_FAMILY], f.harmful, f.groups[:N_FAMILY] if f.groups else None)
    for name, f in robustness_families(held_out).items()
}
family_acts = {name: activations(f.prompts, top3) for name, f in families.items()}
p_paper = {name: paper_gate.predict_proba(a.select([sas.best_layer])) for name, a in family_acts.items()}
p_default = {name: default_gate.predict_proba(a.values) for name, a in family_acts.items()}

paper_report = RobustnessReport.from_probabilities(p_paper, families, paper_gate.threshold, "paper")
default_report = RobustnessReport.from_probabilities(p_default, families, default_gate.threshold, "default")
print("| family | n | paper | default |\n|---|---|---|---|")
for paper_row, default_row in zip(paper_report.families, default_report.families):
    print(f"| {paper_row.name} | {paper_row.n} | {paper_row.flagged:.0%} | {default_row.flagged:.0%} |")

# %% [markdown]
# Flagged shares: high is good for the harmful families, low for the benign ones. With the full data (no
# environment variables), `benchmarks/eval_gate.py` measured on VLSafe: the default catches far more harmful
# requests phrased otherwise or wrapped and raises far fewer borderline false alarms than the paper's gate,
# but stays well below 95% detection on the harder families (README, "The gate").
#
# ## 4 · Which wrappers get through
# Wrapped families are grouped by jailbreak family (role play, fiction, translation, ...).

# %%
wrapped = next(r for r in default_report.families if r.name == "wrapped_harmful")
for group, share in sorted(wrapped.by_group.items(), key=lambda item: item[1]):
    print(f"{group:>20}: {share:.0%} flagged")

# %% [markdown]
# ## 5 · The threshold trade-off
# Raising τ lowers false alarms and detection together. Re-thresholding needs no model call: build reports
# from the same probabilities. (`AutoSteer.fit(calibrate_fpr=0.03)` picks τ on held-out benign data instead.)

# %%
harmful_names = [name for name, f in families.items() if f.harmful]
print("| τ | lowest detection (harmful families) | highest false alarms (benign families) |\n|---|---|---|")
for threshold in (0.3, 0.5, 0.7, 0.9):
    report = RobustnessReport.from_probabilities(p_default, families, threshold)
    worst_detection = min(report.flagged(name) for name in harmful_names)
    worst_alarm = max(r.flagged for r in report.families if not r.harmful)
    print(f"| {threshold} | {worst_detection:.0%} | {worst_alarm:.0%} |")

# %% [markdown]
# ## 6 · The one-call version
# For a fitted `AutoSteer`, `gate_robustness(model, steer, families)` collects the activations and builds the
# report in one call (on the command line: `autosteer-interp robustness --steer DIR`). The refusal head plays no
# part in the gate's decision, so an untrained head stands in here. On the same requests it agrees with the
# cached route above.

# %%
steer = AutoSteer(default_gate, RefusalHead(default_gate.d_model))
first = {name: GateFamily(f.prompts[:8], f.harmful, f.groups[:8] if f.groups else None) for name, f in families.items()}
one_call = gate_robustness(model, steer, first, label="default gate")
cached = RobustnessReport.from_probabilities({k: p[:8] for k, p in p_default.items()}, first, steer.threshold)
assert [r.flagged for r in one_call.families] == [r.flagged for r in cached.families]
print(one_call.to_markdown())

OUT.mkdir(parents=True, exist_ok=True)
default_report.plot(OUT / "06_gate_robustness.png")
(OUT / "06_gate_robustness.json").write_text(default_report.to_json())
print(sorted(p.name for p in OUT.glob("06_*")))

# %% [markdown]
# ## 7 · How far could any gate go on this model?
# Each recipe moves along a trade-off curve; `benchmarks/gate_ceiling.py` measures the curve's limit instead: how
# well any probe separates our harmful test requests from their harmless twins, for several feature sources
# (the last prompt token, the template tokens, the request's mean, a "harmful?" framing, the answer tokens),
# even when it is trained on the test distribution. On SmolLM2-135M none passes AUROC 0.92 (README, "The gate"),
# far from the ≈ 0.99 that 95% detection at 3% false alarms needs. Run it with `--model` on a larger model to see
# whether its activations separate better.
