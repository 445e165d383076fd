"""Benchmark suites: Orig / Steer / AutoSteer on several published benchmarks in one call, resumable.

A **suite** is a TOML file listing benchmark files and the loader of :data:`~autosteer_interp.benchmark_data.LOADERS`
that reads each::

    max_new_tokens = 32                      # optional; the command line's --max-new-tokens wins
    methods = ["orig", "steer", "autosteer"] # optional; the command line's --methods wins

    [[benchmark]]
    name = "XSTest"                          # shown in the report; unique within the suite
    loader = "xstest"
    path = "../benchmarks/xstest_prompts.csv"  # relative paths resolve against the TOML file's folder
    limit = 100                              # optional: the first N requests, in file order

    [[benchmark]]
    name = "HarmBench"
    loader = "harmbench"
    path = "harmbench_behaviors_text_all.csv"
    [benchmark.options]                      # optional: keyword arguments of the loader
    functional_categories = ["standard"]

:func:`load_suite` checks all of it before any model is loaded: unknown keys, unknown loaders (the message lists
the allowed ones), loader options the loader does not take, duplicate names, limits that are not positive
integers or run past the data; and it loads every file, so a missing or malformed file raises the loader's own
:class:`~autosteer_interp.errors.DataFormatError` (naming the file and line) up front.

:func:`run_benchmarks` then runs :func:`~autosteer_interp.evaluate.evaluate` on each benchmark, one
:class:`~autosteer_interp.evaluate.EvalSet` per label present (``"{name} harmful"``, ``"{name} benign"``), and
reports in a :class:`BenchReport`:

- per set and method, what papers quote: the **attack success rate** on harmful sets (``1 -`` refusal rate) and
  the **over-refusal** on benign sets (refusal rate), the share of benign answers identical to Orig's
  (utility), the gate rate, tokens/s;
- **full and partial refusal** rates (XSTest's protocol) when the judge has a three-way
  ``labels(answers, requests)`` method returning ``"refusal"`` / ``"partial"`` / ``"compliance"`` per answer
  (duck-typed; it is called after ``evaluate`` on the same answers, with the request texts; the refusal rate
  stays the judge's own ``True`` / ``False`` verdict);
- per **category** (XSTest's ``type``, HarmBench's semantic category, ...; ``"uncategorized"`` when the
  benchmark has none), label and method: the refusal rate (and full / partial refusal);
- the **prober AUROC** of each benchmark, P(harmful) of its harmful requests against its benign ones when it
  has both labels (XSTest), otherwise against the other side pooled over the whole suite: a harmful-only
  benchmark (AdvBench, HarmBench) against every benign set of the suite, a benign-only one (Alpaca) against every
  harmful set; ``basis`` says which. P(harmful) comes from the AutoSteer run (the gate's own decision input) or,
  when ``autosteer`` is not among the methods, from the prober on activations read at the gate's layers.

With ``out``, every finished benchmark is cached as ``out/cache/{name}-{key}.json``, written atomically, where the
key is the SHA-256 of the model (name and weight fingerprint), the AutoSteer (the content of its
``checksums.json``, or its tensors and settings when given as an object), the benchmark (name, loader, a hash of
its file and selected requests, options, limit) and the settings (methods, judge, decoding, batch size, Steer
subsample, library version). ``resume=True`` (``--resume``) on the same ``out`` skips the benchmarks whose entry
exists and says so; an interruption loses only the benchmark that was running. Without it an existing non-empty
``out`` is refused. ``out`` also gets ``report.json``, ``report.md`` (the summary table, the AUROC table, then one
category table per benchmark), ``report.png`` (with matplotlib) and ``generations.jsonl``.

Example: the suite of the bundled fixture files (19 placeholder requests of five benchmarks) on the real SmolLM2.
The quick fit (gate trained on the 40 pairs only) took 2.5 min on two busy CPU cores; the bench answers 19 requests
x 3 methods x 32 tokens, about 20 tokens/s on two idle cores, ten times slower when they are shared::

    autosteer-interp fit --model smollm2-llava-onevision --pairs builtin --limit 40 --no-gate-data \\
        --max-wrapped 0 --out /tmp/bench_fit -q
    autosteer-interp bench --model smollm2-llava-onevision --steer /tmp/bench_fit \\
        --suite tests/fixtures/suites/fixtures.toml --out /tmp/bench_smollm2
    # interrupted? the same command with --resume continues with the benchmarks not yet finished

In Python:
    >>> suite = load_suite("tests/fixtures/suites/fixtures.toml")                    # doctest: +SKIP
    >>> report = run_benchmarks(model, steer, suite, out="outputs/bench", progress=False)  # doctest: +SKIP
    >>> report.result("XSTest").auroc_basis                                           # doctest: +SKIP
    'harmful vs benign within XSTest'
"""

import dataclasses
import hashlib
import inspect
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .artifacts import file_sha256
from .benchmark_data import LOADERS, BenchmarkSet
from .errors import DataFormatError, InvalidInputError
from .evaluate import METHOD_LABELS, METHODS, EvalReport, EvalRow, auroc, evaluate, make_judge
from .prompts import check_prompt_lengths
from .validation import check_new_folder, positive_int

