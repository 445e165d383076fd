"""Reproduce AutoSteer's main table (Wu et al., 2025) on LLaVA-OneVision-7B or Chameleon-7B, with our library.

The paper's settings: SAS over candidate layers every 4 (4, 8, ...), the MLP prober (d -> 64 -> 2) at the best layer,
threshold tau = 0.5, refusal head with epsilon = 0.1, trained on the VLSafe training pairs; evaluation by attack
success rate (refusal substrings) on the VLSafe test requests and the ToViLaG sets, and over-refusal on benign
requests. See docs/reproduction.md for the data layout, the commands and where we deliberately differ.

    # GPU, hub access, the AutoSteer release data under DATA (see docs/reproduction.md)
    python benchmarks/reproduce_paper.py --model llava-hf/llava-onevision-qwen2-7b-ov-hf \\
        --vlsafe-train DATA/VLSafe/train --harmful vlsafe_test=DATA/VLSafe/test.jsonl \\
        --harmful tovilag=DATA/ToViLaG/mono_toxic.jsonl --image-dir DATA/images --out runs/llava-ov-7b

    # CPU smoke test of the same code path (tiny random model, built-in pairs; seconds)
    python benchmarks/reproduce_paper.py --dry-run --out /tmp/reproduce-dry

Prints one JSON line per stage and writes report.json / report.md / report.png and the fitted AutoSteer to --out.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "0")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autosteer_interp.errors import AutosteerError, InvalidInputError  # noqa: E402
from autosteer_interp.evaluate import EvalSet, evaluate  # noqa: E402
from autosteer_interp.gate import GateWeights  # noqa: E402
from autosteer_interp.prober import ProberConfig  # noqa: E402
from autosteer_interp.prompts import (  # noqa: E402
    builtin_borderline,
    builtin_pairs,
    load_queries,
    load_tovilag,
    load_vlsafe,
)

PAPER = {"layer_step": 4, "epsilon": 0.1, "threshold": 0.5, "new_tokens": 128}
"""The paper's settings (Section 4 and the public code)."""


def _named(spec: str) -> tuple[str, Path]:
    name, _, path = spec.rpartition("=")
    return name or Path(path).stem, Path(path)


def _load_set(spec: str, kind: str, image_dir: Path | None) -> EvalSet:
    """``[NAME=]FILE.jsonl``: ToViLaG files (field ``image_pth``) or plain ``query`` files (field ``image``)."""
    name, path = _named(spec)
    if not path.is_file():
        raise InvalidInputError(f"--{kind} {spec!r}: {path} is not a file.")
    first = path.read_text(encoding="utf-8").lstrip().split("\n", 1)[0]
    prompts = load_tovilag(path, image_dir) if '"image_pth"' in first else load_queries(path, image_dir=image_dir)
    return EvalSet(name, prompts, "harmful" if kind == "harmful" else "benign")


def _emit(**record: object) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or checkpoint dir (llava-hf/llava-onevision-qwen2-7b-ov-hf, ...)")
    parser.add_argument("--vlsafe-train", help="directory with the two VLSafe training jsonl files")
    parser.add_argument("--harmful", action="append", default=[], help="[NAME=]FILE.jsonl harmful test set")
    parser.add_argument("--benign", action="append", default=[], help="[NAME=]FILE.jsonl benign test set")
    parser.add_argument("--image-dir", help="images named by image_id / image_pth / image (default: text only)")
    parser.add_argument("--out", required=True, help="new output directory")
    parser.add_argument("--limit", type=int, help="use only the first N training pairs")
    parser.add_argument("--new-tokens", type=int, default=PAPER["new_tokens"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steer-limit", type=int, help="run always-on Steer on the first N prompts of each set")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device-map", default="auto", help="passed to from_pretrained (hub checkpoints)")
    parser.add_argument("--dry-run", action="store_true", help="tiny random LLaVA-OV and built-in pairs, on CPU")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except AutosteerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    import torch

    from autosteer_interp.architectures import resolve
    from autosteer_interp.models import load_model
    from autosteer_interp.refusal_head import RefusalHeadConfig
    from autosteer_interp.steer import AutoSteer

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise InvalidInputError(f"--out {out} exists and is not empty; choose a new directory.")
    image_dir = Path(args.image_dir) if args.image_dir else None
    if args.dry_run:
        os.environ["HF_HUB_OFFLINE"] = "1"
        pairs = builtin_pairs()[: args.limit or 24]
        sets = [
            EvalSet("builtin harmful (dry run)", [p.harmful for p in builtin_pairs()[-6:]], "harmful"),
            EvalSet("borderline (dry run)", builtin_borderline("test")[:6], "benign"),
        ]
        model = load_model("tiny-llava-onevision")
        new_tokens = min(args.new_tokens, 4)
    else:
        if not args.model or not args.vlsafe_train or not args.harmful:
            raise InvalidInputError("pass --model, --vlsafe-train and at least one --harmful set (or --dry-run).")
        pairs = load_vlsafe(args.vlsafe_train, image_dir=image_dir, limit=args.limit)
        sets = [_load_set(s, "harmful", image_dir) for s in args.harmful]
        sets += [_load_set(s, "benign", image_dir) for s in args.benign] or [
            EvalSet("borderline", builtin_borderline("test"), "benign")
        ]
        model = load_model(args.model, dtype=getattr(torch, args.dtype), device_map=args.device_map)
        new_tokens = args.new_tokens
    n_layers = resolve(model).n_layers
    candidates = list(range(PAPER["layer_step"], n_layers, PAPER["layer_step"])) or list(range(1, n_layers))
    started = time.perf_counter()
    steer = AutoSteer.fit(
        model,
        pairs,
        candidate_layers=candidates,
        head_config=RefusalHeadConfig(epsilon=PAPER["epsilon"]),
        probe_layers=1,  # the paper: one layer, the best by SAS
        prober_config=ProberConfig(),  # the paper's MLP (the library's default gate is a logistic probe)
        builtin_gate_data=False,  # the paper trains the prober on the VLSafe pairs only
        wrap_pairs=False,
        refit_gate=False,  # the paper's prober is the one it validated
        gate_weights=GateWeights(1, 1),  # the paper's loss counts every pair once
        batch_size=args.batch_size,
        progress=not args.dry_run,
    ).with_threshold(PAPER["threshold"])
    summary = steer.summary
    assert summary is not None
    steer.save(out / "autosteer")
    _emit(
        stage="fit",
        pairs=len(pairs),
        candidate_layers=candidates,
        layers=list(steer.layers),
        validation_auroc=round(summary.validation.auroc, 4),
        seconds=round(time.perf_counter() - started, 1),
    )
    report = evaluate(
        model,
        steer,
        sets,
        batch_size=args.batch_size,
        max_new_tokens=new_tokens,
        steer_limit=args.steer_limit,
        progress=not args.dry_run,
    )
    (out / "report.json").write_text(report.to_json())
    (out / "report.md").write_text(report.to_markdown() + "\n")
    with contextlib.suppress(ImportError):
        report.plot(out / "report.png")
    for row in report.rows:
        _emit(stage="eval", set=row.set, method=row.method, n=row.n, refusal_rate=round(row.refusal_rate, 4))
    print(report.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
