"""Benchmark suites end to end on the tiny random LLaVA-OneVision: structure and consistency, not quality.

The suite reads the bundled fixture files (placeholder requests in the published layouts). The model has random
weights, so the tests check that every benchmark, set and category is reported, that the numbers are those of
calling :func:`~autosteer_interp.evaluate.evaluate` directly, that a resumed run generates nothing, and that a
bad suite is refused before the model loads.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autosteer_interp import bench as bench_module
from autosteer_interp import cli
from autosteer_interp.bench import Suite, load_suite, run_benchmarks
from autosteer_interp.errors import DataFormatError, InvalidInputError
from autosteer_interp.evaluate import CallableJudge, auroc, evaluate
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.provenance import ModelProvenance
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.steer import AutoSteer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"
FIXTURE_SUITE = REPO / "tests" / "fixtures" / "suites" / "fixtures.toml"
TINY = ["--model", "tiny-llava-onevision"]
SETTINGS = {"batch_size": 4, "max_new_tokens": 2, "steer_limit": 2}


# ------------------------------------------------------------------------------------------------ workspace


def _label(request: str) -> str:
    return ("refusal", "partial", "compliance")[len(request) % 3]


class ThreeWayJudge(CallableJudge):
    """Refusal when the answer's length is odd; a three-way label from the request's length (a stand-in for a
    chat-model judge: random weights give no real refusals)."""

    def __init__(self) -> None:
        super().__init__(lambda text: len(text) % 2 == 1, name="three-way stand-in")
        self.calls: list[tuple[list[str], list[str]]] = []

    def labels(self, answers, requests):
        self.calls.append((list(answers), list(requests)))
        return [_label(request) for request in requests]


SUITE_TOML = f"""
max_new_tokens = 2

[[benchmark]]
name = "XSTest"
loader = "xstest"
path = "{FIXTURES / "xstest_prompts.csv"}"
limit = 7

[[benchmark]]
name = "AdvBench"
loader = "advbench"
path = "{FIXTURES / "harmful_behaviors.csv"}"

[[benchmark]]
name = "HarmBench"
loader = "harmbench"
path = "{FIXTURES / "harmbench_behaviors_text_all.csv"}"
[benchmark.options]
functional_categories = ["standard", "contextual"]

[[benchmark]]
name = "Alpaca"
loader = "alpaca"
path = "data/alpaca_data.json"
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_llava):
    root = tmp_path_factory.mktemp("bench")
    (root / "data").mkdir()
    shutil.copy(FIXTURES / "alpaca_data.json", root / "data" / "alpaca_data.json")  # read by a relative path
    (root / "suite.toml").write_text(SUITE_TOML)
    prober = SafetyProber(64, ProberConfig(kind="linear"), layers=[2])
    head = RefusalHead(64, epsilon=0.1)
    prober.provenance = head.provenance = ModelProvenance.of(tiny_llava)
    AutoSteer(prober, head).save(root / "steer")
    return root


@pytest.fixture(scope="module")
def steer(workspace):
    return AutoSteer.load(workspace / "steer")


def _count_generate(monkeypatch, model):
    """Count the calls of ``model._module.generate``; wrapped on its class, because the gate's hooks replace (and
    then delete) the instance attribute during every AutoSteer run."""
    calls = []
    cls = type(model._module)
    original = cls.generate

    def counting(self, *args, **kwargs):
        if self is model._module:
            calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "generate", counting)
    return calls


@pytest.fixture(scope="module")
def bench_run(workspace, tiny_llava):
    judge = ThreeWayJudge()
    out = workspace / "out"
    with pytest.MonkeyPatch.context() as patch:
        calls = _count_generate(patch, tiny_llava)
        report = run_benchmarks(
            tiny_llava, workspace / "steer", workspace / "suite.toml", judge=judge, out=out, progress=False, **SETTINGS
        )
    return report, judge, out, len(calls)


# ------------------------------------------------------------------------------------------------ suite


def test_a_suite_resolves_relative_paths_against_its_folder_and_applies_limits(workspace):
    suite = load_suite(workspace / "suite.toml")
    assert suite.names == ["XSTest", "AdvBench", "HarmBench", "Alpaca"]
    assert suite.max_new_tokens == 2 and suite.methods is None
    alpaca = suite.benchmarks[3]
    assert alpaca.path == workspace / "data" / "alpaca_data.json" and len(alpaca.data) == 3
    assert len(suite.benchmarks[0].data) == 7 and suite.benchmarks[0].data.name == "XSTest"
    assert suite.benchmarks[2].options == {"functional_categories": ["standard", "contextual"]}
    assert len(suite.benchmarks[2].data) == 3  # the copyright behaviour is left out