__all__ = [
    "THREE_WAY_LABELS",
    "BenchReport",
    "BenchRow",
    "BenchmarkResult",
    "CategoryRow",
    "Suite",
    "SuiteBenchmark",
    "check_bench_output",
    "load_suite",
    "run_benchmarks",
]

logger = logging.getLogger(__name__)

THREE_WAY_LABELS: tuple[str, ...] = ("refusal", "partial", "compliance")
"""What a three-way judge's ``labels(answers, requests)`` returns per answer (XSTest's full / partial refusal)."""

CACHE_DIR = "cache"
CACHE_VERSION = 1
DEFAULT_NEW_TOKENS = 32
_SUITE_KEYS = ("benchmark", "max_new_tokens", "methods")
_BENCHMARK_KEYS = ("name", "loader", "path", "limit", "options")
_LABEL_ORDER = ("harmful", "benign")


# ------------------------------------------------------------------------------------------------ suite


@dataclass
class SuiteBenchmark:
    """One benchmark of a suite, its requests loaded.

    Attributes:
        name: Shown in reports; its sets are ``f"{name} harmful"`` and ``f"{name} benign"``.
        loader: The key of :data:`~autosteer_interp.benchmark_data.LOADERS` that read it.
        path: The file (or checkout folder), absolute.
        limit: Only the first ``limit`` requests were kept (``None``: all).
        options: Keyword arguments given to the loader.
        data: The requests (named ``name``, cut to ``limit``).
    """

    name: str
    loader: str
    path: Path
    limit: int | None
    options: dict[str, Any]
    data: BenchmarkSet


@dataclass
class Suite:
    """The benchmarks to run, with optional defaults for the run's settings.

    Attributes:
        benchmarks: In run order.
        max_new_tokens: Answer length, unless the run sets one (``None``: 32).
        methods: Methods to run, unless the run sets them (``None``: all of :data:`~autosteer_interp.evaluate.METHODS`).
        source: The TOML file it came from, if any.
    """

    benchmarks: list[SuiteBenchmark]
    max_new_tokens: int | None = None
    methods: list[str] | None = None
    source: str | None = None

    @property
    def names(self) -> list[str]:
        """The benchmark names, in run order."""
        return [bench.name for bench in self.benchmarks]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: str | Path = ".", source: str | None = None) -> "Suite":
        """Check a parsed suite and load its benchmarks (the layout of the TOML file, see the module docstring).

        Args:
            data: ``{"benchmark": [{"name", "loader", "path", ...}, ...], "max_new_tokens": ..., "methods": ...}``.
            base: The folder relative paths resolve against.
            source: Named in error messages (the TOML file).

        Raises:
            InvalidInputError: Unknown keys, loaders or loader options, missing or mistyped fields, duplicate
                names, bad limits, a benchmark with no request.
            DataFormatError: A benchmark file is missing or malformed (the loader's own error).
        """
        where = source or "the suite"
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"{where}: expected a table of settings, got {type(data).__name__}.")
        unknown = sorted(set(data) - set(_SUITE_KEYS))
        if unknown:
            raise InvalidInputError(f"{where}: unknown top-level key(s) {unknown}; allowed: {list(_SUITE_KEYS)}.")
        entries = data.get("benchmark")
        if not isinstance(entries, list) or not entries:
            raise InvalidInputError(
                f"{where}: no benchmark; add at least one [[benchmark]] table with name, loader and path."
            )
        max_new_tokens = data.get("max_new_tokens")
        if max_new_tokens is not None:
            max_new_tokens = positive_int(max_new_tokens, f"{where}: max_new_tokens")
        methods = data.get("methods")
        if methods is not None:
            methods = _check_methods(methods, f"{where}: methods")
        benchmarks: list[SuiteBenchmark] = []
        for number, entry in enumerate(entries, start=1):
            bench = _suite_benchmark(entry, Path(base), f"{where}, benchmark #{number}")
            if bench.name in {b.name for b in benchmarks}:
                raise InvalidInputError(
                    f"{where}, benchmark #{number}: the name {bench.name!r} is already used by an earlier benchmark; "
                    "names must be unique (they name the report's rows and the cache entries)."
                )
            benchmarks.append(bench)
        return cls(benchmarks, max_new_tokens, methods, source)


