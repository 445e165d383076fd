"""Command-line interface: ``autosteer-interp sas | demo``.

Exit codes: 0 success, 2 bad input (a clear message on stderr), 1 unexpected failure.
"""

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import AutosteerError, InvalidInputError
from .prompts import PromptPair, builtin_pairs, load_vlsafe
from .sas import LayerScores, safety_awareness_scores

__all__ = ["main"]

logger = logging.getLogger("autosteer_interp.cli")

DEMO_MODEL = "smollm2-llava-onevision"


def _load_pairs(args: argparse.Namespace) -> list[PromptPair]:
    pairs = load_vlsafe(args.vlsafe, limit=args.limit) if args.vlsafe else builtin_pairs()
    if args.vlsafe is None and args.limit is not None:
        pairs = pairs[: args.limit]
    return pairs


def _parse_layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise InvalidInputError(f"--layers must be comma-separated integers like 4,8,12, got {text!r}.") from error


def _score_table(scores: LayerScores) -> str:
    best = scores.best_layer
    width = 40
    top = max(float(scores.scores.max()), 1e-9)
    lines = ["layer  SAS     "]
    for layer, score in zip(scores.layers, scores.scores.tolist()):
        bar = "#" * max(0, round(width * score / top))
        lines.append(f"{layer:>5}  {score:+.4f} {bar}{'  <- best' if layer == best else ''}")
    return "\n".join(lines)


def _run_sas(model_name: str, pairs: list[PromptPair], layers: list[int] | None, batch_size: int, out: Path) -> int:
    from .activations import collect_activations
    from .architectures import resolve
    from .models import load_model

    if out.exists() and any(out.iterdir()):
        raise InvalidInputError(f"--out {out} exists and is not empty; choose a new directory.")
    started = time.perf_counter()
    print(f"Loading {model_name} ...", flush=True)
    model = load_model(model_name)
    if layers is None:
        # Layer 0 is the token embedding: at the last prompt token (the generation prompt) it is the same
        # vector for every prompt, so the SAS is undefined there.
        layers = list(range(1, resolve(model).n_layers))
    print(f"Collecting activations of {len(pairs)} contrastive pairs at layers {layers[0]}..{layers[-1]} ...")
    harmful = collect_activations(model, [p.harmful for p in pairs], layers, batch_size=batch_size)
    safe = collect_activations(model, [p.safe for p in pairs], layers, batch_size=batch_size)
    scores = safety_awareness_scores(safe, harmful)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sas.json").write_text(json.dumps({"model": model_name, **scores.to_dict()}, indent=2))
    try:
        scores.plot(out / "sas.png", title=f"Safety Awareness Score, {model_name}, {len(pairs)} pairs")
        plot_note = f", plot {out / 'sas.png'}"
    except ImportError:
        plot_note = " (install matplotlib for the plot)"
    print()
    print(_score_table(scores))
    print()
    print(f"Best layer: {scores.best_layer} (SAS {float(scores.scores.max()):.4f}).")
    print(f"Saved {out / 'sas.json'}{plot_note}. Took {time.perf_counter() - started:.0f} s.")
    return 0


def _cmd_sas(args: argparse.Namespace) -> int:
    return _run_sas(args.model, _load_pairs(args), _parse_layers(args.layers), args.batch_size, Path(args.out))


def _cmd_demo(args: argparse.Namespace) -> int:
    print(
        "AutoSteer demo, step 1: layer selection on the real SmolLM2-135M-Instruct inside LLaVA-OneVision\n"
        "(real language model, untrained vision tower; text requests only)."
    )
    data_dir = os.environ.get("AUTOSTEER_DATA_DIR")
    args.vlsafe = str(Path(data_dir) / "vlsafe") if data_dir and (Path(data_dir) / "vlsafe").is_dir() else None
    pairs = _load_pairs(args)
    print(f"Pairs: {'VLSafe from ' + args.vlsafe if args.vlsafe else 'the built-in set'} ({len(pairs)}).")
    out = Path(args.out or time.strftime("outputs/demo-%Y%m%d-%H%M%S"))
    return _run_sas(DEMO_MODEL, pairs, None, args.batch_size, out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autosteer-interp", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    sas = commands.add_parser("sas", help="Safety Awareness Score of every layer on contrastive pairs")
    sas.add_argument("--model", default=DEMO_MODEL, help="built-in name, hub id or checkpoint directory")
    sas.add_argument("--vlsafe", help="directory with the two VLSafe jsonl files (default: built-in pairs)")
    sas.add_argument("--limit", type=int, help="use only the first N pairs")
    sas.add_argument("--layers", help="comma-separated layer indices (default: 1..n_layers-1)")
    sas.add_argument("--batch-size", type=int, default=16)
    sas.add_argument("--out", required=True, help="new output directory (sas.json, sas.png)")
    sas.set_defaults(run=_cmd_sas)

    demo = commands.add_parser("demo", help="the end-to-end demo on the real SmolLM2 (offline)")
    demo.add_argument("--out", help="new output directory (default: outputs/demo-<timestamp>)")
    demo.add_argument("--limit", type=int, help="use only the first N pairs")
    demo.add_argument("--batch-size", type=int, default=16)
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except AutosteerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