def test_the_bundled_fixture_suite_loads():
    suite = load_suite(FIXTURE_SUITE)
    assert suite.names == ["XSTest", "AdvBench", "HarmBench", "JBB-Behaviors", "Alpaca"]
    assert [b.data.labels[0] for b in suite.benchmarks] == ["benign", "harmful", "harmful", "benign", "benign"]


def _suite_text(**changes):
    """A one-benchmark suite (XSTest fixture) with fields replaced or added; None drops a field."""
    fields = {"name": '"XSTest"', "loader": '"xstest"', "path": f'"{FIXTURES / "xstest_prompts.csv"}"'}
    fields.update(changes)
    body = "\n".join(f"{key} = {value}" for key, value in fields.items() if value is not None)
    return f"[[benchmark]]\n{body}\n"


BAD_SUITES = [
    ("unknown-loader", _suite_text(loader='"xstset"'), InvalidInputError, r"unknown loader 'xstset'; allowed: \["),
    ("missing-file", _suite_text(path='"nope/xstest_prompts.csv"'), DataFormatError, "XSTest file not found"),
    ("duplicate-names", _suite_text() + _suite_text(), InvalidInputError, "'XSTest' is already used"),
    ("limit-zero", _suite_text(limit="0"), InvalidInputError, "limit must be a positive integer, got 0"),
    ("limit-negative", _suite_text(limit="-2"), InvalidInputError, "limit must be a positive integer, got -2"),
    ("limit-string", _suite_text(limit='"5"'), InvalidInputError, "limit must be a positive integer, got '5'"),
    ("limit-bool", _suite_text(limit="true"), InvalidInputError, "limit must be a positive integer, got True"),
    ("limit-float", _suite_text(limit="2.5"), InvalidInputError, "limit must be a positive integer, got 2.5"),
    ("limit-past-data", _suite_text(limit="100"), InvalidInputError, "limit 100 runs past the data: .* holds 8"),
    ("not-toml", "this is = = not toml\n", DataFormatError, r"not valid TOML \(.*line 1"),
    ("no-benchmark", "max_new_tokens = 4\n", InvalidInputError, r"no benchmark; add at least one \[\[benchmark\]\]"),
    ("unknown-top-key", "max_new_token = 4\n" + _suite_text(), InvalidInputError, "unknown top-level key"),
    ("unknown-key", _suite_text(file='"x.csv"'), InvalidInputError, r"unknown key\(s\) \['file'\]; allowed"),
    ("missing-path", _suite_text(path=None), InvalidInputError, "'path' must be a non-empty string, got None"),
    ("unknown-option", _suite_text() + "[benchmark.options]\ntiny = true\n", InvalidInputError, "takes no option"),
    (
        "bad-option-value",
        _suite_text(loader='"harmbench"', path=f'"{FIXTURES / "harmbench_behaviors_text_all.csv"}"')
        + '[benchmark.options]\nfunctional_categories = ["weird"]\n',
        InvalidInputError,
        r"benchmark #1 \('XSTest'\): functional_categories must be",
    ),
    (
        "option-of-wrong-type",
        _suite_text(loader='"harmbench"', path=f'"{FIXTURES / "harmbench_behaviors_text_all.csv"}"')
        + "[benchmark.options]\nfunctional_categories = 5\n",
        InvalidInputError,
        r"benchmark #1 \('XSTest'\): ",
    ),
    ("bad-methods", 'methods = ["orig", "magic"]\n' + _suite_text(), InvalidInputError, "methods must be distinct"),
    ("bad-max-new-tokens", "max_new_tokens = 0\n" + _suite_text(), InvalidInputError, "max_new_tokens must be a"),
    (
        "wrong-file-for-loader",
        _suite_text(loader='"advbench"'),
        DataFormatError,
        "wrong columns for AdvBench",
    ),
]