def load_suite(path: str | Path) -> Suite:
    """Read a suite TOML file, check it and load every benchmark it lists (no model needed).

    Args:
        path: The TOML file; relative benchmark paths resolve against its folder.

    Returns:
        The :class:`Suite`.

    Raises:
        DataFormatError: The file is missing, not UTF-8 or not TOML (naming the line), or a benchmark file is
            missing or malformed.
        InvalidInputError: The content is wrong (see :meth:`Suite.from_dict`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"suite file not found: {path} (expected a TOML file with [[benchmark]] tables).")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"{path}: not valid UTF-8 (offset {error.start}); a suite is a UTF-8 TOML file."
        ) from error
    toml = _toml_module()
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as error:
        raise DataFormatError(
            f"{path}: not valid TOML ({error}). A suite holds [[benchmark]] tables with name, loader and path."
        ) from error
    return Suite.from_dict(data, path.parent, str(path))


def _toml_module() -> Any:
    """``tomllib`` (Python 3.11+), else ``tomli`` if installed."""
    try:
        import tomllib

        return tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli

            return tomli
        except ImportError as error:
            raise ImportError(
                "reading a benchmark suite needs Python 3.11+ (tomllib) or the tomli package: pip install tomli"
            ) from error


def _suite_benchmark(entry: Any, base: Path, where: str) -> SuiteBenchmark:
    if not isinstance(entry, Mapping):
        raise InvalidInputError(f"{where}: expected a table (name, loader, path), got {type(entry).__name__}.")
    unknown = sorted(set(entry) - set(_BENCHMARK_KEYS))
    if unknown:
        raise InvalidInputError(f"{where}: unknown key(s) {unknown}; allowed: {list(_BENCHMARK_KEYS)}.")
    for key in ("name", "loader", "path"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"{where}: {key!r} must be a non-empty string, got {value!r}.")
    name, loader = entry["name"].strip(), entry["loader"]
    where = f"{where} ({name!r})"
    if loader not in LOADERS:
        raise InvalidInputError(f"{where}: unknown loader {loader!r}; allowed: {sorted(LOADERS)}.")
    options = entry.get("options", {})
    if not isinstance(options, Mapping):
        raise InvalidInputError(f"{where}: 'options' must be a table of loader arguments, got {options!r}.")
    allowed = list(inspect.signature(LOADERS[loader]).parameters)[1:]
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise InvalidInputError(f"{where}: the {loader!r} loader takes no option(s) {bad}; its options: {allowed}.")
    limit = entry.get("limit")
    if limit is not None:
        limit = positive_int(limit, f"{where}: limit")
    path = Path(entry["path"]).expanduser()
    path = (path if path.is_absolute() else base / path).absolute()
    try:
        loaded = LOADERS[loader](path, **dict(options))
    except DataFormatError:
        raise
    except InvalidInputError as error:
        raise InvalidInputError(f"{where}: {error}") from error
    except TypeError as error:  # an option of the wrong type that the loader does not check itself
        raise InvalidInputError(
            f"{where}: the {loader!r} loader cannot use the options {dict(options)} ({error})."
        ) from error
    if not loaded.items:
        raise InvalidInputError(f"{where}: {path} holds no request with these options.")
    if limit is not None and limit > len(loaded):
        raise InvalidInputError(
            f"{where}: limit {limit} runs past the data: {path} holds {len(loaded)} requests; "
            f"give a limit in 1..{len(loaded)} or leave it out."
        )
    data = BenchmarkSet(name, loaded.items[:limit], loaded.source)
    return SuiteBenchmark(name, loader, path, limit, dict(options), data)


def _check_methods(methods: Any, name: str = "methods") -> list[str]:
    """Distinct values of :data:`~autosteer_interp.evaluate.METHODS`, as a list or a comma-separated string."""
    values = [m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) else methods
    if (
        not isinstance(values, list | tuple)
        or not values
        or any(m not in METHODS for m in values)
        or len(set(values)) != len(values)
    ):
        raise InvalidInputError(f"{name} must be distinct values from {list(METHODS)}, got {methods!r}.")
    return list(values)


def check_bench_output(out: str | Path, resume: bool, name: str = "out") -> Path:
    """Refuse an output folder a run may not use: without ``resume``, one that exists and is not empty; with it,
    a non-empty one that holds no ``cache/`` (not the output of an earlier run), or one that cannot be created.
    """
    path = Path(out)
    if not resume or not path.is_dir() or not any(path.iterdir()):
        return check_new_folder(path, name)
    if not (path / CACHE_DIR).is_dir():
        raise InvalidInputError(
            f"{name} {path} is not empty and holds no {CACHE_DIR}/ folder: it is not the output of an earlier "
            "bench run, so there is nothing to resume; choose a new directory."
        )
    if not os.access(path / CACHE_DIR, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{name} {path}: {path / CACHE_DIR} is not writable.")
    return path


# ------------------------------------------------------------------------------------------------ report


@dataclass
class BenchRow:
    """One method on one set of one benchmark: :class:`~autosteer_interp.evaluate.EvalRow` plus the benchmark and
    the three-way judge's rates.

    Attributes:
        benchmark: The benchmark's name.
        full_refusal: Share of answers the three-way judge labels ``"refusal"`` (``None`` without one).
        partial_refusal: Share labelled ``"partial"`` (``None`` without a three-way judge).

    The other attributes are those of :class:`~autosteer_interp.evaluate.EvalRow`.
    """

    benchmark: str
    set: str
    kind: str
    method: str
    n: int
    refusal_rate: float
    attack_success_rate: float | None
    over_refusal: float | None
    full_refusal: float | None
    partial_refusal: float | None
    utility: float | None
    gate_rate: float | None
    seconds: float
    new_tokens: int
    tokens_per_s: float


@dataclass
class CategoryRow:
    """One method on the requests of one category and label of a benchmark.

    Attributes:
        benchmark: The benchmark's name.
        category: The benchmark's category (``"uncategorized"`` for requests without one).
        label: ``"harmful"`` or ``"benign"``.
        method: ``"orig"``, ``"steer"`` or ``"autosteer"``.
        n: Requests of the category the method ran on (fewer for Steer with a ``steer_limit``).
        refusal_rate: Share the judge calls refusals (``None`` when ``n`` is 0).
        full_refusal: Share the three-way judge labels ``"refusal"`` (``None`` without one, or when ``n`` is 0).
        partial_refusal: Share labelled ``"partial"``.
    """

    benchmark: str
    category: str
    label: str
    method: str
    n: int
    refusal_rate: float | None
    full_refusal: float | None
    partial_refusal: float | None


@dataclass
class BenchmarkResult:
    """The results of one benchmark.

    Attributes:
        name: The benchmark's name.
        loader: The loader that read it.
        source: The file it was read from.
        report: The :class:`~autosteer_interp.evaluate.EvalReport` of its sets (generations included).
        rows: One :class:`BenchRow` per (set, method).
        categories: One :class:`CategoryRow` per (label, category, method).
        scores: P(harmful) per request, by label (``{"harmful": [...], "benign": [...]}``), rounded to 6 digits.
        score_source: ``"autosteer run"`` or ``"prober on activations"``.
        auroc: The prober AUROC (``None`` when the suite has no request of the other label).
        auroc_basis: What was compared (see the module docstring).
        key: The cache key.
    """

    name: str
    loader: str
    source: str
    report: EvalReport
    rows: list[BenchRow]
    categories: list[CategoryRow]
    scores: dict[str, list[float]]
    score_source: str
    auroc: float | None
    auroc_basis: str
    key: str

    @property
    def labels(self) -> list[str]:
        """The labels present, harmful first."""
        return [label for label in _LABEL_ORDER if label in self.scores]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no generations)."""
        return {
            "name": self.name,
            "loader": self.loader,
            "source": self.source,
            "n": sum(len(scores) for scores in self.scores.values()),
            "labels": self.labels,
            "auroc": self.auroc,
            "auroc_basis": self.auroc_basis,
            "score_source": self.score_source,
            "eval_auroc": self.report.auroc,
            "key": self.key,
        }


