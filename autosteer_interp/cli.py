"""Command-line interface: ``autosteer-interp fit | eval | bench | robustness | generate | demo | sas | migrate``.

Every command checks all of its inputs before loading a model or writing anything: numbers (ranges,
finiteness), layer lists and artefacts against the model's sizes (read from its config, not its weights), data
files (errors name the file and line), slices against the data's real size, and that ``--out`` is new and can be
created. It never writes into an existing non-empty ``--out``. Prompts longer than the model's context are
refused once the tokenizer is loaded, before any forward pass.

Exit codes: 0 success; 2 bad input or usage (a clear message on stderr); 1 unexpected failure (a traceback).
"""

import argparse
import json
import logging
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .demo import DEMO_MODEL
from .errors import AutosteerError, InvalidInputError
from .gate import GateWeights
from .prompts import (
    Prompt,
    PromptPair,
    builtin_borderline,
    builtin_everyday,
    builtin_pairs,
    check_prompt_lengths,
    deduplicate_pairs,
    load_pairs,
    load_queries,
    load_vlsafe,
)
from .validation import check_new_folder, check_window, finite_number, layer_list, non_negative_int, positive_int

__all__ = ["main"]

STEER_DIR = "autosteer"  # where `fit` saves the AutoSteer artefact inside --out


# ------------------------------------------------------------------------------------------------ inputs


def parse_range(text: str | None, limit: int | None = None) -> slice:
    """``"A:B"`` (Python slice bounds, negatives allowed, either side optional) and ``--limit N`` as a slice.

    Raises:
        InvalidInputError: If the text is not ``A:B`` with integer bounds, or ``limit < 1``.
    """
    if limit is not None:
        positive_int(limit, "--limit")
    if text is None:
        return slice(None, limit)
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(part) if part.strip() else None for part in parts)
    except ValueError as error:
        raise InvalidInputError(
            f"--range must look like A:B with integers (e.g. :-400, -400:, 0:100), got {text!r}."
        ) from error
    if limit is not None:
        raise InvalidInputError("pass either --range or --limit, not both.")
    return slice(start, stop)


def load_pair_source(spec: str, deduplicate: bool = True) -> list[PromptPair]:
    """Contrastive pairs from ``"builtin"``, a VLSafe directory, or a jsonl file with ``harmful`` and ``safe``.

    A VLSafe directory holds the two files of the AutoSteer release (or a ``vlsafe/`` folder that does). Pairs
    that repeat an earlier pair's text are dropped unless ``deduplicate`` is false (the count is printed).

    Raises:
        InvalidInputError: If ``spec`` is none of these.
        DataFormatError: If a file is malformed (the message names the file and line).
    """
    if spec == "builtin":
        return builtin_pairs()
    path = Path(spec)
    if path.is_dir():
        pairs = load_vlsafe(path / "vlsafe" if (path / "vlsafe").is_dir() else path, deduplicate=False)
    elif path.is_file():
        pairs = load_pairs(path, deduplicate=False)
    else:
        raise InvalidInputError(
            f"--pairs {spec!r}: no such file or directory. Allowed: 'builtin', a VLSafe directory (the two jsonl "
            "files of the AutoSteer release), or a jsonl file with 'harmful' and 'safe' fields."
        )
    if not deduplicate:
        return pairs
    kept, dropped = deduplicate_pairs(pairs)
    if dropped:
        _progress_note(
            f"--pairs {spec}: dropped {dropped} of {len(pairs)} pairs repeating an earlier pair's text "
            "(--keep-duplicates keeps them)."
        )
    return kept


def select_pairs(pairs: list[PromptPair], window: slice, spec: str) -> list[PromptPair]:
    """``pairs[window]``, refusing bounds past the data and an empty selection."""
    shown = "" if window.start is None and window.stop is None else f"{window.start or ''}:{window.stop or ''}"
    check_window(window, len(pairs), f"--range/--limit {shown}".rstrip(), f"--pairs {spec}")
    return pairs[window]


@dataclass
class PromptSet:
    """A named list of requests from the command line."""

    name: str
    prompts: list[Prompt]


