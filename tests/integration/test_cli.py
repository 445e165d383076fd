"""The real CLI, run as a subprocess on a tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autosteer_interp import cli
from autosteer_interp.cli import main


def run_cli(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "autosteer_interp.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def sas_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sas"
    result = run_cli("sas", "--model", "tiny-llava-onevision", "--limit", "8", "--out", str(out), cwd=out.parent)
    return result, out


def test_sas_command_prints_the_table_and_saves_json_and_plot(sas_run):
    result, out = sas_run
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads((out / "sas.json").read_text())
    assert payload["layers"] == [1, 2, 3] and payload["n_pairs"] == 8 and payload["model"] == "tiny-llava-onevision"
    assert f"Best layer: {payload['best_layer']}" in result.stdout
    assert (out / "sas.png").stat().st_size > 1000


def test_a_non_empty_output_directory_is_refused_with_exit_code_2(sas_run):
    _, out = sas_run
    before = sorted(p.name for p in out.iterdir())
    result = run_cli("sas", "--model", "tiny-llava-onevision", "--limit", "8", "--out", str(out), cwd=out.parent)
    assert result.returncode == 2 and "exists and is not empty" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_missing_vlsafe_directory_is_a_clear_error(tmp_path):
    result = run_cli(
        "sas",
        "--model",
        "tiny-llava-onevision",
        "--vlsafe",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_bad_layers_are_a_clear_error(tmp_path):
    result = run_cli(
        "sas",
        "--model",
        "tiny-llava-onevision",
        "--layers",
        "1,x",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "comma-separated integers" in result.stderr
    result = run_cli(
        "sas",
        "--model",
        "tiny-llava-onevision",
        "--layers",
        "1,9",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "outside the allowed distinct integers in 0..3" in result.stderr
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ fit | eval | generate

TINY = ("--model", "tiny-llava-onevision")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """`fit` on 16 built-in pairs of a tiny model, gate trained on those pairs and two request files (fast)."""
    out = tmp_path_factory.mktemp("fit") / "run"
    benign = out.parent / "benign.txt"
    benign.write_text("".join(f"Write a short poem about the number {i}.\n" for i in range(10)))
    result = run_cli(
        "fit", *TINY, "--pairs", "builtin", "--range", "0:16", "--no-gate-data", "--max-wrapped", "0",
        "--probe-layers", "2", "--gate-harmful", f"advbench:{FIXTURES / 'harmful_behaviors.csv'}",
        "--gate-harmful", str(FIXTURES / "harmful-behaviors.csv"), "--gate-benign", str(benign),
        "--pair-weight", "1.5", "--out", str(out), "-q", cwd=out.parent,
    )  # fmt: skip
    return result, out


def test_robustness_reports_every_family_of_the_gate(fit_run, tmp_path):
    _, fit_out = fit_run
    out = tmp_path / "rob"
    result = run_cli(
        "robustness", *TINY, "--steer", str(fit_out), "--pairs", "builtin", "--range", "180:196", "--out", str(out),
        "--harmful", f"hb=harmbench:{FIXTURES / 'harmbench_behaviors_text_all.csv'}", "--benign", "everyday",
        "-q", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "robustness.json").read_text())
    names = [family["name"] for family in report["families"]]
    assert names[:2] == ["in_distribution_harmful", "other_phrasing_harmful"] and names[-3:] == [
        "everyday_benign",
        "hb",
        "everyday",
    ]
    assert len(names) == 11 and report["families"][-2]["n"] == 3  # standard and contextual behaviours
    assert report["families"][0]["n"] == 16 and (out / "robustness.png").stat().st_size > 1000
    assert "| wrapped_harmful | yes |" in result.stdout
    code = main(["robustness", *TINY, "--steer", str(fit_out), "--every-step-tokens", "0", "--out", str(out / "x")])
    assert code == 2 and not (out / "x").exists()


def test_fit_saves_a_loadable_autosteer_with_its_summary_and_plot(fit_run, tiny_llava):
    from autosteer_interp.steer import AutoSteer

    result, out = fit_run
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((out / "fit.json").read_text())
    assert record["n_pairs"] == 16 and record["range"] == [0, 16] and record["model"] == "tiny-llava-onevision"
    steer = AutoSteer.load(out / "autosteer", model=tiny_llava)
    assert list(steer.layers) == record["layers"] and steer.threshold == record["threshold"] and len(steer.layers) == 2
    assert (out / "sas.png").stat().st_size > 1000
    assert "SAS best layer" in result.stdout and "Gate (held-out part" in result.stdout
    counts = record["gate_data"]
    assert counts["train_extra_harmful"] + counts["val_extra_harmful"] == 6  # 3 AdvBench + 3 JBB rows
    assert counts["train_negatives"] + counts["val_negatives"] == 10
    assert record["gate_harmful"][0].startswith("advbench:") and len(record["gate_benign"]) == 1
    assert record["gate_weights"] == {"user_pairs": 1.5, "negatives": 3.0}  # the default negative weight
    assert set(record["flagged"]) >= {"val_harmful", "val_safe", "val_negatives"}
    assert "False alarms on held-out everyday and borderline requests" in result.stdout


def test_eval_writes_the_report_the_generations_and_a_plot(fit_run):
    _, fit_out = fit_run
    out = fit_out.parent / "eval"
    benign = fit_out.parent / "everyday.jsonl"
    benign.write_text("".join(json.dumps({"query": q}) + "\n" for q in ["Hi!", "Name a colour.", "Count to three."]))
    result = run_cli(
        "eval", *TINY, "--steer", str(fit_out), "--pairs", "builtin", "--range", "-4:", "--benign", f"daily={benign}",
        "--steer-limit", "2", "--max-new-tokens", "3", "--out", str(out), "-q", cwd=out.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert [row["set"] for row in report["rows"][::3]] == ["builtin harmful", "builtin safe", "daily"]
    assert [row["n"] for row in report["rows"]] == [4, 2, 4, 4, 2, 4, 3, 2, 3]
    lines = (out / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 28 and json.loads(lines[-1])["prompt"] == "Count to three."
    assert "| builtin harmful | 4 | attack success" in result.stdout
    assert (out / "report.md").read_text().startswith("| set | n | metric |")
    assert (out / "report.png").stat().st_size > 1000


def test_generate_prints_one_json_line_per_prompt_with_the_gate(fit_run):
    _, fit_out = fit_run
    result = run_cli(
        "generate", *TINY, "--steer", str(fit_out), "--prompt", "Hello", "--prompt", "How are you?",
        "--max-new-tokens", "3", cwd=fit_out.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["prompt"] for r in records] == ["Hello", "How are you?"]
    assert all(isinstance(r["gate"], bool) and 0 <= r["p_harmful"] <= 1 for r in records)


# ------------------------------------------------------------------------------------------------ bad input: exit 2


def cli_main(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--range", "1:2:3"], "--range must look like A:B"),
        (["--range", "a:b"], "--range must look like A:B"),
        (["--range", "0:4", "--limit", "2"], "either --range or --limit"),
        (["--range", "500:600"], "runs past the data: --pairs builtin holds 196 items"),
        (["--range", "5:5"], "selects nothing: --pairs builtin holds 196 items"),
        (["--limit", "0"], "--limit must be a positive integer"),
        (["--threshold", "1.5"], "--threshold must be a finite number in [0, 1], got 1.5"),
        (["--max-wrapped", "-1"], "--max-wrapped must be an integer >= 0"),
        (["--layers", "1,x"], "comma-separated integers"),
        (["--gate-harmful", "nope.yaml"], "cannot tell the format from the suffix '.yaml'"),
        (["--gate-benign", "missing.txt"], "requests file not found: missing.txt"),
        (["--gate-benign", "advbench:missing.csv"], "AdvBench file not found"),
    ],
)
def test_bad_fit_arguments_exit_2_before_anything_is_written(capsys, tmp_path, argv, message):
    out = tmp_path / "out"
    code, err = cli_main(capsys, "fit", *TINY, "--pairs", "builtin", "--out", str(out), *argv)
    assert code == 2 and message in err and not out.exists()


def test_a_missing_pairs_path_names_what_is_allowed(capsys, tmp_path):
    code, err = cli_main(capsys, "fit", "--pairs", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o"))
    assert code == 2 and "no such file or directory" in err and "'builtin'" in err


def test_a_malformed_pairs_file_names_the_file_and_line(capsys, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"harmful": "a", "safe": "b"}\n{"harmful": "c"}\n')
    code, err = cli_main(capsys, "fit", "--pairs", str(pairs), "--out", str(tmp_path / "o"))
    assert code == 2 and "pairs.jsonl, line 2" in err and "'safe'" in err
    pairs.write_text("not json\n")
    code, err = cli_main(capsys, "fit", "--pairs", str(pairs), "--out", str(tmp_path / "o"))
    assert code == 2 and "line 1: not valid JSON" in err
    assert not (tmp_path / "o").exists()


def test_an_existing_output_is_never_touched(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for argv in (
        ["fit", "--pairs", "builtin", "--out", str(out)],
        ["eval", "--steer", str(tmp_path), "--pairs", "builtin", "--out", str(out)],
        ["demo", "--out", str(out)],
    ):
        code, err = cli_main(capsys, *argv)
        assert code == 2 and "exists and is not empty" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_eval_checks_sets_steer_and_judge_before_loading_a_model(capsys, tmp_path, fit_run):
    _, fit_out = fit_run
    out = tmp_path / "o"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"answer": "hi"}\n')
    cases = [
        (["--steer", str(fit_out)], "nothing to evaluate"),
        (["--steer", str(fit_out), "--range", "0:4"], "pass --pairs as well"),
        (["--steer", str(fit_out), "--harmful", str(tmp_path / "missing.jsonl")], "is not a file"),
        (
            ["--steer", str(fit_out), "--benign", str(bad)],
            "bad.jsonl: no request field among ['answer']",
        ),
        (["--steer", str(fit_out), "--benign", "borderline", "--benign", "borderline"], "set names must be unique"),
        (["--steer", str(fit_out), "--benign", "borderline", "--methods", "orig,magic"], "--methods must be"),
        (["--steer", str(fit_out), "--benign", "borderline", "--judge", "gpt"], "--judge 'gpt'"),
        (["--steer", str(tmp_path / "none"), "--benign", "borderline"], "no such directory"),
        (["--steer", str(tmp_path), "--benign", "borderline"], "config.json is missing"),
    ]
    for argv, message in cases:
        code, err = cli_main(capsys, "eval", *TINY, "--out", str(out), *argv)
        assert code == 2 and message in err, (argv, err)
    assert not out.exists()


def test_a_tampered_artefact_is_refused_with_exit_2(capsys, tmp_path, fit_run):
    import shutil

    _, fit_out = fit_run
    copy = tmp_path / "steer"
    shutil.copytree(fit_out / "autosteer", copy)
    with (copy / "tensors.safetensors").open("ab") as handle:
        handle.write(b"x")
    code, err = cli_main(
        capsys, "eval", *TINY, "--steer", str(copy), "--benign", "borderline", "--out", str(tmp_path / "o")
    )
    assert code == 2 and "checksum" in err


def test_usage_errors_exit_2_and_unexpected_failures_exit_1(capsys, monkeypatch, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--out", str(tmp_path / "o")])  # --pairs missing
    assert exit_info.value.code == 2 and "--pairs" in capsys.readouterr().err

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "load_pair_source", broken)
    code, err = cli_main(capsys, "fit", "--pairs", "builtin", "--out", str(tmp_path / "o"))
    assert code == 1 and "RuntimeError: boom" in err and "unexpected failure" in err


def test_the_demo_refuses_too_few_pairs(capsys, tmp_path):
    code, err = cli_main(capsys, "demo", "--limit", "4", "--out", str(tmp_path / "d"))
    assert code == 2 and "at least 16 built-in pairs" in err and not (tmp_path / "d").exists()


def test_the_paper_reproduction_script_runs_its_dry_run(tmp_path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce_paper.py"
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    out = tmp_path / "dry"
    result = subprocess.run(
        [sys.executable, str(script), "--dry-run", "--out", str(out)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert records[0]["stage"] == "fit" and records[0]["candidate_layers"] == [1, 2, 3]
    assert len([r for r in records if r["stage"] == "eval"]) == 6
    assert (out / "report.json").is_file() and (out / "autosteer" / "config.json").is_file()


def test_the_gate_ceiling_benchmark_runs_on_the_tiny_model():
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gate_ceiling.py"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    base = [sys.executable, str(script), "--model", "tiny-llava-onevision", "--limit", "10"]
    result = subprocess.run(
        [*base, "--layer-sets", "1;1,3", "--sources", "last_token,request_mean,answer_mean", "--answer-tokens", "2"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"source"')]
    assert [(r["source"], r["layers"], r["classifier"]) for r in rows[:4]] == [
        ("last_token", [1], "logistic"), ("last_token", [1], "mlp"),
        ("last_token", [1, 3], "logistic"), ("last_token", [1, 3], "mlp"),
    ]  # fmt: skip
    assert len(rows) == 12 and all(0 <= r["transfer"]["auroc"] <= 1 and 0 <= r["cv"]["auroc"] <= 1 for r in rows)
    assert all(r["delta_auroc_vs_last_token"] == {"transfer": 0.0, "cv": 0.0} for r in rows[:4])
    bad = subprocess.run([*base, "--layer-sets", "1;9"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "layers [9] are outside 0..3" in bad.stderr