@dataclass
class BenchReport:
    """The result of :func:`run_benchmarks`.

    Attributes:
        benchmarks: One :class:`BenchmarkResult` per benchmark, in suite order.
        auroc: Prober AUROC of every harmful request of the suite against every benign one (``None`` without both).
        meta: Settings: model and its fingerprint, the gate, judge, methods, decoding, batch size, Steer subsample.
        skipped: Benchmarks taken from the cache of an earlier run (not part of the serialised report).
    """

    benchmarks: list[BenchmarkResult]
    auroc: float | None
    meta: dict[str, Any]
    skipped: list[str] = field(default_factory=list, compare=False)

    @property
    def names(self) -> list[str]:
        """Benchmark names in suite order."""
        return [result.name for result in self.benchmarks]

    @property
    def methods(self) -> list[str]:
        """The methods run."""
        return list(self.meta["methods"])

    @property
    def rows(self) -> list[BenchRow]:
        """Every (benchmark, set, method) row."""
        return [row for result in self.benchmarks for row in result.rows]

    @property
    def categories(self) -> list[CategoryRow]:
        """Every (benchmark, label, category, method) row."""
        return [row for result in self.benchmarks for row in result.categories]

    def result(self, name: str) -> BenchmarkResult:
        """The results of one benchmark.

        Raises:
            InvalidInputError: If there is no such benchmark.
        """
        for result in self.benchmarks:
            if result.name == name:
                return result
        raise InvalidInputError(f"no benchmark {name!r} in the report; benchmarks: {self.names}.")

    def row(self, benchmark: str, label: str, method: str) -> BenchRow:
        """The row of one benchmark's harmful or benign set and one method.

        Raises:
            InvalidInputError: If there is no such row.
        """
        for row in self.result(benchmark).rows:
            if row.kind == label and row.method == method:
                return row
        raise InvalidInputError(f"no {label!r} row for method {method!r} in benchmark {benchmark!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (the generations are in :meth:`generations`)."""
        return {
            "meta": self.meta,
            "auroc": self.auroc,
            "benchmarks": [result.to_dict() for result in self.benchmarks],
            "rows": [asdict(row) for row in self.rows],
            "categories": [asdict(row) for row in self.categories],
        }

    def to_json(self, indent: int = 2) -> str:
        """The report as a JSON string (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent)

    def generations(self) -> list[dict[str, Any]]:
        """One record per generated answer: benchmark, set, kind, method, index, prompt, output, refused (+ gate)."""
        return [{"benchmark": r.name, **record} for r in self.benchmarks for record in r.report.generations()]

    def to_markdown(self) -> str:
        """The summary table (one line per benchmark, set and metric; one column per method), the AUROC table,
        then one category table per benchmark."""
        methods = self.methods
        labels = " | ".join(METHOD_LABELS[m] for m in methods)
        meta = self.meta
        title = f"# Benchmarks: {Path(meta['suite']).name}" if meta.get("suite") else "# Benchmarks"
        lines = [
            title,
            "",
            f"Model {meta['model']} (fingerprint {meta['model_fingerprint']}); AutoSteer gate on layers "
            f"{meta['layers']}, threshold {meta['threshold']}, epsilon {meta['epsilon']}; judge: {meta['judge']}; "
            f"greedy, {meta['max_new_tokens']} new tokens.",
            "",
            "## Summary",
            "",
            f"| benchmark | set | n | metric | {labels} |",
            "|" + "---|" * (4 + len(methods)),
        ]
        for result in self.benchmarks:
            for label in result.labels:
                lines += _summary_lines(result, label, methods)
            lines.append(f"| {result.name} | all | | tokens/s | {_speeds(result.rows, methods)} |")
        lines.append(f"| all | | | tokens/s | {_speeds(self.rows, methods)} |")
        notes = [
            "",
            "Attack success: share of harmful requests answered, not refused. Over-refusal: share of benign requests "
            "refused. Same as Orig: share of benign answers identical to the unsteered model's. Lower is better for "
            "the first two.",
        ]
        if meta.get("steer_limit") is not None and "steer" in methods:
            notes.append(f"Steer (always on) ran on the first {meta['steer_limit']} requests of each set.")
        lines += notes
        lines += ["", "## Prober AUROC", "", "| benchmark | AUROC | compared |", "|---|---|---|"]
        for result in self.benchmarks:
            lines.append(f"| {result.name} | {_number(result.auroc)} | {result.auroc_basis} |")
        lines += ["", f"All harmful requests of the suite vs all benign ones: {_number(self.auroc)}."]
        for result in self.benchmarks:
            lines += ["", f"## {result.name}", "", _category_table(result, methods)]
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None, title: str | None = None) -> Any:
        """Bar chart of attack success (harmful sets) and over-refusal (benign sets) per method, every benchmark.

        Returns:
            The matplotlib figure.
        """
        rows = [EvalRow(**{k: v for k, v in asdict(row).items() if k in _EVAL_ROW_FIELDS}) for row in self.rows]
        combined = EvalReport(rows=rows, auroc=self.auroc, auroc_per_set={}, meta=self.meta)
        return combined.plot(path, title=title or f"Orig / Steer / AutoSteer on {len(self.benchmarks)} benchmarks")

    def save(self, out: str | Path) -> str:
        """Write ``report.json``, ``report.md``, ``generations.jsonl`` and ``report.png`` into ``out`` (atomically
        each); returns a note on the plot (matplotlib is optional)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "report.json", self.to_json() + "\n")
        _write_atomic(out / "report.md", self.to_markdown() + "\n")
        _write_atomic(out / "generations.jsonl", "".join(json.dumps(r) + "\n" for r in self.generations()))
        try:
            self.plot(out / "report.png")
        except ImportError:
            return " (install matplotlib for plots)"
        return f", plot {out / 'report.png'}"