def load_prompt_set(spec: str, harmful: bool) -> PromptSet:
    """``[NAME=]SOURCE``: a requests file (:func:`~autosteer_interp.benchmark_data.load_requests`: ``.jsonl``,
    ``.json``, ``.csv``, ``.txt`` or ``LOADER:FILE``), ``borderline`` or ``everyday`` (our held-out
    borderline-benign requests or everyday instructions), or ``builtin`` (one side of the built-in pairs).

    Raises:
        InvalidInputError: If the source is none of these.
        DataFormatError: If the file is malformed.
    """
    from .benchmark_data import LOADERS, load_requests

    name, _, source = spec.rpartition("=")
    if source == "borderline":
        return PromptSet(name or "borderline", builtin_borderline("test"))
    if source == "everyday":
        return PromptSet(name or "everyday", builtin_everyday("test"))
    if source == "builtin":
        pairs = builtin_pairs()
        return PromptSet(name or "builtin", [p.harmful if harmful else p.safe for p in pairs])
    loader, _, rest = source.partition(":")
    path = Path(rest if rest and loader in LOADERS else source)
    if not path.exists():
        flag = "--harmful" if harmful else "--benign"
        raise InvalidInputError(
            f"{flag} {spec!r}: {str(path)!r} is not a file. Allowed: [NAME=]FILE (.jsonl with a 'query' or "
            "'prompt' field, .json, .csv, .txt), [NAME=]LOADER:FILE, 'borderline', 'everyday' or 'builtin'."
        )
    found = load_requests(source, "harmful" if harmful else "benign")
    return PromptSet(name or path.stem, found.prompts)


