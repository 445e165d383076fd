"""SAS: our closed form vs. the n x n cosine matrix of the paper's code, on the same synthetic activations.

The baseline is the paper's procedure (scikit-learn ``cosine_similarity`` on the difference vectors, then the
mean of the upper triangle), in float64 as the paper's code effectively runs it (its activation files are
float16, which scikit-learn upcasts to float64); a float32 variant is timed too. Our closed form reads the
float32 activations once, in cache-sized chunks.

Prints one JSON object per measurement. Target (issue 2): speedup >= 50, max_abs_diff <= 1e-5.

    python benchmarks/bench_sas.py [--pairs 3000 --d-model 3584 --layers 6]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosteer_interp.sas import safety_awareness_scores  # noqa: E402
from tests.reference.paper_formulas import pairwise_sas  # noqa: E402


def best_of(repeats, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--d-model", type=int, default=3584)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    shape = (args.pairs, args.layers, args.d_model)
    harmful = torch.randn(shape, generator=generator)
    direction = torch.randn(args.layers, args.d_model, generator=generator)
    strength = torch.linspace(0.02, 0.2, args.layers)[:, None]  # layers differ in consistency
    safe = harmful + strength * direction + torch.randn(shape, generator=generator) * 0.05

    ours_s, ours = best_of(args.repeats, lambda: safety_awareness_scores(safe, harmful).scores)
    paper_s, paper = best_of(1, lambda: pairwise_sas(safe, harmful, torch.float64))
    paper32_s, paper32 = best_of(1, lambda: pairwise_sas(safe, harmful, torch.float32))
    common = {
        "bench": "sas",
        "n_pairs": args.pairs,
        "d_model": args.d_model,
        "n_layers": args.layers,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps({**common, "method": "closed_form", "seconds": round(ours_s, 4)}))
    print(json.dumps({**common, "method": "paper_pairwise_float64", "seconds": round(paper_s, 4)}))
    print(json.dumps({**common, "method": "paper_pairwise_float32", "seconds": round(paper32_s, 4)}))
    print(
        json.dumps(
            {
                **common,
                "method": "comparison",
                "speedup": round(paper_s / ours_s, 1),
                "speedup_vs_float32_baseline": round(paper32_s / ours_s, 1),
                "max_abs_diff": float((ours - paper).abs().max()),
                "best_layer_agrees": int(ours.argmax()) == int(paper.argmax()),
                "target_speedup": 50,
                "target_max_abs_diff": 1e-5,
            }
        )
    )


if __name__ == "__main__":
    main()
