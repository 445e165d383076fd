"""Generation speed: plain Hugging Face generate vs. AutoSteer (hooks, nnsight) vs. the paper's formulation.

Real SmolLM2 inside LLaVA-OneVision, batch of 8 (4 harmful, 4 benign built-in requests), 32 new tokens
(min_new_tokens=32, so every setting produces exactly the same number of tokens), greedy. The AutoSteer prober is
a logistic probe at layer 22 (``--layers 8,10,...,26``: the default fit's ten layers) fitted on the built-in
pairs, the head a trained-shaped ``S``; what is timed is the steering machinery, not its quality.

* ``hf_generate``: the unsteered model.
* ``autosteer_attach``: :meth:`AutoSteer.attach` (plain PyTorch hooks), ``model.generate``.
* ``autosteer_nnsight``: ``with model.generate(...) as tracer: steer.apply(model, tracer, steps=32)``.
* ``paper_formulation``: the gate as above, but logits computed as ``h (W + eps W S)^T`` with ``W S`` recomputed
  at every step (as the paper's code does).

Each setting is warmed up once, then the settings run round-robin ``--repeats`` times (best time kept), so
drifts of a shared machine hit all of them alike; prints one JSON object per measurement and the ratios.
Targets (issue 12): attach >= 0.98, nnsight >= 0.96 of plain tokens/s.

    python benchmarks/bench_generate.py [--repeats 5] [--dtype bfloat16] [--device cuda] [--model tiny-llava-onevision]

``--dtype`` / ``--device`` cast and move the model (the prober and head stay float32 on the CPU, as after
``fit``: they follow the activations); ``--model`` picks another built-in model (the GPU check uses a tiny one,
since the real SmolLM2 does not travel to the device machine).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosteer_interp.activations import collect_activations  # noqa: E402
from autosteer_interp.architectures import resolve  # noqa: E402
from autosteer_interp.models import load_model  # noqa: E402
from autosteer_interp.prober import ProberConfig, SafetyProber  # noqa: E402
from autosteer_interp.prompts import builtin_pairs, encode_prompts  # noqa: E402
from autosteer_interp.refusal_head import RefusalHead  # noqa: E402
from autosteer_interp.steer import AutoSteer  # noqa: E402

NEW_TOKENS = 32
LAYER = 22


def build_steer(model, layers):
    pairs = builtin_pairs()
    layers = sorted({min(layer, resolve(model).n_layers - 1) for layer in layers})
    harmful = collect_activations(model, [p.harmful for p in pairs], layers, progress=False)
    safe = collect_activations(model, [p.safe for p in pairs], layers, progress=False)
    prober = SafetyProber.fit(harmful, safe, config=ProberConfig(kind="logistic"), layers=layers, model=model)
    head = RefusalHead(prober.d_model, epsilon=0.1)
    with torch.no_grad():
        head.S.add_(0.01 * torch.randn(head.d_model, head.d_model, generator=torch.Generator().manual_seed(0)))
    head.provenance = prober.provenance
    return AutoSteer(prober, head)


def paper_hook(steer, hf_model, report):
    """lm_head forward hook computing h (W + eps W S)^T, W S recomputed every call, on the gated rows."""
    weight = hf_model.lm_head.weight.detach()

    def hook(_module, args, output):
        S = steer.head.S.detach().to(weight.device, weight.dtype)
        steered_weight = weight + steer.epsilon * weight @ S
        logits = args[0] @ steered_weight.T
        gate = report.gate.to(output.device).reshape(-1, *([1] * (output.ndim - 1)))
        return torch.where(gate, logits, output)

    return hf_model.lm_head.register_forward_hook(hook)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="smollm2-llava-onevision")
    parser.add_argument(
        "--layers", default=str(LAYER), help="comma-separated gate layers (the default fit's: 8,10,...,26)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(args.model)
    hf = model._module.to(args.device, getattr(torch, args.dtype))
    steer = build_steer(model, [int(layer) for layer in args.layers.split(",")])
    pairs = builtin_pairs()
    prompts = [p.harmful for p in pairs[:4]] + [p.safe for p in pairs[4:8]]
    inputs = encode_prompts(model, prompts)
    kwargs = dict(
        max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=model.tokenizer.pad_token_id
    )

    def plain():
        with torch.no_grad():
            return hf.generate(**inputs, **kwargs)

    def attach():
        with torch.no_grad(), steer.attach(model):
            return hf.generate(**inputs, **kwargs)

    def nnsight_generation():
        with torch.no_grad(), model.generate(**inputs, **kwargs) as tracer:
            steer.apply(model, tracer, steps=NEW_TOKENS)
            ids = tracer.result.save()
        return ids  # noqa: RET504 (saved nnsight values are read after the block)

    def paper():
        with torch.no_grad(), steer.attach(model) as handle:
            handle._handles.pop().remove()  # keep the gate hooks; the paper's logits replace the input edit
            hook = paper_hook(steer, hf, handle.report)
            try:
                return hf.generate(**inputs, **kwargs)
            finally:
                hook.remove()

    settings = {
        "hf_generate": plain,
        "autosteer_attach": attach,
        "autosteer_nnsight": nnsight_generation,
        "paper_formulation": paper,
    }
    for fn in settings.values():
        fn()  # warm-up
    times = {name: [] for name in settings}
    outputs = {}
    for _ in range(args.repeats):  # round-robin, so slow drifts of the machine hit every setting alike
        for name, fn in settings.items():
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    results = {}
    for name in settings:
        seconds = min(times[name])
        results[name] = len(prompts) * NEW_TOKENS / seconds
        print(
            json.dumps(
                {
                    "bench": "generate",
                    "model": args.model,
                    "dtype": args.dtype,
                    "device": args.device,
                    "setting": name,
                    "gate_layers": list(steer.layers),
                    "batch": len(prompts),
                    "new_tokens": NEW_TOKENS,
                    "seconds": round(seconds, 3),
                    "tokens_per_s": round(results[name], 1),
                    "repeats": args.repeats,
                    "threads": torch.get_num_threads(),
                }
            )
        )
    same = torch.equal(outputs["autosteer_attach"].cpu(), outputs["autosteer_nnsight"].cpu())
    print(
        json.dumps(
            {
                "bench": "generate",
                "method": "comparison",
                "gate_layers": list(steer.layers),
                "model": args.model,
                "dtype": args.dtype,
                "device": args.device,
                "attach_ratio": round(results["autosteer_attach"] / results["hf_generate"], 3),
                "nnsight_ratio": round(results["autosteer_nnsight"] / results["hf_generate"], 3),
                "paper_ratio": round(results["paper_formulation"] / results["hf_generate"], 3),
                "paper_slowdown_vs_attach": round(results["autosteer_attach"] / results["paper_formulation"], 2),
                "attach_and_nnsight_tokens_identical": same,
                "target_attach_ratio": 0.98,
                "target_nnsight_ratio": 0.96,
            }
        )
    )


if __name__ == "__main__":
    main()