@pytest.mark.parametrize(
    ("text", "error", "message"), [case[1:] for case in BAD_SUITES], ids=[c[0] for c in BAD_SUITES]
)
def test_load_suite_refuses_a_bad_suite_with_a_message_that_teaches(tmp_path, text, error, message):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    with pytest.raises(error, match=message):
        load_suite(path)


def test_a_missing_or_non_utf8_suite_file_is_a_data_format_error(tmp_path):
    with pytest.raises(DataFormatError, match="suite file not found"):
        load_suite(tmp_path / "none.toml")
    (tmp_path / "latin1.toml").write_bytes(b'# caf\xe9\n[[benchmark]]\nname = "x"\n')
    with pytest.raises(DataFormatError, match="not valid UTF-8"):
        load_suite(tmp_path / "latin1.toml")


def test_a_suite_can_be_built_from_a_dict_and_takes_methods_as_a_string():
    suite = Suite.from_dict(
        {
            "methods": "orig, autosteer",
            "benchmark": [{"name": "A", "loader": "advbench", "path": "harmful_behaviors.csv"}],
        },
        base=FIXTURES,
    )
    assert suite.methods == ["orig", "autosteer"] and suite.benchmarks[0].path == FIXTURES / "harmful_behaviors.csv"


# ------------------------------------------------------------------------------------------------ the report


def test_every_benchmark_set_and_category_is_reported(bench_run, workspace):
    report, _, _, generate_calls = bench_run
    suite = load_suite(workspace / "suite.toml")
    assert generate_calls > 0 and report.skipped == []
    assert report.names == suite.names and report.methods == ["orig", "steer", "autosteer"]
    for bench in suite.benchmarks:
        result = report.result(bench.name)
        assert result.labels == [label for label in ("harmful", "benign") if label in bench.data.labels]
        assert [(r.set, r.method) for r in result.rows] == [
            (f"{bench.name} {label}", m) for label in result.labels for m in ("orig", "steer", "autosteer")
        ]
        expected = {
            (label, category): len(items)
            for label, part in bench.data.split_by_label().items()
            for category, items in part.by_category().items()
        }
        found = {(row.label, row.category): row.n for row in result.categories if row.method == "orig"}
        assert found == expected
    xstest = {row.category for row in report.result("XSTest").categories}
    assert {"homonyms", "contrast_homonyms", "figurative_language", "definitions", "contrast_discr"} <= xstest
    harmbench = {row.category for row in report.result("HarmBench").categories}
    assert harmbench == {"chemical_biological", "misinformation_disinformation", "cybercrime_intrusion"}
    assert {row.category for row in report.result("AdvBench").categories} == {"uncategorized"}


def test_every_rate_is_a_share_and_follows_the_judge(bench_run):
    report, _, _, _ = bench_run
    for row in report.rows:
        for value in (row.refusal_rate, row.utility, row.gate_rate, row.full_refusal, row.partial_refusal):
            assert value is None or 0.0 <= value <= 1.0
        if row.kind == "harmful":
            assert row.attack_success_rate == pytest.approx(1 - row.refusal_rate) and row.over_refusal is None
        else:
            assert row.over_refusal == row.refusal_rate and row.attack_success_rate is None
        assert row.n == (2 if row.method == "steer" else len(report.result(row.benchmark).scores[row.kind]))
        assert row.tokens_per_s >= 0 and row.new_tokens > 0
    for row in report.categories:
        assert row.refusal_rate is None if row.n == 0 else 0.0 <= row.refusal_rate <= 1.0


def test_the_numbers_equal_a_direct_evaluate_call_on_the_same_sets(bench_run, workspace, tiny_llava, steer):
    report, judge, _, _ = bench_run
    for bench in load_suite(workspace / "suite.toml").benchmarks:
        direct = evaluate(tiny_llava, steer, bench.data.to_eval_sets(), judge=judge, progress=False, **SETTINGS)
        result = report.result(bench.name)
        assert len(direct.rows) == len(result.rows)
        for mine, theirs in zip(result.rows, direct.rows):
            assert (mine.set, mine.method, mine.n, mine.new_tokens) == (
                theirs.set,
                theirs.method,
                theirs.n,
                theirs.new_tokens,
            )
            for metric in ("refusal_rate", "attack_success_rate", "over_refusal", "utility", "gate_rate"):
                assert getattr(mine, metric) == getattr(theirs, metric), (bench.name, mine.set, mine.method, metric)
        for set_name, by_method in direct.outputs.items():
            for method, items in by_method.items():
                assert [i["output"] for i in result.report.outputs[set_name][method]] == [i["output"] for i in items]
        assert result.report.auroc == direct.auroc