_EVAL_ROW_FIELDS = {f.name for f in dataclasses.fields(EvalRow)}


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _summary_lines(result: BenchmarkResult, label: str, methods: list[str]) -> list[str]:
    rows = {row.method: row for row in result.rows if row.kind == label}
    first = rows[methods[0]]
    n = max(row.n for row in rows.values())
    metrics = (
        [("attack_success_rate", "attack success ↓")] if label == "harmful" else [("over_refusal", "over-refusal ↓")]
    )
    if first.full_refusal is not None:
        metrics += [("full_refusal", "full refusal"), ("partial_refusal", "partial refusal")]
    if label == "benign" and "orig" in methods:
        metrics.append(("utility", "same as Orig ↑"))
    if "autosteer" in methods:
        metrics.append(("gate_rate", "gate on"))
    return [
        f"| {result.name} | {label} | {n} | {text} | "
        + " | ".join(_percent(getattr(rows[m], metric)) for m in methods)
        + " |"
        for metric, text in metrics
    ]


def _speeds(rows: Sequence[BenchRow], methods: list[str]) -> str:
    cells = []
    for method in methods:
        tokens = sum(row.new_tokens for row in rows if row.method == method)
        seconds = sum(row.seconds for row in rows if row.method == method)
        cells.append(f"{tokens / seconds:.0f}" if seconds > 0 else "–")
    return " | ".join(cells)


