"""Refusal-head training: our cached procedure vs. the paper's, same prompts, same epochs, same run.

Ours: run the frozen model ONCE over prompt + refusal target (nnsight trace, LM-head inputs at the target
positions cached), then fit ``S`` on the cache with ``logits = (h + eps h S^T) W^T``.
Paper's procedure: every epoch, every batch runs the full forward pass of the frozen model again and computes
``logits = h (W + eps W S)^T``, recomputing ``W S`` (``[V, d] x [d, d]``) at every step, then back-propagates
into ``S``. To compare final losses like for like, both use cross-entropy on the target tokens only (the
paper's code also trained on the prompt tokens) and the same optimiser, learning rate and batch order.

Model: the real SmolLM2 inside LLaVA-OneVision; prompts: the built-in harmful requests (repeated to 200).
Prints one JSON object per measurement. Target (issue 3): ratio >= 5.

    python benchmarks/bench_refusal_head.py [--prompts 200 --epochs 5]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosteer_interp.fit import _target_ids  # noqa: E402
from autosteer_interp.models import load_model  # noqa: E402
from autosteer_interp.prompts import builtin_pairs, encode_prompts  # noqa: E402
from autosteer_interp.refusal_head import RefusalHead, RefusalHeadConfig  # noqa: E402


def paper_procedure(model, prompts, config, prompts_per_step):
    """Full forward of the frozen model per batch and epoch; W + eps W S recomputed every step."""
    hf = model._module
    weight = hf.lm_head.weight.detach()
    S = nn.Parameter(torch.eye(weight.shape[1]))
    optimiser = torch.optim.AdamW([S], lr=config.learning_rate, weight_decay=0.0)
    targets = _target_ids(model, config.target)
    n_targets = len(targets)
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(len(prompts), generator=generator).tolist()
        total, count = 0.0, 0
        for start in range(0, len(order), prompts_per_step):
            batch = [prompts[i] for i in order[start : start + prompts_per_step]]
            inputs = encode_prompts(model, batch)
            ids = torch.cat([inputs["input_ids"], targets.expand(len(batch), -1)], 1)
            mask = torch.cat([inputs["attention_mask"], torch.ones(len(batch), n_targets, dtype=torch.long)], 1)
            with torch.no_grad():  # the base model is frozen
                hidden = hf.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -n_targets - 1 : -1]
            steered_weight = weight + config.epsilon * weight @ S  # the paper's form, every step
            logits = hidden @ steered_weight.T
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.repeat(len(batch)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        losses.append(total / count)
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    model = load_model("smollm2-llava-onevision")
    harmful = [p.harmful for p in builtin_pairs()]
    prompts = (harmful * (args.prompts // len(harmful) + 1))[: args.prompts]
    config = RefusalHeadConfig(epochs=args.epochs)
    tokens_per_prompt = len(_target_ids(model, config.target))
    prompts_per_step = max(1, config.batch_size // tokens_per_prompt)  # same tokens per optimiser step

    start = time.perf_counter()
    head = RefusalHead.fit(model, prompts, config, progress=False)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    paper_losses = paper_procedure(model, prompts, config, prompts_per_step)
    paper_s = time.perf_counter() - start

    common = {
        "bench": "refusal_head",
        "model": "smollm2-llava-onevision",
        "n_prompts": args.prompts,
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
    }
    print(
        json.dumps(
            {
                **common,
                "method": "cached_lm_head_inputs",
                "seconds": round(ours_s, 1),
                "final_loss": round(head.history[-1], 4),
            }
        )
    )
    print(
        json.dumps(
            {
                **common,
                "method": "paper_full_forward_every_step",
                "seconds": round(paper_s, 1),
                "final_loss": round(paper_losses[-1], 4),
            }
        )
    )
    print(json.dumps({**common, "method": "comparison", "ratio": round(paper_s / ours_s, 2), "target_ratio": 5}))


if __name__ == "__main__":
    main()
