"""Gate robustness on the real SmolLM2 (or any model): the paper's recipe against our gate options (issue 7).

Every recipe is trained on the first 1600 VLSafe pairs (plus, depending on the recipe, the built-in gate pairs,
their jailbreak-wrapped copies and borderline-benign negatives, all TRAINING splits) through the library's own
``GateData`` + ``train_gate`` (what ``AutoSteer.fit`` runs), and evaluated with ``RobustnessReport`` on families
nothing in fitting or calibration saw: the last 400 VLSafe pairs (in-distribution), the built-in gate pairs'
TEST split (other phrasing), both inside TEST wrappers, and the held-out borderline-benign requests.

Activations at every layer are computed once per prompt text and cached (float16) under ``--cache``.
Prints one JSON object per recipe and a markdown table.

    python benchmarks/eval_gate.py [--data ../shared/data] [--cache outputs/gate_cache]
    python benchmarks/eval_gate.py --model llava-hf/llava-onevision-qwen2-7b-ov-hf --dtype bfloat16 \
        --device-map auto --recipes 0,3                                   # another model, e.g. on a GPU
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

import torch  # noqa: E402
from activation_store import sas_of, vlsafe_store  # noqa: E402

from autosteer_interp.gate import GateData, train_gate  # noqa: E402
from autosteer_interp.models import load_model  # noqa: E402
from autosteer_interp.prober import ProberConfig  # noqa: E402
from autosteer_interp.prompts import builtin_borderline, load_vlsafe  # noqa: E402
from autosteer_interp.refusal_head import RefusalHead  # noqa: E402
from autosteer_interp.robustness import GateFamily, RobustnessReport, gate_robustness, robustness_families  # noqa: E402
from autosteer_interp.steer import AutoSteer  # noqa: E402

RECIPES = {
    # name: (GateData options, probe layer count, ProberConfig, calibrate_fpr)
    "paper: VLSafe pairs, best SAS layer, MLP, tau 0.5": (dict(builtin=False, wrap=False), 1, {}, None),
    "paper + borderline negatives": (dict(builtin=False, wrap=False, borderline=True), 1, {}, None),
    "ours: + gate pairs + wrappers + borderline, MLP, 1 layer": (dict(), 1, {}, None),
    "ours: same, MLP, top-3 layers concat": (dict(), 3, {}, None),
    "ours: same, MLP, top-5 layers concat": (dict(), 5, {}, None),
    "ours: same, MLP, top-5 layers mean": (dict(), 5, {"pool": "mean"}, None),
    "ours: same, logistic, top-3 layers": (dict(), 3, {"kind": "logistic"}, None),
    "ours: same, linear, top-3 layers": (dict(), 3, {"kind": "linear"}, None),
    "ours: same, MLP, top-3, balanced classes": (dict(), 3, {"balance_classes": True}, None),
    "ours: same, MLP, top-3, calibrated FPR 3%": (dict(), 3, {}, 0.03),
}


def every_step_run(model, prober, families, n, tokens):
    """The every-step gate on the first ``n`` requests of each family (greedy generation of ``tokens``).

    The flagged share does not depend on the refusal head (once a row is flagged it stays flagged), so an
    untrained head (S = I) stands in for the fitted one.
    """
    steer = AutoSteer(prober, RefusalHead(prober.d_model), gate_mode="every_step")
    subset = {
        name: GateFamily(f.prompts[:n], f.harmful, f.groups[:n] if f.groups else None) for name, f in families.items()
    }
    start = time.perf_counter()
    report = gate_robustness(model, steer, subset, label="every step", every_step_tokens=tokens)
    print(
        json.dumps(
            {
                "every_step": {r.name: [round(r.flagged, 4), round(r.flagged_every_step, 4)] for r in report.families},
                "n_per_family": n,
                "tokens": tokens,
                "seconds": round(time.perf_counter() - start, 1),
            }
        ),
        flush=True,
    )
    print(report.to_markdown(), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("AUTOSTEER_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--cache", default="outputs/gate_cache")
    parser.add_argument("--recipes", help="comma-separated recipe indices (default: all)")
    parser.add_argument("--out", default="outputs/eval_gate")
    parser.add_argument("--every-step", type=int, help="recipe index to also run with the every-step gate")
    parser.add_argument("--every-step-n", type=int, default=150, help="requests per family for the every-step run")
    parser.add_argument("--every-step-tokens", type=int, default=32)
    parser.add_argument("--model", default="smollm2-llava-onevision", help="built-in name, hub id or checkpoint dir")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device-map", help="passed to from_pretrained for hub checkpoints (e.g. auto)")
    args = parser.parse_args()
    cache, out = Path(args.cache), Path(args.out)
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    pairs = load_vlsafe(Path(args.data) / "vlsafe")
    fit_pairs, test_pairs = pairs[:-400], pairs[-400:]  # disjoint by text: load_vlsafe deduplicates
    extra = {"device_map": args.device_map} if args.device_map else {}
    model = load_model(args.model, dtype=getattr(torch, args.dtype), **extra)
    store = vlsafe_store(model, args.model, pairs, cache)
    sas = sas_of(store, fit_pairs)

    families = robustness_families(test_pairs)
    chosen = list(RECIPES.items())
    if args.recipes:
        chosen = [chosen[int(i)] for i in args.recipes.split(",")]
    rows, probers = [], []
    for name, (options, k, config_fields, fpr) in chosen:
        options = dict(options)
        borderline = options.pop("borderline", False)
        negatives = builtin_borderline("train") if borderline else None
        data = GateData.build(fit_pairs, extra_negatives=negatives, **options)
        layers = sorted(sas.top_k(k))
        start = time.perf_counter()
        features = {part_name: store.get(part.all_prompts(fit_pairs), layers) for part_name, part in data.parts.items()}
        prober, validation = train_gate(features, layers, ProberConfig(**config_fields), fpr)
        seconds = time.perf_counter() - start
        probabilities = {
            family_name: prober.predict_proba(store.get(family.prompts, layers))
            for family_name, family in families.items()
        }
        report = RobustnessReport.from_probabilities(probabilities, families, prober.threshold, name)
        rows.append(report)
        print(
            json.dumps(
                {
                    "recipe": name,
                    "layers": layers,
                    "threshold": round(prober.threshold, 4),
                    "train_seconds": round(seconds, 1),
                    "validation": {k: round(v, 4) for k, v in validation.to_dict().items() if isinstance(v, float)},
                    "flagged": {r.name: round(r.flagged, 4) for r in report.families},
                    "wrapped_harmful_by_family": report.families[2].by_group,
                    "gate_data": data.counts(),
                }
            ),
            flush=True,
        )
        report.to_json(out / f"recipe_{len(rows)}.json")
        probers.append(prober)
    if args.every_step is not None:
        every_step_run(model, probers[args.every_step], families, args.every_step_n, args.every_step_tokens)
    names = [r.name for r in rows[0].families]
    print("\n| recipe | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for report in rows:
        print(f"| {report.label} | " + " | ".join(f"{r.flagged:.1%}" for r in report.families) + " |")


if __name__ == "__main__":
    main()