def check_new_output(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not empty, or cannot be created (nothing is ever overwritten)."""
    check_new_folder(out, "--out")


def resolve_steer_dir(spec: str) -> Path:
    """The AutoSteer artefact folder: ``spec`` itself, or ``spec/autosteer`` for a ``fit`` output folder."""
    path = Path(spec)
    if (path / STEER_DIR / "config.json").is_file():
        return path / STEER_DIR
    if not path.is_dir():
        raise InvalidInputError(f"--steer {spec!r}: no such directory (expected the --out folder of `fit`).")
    return path


def load_steer_for(spec: str, layout: Any) -> Any:
    """The AutoSteer at ``--steer``, checked against the model's sizes before the model loads.

    Raises:
        ArtifactError: If the artefact is broken, or its width or layers do not fit the model.
    """
    from .errors import ArtifactError
    from .steer import AutoSteer

    steer = AutoSteer.load(resolve_steer_dir(spec))
    if steer.prober.d_model != layout.d_model:
        raise ArtifactError(
            f"--steer {spec}: fitted on a model with d_model {steer.prober.d_model}; --model {layout.name} has "
            f"d_model {layout.d_model}."
        )
    outside = [layer for layer in steer.layers if layer >= layout.n_layers]
    if outside:
        raise ArtifactError(
            f"--steer {spec}: its gate reads layers {list(steer.layers)}; --model {layout.name} has "
            f"{layout.n_layers} layers."
        )
    return steer


def _parse_layers(text: str | None, n_layers: int, flag: str = "--layers") -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise InvalidInputError(f"{flag} must be comma-separated integers like 4,8,12, got {text!r}.") from error
    return layer_list(values, flag, n_layers)


def _progress_note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _layout(name: str) -> Any:
    from .models import model_layout

    return model_layout(name)


# ------------------------------------------------------------------------------------------------ sas


def _score_table(scores: Any) -> str:
    best = scores.best_layer
    width = 40
    top = max(float(scores.scores.max()), 1e-9)
    lines = ["layer  SAS     "]
    for layer, score in zip(scores.layers, scores.scores.tolist()):
        bar = "#" * max(0, round(width * score / top))
        lines.append(f"{layer:>5}  {score:+.4f} {bar}{'  <- best' if layer == best else ''}")
    return "\n".join(lines)


def _save_plot(plot: Any, path: Path, **kwargs: Any) -> str:
    """Call ``plot(path, **kwargs)``; a note for the user (matplotlib is optional)."""
    try:
        plot(path, **kwargs)
    except ImportError:
        return " (install matplotlib for plots)"
    return f", plot {path}"


def _cmd_sas(args: argparse.Namespace) -> int:
    from .activations import collect_activations
    from .models import load_model
    from .sas import safety_awareness_scores

    spec = args.vlsafe if args.vlsafe is not None else args.pairs
    if args.vlsafe is not None and not Path(args.vlsafe).is_dir():
        raise InvalidInputError(f"--vlsafe {args.vlsafe} is not a directory with the two VLSafe jsonl files.")
    window = parse_range(args.range, args.limit)
    out = Path(args.out)
    check_new_output(out)
    pairs = select_pairs(load_pair_source(spec, not args.keep_duplicates), window, spec)
    if len(pairs) < 2:
        raise InvalidInputError(f"the SAS needs at least 2 pairs; the selection holds {len(pairs)}.")
    layout = _layout(args.model)
    # Layer 0 is the token embedding: at the last prompt token (the generation prompt) it is the same vector for
    # every prompt, so the SAS is undefined there.
    layers = _parse_layers(args.layers, layout.n_layers) or list(range(1, layout.n_layers))
    started = time.perf_counter()
    print(f"Loading {args.model} ...", flush=True)
    model = load_model(args.model)
    check_prompt_lengths(model, [p for pair in pairs for p in (pair.harmful, pair.safe)], f"--pairs {spec}")
    print(f"Collecting activations of {len(pairs)} contrastive pairs at layers {layers[0]}..{layers[-1]} ...")
    harmful = collect_activations(model, [p.harmful for p in pairs], layers, batch_size=args.batch_size)
    safe = collect_activations(model, [p.safe for p in pairs], layers, batch_size=args.batch_size)
    scores = safety_awareness_scores(safe, harmful)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sas.json").write_text(json.dumps({"model": args.model, **scores.to_dict()}, indent=2))
    note = _save_plot(scores.plot, out / "sas.png", title=f"Safety Awareness Score, {args.model}, {len(pairs)} pairs")
    print()
    print(_score_table(scores))
    print()
    print(f"Best layer: {scores.best_layer} (SAS {float(scores.scores.max()):.4f}).")
    print(f"Saved {out / 'sas.json'}{note}. Took {time.perf_counter() - started:.0f} s.")
    return 0


# ------------------------------------------------------------------------------------------------ fit


def _candidate_layers(args: argparse.Namespace, n_layers: int) -> list[int] | None:
    layers = _parse_layers(args.layers, n_layers)
    if args.every is not None:
        if layers is not None:
            raise InvalidInputError("pass either --layers or --every, not both.")
        every = positive_int(args.every, "--every")
        if every >= n_layers:
            raise InvalidInputError(f"--every must be below the model's {n_layers} layers, got {every}.")
        layers = list(range(every, n_layers, every))
    return layers


def _check_fit_numbers(args: argparse.Namespace) -> None:
    if args.threshold is not None:
        finite_number(args.threshold, "--threshold", 0, 1)
    if args.calibrate_fpr is not None:
        finite_number(args.calibrate_fpr, "--calibrate-fpr", 0, 1, high_open=True)
        if args.threshold is not None:
            raise InvalidInputError("pass either --threshold or --calibrate-fpr (which sets the threshold), not both.")
    finite_number(args.epsilon, "--epsilon", low=0, low_open=True)
    non_negative_int(args.max_wrapped, "--max-wrapped")
    if args.probe_layers is not None:
        positive_int(args.probe_layers, "--probe-layers")
    finite_number(args.pair_weight, "--pair-weight", low=0, low_open=True)
    finite_number(args.negative_weight, "--negative-weight", low=0, low_open=True)


def _cmd_fit(args: argparse.Namespace) -> int:
    from .benchmark_data import load_requests
    from .fit import MIN_PAIRS
    from .models import load_model
    from .refusal_head import RefusalHeadConfig
    from .steer import AutoSteer

    window = parse_range(args.range, args.limit)
    _check_fit_numbers(args)
    out = Path(args.out)
    check_new_output(out)
    pairs = select_pairs(load_pair_source(args.pairs, not args.keep_duplicates), window, args.pairs)
    if len(pairs) < MIN_PAIRS:
        raise InvalidInputError(f"fit needs at least {MIN_PAIRS} pairs; the selection of --pairs holds {len(pairs)}.")
    gate_harmful, gate_benign = (
        [p for spec in getattr(args, f"gate_{label}") or [] for p in load_requests(spec, label).prompts] or None
        for label in ("harmful", "benign")
    )
    layout = _layout(args.model)
    layers = _candidate_layers(args, layout.n_layers)
    n_candidates = len(layers) if layers is not None else layout.n_layers - 1
    if args.probe_layers is not None and args.probe_layers > n_candidates:
        raise InvalidInputError(
            f"--probe-layers {args.probe_layers} exceeds the {n_candidates} candidate layers "
            f"({layers if layers is not None else f'1..{layout.n_layers - 1}'})."
        )
    started = time.perf_counter()
    _progress_note(f"Loading {args.model} ...")
    model = load_model(args.model)
    _progress_note(f"Fitting AutoSteer on {len(pairs)} pairs of {args.pairs} [{window.start}:{window.stop}] ...")
    optional = {"probe_layers": args.probe_layers, "calibrate_fpr": args.calibrate_fpr}
    optional = {name: value for name, value in optional.items() if value is not None}
    if args.threshold is not None:
        optional["calibrate_fpr"] = None  # a fixed threshold replaces the calibration
    steer = AutoSteer.fit(
        model,
        pairs,
        gate_harmful=gate_harmful,
        gate_benign=gate_benign,
        candidate_layers=layers,
        **optional,
        head_config=RefusalHeadConfig(epsilon=args.epsilon),
        builtin_gate_data=not args.no_gate_data,
        wrap_pairs=args.max_wrapped > 0,
        max_wrapped=args.max_wrapped or None,
        gate_weights=GateWeights(args.pair_weight, args.negative_weight),
        batch_size=args.batch_size,
        progress=not args.quiet,
        prompt_format=args.prompt_format,
    )
    if args.threshold is not None:
        steer = steer.with_threshold(args.threshold)
    steer.save(out / STEER_DIR)
    summary = steer.summary
    assert summary is not None
    record = {
        "model": args.model,
        "pairs": args.pairs,
        "range": [window.start, window.stop],
        "n_pairs": len(pairs),
        "layers": list(steer.layers),
        "threshold": steer.threshold,
        "epsilon": steer.epsilon,
        "prompt_format": steer.prompt_format,
        "builtin_gate_data": not args.no_gate_data,
        "max_wrapped": args.max_wrapped,
        "gate_weights": {"user_pairs": args.pair_weight, "negatives": args.negative_weight},
        "gate_harmful": args.gate_harmful or [],
        "gate_benign": args.gate_benign or [],
        **summary.to_dict(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "fit.json").write_text(json.dumps(record, indent=2))
    note = _save_plot(summary.sas.plot, out / "sas.png", title=f"SAS, {args.model}, {len(pairs)} pairs")
    val = summary.validation
    sas = summary.sas
    print(f"SAS best layer {sas.best_layer} (top 3: {sas.top_k(3)}); the gate reads layers {list(steer.layers)}.")
    print(
        f"Gate (held-out part of its training data): AUROC {val.auroc:.3f}, detection {val.tpr:.1%}, "
        f"false alarms {val.fpr:.1%} at threshold {steer.threshold:.2f}."
    )
    flagged = summary.flagged
    if "val_negatives" in flagged:
        print(
            f"False alarms on held-out everyday and borderline requests {flagged['val_negatives']:.1%}, "
            f"on held-out harmless twins {flagged.get('val_safe', 0.0):.1%}."
        )
    print(f"Refusal head: epsilon {steer.epsilon}, loss per epoch {[round(x, 3) for x in summary.head_loss]}.")
    print(f"Saved {out / STEER_DIR} and {out / 'fit.json'}{note}. Took {record['wall_seconds']:.0f} s.")
    return 0


# ------------------------------------------------------------------------------------------------ eval


def _eval_sets(args: argparse.Namespace) -> list[Any]:
    from .evaluate import EvalSet

    sets: list[EvalSet] = []
    if args.pairs is not None:
        window = parse_range(args.range, args.limit)
        pairs = select_pairs(load_pair_source(args.pairs, not args.keep_duplicates), window, args.pairs)
        stem = "vlsafe" if Path(args.pairs).is_dir() else Path(args.pairs).stem
        sets.append(EvalSet(f"{stem} harmful", [p.harmful for p in pairs], "harmful"))
        sets.append(EvalSet(f"{stem} safe", [p.safe for p in pairs], "benign"))
    elif args.range is not None or args.limit is not None:
        raise InvalidInputError("--range and --limit select pairs; pass --pairs as well.")
    for spec in args.harmful or []:
        found = load_prompt_set(spec, harmful=True)
        sets.append(EvalSet(found.name, found.prompts, "harmful"))
    for spec in args.benign or []:
        found = load_prompt_set(spec, harmful=False)
        sets.append(EvalSet(found.name, found.prompts, "benign"))
    if not sets:
        raise InvalidInputError("nothing to evaluate: pass --pairs, --harmful or --benign.")
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"set names must be unique, got {names}; name them with NAME=FILE.")
    return sets


def _methods(text: str) -> list[Any]:
    from .evaluate import METHODS

    methods = [part.strip() for part in text.split(",") if part.strip()]
    if not methods or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
        raise InvalidInputError(f"--methods must be a comma-separated subset of {','.join(METHODS)}, got {text!r}.")
    return methods


def _judge(spec: str) -> Any:
    from .evaluate import ClassifierJudge, RefusalSubstringJudge

    if spec == "substring":
        return RefusalSubstringJudge()
    if not Path(spec).is_dir():
        raise InvalidInputError(
            f"--judge {spec!r}: allowed are 'substring' or a directory with a Hugging Face text-classification "
            "checkpoint (labels named like REJECTION / refusal)."
        )
    return ClassifierJudge.from_pretrained(spec)


def _write_report(report: Any, out: Path, with_outputs: bool) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.to_json())
    (out / "report.md").write_text(report.to_markdown() + "\n")
    if with_outputs:
        with (out / "generations.jsonl").open("w", encoding="utf-8") as handle:
            for record in report.generations():
                handle.write(json.dumps(record) + "\n")
    return _save_plot(report.plot, out / "report.png")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .models import load_model

    methods = _methods(args.methods)
    if args.steer_limit is not None:
        positive_int(args.steer_limit, "--steer-limit")
    positive_int(args.max_new_tokens, "--max-new-tokens")
    out = Path(args.out)
    check_new_output(out)
    sets = _eval_sets(args)
    steer = load_steer_for(args.steer, _layout(args.model))  # a broken artefact fails here, before the model
    judge = _judge(args.judge)
    _progress_note(f"Loading {args.model} ...")
    model = load_model(args.model)
    steer.check_model(model)
    report = evaluate(
        model,
        steer,
        sets,
        judge=judge,
        methods=methods,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        steer_limit=args.steer_limit,
        progress=not args.quiet,
    )
    note = _write_report(report, out, with_outputs=not args.no_generations)
    print(report.to_markdown())
    print(f"\nSaved {out / 'report.json'}, {out / 'report.md'}{note}.")
    return 0


# ------------------------------------------------------------------------------------------------ bench


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import check_bench_output, load_suite, run_benchmarks
    from .models import load_model

    methods = _methods(args.methods) if args.methods is not None else None
    if args.steer_limit is not None:
        positive_int(args.steer_limit, "--steer-limit")
    if args.max_new_tokens is not None:
        positive_int(args.max_new_tokens, "--max-new-tokens")
    out = Path(args.out)
    check_bench_output(out, args.resume, "--out")
    suite = load_suite(args.suite)  # every benchmark file is read and checked here
    load_steer_for(args.steer, _layout(args.model))  # a broken artefact fails here, before the model
    judge = _judge(args.judge)
    _progress_note(f"Loading {args.model} ...")
    model = load_model(args.model)
    started = time.perf_counter()
    report = run_benchmarks(
        model,
        resolve_steer_dir(args.steer),
        suite,
        judge=judge,
        out=out,
        methods=methods,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        steer_limit=args.steer_limit,
        resume=args.resume,
        progress=not args.quiet,
        model_name=args.model,
        say=_progress_note,
    )
    print(report.to_markdown())
    note = f", plot {out / 'report.png'}" if (out / "report.png").is_file() else " (install matplotlib for plots)"
    ran = len(report.benchmarks) - len(report.skipped)
    print(
        f"\nSaved {out / 'report.json'}, {out / 'report.md'}{note}. Ran {ran} benchmark(s), "
        f"{len(report.skipped)} from the cache, in {time.perf_counter() - started:.0f} s."
    )
    return 0


# ------------------------------------------------------------------------------------------------ robustness


def _cmd_robustness(args: argparse.Namespace) -> int:
    from .models import load_model
    from .robustness import GateFamily, gate_robustness, robustness_families

    if args.every_step_tokens is not None:
        positive_int(args.every_step_tokens, "--every-step-tokens")
    out = Path(args.out)
    check_new_output(out)
    held_out = None
    if args.pairs is not None:
        window = parse_range(args.range, args.limit)
        held_out = select_pairs(load_pair_source(args.pairs, not args.keep_duplicates), window, args.pairs)
    elif args.range is not None or args.limit is not None:
        raise InvalidInputError("--range and --limit select pairs; pass --pairs as well.")
    families = robustness_families(held_out)
    for spec, harmful in [(spec, True) for spec in args.harmful or []] + [(spec, False) for spec in args.benign or []]:
        found = load_prompt_set(spec, harmful)
        if found.name in families:
            raise InvalidInputError(f"family names must be unique; {found.name!r} is taken, name it with NAME=FILE.")
        families[found.name] = GateFamily(found.prompts, harmful)
    steer = load_steer_for(args.steer, _layout(args.model))  # a broken artefact fails here, before the model
    _progress_note(f"Loading {args.model} ...")
    model = load_model(args.model)
    steer.check_model(model)
    report = gate_robustness(
        model,
        steer,
        families,
        batch_size=args.batch_size,
        progress=not args.quiet,
        label=f"gate on layers {list(steer.layers)}",
        every_step_tokens=args.every_step_tokens,
    )
    out.mkdir(parents=True, exist_ok=True)
    report.to_json(out / "robustness.json")
    (out / "robustness.md").write_text(report.to_markdown() + "\n")
    note = _save_plot(report.plot, out / "robustness.png")
    print(report.to_markdown())
    print(f"\nSaved {out / 'robustness.json'}, {out / 'robustness.md'}{note}.")
    return 0


# ------------------------------------------------------------------------------------------------ generate


def _cmd_generate(args: argparse.Namespace) -> int:
    from .evaluate import generate_texts
    from .models import load_model

    positive_int(args.max_new_tokens, "--max-new-tokens")
    prompts = [Prompt(text) for text in args.prompt or []]
    if args.prompts is not None:
        if not Path(args.prompts).is_file():
            raise InvalidInputError(f"--prompts {args.prompts!r} is not a file (a jsonl file with a 'query' field).")
        prompts += load_queries(args.prompts)
    if not prompts:
        raise InvalidInputError("nothing to generate: pass --prompt TEXT (repeatable) or --prompts FILE.jsonl.")
    layout = _layout(args.model)
    steer = load_steer_for(args.steer, layout) if args.steer is not None else None
    model = load_model(args.model)
    check_prompt_lengths(model, prompts, "--prompt/--prompts")
    kwargs = {"max_new_tokens": args.max_new_tokens, "do_sample": False}
    if steer is None:
        for prompt, text in zip(prompts, generate_texts(model, prompts, batch_size=args.batch_size, **kwargs)):
            print(json.dumps({"prompt": prompt.text, "output": text}))
        return 0
    steer.check_model(model)
    result = steer.generate(model, prompts, batch_size=args.batch_size, **kwargs)
    for prompt, text, p, gate in zip(prompts, result.texts, result.p_harmful.tolist(), result.gate.tolist()):
        print(json.dumps({"prompt": prompt.text, "p_harmful": round(p, 4), "gate": bool(gate), "output": text}))
    return 0


# ------------------------------------------------------------------------------------------------ demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    out = Path(args.out) if args.out else None
    return run_demo(out=out, n_pairs=args.limit, batch_size=args.batch_size, say=lambda text: print(text, flush=True))


# ------------------------------------------------------------------------------------------------ migrate


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .artifacts import migrate_artifact
    from .models import load_model

    source, destination = Path(args.source), Path(args.destination)
    if not (source / "config.json").is_file():
        raise InvalidInputError(f"{source} is not an artefact folder (no config.json).")
    if destination.exists():
        raise InvalidInputError(f"{destination} already exists; give a new folder for the converted artefact.")
    check_new_folder(destination, "DESTINATION")
    model = None
    if args.model is not None:
        _layout(args.model)
        model = load_model(args.model)
    path = migrate_artifact(source, destination, model)
    print(f"Converted {source} to {path} (format 2: every file checksummed).")
    return 0


# ------------------------------------------------------------------------------------------------ parser


def _add_pairs(parser: argparse.ArgumentParser, required: bool, default: str | None = None) -> None:
    parser.add_argument(
        "--pairs",
        required=required,
        default=default,
        help="'builtin', a VLSafe directory, or a jsonl file with 'harmful' and 'safe' fields",
    )
    parser.add_argument("--range", help="slice of the pairs A:B, Python bounds (:-400, -400:, 0:100)")
    parser.add_argument("--limit", type=int, help="use only the first N pairs (same as --range :N)")
    parser.add_argument(
        "--keep-duplicates", action="store_true", help="keep pairs that repeat an earlier pair's text (default: drop)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autosteer-interp", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="fit AutoSteer (SAS -> prober -> refusal head) and save it")
    fit.add_argument("--model", default=DEMO_MODEL, help="built-in name, hub id or checkpoint directory")
    _add_pairs(fit, required=True)
    fit.add_argument("--out", required=True, help="new output directory (autosteer/, fit.json, sas.png)")
    fit.add_argument("--layers", help="candidate layers, comma-separated (default: 1..n_layers-1)")
    fit.add_argument("--every", type=int, help="candidate layers every N (the paper: 4)")
    fit.add_argument("--epsilon", type=float, default=0.1, help="refusal-head scale (paper: 0.1)")
    fit.add_argument(
        "--threshold", type=float, help="fixed gate threshold on P(harmful) instead of calibrating (the paper: 0.5)"
    )
    fit.add_argument(
        "--calibrate-fpr",
        type=float,
        help="calibrate the threshold to this FPR on held-out everyday and borderline requests",
    )
    fit.add_argument("--no-gate-data", action="store_true", help="train the gate on --pairs only (no built-in data)")
    fit.add_argument("--max-wrapped", type=int, default=512, help="jailbreak-wrapped pairs for the gate (0: none)")
    fit.add_argument(
        "--gate-harmful",
        action="append",
        help="more harmful requests for the gate, [LOADER:]FILE (.txt/.csv/.json/.jsonl or e.g. advbench:FILE; "
        "repeatable)",
    )
    fit.add_argument(
        "--gate-benign", action="append", help="more benign requests for the gate, [LOADER:]FILE (repeatable)"
    )
    defaults = GateWeights()
    fit.add_argument(
        "--pair-weight",
        type=float,
        default=defaults.user_pairs,
        help=f"how much the --pairs count in the gate's loss (default {defaults.user_pairs:g}; 1: unweighted)",
    )
    fit.add_argument(
        "--negative-weight",
        type=float,
        default=defaults.negatives,
        help=f"how much everyday, borderline and --gate-benign requests count (default {defaults.negatives:g})",
    )
    fit.add_argument(
        "--probe-layers",
        type=int,
        help="the gate reads the K best SAS layers (paper: 1; default: a spread of layers plus the SAS-best)",
    )
    fit.add_argument(
        "--prompt-format",
        choices=["chat", "paper"],
        default="chat",
        help="prompt layout and probed token: ours (chat, default) or the official code's (paper); stored",
    )
    fit.add_argument("--batch-size", type=int, default=16)
    fit.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    fit.set_defaults(run=_cmd_fit)

    ev = commands.add_parser("eval", help="Orig / Steer / AutoSteer on harmful and benign sets")
    ev.add_argument("--model", default=DEMO_MODEL, help="built-in name, hub id or checkpoint directory")
    ev.add_argument("--steer", required=True, help="the --out folder of `fit` (or an AutoSteer artefact)")
    _add_pairs(ev, required=False)
    ev.add_argument("--harmful", action="append", help="[NAME=]FILE or LOADER:FILE (repeatable), or builtin")
    ev.add_argument(
        "--benign", action="append", help="[NAME=]FILE, LOADER:FILE, 'borderline', 'everyday' or 'builtin' (repeatable)"
    )
    ev.add_argument("--out", required=True, help="new output directory (report.json/.md/.png, generations.jsonl)")
    ev.add_argument("--judge", default="substring", help="'substring' or a text-classification checkpoint dir")
    ev.add_argument("--methods", default="orig,steer,autosteer", help="subset of orig,steer,autosteer")
    ev.add_argument("--steer-limit", type=int, help="run the always-on Steer row on the first N of each set")
    ev.add_argument("--max-new-tokens", type=int, default=32)
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--no-generations", action="store_true", help="do not save the generated texts")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(run=_cmd_eval)

    bench = commands.add_parser("bench", help="Orig / Steer / AutoSteer on a suite of published benchmarks (TOML)")
    bench.add_argument("--model", default=DEMO_MODEL, help="built-in name, hub id or checkpoint directory")
    bench.add_argument("--steer", required=True, help="the --out folder of `fit` (or an AutoSteer artefact)")
    bench.add_argument("--suite", required=True, help="TOML file with [[benchmark]] tables (name, loader, path)")
    bench.add_argument("--out", required=True, help="new output directory (report.json/.md/.png, cache/)")
    bench.add_argument("--judge", default="substring", help="'substring' or a text-classification checkpoint dir")
    bench.add_argument("--methods", help="subset of orig,steer,autosteer (default: the suite's, else all)")
    bench.add_argument("--steer-limit", type=int, help="run the always-on Steer row on the first N of each set")
    bench.add_argument("--max-new-tokens", type=int, help="answer length (default: the suite's, else 32)")
    bench.add_argument("--batch-size", type=int, default=16)
    bench.add_argument("--resume", action="store_true", help="reuse the finished benchmarks cached in --out")
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    bench.set_defaults(run=_cmd_bench)

    rob = commands.add_parser(
        "robustness", help="how often the gate flags held-out harmful, wrapped and borderline-benign requests"
    )
    rob.add_argument("--model", default=DEMO_MODEL, help="built-in name, hub id or checkpoint directory")
    rob.add_argument("--steer", required=True, help="the --out folder of `fit` (or an AutoSteer artefact)")
    _add_pairs(rob, required=False)
    rob.add_argument("--out", required=True, help="new output directory (robustness.json/.md/.png)")
    rob.add_argument("--harmful", action="append", help="[NAME=]FILE or LOADER:FILE: one more harmful family")
    rob.add_argument("--benign", action="append", help="[NAME=]FILE or LOADER:FILE: one more benign family")
    rob.add_argument("--every-step-tokens", type=int, help="also measure the every-step gate over N generated tokens")
    rob.add_argument("--batch-size", type=int, default=16)
    rob.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    rob.set_defaults(run=_cmd_robustness)

    gen = commands.add_parser("generate", help="generate answers, with or without AutoSteer (JSON lines)")
    gen.add_argument("--model", default=DEMO_MODEL, help="built-in name, hub id or checkpoint directory")
    gen.add_argument("--steer", help="the --out folder of `fit` (default: the unsteered model)")
    gen.add_argument("--prompt", action="append", help="a request (repeatable)")
    gen.add_argument("--prompts", help="a jsonl file with a 'query' field")
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--batch-size", type=int, default=8)
    gen.set_defaults(run=_cmd_generate)

    demo = commands.add_parser("demo", help="the end-to-end demo on the real SmolLM2 (offline, < 10 min)")
    demo.add_argument("--out", help="new output directory (default: outputs/demo-<timestamp>)")
    demo.add_argument("--limit", type=int, help="use only the first N built-in pairs")
    demo.add_argument("--batch-size", type=int, default=16)
    demo.set_defaults(run=_cmd_demo)

    sas = commands.add_parser("sas", help="Safety Awareness Score of every layer on contrastive pairs")
    sas.add_argument("--model", default=DEMO_MODEL, help="built-in name, hub id or checkpoint directory")
    _add_pairs(sas, required=False, default="builtin")
    sas.add_argument("--vlsafe", help="directory with the two VLSafe jsonl files (same as --pairs DIR)")
    sas.add_argument("--layers", help="comma-separated layer indices (default: 1..n_layers-1)")
    sas.add_argument("--batch-size", type=int, default=16)
    sas.add_argument("--out", required=True, help="new output directory (sas.json, sas.png)")
    sas.set_defaults(run=_cmd_sas)

    migrate = commands.add_parser("migrate", help="convert a format-1 artefact (0.1) to the current format")
    migrate.add_argument("source", help="the format-1 artefact folder (left unchanged)")
    migrate.add_argument("destination", help="a new folder for the converted artefact")
    migrate.add_argument("--model", help="the model it was fitted on (needed when it records a base model)")
    migrate.set_defaults(run=_cmd_migrate)
    return parser


def _attach_range_values(argv: Sequence[str]) -> list[str]:
    """``--range -400:`` -> ``--range=-400:`` (argparse would read ``-400:`` as an option and fail); same for
    ``--layers -1,2`` (refused later, with a message)."""
    joined: list[str] = []
    for token in argv:
        if joined and joined[-1] in ("--range", "--layers") and token[:1] == "-" and token[1:2].isdigit():
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


def run(argv: Sequence[str]) -> int:
    """Run the CLI on ``argv`` and return the exit code, letting the package's errors propagate.

    Raises:
        AutosteerError: Bad input (``main`` turns it into exit code 2).
        SystemExit: A usage error found by the argument parser (exit code 2).
    """
    args = _parser().parse_args(_attach_range_values(argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if hasattr(args, "batch_size"):
        positive_int(args.batch_size, "--batch-size")
    return int(args.run(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input or usage, 1 unexpected failure)."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except AutosteerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("error: unexpected failure (a bug: please report it with the traceback above).", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