def _category_table(result: BenchmarkResult, methods: list[str]) -> str:
    header = f"| category | label | n | metric | {' | '.join(METHOD_LABELS[m] for m in methods)} |"
    lines = [
        "Refusal rate per category: the share of the category's requests the judge calls refusals.",
        "",
        header,
        "|" + "---|" * (4 + len(methods)),
    ]
    groups: dict[tuple[str, str], dict[str, CategoryRow]] = {}
    for row in result.categories:
        groups.setdefault((row.label, row.category), {})[row.method] = row
    for (label, category), by_method in groups.items():
        n = max(row.n for row in by_method.values())
        metrics = [("refusal_rate", "refusal")]
        if any(row.full_refusal is not None for row in by_method.values()):
            metrics += [("full_refusal", "full refusal"), ("partial_refusal", "partial refusal")]
        for metric, text in metrics:
            cells = []
            for method in methods:
                row = by_method[method]
                cell = _percent(getattr(row, metric))
                cells.append(cell if row.n in (0, n) else f"{cell} (n={row.n})")
            lines.append(f"| {category} | {label} | {n} | {text} | {' | '.join(cells)} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ identity


def _sha256(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _data_digest(bench: SuiteBenchmark) -> str:
    """The benchmark file's hash and the selected requests (text, image file hash, label, category)."""
    items = []
    for item in bench.data.items:
        image = item.prompt.image
        image_id = file_sha256(Path(image)) if isinstance(image, str | Path) and Path(image).is_file() else None
        items.append([item.prompt.text, image_id, item.label, item.category])
    source = Path(bench.data.source)
    return _sha256({"file": file_sha256(source) if source.is_file() else None, "items": items})


def _model_identity(model: Any, name: str) -> tuple[str, str]:
    """(the cache identity, the short display fingerprint) of a wrapped model."""
    from .provenance import ModelProvenance

    provenance = ModelProvenance.of(model)
    return _sha256({"name": name, "provenance": provenance.to_dict()}), provenance.fingerprint


def _steer_identity(steer: Any, directory: Path | None) -> str:
    """The content of the artefact's ``checksums.json``; for an object, its tensors and settings."""
    settings = {
        "layers": list(steer.layers),
        "threshold": steer.threshold,
        "epsilon": steer.epsilon,
        "gate_mode": steer.gate_mode,
    }
    if directory is not None and (directory / "checksums.json").is_file():
        return _sha256({"checksums": (directory / "checksums.json").read_text(encoding="utf-8"), **settings})
    digest = hashlib.sha256()
    for part in (steer.prober, steer.head):
        for key, tensor in sorted(part.state_dict().items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{key} {tensor.dtype} {list(tensor.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    config = getattr(steer.prober, "config", None)
    settings["prober_config"] = (
        asdict(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else repr(config)
    )
    return _sha256({"tensors": digest.hexdigest(), **settings})


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:48] or "benchmark"


# ------------------------------------------------------------------------------------------------ cache


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; the usual permissions, as artefacts get
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, key: str, say: Callable[[str], None]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        say(f"ignoring the unreadable cache entry {path} ({error}); running the benchmark again.")
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or entry.get("cache_version") != CACHE_VERSION:
        say(f"ignoring the cache entry {path}: it does not hold this key; running the benchmark again.")
        return None
    return entry


# ------------------------------------------------------------------------------------------------ run


def _three_way(judge: Any) -> Callable[[list[str], list[str]], list[str]] | None:
    """The judge's ``labels(answers, requests)`` if it has one taking those two arguments."""
    labels = getattr(judge, "labels", None)
    if not callable(labels):
        return None
    try:
        inspect.signature(labels).bind(["answer"], ["request"])
    except (TypeError, ValueError):
        return None
    return labels


def _run_labels(
    labeller: Callable[[list[str], list[str]], list[str]], texts: list[str], requests: list[str], where: str
) -> list[str]:
    found = list(labeller(texts, requests))
    bad = [label for label in found if label not in THREE_WAY_LABELS]
    if len(found) != len(texts) or bad:
        raise InvalidInputError(
            f"the judge's labels(answers, requests) must return one of {list(THREE_WAY_LABELS)} per answer; for "
            f"{where} it returned {len(found)} labels for {len(texts)} answers"
            + (f", including {bad[0]!r}." if bad else ".")
        )
    return found


def _category_lists(data: BenchmarkSet) -> dict[str, list[str]]:
    """Per label present, the category of each request of that label, in order (``by_category``'s names)."""
    found: dict[str, list[str]] = {}
    for label, part in data.split_by_label().items():
        position = {id(item): index for index, item in enumerate(part.items)}
        categories = [""] * len(part.items)
        for category, items in part.by_category().items():
            for item in items:
                categories[position[id(item)]] = category
        found[label] = categories
    return found


def _prober_scores(model: Any, steer: Any, data: BenchmarkSet, batch_size: int, progress: bool) -> list[float]:
    from .activations import collect_activations

    acts = collect_activations(model, data.prompts, list(steer.layers), batch_size=batch_size, progress=progress)
    return [round(float(p), 6) for p in steer.prober.predict_proba(acts.values).tolist()]


def _compute_entry(
    model: Any,
    steer: Any,
    bench: SuiteBenchmark,
    key: str,
    judge: Any,
    labeller: Callable[[list[str], list[str]], list[str]] | None,
    settings: dict[str, Any],
    progress: bool,
) -> dict[str, Any]:
    sets = bench.data.to_eval_sets()
    report = evaluate(
        model,
        steer,
        sets,
        judge=judge,
        methods=settings["methods"],
        batch_size=settings["batch_size"],
        max_new_tokens=settings["max_new_tokens"],
        steer_limit=settings["steer_limit"],
        progress=progress,
    )
    three_way: dict[str, dict[str, list[str]]] | None = None
    if labeller is not None:
        three_way = {}
        for eval_set in sets:
            three_way[eval_set.name] = {}
            for method, items in report.outputs[eval_set.name].items():
                texts = [item["output"] for item in items]
                requests = [prompt.text for prompt in eval_set.prompts[: len(texts)]]
                where = f"{eval_set.name} / {METHOD_LABELS[method]}"
                three_way[eval_set.name][method] = _run_labels(labeller, texts, requests, where)
    if "autosteer" in settings["methods"]:
        scores = {s.kind: [item["p_harmful"] for item in report.outputs[s.name]["autosteer"]] for s in sets}
        score_source = "autosteer run"
    else:
        parts = bench.data.split_by_label()
        scores = {
            label: _prober_scores(model, steer, part, settings["batch_size"], progress) for label, part in parts.items()
        }
        score_source = "prober on activations"
    entry = {
        "cache_version": CACHE_VERSION,
        "key": key,
        "benchmark": {
            "name": bench.name,
            "loader": bench.loader,
            "source": bench.data.source,
            "options": bench.options,
            "limit": bench.limit,
        },
        "report": report.to_dict(with_outputs=True),
        "categories": _category_lists(bench.data),
        "three_way": three_way,
        "scores": scores,
        "score_source": score_source,
    }
    return json.loads(json.dumps(entry, default=str))  # exactly what a later run reads back


def _result_from_entry(entry: dict[str, Any]) -> BenchmarkResult:
    """A :class:`BenchmarkResult` from a cache entry (AUROC filled in later, across the suite)."""
    info, data = entry["benchmark"], entry["report"]
    report = EvalReport(
        rows=[EvalRow(**row) for row in data["rows"]],
        auroc=data["auroc"],
        auroc_per_set=data["auroc_per_set"],
        meta=data["meta"],
        outputs=data["outputs"],
    )
    three_way = entry["three_way"]
    rows = []
    for row in report.rows:
        full = partial = None
        if three_way is not None:
            labels = three_way[row.set][row.method]
            full, partial = labels.count("refusal") / len(labels), labels.count("partial") / len(labels)
        rows.append(BenchRow(benchmark=info["name"], full_refusal=full, partial_refusal=partial, **asdict(row)))
    categories = []
    for label, set_categories in entry["categories"].items():
        set_name = f"{info['name']} {label}"
        for category in dict.fromkeys(set_categories):
            for method in report.methods:
                items = report.outputs[set_name][method]
                chosen = [i for i in range(len(items)) if set_categories[i] == category]
                refused = [items[i]["refused"] for i in chosen]
                full = partial = None
                if three_way is not None and chosen:
                    labels = [three_way[set_name][method][i] for i in chosen]
                    full, partial = labels.count("refusal") / len(labels), labels.count("partial") / len(labels)
                categories.append(
                    CategoryRow(
                        benchmark=info["name"],
                        category=category,
                        label=label,
                        method=method,
                        n=len(chosen),
                        refusal_rate=sum(refused) / len(refused) if refused else None,
                        full_refusal=full,
                        partial_refusal=partial,
                    )
                )
    return BenchmarkResult(
        name=info["name"],
        loader=info["loader"],
        source=info["source"],
        report=report,
        rows=rows,
        categories=categories,
        scores={label: [float(p) for p in values] for label, values in entry["scores"].items()},
        score_source=entry["score_source"],
        auroc=None,
        auroc_basis="",
        key=entry["key"],
    )


def _fill_auroc(results: list[BenchmarkResult]) -> float | None:
    """Each benchmark's AUROC (see the module docstring); returns the suite-wide one."""
    for result in results:
        others = [r for r in results if r is not result]
        if "harmful" in result.scores and "benign" in result.scores:
            within = result.report.auroc  # evaluate's, from the unrounded P(harmful), when AutoSteer ran
            result.auroc = within if within is not None else auroc(result.scores["harmful"], result.scores["benign"])
            result.auroc_basis = f"harmful vs benign within {result.name}"
            continue
        label = "harmful" if "harmful" in result.scores else "benign"
        other = "benign" if label == "harmful" else "harmful"
        pool = [r for r in others if other in r.scores]
        pooled = [p for r in pool for p in r.scores[other]]
        if not pooled:
            result.auroc, result.auroc_basis = None, f"no {other} request in the suite to compare with"
            continue
        names = ", ".join(f"{r.name} {other}" for r in pool)
        if label == "harmful":
            result.auroc = auroc(result.scores["harmful"], pooled)
            result.auroc_basis = f"{result.name} harmful vs the suite's benign sets ({names})"
        else:
            result.auroc = auroc(pooled, result.scores["benign"])
            result.auroc_basis = f"the suite's harmful sets ({names}) vs {result.name} benign"
    harmful = [p for r in results for p in r.scores.get("harmful", [])]
    benign = [p for r in results for p in r.scores.get("benign", [])]
    return auroc(harmful, benign)


def run_benchmarks(
    model: Any,
    steer: Any,
    suite: Suite | str | Path,
    judge: Any = None,
    out: str | Path | None = None,
    methods: Sequence[str] | None = None,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    steer_limit: int | None = None,
    resume: bool = False,
    progress: bool = True,
    model_name: str | None = None,
    say: Callable[[str], None] | None = None,
) -> BenchReport:
    """Run Orig / Steer / AutoSteer on every benchmark of a suite; with ``out``, cache and report there.

    Args:
        model: The wrapped model the AutoSteer was fitted on.
        steer: A fitted :class:`~autosteer_interp.steer.AutoSteer`, or its artefact folder (then its
            ``checksums.json`` identifies it in the cache).
        suite: A :class:`Suite` or a suite TOML file (see :func:`load_suite`).
        judge: ``None`` (refusal substrings), a judge, a text-classification pipeline or a ``text -> bool``;
            with a ``labels(answers, requests)`` method (three-way), full and partial refusal are reported too.
        out: Folder for ``cache/``, ``report.json``, ``report.md``, ``report.png``, ``generations.jsonl``
            (``None``: nothing is written, nothing cached).
        methods: A subset of :data:`~autosteer_interp.evaluate.METHODS` (default: the suite's, else all).
        batch_size: Prompts per ``generate`` call.
        max_new_tokens: Answer length, greedy decoding (default: the suite's, else 32).
        steer_limit: Run the always-on Steer row on the first ``steer_limit`` requests of each set only.
        resume: Reuse the cached benchmarks of an earlier run into the same ``out``.
        progress: Show progress bars.
        model_name: Names the model in the report and the cache key (default: its config's ``_name_or_path``).
        say: Where notes go, e.g. which benchmarks were skipped (default: this module's logger, level INFO).

    Returns:
        A :class:`BenchReport`; ``skipped`` names the benchmarks read from the cache.

    Raises:
        InvalidInputError: Bad settings, ``out`` not empty without ``resume``, a prompt longer than the model's
            context; all checked before any generation.
        DataFormatError: A suite file or benchmark file is missing or malformed.
    """
    from .architectures import unwrap
    from .steer import AutoSteer

    say = say or logger.info
    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    steer_dir: Path | None = None
    if isinstance(steer, str | Path):
        steer_dir = Path(steer)
        steer = AutoSteer.load(steer_dir, model)
    settings = {
        "methods": _check_methods(list(methods) if methods is not None else suite.methods or list(METHODS)),
        "batch_size": positive_int(batch_size, "batch_size"),
        "max_new_tokens": positive_int(
            max_new_tokens if max_new_tokens is not None else suite.max_new_tokens or DEFAULT_NEW_TOKENS,
            "max_new_tokens",
        ),
        "steer_limit": positive_int(steer_limit, "steer_limit") if steer_limit is not None else None,
    }
    judge_object = make_judge(judge)
    labeller = _three_way(judge)
    if not isinstance(resume, bool):
        raise InvalidInputError(f"resume must be True or False, got {resume!r}.")
    cache: Path | None = None
    if out is not None:
        out = check_bench_output(out, resume, "out")
        cache = Path(out) / CACHE_DIR
    for bench in suite.benchmarks:
        check_prompt_lengths(model, bench.data.prompts, f"the requests of benchmark {bench.name!r}")
    steer.check_model(model)

    from . import __version__

    hf_model = unwrap(model)
    name = model_name or getattr(getattr(hf_model, "config", None), "_name_or_path", "") or type(hf_model).__name__
    model_id, fingerprint = _model_identity(model, name)
    steer_id = _steer_identity(steer, steer_dir)
    common = {
        "cache_version": CACHE_VERSION,
        "library_version": __version__,
        "model": model_id,
        "steer": steer_id,
        "judge": judge_object.name,
        "three_way": labeller is not None,
        **settings,
    }
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)

    results: list[BenchmarkResult] = []
    skipped: list[str] = []
    with tqdm(total=len(suite.benchmarks), desc="benchmarks", unit="benchmark", disable=not progress) as bar:
        for bench in suite.benchmarks:
            bar.set_postfix_str(bench.name)
            key_data = {
                **common,
                "benchmark": {
                    "name": bench.name,
                    "loader": bench.loader,
                    "data": _data_digest(bench),
                    "options": bench.options,
                    "limit": bench.limit,
                },
            }
            key = _sha256(key_data)
            path = cache / f"{_slug(bench.name)}-{key[:16]}.json" if cache is not None else None
            entry = _read_cache(path, key, say) if path is not None and resume else None
            if entry is not None:
                say(f"skipped {bench.name}: finished in an earlier run (cached in {path}).")
                skipped.append(bench.name)
            else:
                entry = _compute_entry(model, steer, bench, key, judge, labeller, settings, progress)
                if path is not None:
                    _write_atomic(path, json.dumps(entry) + "\n")
            results.append(_result_from_entry(entry))
            bar.update(1)

    meta = {
        "suite": suite.source,
        "model": name,
        "model_fingerprint": fingerprint,
        "steer": steer_id[:16],
        "layers": list(steer.layers),
        "threshold": steer.threshold,
        "epsilon": steer.epsilon,
        "gate_mode": steer.gate_mode,
        "judge": judge_object.name,
        "three_way_judge": labeller is not None,
        **settings,
        "library_version": __version__,
    }
    report = BenchReport(results, _fill_auroc(results), meta, skipped)
    if out is not None:
        report.save(out)
    return report
