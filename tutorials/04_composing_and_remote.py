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
# # 04 · Composing AutoSteer with activation patching, and running it on NDIF
#
# `steer.apply(model)` is an ordinary nnsight intervention, so it composes with your own reads and patches in
# the same trace (in execution order). The second half shows the remote pattern: `prepare_remote` turns an
# `AutoSteer` into a `RemoteSteer` whose code and tensors travel with a `model.trace(..., remote=True)` request,
# and reports how big that request is. No NDIF server is reachable from where this tutorial is tested, so the
# remote part runs nnsight's offline dry run, `remote="local"`: it serializes the request exactly as for NDIF,
# deserializes it with local modules hidden, and runs it here.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import autosteer_interp as asi
from autosteer_interp.prompts import Prompt, encode_prompts
from autosteer_interp.remote import head_transport_bytes, prepare_remote
from autosteer_interp.steer import AutoSteer

OUT = Path(os.environ.get("TUTORIAL_OUT", "outputs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
N_PAIRS = int(os.environ.get("TUTORIAL_PAIRS", "196"))

model = asi.load_model("smollm2-llava-onevision")
pairs = asi.builtin_pairs()[:N_PAIRS]
# the gate here is trained on the pairs only (no built-in gate data, no jailbreak-wrapped copies): fast, and enough
# to illustrate; tutorial 03 fits the full gate
steer = AutoSteer.fit(
    model, pairs, candidate_layers=[8, 12, 16, 20], builtin_gate_data=False, wrap_pairs=False, progress=False
)
layer = steer.layers[0]
print("gate reads layer", layer, "| threshold", round(steer.threshold, 3))

# %% [markdown]
# ## 1 · Activation patching and AutoSteer in one trace
# Row 0 is a harmful request, row 1 a benign one. Before the gate reads layer L, we patch row 0's last-token
# residual stream into row 1 (the output of layer L-1 is the input of layer L). The gate then judges the patched
# row by the harmful representation: a causal check that the prober reads what the patched state carries.

# %%
batch = [pairs[0].harmful, Prompt("What is the capital of France?")]
inputs = encode_prompts(model, batch)
decoder_layers = model.model.language_model.layers
with torch.no_grad(), model.trace(**inputs):
    clean = steer.apply(model)
with torch.no_grad(), model.trace(**inputs):
    resid = decoder_layers[layer - 1].output
    resid[1, -1] = resid[0, -1]  # the user's patch: harmful state into the benign row
    patched = steer.apply(model)  # the gate reads layer L after the patch
    logits = model.lm_head.output.save()
for name, report in (("clean", clean), ("patched", patched)):
    print(f"{name:8s} P(harmful) = {[round(float(p), 3) for p in report.p_harmful]}, gate = {report.gate.tolist()}")
print("next token of each row:", [model.tokenizer.decode(token) for token in logits[:, -1].argmax(-1)])

# %% [markdown]
# ## 2 · The remote pattern (dry run)
# `prepare_remote(steer, model, transport=...)` builds the `RemoteSteer` and registers `autosteer_interp` with
# nnsight, so its classes travel by value even when the package is pip-installed. The gate travels as a
# `torch.export` program; the refusal head's `S` (d × d) as float32, float16, or low rank `S ≈ I + U Vᵀ`.
# A 7B model (d = 3584) has a 51 MB head in float32; these are the sizes for this model (d = 576):

# %%
reports = {}
for transport, rank in (("float32", None), ("float16", None), ("low_rank", 64)):
    remote_steer, reports[transport] = prepare_remote(steer, model, transport=transport, rank=rank)
    r = reports[transport]
    print(
        f"{transport:8s} head {r.head_bytes / 1e6:6.2f} MB | whole request part {r.payload_bytes / 1e6:6.2f} MB"
        f" | max |dS| {r.max_abs_error:.2e} | relative {r.relative_error:.2e}"
    )
print(
    "7B head: float32",
    head_transport_bytes(3584, "float32") / 1e6,
    "MB; rank 256",
    head_transport_bytes(3584, "low_rank", 256) / 1e6,
    "MB",
)

# %% [markdown]
# The dry run: same code as for NDIF, with `remote="local"`. With float32 transport the result is bit-identical
# to the local `steer.apply(model)`.

# %%
remote_steer, _ = prepare_remote(steer, model)
with torch.no_grad(), model.trace(**inputs, remote="local"):
    remote_report = remote_steer.apply(model)
    remote_logits = model.lm_head.output.save()
with torch.no_grad(), model.trace(**inputs):
    local_report = steer.apply(model)
    local_logits = model.lm_head.output.save()
print("gate", remote_report.gate.tolist(), "| identical logits:", torch.equal(remote_logits, local_logits))

# %% [markdown]
# On NDIF (not run here: no server is reachable from the test machines) the only changes are the model, which
# must be one NDIF serves, and `remote=True` (with an NDIF API key configured for nnsight):
#
# ```python
# from nnsight import LanguageModel
# model = LanguageModel("meta-llama/Llama-3.1-8B-Instruct")        # meta weights locally, real ones on NDIF
# steer = AutoSteer.load("artifacts/llama-8b")                      # fitted on the same checkpoint
# remote_steer, report = prepare_remote(steer, model, transport="float16")   # 51 MB -> 26 MB for d = 3584
# with model.trace(prompts, remote=True):
#     gate = remote_steer.apply(model)
#     logits = model.lm_head.output.save()
# ```
#
# How much rank does the head need? The singular values of `S - I` decide: truncated SVD is the best rank-k
# approximation, so the relative error at rank k is the norm of the singular values left out (the same number
# `prepare_remote` reports).

# %%
sigma = torch.linalg.svdvals(steer.head.S.detach().double() - torch.eye(steer.head.d_model, dtype=torch.float64))
ranks = [1, 2, 4, 8, 16, 32, 64, 128, 256, 575]
errors = [float(sigma[rank:].norm() / sigma.norm()) for rank in ranks]
print(
    "rank 64 from the report:", f"{reports['low_rank'].relative_error:.2e}", "| from the spectrum:", f"{errors[6]:.2e}"
)
plt.figure(figsize=(5, 3))
plt.loglog(ranks, [max(e, 1e-8) for e in errors], marker="o")
plt.xlabel("rank of U Vᵀ")
plt.ylabel("‖S_sent − S‖ / ‖S − I‖")
plt.title("Low-rank transport of the refusal head")
plt.tight_layout()
plt.savefig(OUT / "04_low_rank_error.png")
print({rank: f"{error:.2e}" for rank, error in zip(ranks, errors)})