def test_category_rates_follow_from_the_judged_answers(bench_run, workspace):
    report, _, _, _ = bench_run
    data = load_suite(workspace / "suite.toml").benchmarks[0].data  # XSTest, both labels
    result = report.result("XSTest")
    for label, part in data.split_by_label().items():
        for method in report.methods:
            items = result.report.outputs[f"XSTest {label}"][method]
            for category, members in part.by_category().items():
                chosen = [i for i, item in enumerate(part.items) if item in members and i < len(items)]
                row = next(r for r in result.categories if (r.label, r.category, r.method) == (label, category, method))
                assert row.n == len(chosen)
                if chosen:
                    assert row.refusal_rate == pytest.approx(sum(items[i]["refused"] for i in chosen) / len(chosen))
                    labels = [_label(part.items[i].prompt.text) for i in chosen]
                    assert row.full_refusal == pytest.approx(labels.count("refusal") / len(chosen))
                    assert row.partial_refusal == pytest.approx(labels.count("partial") / len(chosen))
                else:
                    assert row.refusal_rate is None


def test_a_three_way_judge_gives_full_and_partial_refusal_from_the_request_texts(bench_run, workspace):
    report, judge, _, _ = bench_run
    assert report.meta["three_way_judge"] is True
    assert len(judge.calls) == sum(len(r.rows) for r in report.benchmarks)
    xstest = load_suite(workspace / "suite.toml").benchmarks[0].data.split_by_label()["benign"]
    answers, requests = next(call for call in judge.calls if call[1][0] == xstest.items[0].prompt.text)
    assert requests == [item.prompt.text for item in xstest.items][: len(requests)] and len(answers) == len(requests)
    row = report.row("XSTest", "benign", "orig")
    labels = [_label(item.prompt.text) for item in xstest.items]
    assert row.full_refusal == pytest.approx(labels.count("refusal") / len(labels))
    assert row.partial_refusal == pytest.approx(labels.count("partial") / len(labels))


def test_auroc_is_within_a_benchmark_with_both_labels_else_against_the_suite(bench_run):
    report, _, _, _ = bench_run
    results = {r.name: r for r in report.benchmarks}
    assert results["XSTest"].auroc_basis == "harmful vs benign within XSTest"
    assert results["XSTest"].auroc == results["XSTest"].report.auroc is not None
    benign = results["XSTest"].scores["benign"] + results["Alpaca"].scores["benign"]
    harmful = [p for name in ("XSTest", "AdvBench", "HarmBench") for p in results[name].scores["harmful"]]
    assert results["AdvBench"].auroc == auroc(results["AdvBench"].scores["harmful"], benign)
    assert (
        results["AdvBench"].auroc_basis == "AdvBench harmful vs the suite's benign sets (XSTest benign, Alpaca benign)"
    )
    assert results["Alpaca"].auroc == auroc(harmful, results["Alpaca"].scores["benign"])
    assert results["Alpaca"].auroc_basis.startswith("the suite's harmful sets (XSTest harmful, AdvBench harmful")
    assert report.auroc == auroc(harmful, benign)
    for result in report.benchmarks:
        assert 0.0 <= result.auroc <= 1.0 and result.score_source == "autosteer run"
        outputs = result.report.outputs
        for label, scores in result.scores.items():
            assert scores == [item["p_harmful"] for item in outputs[f"{result.name} {label}"]["autosteer"]]


def test_the_report_files_are_written(bench_run):
    report, _, out, _ = bench_run
    assert json.loads((out / "report.json").read_text()) == json.loads(report.to_json())
    markdown = (out / "report.md").read_text()
    assert markdown.index("## Summary") < markdown.index("## Prober AUROC") < markdown.index("## XSTest")
    assert markdown.index("## XSTest") < markdown.index("## AdvBench") < markdown.index("## Alpaca")
    assert (
        "| XSTest | harmful | 3 | attack success ↓ |" in markdown
        and "| XSTest | benign | 4 | full refusal |" in markdown
    )
    assert "| homonyms | benign | 2 | refusal |" in markdown and "first 2 requests" in markdown
    assert (out / "report.png").stat().st_size > 1000
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(records) == sum(row.n for row in report.rows) and records[0]["benchmark"] == "XSTest"
    entries = sorted(p.name for p in (out / "cache").iterdir())
    assert len(entries) == 4 and all(p.endswith(".json") for p in entries) and entries[0].startswith("AdvBench-")


