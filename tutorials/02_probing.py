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
# # 02 · The safety prober and the refusal head
#
# AutoSteer's gate is a small **safety prober** reading one layer's last-prompt-token activation; its
# steering is a **refusal head** acting on the LM head's input. This tutorial
#
# 1. sweeps probes over every layer and plots their validation AUROC beside the Safety Awareness Score
#    (the paper's layer-sensitivity study),
# 2. fits the paper's MLP prober at the SAS-chosen layer, with our borderline-benign requests
#    ("kill a stuck process", "shoot a portrait") as extra negatives, and calibrates its threshold to a
#    target false-positive rate on validation data,
# 3. fits a refusal head on cached LM-head inputs and shows that, always on, it refuses everything —
#    which is why the gate matters,
# 4. saves both as artefacts (`config.json` + safetensors) and loads them back.
#
# Real model, offline: SmolLM2-135M-Instruct inside LLaVA-OneVision (text requests).

# %%
import os
from pathlib import Path

import torch

import autosteer_interp as asi
from autosteer_interp.prober import ProberConfig, SafetyProber, probe_sweep
from autosteer_interp.prompts import Prompt, builtin_borderline, encode_prompts
from autosteer_interp.refusal_head import RefusalHead, RefusalHeadConfig

OUT = Path(os.environ.get("TUTORIAL_OUT", "outputs/tutorials"))
N_PAIRS = int(os.environ.get("TUTORIAL_PAIRS", "196"))

model = asi.load_model("smollm2-llava-onevision")
pairs = asi.builtin_pairs()[:N_PAIRS]
n_fit = int(0.75 * len(pairs))
fit_pairs, test_pairs = pairs[:n_fit], pairs[n_fit:]
print(f"{len(fit_pairs)} pairs to fit, {len(test_pairs)} held out")

# %% [markdown]
# ## 1 · Probe quality and SAS, layer by layer
# One collection of all layers serves both: the SAS needs no training; a logistic probe per layer is trained on
# a split of the fitting pairs and scored on the rest.

# %%
layers = list(range(1, asi.resolve(model).n_layers))
harmful = asi.collect_activations(model, [p.harmful for p in fit_pairs], layers, batch_size=16, progress=False)
safe = asi.collect_activations(model, [p.safe for p in fit_pairs], layers, batch_size=16, progress=False)
sas = asi.safety_awareness_scores(safe, harmful)
sweep = probe_sweep(harmful, safe, sas=sas)
sweep.plot(OUT / "02_probe_sweep.png", title="Probe validation AUROC and SAS per layer")
print("SAS picks layer", sas.best_layer, "| best probe layer", sweep.best_layer)
print("AUROC at the SAS layer:", round(sweep.auroc[sweep.layers.index(sas.best_layer)], 3))

# %% [markdown]
# ## 2 · The prober at the chosen layer
# `SafetyProber.fit` holds out 20% of the fitting pairs (pairs stay together) to pick the best epoch; it trains
# with cross-entropy on logits and standardises inputs inside the module. Borderline-benign requests join as
# extra negatives; their held-out quarter (`builtin_borderline("test")`) is never used for fitting.

# %%
layer = sas.best_layer
border_fit = asi.collect_activations(model, builtin_borderline("train"), [layer], progress=False)
border_test = asi.collect_activations(model, builtin_borderline("test"), [layer], progress=False)
test_harm = asi.collect_activations(model, [p.harmful for p in test_pairs], [layer], progress=False)
test_safe = asi.collect_activations(model, [p.safe for p in test_pairs], [layer], progress=False)

prober = SafetyProber.fit(
    harmful.at(layer),
    safe.at(layer),
    config=ProberConfig(kind="mlp"),
    layers=layer,
    extra_negatives=border_fit,
    model=model,
)
baseline = SafetyProber.fit(harmful.at(layer), safe.at(layer), config=ProberConfig(kind="logistic"), layers=layer)
for name, p in (("MLP prober", prober), ("logistic baseline", baseline)):
    m = p.evaluate(test_harm, test_safe)
    flagged = p.predict(border_test.at(layer)).float().mean().item()
    print(
        f"{name:18s} acc {m.accuracy:.3f}  AUROC {m.auroc:.3f}  TPR {m.tpr:.3f}  FPR {m.fpr:.3f}  "
        f"borderline flagged {flagged:.3f}"
    )

# %% [markdown]
# **Calibration.** The paper uses τ = 0.5. `calibrate` instead picks τ so that at most a target share of
# *validation* benign activations is flagged (here: the safe side of the fitting pairs plus the borderline
# fitting set). Never calibrate on the test set.

# %%
benign_validation = torch.cat([safe.at(layer), border_fit.at(layer)])
tau = prober.calibrate(benign_validation, target_fpr=0.02)
m = prober.evaluate(test_harm, test_safe)
print(f"τ = {tau:.3f}: test TPR {m.tpr:.3f}, FPR {m.fpr:.3f}")

# %% [markdown]
# ## 3 · The refusal head
# `RefusalHead.fit` runs the frozen model once over prompt + refusal target and caches the LM-head inputs at
# the target positions, then fits `S` on the cache (loss on the target tokens only). With the head always on,
# every request is refused — benign ones included:

# %%
head = RefusalHead.fit(model, [p.harmful for p in fit_pairs], RefusalHeadConfig(epochs=3), progress=False)
print("loss per epoch:", [round(x, 4) for x in head.history])
benign = [Prompt("What is the capital of France?"), Prompt("Give me a tip for baking bread.")]
inputs = encode_prompts(model, benign)
with torch.no_grad(), head.attach(model):
    out = model._module.generate(**inputs, max_new_tokens=16, do_sample=False)
for prompt, text in zip(
    benign, model.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
):
    print(f"{prompt.text!r} -> {text!r}")

# %% [markdown]
# ## 4 · Artefacts
# Both save as a folder with `config.json` (kind, format version, layer, ε, τ, base model and its LM-head
# signature) and `tensors.safetensors`. Saving never overwrites silently; loading with `model=` refuses an
# artefact fitted on another checkpoint.

# %%
prober.save(OUT / "prober", overwrite=True)
head.save(OUT / "refusal_head", overwrite=True)
reloaded = SafetyProber.load(OUT / "prober", model=model)
assert torch.equal(reloaded.predict_proba(test_harm.at(layer)), prober.predict_proba(test_harm.at(layer)))
print(sorted(p.name for p in (OUT / "prober").iterdir()))
