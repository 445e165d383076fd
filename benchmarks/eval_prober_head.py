"""Acceptance run for the prober and the refusal head on the real SmolLM2 inside LLaVA-OneVision.

VLSafe pairs (first 1600 to fit, last 400 to test; text only): SAS over layers 1..29 on the fitting pairs picks the
layer; an MLP prober (the paper's) and a scikit-learn logistic baseline are fitted there, with and without our
borderline-benign requests (training part) as extra negatives; all are scored on the 400 test pairs and on the
held-out borderline part. The refusal head is fitted on the 1600 harmful requests (cache + fit timed) and, always
on, judged by the refusal-substring judge on the 400 held-out harmful requests (greedy, 32 new tokens), beside the
unsteered model.

Prints one JSON object per measurement.

    python benchmarks/eval_prober_head.py [--data ../shared/data] [--out outputs/eval_prober_head]
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

from autosteer_interp.activations import collect_activations  # noqa: E402
from autosteer_interp.architectures import resolve  # noqa: E402
from autosteer_interp.evaluate import generate_texts, refusal_rate  # noqa: E402
from autosteer_interp.models import load_model  # noqa: E402
from autosteer_interp.prober import ProberConfig, SafetyProber  # noqa: E402
from autosteer_interp.prompts import builtin_borderline, load_vlsafe  # noqa: E402
from autosteer_interp.refusal_head import RefusalHead, RefusalHeadConfig  # noqa: E402
from autosteer_interp.sas import safety_awareness_scores  # noqa: E402


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("AUTOSTEER_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--out", default="outputs/eval_prober_head")
    parser.add_argument("--n-fit", type=int, default=1600)
    parser.add_argument("--n-test", type=int, default=400)
    args = parser.parse_args()
    out = Path(args.out)

    pairs = load_vlsafe(Path(args.data) / "vlsafe")
    fit_pairs, test_pairs = pairs[: args.n_fit], pairs[-args.n_test :]
    model = load_model("smollm2-llava-onevision")
    layers = list(range(1, resolve(model).n_layers))

    start = time.perf_counter()
    fit_harm = collect_activations(model, [p.harmful for p in fit_pairs], layers, batch_size=16, progress=False)
    fit_safe = collect_activations(model, [p.safe for p in fit_pairs], layers, batch_size=16, progress=False)
    scores = safety_awareness_scores(fit_safe, fit_harm)
    layer = scores.best_layer
    emit(
        step="sas",
        n_pairs=len(fit_pairs),
        best_layer=layer,
        sas=round(float(scores.scores.max()), 4),
        seconds=round(time.perf_counter() - start, 1),
    )

    test_harm = collect_activations(model, [p.harmful for p in test_pairs], [layer], progress=False)
    test_safe = collect_activations(model, [p.safe for p in test_pairs], [layer], progress=False)
    border_train = collect_activations(model, builtin_borderline("train"), [layer], progress=False)
    border_test = collect_activations(model, builtin_borderline("test"), [layer], progress=False)

    for kind in ("mlp", "logistic"):
        for extra in (False, True):
            prober = SafetyProber.fit(
                fit_harm.at(layer),
                fit_safe.at(layer),
                config=ProberConfig(kind=kind),
                layers=layer,
                extra_negatives=border_train if extra else None,
                model=model,
            )
            metrics = prober.evaluate(test_harm, test_safe)
            border_flagged = float(prober.predict(border_test.at(layer)).float().mean())
            emit(
                step="prober",
                kind=kind,
                borderline_negatives=extra,
                layers=layer,
                test_accuracy=round(metrics.accuracy, 4),
                test_auroc=round(metrics.auroc, 4),
                tpr=round(metrics.tpr, 4),
                fpr=round(metrics.fpr, 4),
                threshold=metrics.threshold,
                borderline_heldout_flagged=round(border_flagged, 4),
                n_borderline_heldout=len(border_test.values),
                best_epoch=prober.history.best_epoch,
            )
            if kind == "mlp" and extra:
                prober.save(out / "prober", overwrite=True)

    start = time.perf_counter()
    head = RefusalHead.fit(model, [p.harmful for p in fit_pairs], RefusalHeadConfig(), progress=False)
    fit_seconds = time.perf_counter() - start
    head.save(out / "refusal_head", overwrite=True)
    emit(
        step="refusal_head_fit",
        n_prompts=len(fit_pairs),
        epochs=head.config.epochs,
        cache_and_fit_seconds=round(fit_seconds, 1),
        loss_per_epoch=[round(x, 4) for x in head.history],
    )

    harmful_test = [p.harmful for p in test_pairs]
    safe_test = [p.safe for p in test_pairs]
    for name, steer in (("unsteered", None), ("head_always_on", head)):
        start = time.perf_counter()
        harmful_texts = generate_texts(model, harmful_test, steer)
        safe_texts = generate_texts(model, safe_test[:100], steer)
        emit(
            step="generation",
            setting=name,
            new_tokens=32,
            refusal_on_heldout_harmful=round(refusal_rate(harmful_texts), 4),
            n_harmful=len(harmful_texts),
            refusal_on_safe_counterparts=round(refusal_rate(safe_texts), 4),
            n_safe=len(safe_texts),
            seconds=round(time.perf_counter() - start, 1),
        )


if __name__ == "__main__":
    main()