def test_a_resumed_run_generates_nothing_and_reports_the_same(bench_run, workspace, tiny_llava, monkeypatch):
    report, judge, out, _ = bench_run
    before = (out / "report.json").read_text()
    calls = _count_generate(monkeypatch, tiny_llava)
    said = []
    again = run_benchmarks(
        tiny_llava, workspace / "steer", workspace / "suite.toml", judge=judge, out=out, resume=True,
        progress=False, say=said.append, **SETTINGS,
    )  # fmt: skip
    assert calls == [] and again.skipped == report.names
    assert again.to_dict() == report.to_dict() and (out / "report.json").read_text() == before
    assert [line.split(":")[0] for line in said] == [f"skipped {name}" for name in report.names]


def test_an_existing_output_is_refused_without_resume(bench_run, workspace, tiny_llava):
    _, judge, out, _ = bench_run
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(InvalidInputError, match="exists and is not empty"):
        run_benchmarks(tiny_llava, workspace / "steer", workspace / "suite.toml", out=out, progress=False)
    not_ours = workspace / "not_ours"
    not_ours.mkdir()
    (not_ours / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="holds no cache/ folder"):
        run_benchmarks(tiny_llava, workspace / "steer", workspace / "suite.toml", out=not_ours, resume=True)
    assert sorted(p.name for p in out.rglob("*")) == before and [p.name for p in not_ours.iterdir()] == ["keep.txt"]


