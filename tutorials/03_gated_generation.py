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
# # 03 · AutoSteer: per-sample gated steering in nnsight traces, generation and plain Hugging Face
#
# `AutoSteer.fit` runs the whole pipeline (activations → SAS → gate → refusal head). The gate is a logistic
# prober (the mean of 8 bootstrap fits) on a spread of middle and upper layers (plus the SAS-best one), trained
# on your pairs plus the library's own gate data (other harm categories and phrasings, jailbreak-wrapped copies,
# everyday and borderline-benign requests; see the README's "gate" sections), where your pairs and the everyday and
# borderline requests count three times (`gate_weights=GateWeights(1, 1)` counts every row once). It is
# validated on a held-out part, then refit on all of it (`refit_gate=False` keeps the validated one).
# `steer.apply(model)` then works inside any `with model.trace(...)`: in the prefill pass the prober reads the
# last prompt token at its layers **for every row of the batch**, and the refusal head acts on the rows it
# flags. Unflagged rows are bit-for-bit what the unsteered model computes.
#
# To keep printed output clean, harmful requests are shown only by their gate decision and whether the answer
# refuses; full answers are printed for benign requests only.

# %%
import os
from pathlib import Path

import torch

import autosteer_interp as asi
from autosteer_interp.evaluate import is_refusal
from autosteer_interp.prompts import Prompt, encode_prompts
from autosteer_interp.steer import AutoSteer

OUT = Path(os.environ.get("TUTORIAL_OUT", "outputs/tutorials"))
N_PAIRS = int(os.environ.get("TUTORIAL_PAIRS", "196"))
MAX_WRAPPED = int(os.environ.get("TUTORIAL_WRAPPED", "512"))  # jailbreak-wrapped pairs for the gate (the default)

model = asi.load_model("smollm2-llava-onevision")
pairs = asi.builtin_pairs()[:N_PAIRS]
steer = AutoSteer.fit(model, pairs, max_wrapped=MAX_WRAPPED, progress=False)
print("layers", steer.layers, "| threshold", steer.threshold, "| epsilon", steer.epsilon)
print("stage seconds:", {k: round(v, 1) for k, v in steer.summary.seconds.items()})

# %% [markdown]
# ## 1 · Inside a trace
# A mixed batch: two harmful requests (from the built-in set), two benign ones, of different lengths.

# %%
harmful = [pairs[0].harmful, pairs[1].harmful]
benign = [Prompt("What is the capital of France?"), Prompt("How do I kill a stuck Python process?")]
batch = harmful + benign
inputs = encode_prompts(model, batch)
with torch.no_grad(), model.trace(**inputs):
    report = steer.apply(model)
    logits = model.lm_head.output.save()
with torch.no_grad():
    plain = model._module(**inputs).logits
for prompt, p, gate in zip(["harmful 1", "harmful 2", *[b.text for b in benign]], report.p_harmful, report.gate):
    print(f"{prompt[:40]:40s} P(harmful)={p:.3f} gate={bool(gate)}")
print("ungated rows identical to the unsteered model:", torch.equal(logits[~report.gate], plain[~report.gate]))

# %% [markdown]
# ## 2 · Inside generation
# Pass the tracer and the number of steps: the gate is decided in the prefill step and the head acts on the
# gated rows at every generated token. `gate_mode="every_step"` would also re-check each new token.

# %%
n = 24
with torch.no_grad(), model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False) as tracer:
    report = steer.apply(model, tracer, steps=n)
    ids = tracer.result.save()
texts = model.tokenizer.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
for i, (text, gate) in enumerate(zip(texts, report.gate)):
    shown = text if i >= len(harmful) else ("<refusal>" if is_refusal(text) else "<answer withheld>")
    print(f"gate={bool(gate)!s:5s} {shown!r}")

# %% [markdown]
# ## 3 · Without nnsight: `generate` and `attach`
# `steer.generate(model, prompts)` batches prompts and returns texts with the per-sample decision.
# `steer.attach(hf_model)` installs the same logic as plain PyTorch hooks for serving with `model.generate`.

# %%
result = steer.generate(model, benign, max_new_tokens=16)
print([round(float(p), 3) for p in result.p_harmful], result.texts)
with steer.attach(model._module), torch.no_grad():
    out = model._module.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
print("hooks and nnsight agree:", torch.equal(out, ids))

# %% [markdown]
# ## 4 · Any padding, cache on or off, chunked prefill
# One gate core serves every backend: each row is decided at its last real prompt token, found from the
# attention mask, and the decision holds for the whole answer. Right padding, `use_cache=False` (every step
# re-runs the whole sequence) and chunked prefill (the prompt arrives in several passes) give the same gates.

# %%
tokenizer = model.tokenizer
tokenizer.padding_side = "right"
right = encode_prompts(model, batch)
tokenizer.padding_side = "left"
short = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
with steer.attach(model._module) as handle, torch.no_grad():
    model._module(**right)
    gates = {"right padding": handle.report.gate.clone()}
    model._module.generate(**inputs, **short, use_cache=False)
    gates["no cache"] = handle.report.gate.clone()
    model._module.generate(**inputs, **short, prefill_chunk_size=8)
    gates["chunked prefill"] = handle.report.gate.clone()
print({name: gate.tolist() == report.gate.tolist() for name, gate in gates.items()})

# %% [markdown]
# ## 5 · Save and load
# One folder: `config.json` (gate mode, base-model fingerprint) plus the parts' own artefacts, `prober/` (its
# layers and the threshold) and `refusal_head/` (ε and `S`), each loadable alone, and `checksums.json` (the
# SHA-256 of every file: an edited threshold or layer is refused on load, and so is another model).

# %%
steer.save(OUT / "autosteer", overwrite=True)
loaded = AutoSteer.load(OUT / "autosteer", model=model)
print(sorted(p.name for p in (OUT / "autosteer").iterdir()), loaded.layers == steer.layers)
print("the prober alone:", asi.SafetyProber.load(OUT / "autosteer" / "prober").layers)
summary = steer.summary
summary.sas.plot(OUT / "03_sas.png", title="SAS of the fitted AutoSteer")
