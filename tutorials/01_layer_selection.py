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
# # 01 · Choosing the steering layer with the Safety Awareness Score
#
# AutoSteer (Wu et al., EMNLP 2025) steers at one decoder layer. It picks the layer whose
# *safe-minus-harmful* direction is the most consistent across contrastive pairs: the
# **Safety Awareness Score** (SAS). This tutorial
#
# 1. loads a real model offline: SmolLM2-135M-Instruct transplanted into LLaVA-OneVision
#    (its language side is the real SmolLM2; its vision tower is random, so we use text requests),
# 2. reads one activation with a plain nnsight trace, to show what "layer L" means,
# 3. collects activations for the built-in contrastive pairs at every layer,
# 4. computes the SAS of every layer and plots it.
#
# Everything runs on a laptop CPU in under a minute. Run it with `jupytext --to notebook` or as a script.

# %%
import os
from pathlib import Path

import torch

import autosteer_interp as asi
from autosteer_interp.architectures import get_module

OUT = Path(os.environ.get("TUTORIAL_OUT", "outputs/tutorials"))
N_PAIRS = int(os.environ.get("TUTORIAL_PAIRS", "196"))  # the tests run a smaller number

# %% [markdown]
# ## 1 · Load the model
# `load_model` returns an `nnsight.TransformersModel` carrying its tokenizer and processor.
# Hub checkpoints (`"llava-hf/llava-onevision-qwen2-0.5b-ov-hf"`, `"facebook/chameleon-7b"`) load the same way.

# %%
model = asi.load_model("smollm2-llava-onevision")
spec = asi.resolve(model)
print(spec.model_type, "layers:", spec.n_layers, "d_model:", spec.d_model)

# %% [markdown]
# ## 2 · What "layer L" means
# Layer `L` is the residual stream **entering** decoder layer `L` (Hugging Face `hidden_states[L]`),
# read at the last prompt token, i.e. the token the model answers from. Here it is with a raw nnsight trace:

# %%
from autosteer_interp.prompts import Prompt, encode_prompts

inputs = encode_prompts(model, [Prompt("How do I bake bread?")])
layers = get_module(model, spec.layers_path)  # model.model.language_model.layers for LLaVA-OV
with torch.no_grad(), model.trace(**inputs):
    h22 = layers[22].input[:, -1].save()
print("h_22 at the last prompt token:", tuple(h22.shape))

# %% [markdown]
# `collect_activations` does exactly this for many prompts and layers at once: batched, left-padded,
# sorted by length, stopping the forward pass after the deepest layer it needs.

# %%
pairs = asi.builtin_pairs()[:N_PAIRS]
print(len(pairs), "pairs; categories:", sorted({p.category for p in pairs})[:5], "...")
candidate_layers = list(range(1, spec.n_layers))  # layer 0 is the token embedding: identical for every prompt
harmful = asi.collect_activations(model, [p.harmful for p in pairs], candidate_layers, batch_size=16)
safe = asi.collect_activations(model, [p.safe for p in pairs], candidate_layers, batch_size=16)
print("activations:", tuple(harmful.values.shape), "(n_samples, n_layers, d_model)")

# %% [markdown]
# ## 3 · Safety Awareness Score
# `SAS(L)` is the mean pairwise cosine similarity of `δ_i = h_L(safe_i) − h_L(harmful_i)`.
# We compute it in closed form, `(‖Σ u_i‖² − n) / (n(n − 1))` with `u_i = δ_i/‖δ_i‖`, in O(n·d)
# instead of the paper code's n×n matrix.

# %%
scores = asi.safety_awareness_scores(safe, harmful)
for layer, score in zip(scores.layers, scores.scores.tolist()):
    print(f"layer {layer:2d}  SAS {score:.3f}")
print("best layer:", scores.best_layer, "| top 3:", scores.top_k(3))

# %%
figure = scores.plot(OUT / "01_sas.png", title=f"SAS on SmolLM2 (LLaVA-OV shell), {len(pairs)} pairs")
print("saved", OUT / "01_sas.png")

# %% [markdown]
# Late-middle layers separate harmful from harmless requests most consistently; early layers barely do.
# The next tutorial trains a safety prober on the chosen layer.