def test_an_interrupted_run_loses_only_the_running_benchmark(workspace, tiny_llava, steer, monkeypatch):
    suite = Suite.from_dict(
        {
            "methods": ["orig"],
            "benchmark": [
                {"name": "AdvBench", "loader": "advbench", "path": "harmful_behaviors.csv", "limit": 2},
                {"name": "Alpaca", "loader": "alpaca", "path": "alpaca_data.json", "limit": 2},
            ],
        },
        base=FIXTURES,
    )
    state = {"calls": 0, "interrupt_at": 2}

    def interrupted_on_the_second(*args, **kwargs):
        state["calls"] += 1
        if state["calls"] == state["interrupt_at"]:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(bench_module, "evaluate", interrupted_on_the_second)
    out = workspace / "interrupted"
    kwargs = dict(out=out, batch_size=2, max_new_tokens=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_benchmarks(tiny_llava, steer, suite, **kwargs)
    assert [p.name.split("-")[0] for p in (out / "cache").iterdir()] == ["AdvBench"]
    assert not (out / "report.json").exists()

    state.update(calls=0, interrupt_at=None)
    report = run_benchmarks(tiny_llava, steer, suite, resume=True, **kwargs)
    assert state["calls"] == 1 and report.skipped == ["AdvBench"] and (out / "report.json").is_file()
    result = report.result("AdvBench")
    assert result.score_source == "prober on activations" and result.auroc_basis.endswith("(Alpaca benign)")
    gate = steer.generate(tiny_llava, suite.benchmarks[0].data.prompts, max_new_tokens=1)
    assert result.scores["harmful"] == pytest.approx(gate.p_harmful.tolist(), abs=1e-4)

    changed = run_benchmarks(tiny_llava, steer, suite, resume=True, **{**kwargs, "max_new_tokens": 2})
    assert changed.skipped == [] and state["calls"] == 3  # other settings, other cache keys: both ran again
    assert len(list((out / "cache").iterdir())) == 4


def test_a_judge_whose_labels_break_the_protocol_is_refused(tiny_llava, steer):
    class Bad(CallableJudge):
        def labels(self, answers, requests):
            return ["REJECTION"] * len(answers)

    class OneArgument(CallableJudge):  # like ClassifierJudge.labels(texts): not the three-way protocol
        def labels(self, texts):
            raise AssertionError("not called")

    suite = Suite.from_dict(
        {"benchmark": [{"name": "A", "loader": "advbench", "path": "harmful_behaviors.csv", "limit": 1}]}, FIXTURES
    )
    kwargs = dict(methods=["orig"], max_new_tokens=1, progress=False)
    with pytest.raises(InvalidInputError, match=r"must return one of \['refusal', 'partial', 'compliance'\]"):
        run_benchmarks(tiny_llava, steer, suite, judge=Bad(lambda text: False), **kwargs)
    report = run_benchmarks(tiny_llava, steer, suite, judge=OneArgument(lambda text: False), **kwargs)
    assert report.meta["three_way_judge"] is False and report.rows[0].full_refusal is None


# ------------------------------------------------------------------------------------------------ CLI


def run_cli(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    command = [sys.executable, "-m", "autosteer_interp.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


def test_the_bench_command_runs_a_suite_and_resumes_it(workspace):
    out = workspace / "cli_out"
    argv = [
        "bench", *TINY, "--steer", str(workspace / "steer"), "--suite", str(FIXTURE_SUITE), "--out", str(out),
        "--max-new-tokens", "2", "--batch-size", "4", "-q",
    ]  # fmt: skip
    first = run_cli(*argv, cwd=workspace)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (
        "| XSTest | harmful | 3 | attack success ↓ |" in first.stdout and "Ran 5 benchmark(s), 0 from" in first.stdout
    )
    report = json.loads((out / "report.json").read_text())
    assert [b["name"] for b in report["benchmarks"]] == ["XSTest", "AdvBench", "HarmBench", "JBB-Behaviors", "Alpaca"]
    assert report["meta"]["model"] == "tiny-llava-onevision" and report["meta"]["max_new_tokens"] == 2
    assert (out / "report.md").is_file() and (out / "report.png").stat().st_size > 1000
    files = {name: (out / name).read_bytes() for name in ("report.json", "report.md", "generations.jsonl")}

    again = run_cli(*argv, "--resume", cwd=workspace)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("skipped ") == 5 and "skipped JBB-Behaviors: finished in an earlier run" in again.stderr
    assert "Ran 0 benchmark(s), 5 from the cache" in again.stdout
    assert {name: (out / name).read_bytes() for name in files} == files

    refused = run_cli(*argv, cwd=workspace)
    assert refused.returncode == 2 and "exists and is not empty" in refused.stderr


@pytest.fixture
def no_model(monkeypatch):
    import autosteer_interp.models as models

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(models, "load_model", refuse)


def _snapshot(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}


CLI_BAD = [case for case in BAD_SUITES if case[0] in {
    "unknown-loader", "missing-file", "duplicate-names", "limit-zero", "limit-past-data", "not-toml", "unknown-option",
}]  # fmt: skip


@pytest.mark.parametrize(("text", "error", "message"), [c[1:] for c in CLI_BAD], ids=[c[0] for c in CLI_BAD])
def test_the_cli_refuses_a_bad_suite_before_loading_the_model(workspace, no_model, capsys, text, error, message):
    folder = workspace / "bad_cli"
    folder.mkdir(exist_ok=True)
    (folder / "suite.toml").write_text(text)
    before = _snapshot(workspace)
    out = folder / "out"
    argv = [
        "bench",
        *TINY,
        "--steer",
        str(workspace / "steer"),
        "--suite",
        str(folder / "suite.toml"),
        "--out",
        str(out),
    ]
    with pytest.raises(error, match=message):
        cli.run(argv)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not out.exists() and _snapshot(workspace) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "orig,magic"], "--methods must be"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be a positive integer"),
        (["--steer-limit", "-1"], "--steer-limit must be a positive integer"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--judge", "gpt"], "--judge 'gpt'"),
        (["--suite", "{w}/none.toml"], "suite file not found"),
        (["--steer", "{w}/none"], "no such directory"),
        (["--out", "{w}/not_a_bench_out", "--resume"], "holds no cache/ folder"),
    ],
)
def test_the_cli_checks_every_option_before_loading_the_model(workspace, no_model, capsys, extra, message):
    own = workspace / "not_a_bench_out"
    own.mkdir(exist_ok=True)
    (own / "keep.txt").write_text("mine")
    out = workspace / "never"
    argv = ["bench", *TINY, "--steer", str(workspace / "steer"), "--suite", str(FIXTURE_SUITE), "--out", str(out)]
    code = cli.main([*argv, *(part.replace("{w}", str(workspace)) for part in extra)])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists() and [p.name for p in own.iterdir()] == ["keep.txt"]
