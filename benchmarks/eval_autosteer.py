"""Acceptance run for AutoSteer on the real SmolLM2 inside LLaVA-OneVision (VLSafe, text only).

``AutoSteer.fit`` on all but the last 400 deduplicated VLSafe pairs (1398 of 1798; SAS over layers 1..29, the
paper's MLP prober with our borderline-benign negatives, refusal head), then greedy generation (32 new tokens)
on the last 400 pairs: refusal rate (substring judge) on the harmful requests and on their safe counterparts for
Orig (unsteered), Steer (refusal head always on) and AutoSteer (gated per sample). Also the held-out
borderline-benign requests.

Prints one JSON object per measurement and saves the fitted AutoSteer.

    python benchmarks/eval_autosteer.py [--data ../shared/data] [--out outputs/eval_autosteer]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autosteer_interp.evaluate import generate_texts, refusal_rate  # noqa: E402
from autosteer_interp.models import load_model  # noqa: E402
from autosteer_interp.prompts import builtin_borderline, load_vlsafe  # noqa: E402
from autosteer_interp.steer import AutoSteer  # noqa: E402

NEW_TOKENS = 32


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("AUTOSTEER_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--out", default="outputs/eval_autosteer")
    parser.add_argument("--steer-rows", type=int, default=100, help="prompts per set for the always-on row")
    args = parser.parse_args()
    out = Path(args.out)

    pairs = load_vlsafe(Path(args.data) / "vlsafe")
    fit_pairs, test_pairs = pairs[:-400], pairs[-400:]  # disjoint by text: load_vlsafe deduplicates
    model = load_model("smollm2-llava-onevision")
    start = time.perf_counter()
    steer = AutoSteer.fit(model, fit_pairs, progress=False)
    steer.save(out / "autosteer", overwrite=True)
    summary = steer.summary
    print(
        json.dumps(
            {
                "step": "fit",
                "seconds": round(time.perf_counter() - start, 1),
                "layer": summary.layer,
                "threshold": steer.threshold,
                "stage_seconds": {k: round(v, 1) for k, v in summary.seconds.items()},
                "head_loss": [round(x, 4) for x in summary.head_loss],
            }
        ),
        flush=True,
    )

    sets = {
        "vlsafe_harmful": [p.harmful for p in test_pairs],
        "vlsafe_safe": [p.safe for p in test_pairs],
        "borderline_heldout": builtin_borderline("test"),
    }
    for set_name, prompts in sets.items():
        start = time.perf_counter()
        result = steer.generate(model, prompts, batch_size=16, max_new_tokens=NEW_TOKENS)
        print(
            json.dumps(
                {
                    "step": "generation",
                    "row": "AutoSteer",
                    "set": set_name,
                    "n": len(prompts),
                    "refusal_rate": round(refusal_rate(result.texts), 4),
                    "gate_rate": round(float(result.gate.float().mean()), 4),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            ),
            flush=True,
        )
        orig = generate_texts(model, prompts, max_new_tokens=NEW_TOKENS)
        print(
            json.dumps(
                {
                    "step": "generation",
                    "row": "Orig",
                    "set": set_name,
                    "n": len(prompts),
                    "refusal_rate": round(refusal_rate(orig), 4),
                }
            ),
            flush=True,
        )
        identical = [a == b for a, b, g in zip(result.texts, orig, result.gate.tolist()) if not g]
        print(
            json.dumps(
                {
                    "step": "utility",
                    "set": set_name,
                    "ungated_rows": len(identical),
                    "ungated_outputs_identical_to_orig": round(sum(identical) / max(1, len(identical)), 4),
                }
            ),
            flush=True,
        )
        subset = prompts[: args.steer_rows]
        always = generate_texts(model, subset, steer.head, max_new_tokens=NEW_TOKENS)
        print(
            json.dumps(
                {
                    "step": "generation",
                    "row": "Steer (always on)",
                    "set": set_name,
                    "n": len(subset),
                    "refusal_rate": round(refusal_rate(always), 4),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
