"""collect_activations (nnsight, batched) vs. one prompt at a time through Hugging Face output_hidden_states.

Model: the real SmolLM2-135M-Instruct inside LLaVA-OneVision (offline). Prompts: 256 requests from the built-in
contrastive pairs (both sides). Both methods return the last-prompt-token residual stream at every layer. Each
method runs in its own process so its peak RSS is its own.

Prints one JSON object per measurement. Target (issue 2): ratio >= 3.

    python benchmarks/bench_collect.py [--prompts 256 --batch-size 16]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MODEL = "smollm2-llava-onevision"


def prompts(n):
    from autosteer_interp.prompts import builtin_pairs

    pairs = builtin_pairs()
    texts = [p.harmful for p in pairs] + [p.safe for p in pairs]
    return (texts * (n // len(texts) + 1))[:n]


def run_ours(n, batch_size):
    from autosteer_interp.activations import collect_activations
    from autosteer_interp.models import load_model

    model = load_model(MODEL)
    loaded_mib = _peak_rss_mib()
    data = prompts(n)
    collect_activations(model, data[:batch_size], batch_size=batch_size, progress=False)  # warm-up
    start = time.perf_counter()
    acts = collect_activations(model, data, batch_size=batch_size, progress=False)
    return time.perf_counter() - start, tuple(acts.values.shape), loaded_mib


def run_baseline(n, batch_size):
    import torch

    from autosteer_interp.activations import last_prompt_positions
    from autosteer_interp.models import load_model
    from autosteer_interp.prompts import encode_prompts

    model = load_model(MODEL)
    loaded_mib = _peak_rss_mib()
    hf = model._module
    data = prompts(n)

    def one(prompt):
        inputs = encode_prompts(model, [prompt])
        with torch.no_grad():
            states = hf(**inputs, output_hidden_states=True).hidden_states
        position = last_prompt_positions(inputs["input_ids"], inputs["attention_mask"])[0]
        return torch.stack([h[0, position] for h in states[:-1]])  # inputs of decoder layers 0..n-1

    one(data[0])  # warm-up
    start = time.perf_counter()
    out = torch.stack([one(p) for p in data])
    return time.perf_counter() - start, tuple(out.shape), loaded_mib


def _peak_rss_mib():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def child(method, n, batch_size):
    seconds, shape, loaded_mib = (run_ours if method == "ours" else run_baseline)(n, batch_size)
    # Loading the model dominates memory: report the peak after loading it and the overall peak separately.
    print(
        json.dumps(
            {"seconds": seconds, "shape": shape, "peak_rss_after_load_mib": loaded_mib, "peak_rss_mib": _peak_rss_mib()}
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--child", choices=["ours", "baseline"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.prompts, args.batch_size)
        return

    results = {}
    for method in ("baseline", "ours"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            method,
            "--prompts",
            str(args.prompts),
            "--batch-size",
            str(args.batch_size),
        ]
        output = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(output.strip().splitlines()[-1])
        r = results[method]
        name = "hf_output_hidden_states_one_by_one" if method == "baseline" else "collect_activations_nnsight"
        print(
            json.dumps(
                {
                    "bench": "collect",
                    "model": MODEL,
                    "method": name,
                    "n_prompts": args.prompts,
                    "batch_size": 1 if method == "baseline" else args.batch_size,
                    "layers": r["shape"][1],
                    "seconds": round(r["seconds"], 2),
                    "samples_per_s": round(args.prompts / r["seconds"], 1),
                    "peak_rss_after_load_mib": r["peak_rss_after_load_mib"],
                    "peak_rss_mib": r["peak_rss_mib"],
                }
            )
        )
    print(
        json.dumps(
            {
                "bench": "collect",
                "method": "comparison",
                "ratio": round(results["baseline"]["seconds"] / results["ours"]["seconds"], 2),
                "target_ratio": 3,
            }
        )
    )


if __name__ == "__main__":
    main()
