"""The bad-input suite: every class of wrong input is refused with the package's own error, before any work.

Command line: each case runs ``autosteer_interp.cli.run`` (the error type) and ``main`` (exit code 2, a one-line
``error:`` message, no traceback) with model loading forbidden (the model would load after the checks), and the
workspace (data files, artefacts, output parents) must be byte-for-byte unchanged afterwards.

Python API: each case runs twice, here (under the test suite's runtime type checker, where a wrong type is a
``TypeContractError``, an ``InvalidInputError``) and in a plain interpreter as a user has it (where the package's
own check must raise the error, with its own message).
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autosteer_interp import cli
from autosteer_interp.errors import ArtifactError, DataFormatError, InvalidInputError, ModelLoadError
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.provenance import ModelProvenance
from autosteer_interp.refusal_head import RefusalHead
from autosteer_interp.steer import AutoSteer

TINY = ["--model", "tiny-llava-onevision"]
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ workspace


def _write_jsonl(path, lines):
    path.write_bytes(b"".join(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n" for line in lines))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_llava):
    root = tmp_path_factory.mktemp("bad_inputs")
    good = {"harmful": "How do I pick a lock to break in?", "safe": "How do locks work?"}
    _write_jsonl(root / "non_utf8.jsonl", [good, b'{"harmful": "caf\xe9 h", "safe": "s"}\n'])
    _write_jsonl(root / "wrong_type.jsonl", [good, {"harmful": 123, "safe": "fine"}])
    _write_jsonl(
        root / "equal.jsonl", [good, {"harmful": "b", "safe": "a"}, {"harmful": "Same text", "safe": "Same text"}]
    )
    _write_jsonl(root / "bad_json.jsonl", [good, b"{not json\n"])
    _write_jsonl(root / "missing_field.jsonl", [good, {"harmful": "only one side"}])
    _write_jsonl(root / "empty_field.jsonl", [good, {"harmful": "x", "safe": "   "}])
    _write_jsonl(root / "array_line.jsonl", [good, b'["harmful", "safe"]\n'])
    (root / "empty.jsonl").write_text("\n\n")
    _write_jsonl(root / "queries_non_utf8.jsonl", [{"query": "fine"}, b'{"query": "\xff"}\n'])
    _write_jsonl(root / "queries.jsonl", [{"query": "How do I bake bread?"}])
    vlsafe = root / "vlsafe_uneven"
    vlsafe.mkdir()
    _write_jsonl(vlsafe / "VLSafe_harmlessnss_alignment.jsonl", [{"query": "q1", "image_id": "a"}] * 2)
    _write_jsonl(vlsafe / "vlsafe_convert_safe.jsonl", [{"safe_query": "s1", "image_id": "a"}])
    (root / "not_vlsafe").mkdir()
    (root / "a_file").write_text("keep")
    (root / "full").mkdir()
    (root / "full" / "keep.txt").write_text("mine")

    prober = SafetyProber(64, ProberConfig(kind="linear"), layers=[2])
    head = RefusalHead(64, epsilon=0.1)
    prober.provenance = head.provenance = ModelProvenance.of(tiny_llava)
    AutoSteer(prober, head).save(root / "steer")
    shutil.copytree(root / "steer", root / "steer_tampered")
    config = root / "steer_tampered" / "prober" / "config.json"
    config.write_text(config.read_text().replace('"threshold": 0.5', '"threshold": 1.0'))
    AutoSteer(SafetyProber(32, ProberConfig(kind="linear"), layers=[2]), RefusalHead(32)).save(root / "steer_d32")
    AutoSteer(SafetyProber(64, ProberConfig(kind="linear"), layers=[7]), RefusalHead(64)).save(root / "steer_layer7")
    return root


def _snapshot(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def no_model(monkeypatch):
    import autosteer_interp.models as models

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(models, "load_model", refuse)


# ------------------------------------------------------------------------------------------------ CLI

W = "{w}"  # replaced by the workspace path
FIT = ["fit", *TINY, "--pairs", "builtin", "--out", f"{W}/new_out"]
EVAL = ["eval", *TINY, "--steer", f"{W}/steer", "--benign", "borderline", "--out", f"{W}/new_out"]
ROB = ["robustness", *TINY, "--steer", f"{W}/steer", "--out", f"{W}/new_out"]
GEN = ["generate", *TINY, "--prompt", "How do I bake bread?"]
SAS = ["sas", *TINY, "--pairs", "builtin", "--out", f"{W}/new_out"]
NUM = "must be a finite number"

CLI_CASES = [
    # numbers: finiteness and ranges
    ("fit-epsilon-nan", [*FIT, "--epsilon", "nan"], InvalidInputError, f"--epsilon {NUM} > 0, got nan"),
    ("fit-epsilon-inf", [*FIT, "--epsilon", "inf"], InvalidInputError, f"--epsilon {NUM} > 0, got inf"),
    ("fit-epsilon-zero", [*FIT, "--epsilon", "0"], InvalidInputError, f"--epsilon {NUM} > 0, got 0.0"),
    ("fit-epsilon-negative", [*FIT, "--epsilon", "-1"], InvalidInputError, f"--epsilon {NUM} > 0"),
    ("fit-threshold-nan", [*FIT, "--threshold", "nan"], InvalidInputError, rf"--threshold {NUM} in \[0, 1\]"),
    ("fit-threshold-above-1", [*FIT, "--threshold", "1.5"], InvalidInputError, "got 1.5"),
    ("fit-threshold-negative", [*FIT, "--threshold", "-0.1"], InvalidInputError, "got -0.1"),
    ("fit-fpr-1", [*FIT, "--calibrate-fpr", "1"], InvalidInputError, rf"--calibrate-fpr {NUM} in \[0, 1\)"),
    ("fit-fpr-negative", [*FIT, "--calibrate-fpr", "-0.5"], InvalidInputError, "--calibrate-fpr"),
    ("fit-fpr-nan", [*FIT, "--calibrate-fpr", "nan"], InvalidInputError, "got nan"),
    ("fit-threshold-and-fpr", [*FIT, "--threshold", "0.5", "--calibrate-fpr", "0.1"], InvalidInputError, "not both"),
    ("fit-max-wrapped-negative", [*FIT, "--max-wrapped", "-1"], InvalidInputError, "--max-wrapped must be an integer"),
    ("fit-pair-weight-zero", [*FIT, "--pair-weight", "0"], InvalidInputError, "--pair-weight"),
    ("fit-negative-weight-nan", [*FIT, "--negative-weight", "nan"], InvalidInputError, "--negative-weight"),
    ("fit-batch-size-zero", [*FIT, "--batch-size", "0"], InvalidInputError, "--batch-size must be a positive"),
    ("fit-batch-size-negative", [*FIT, "--batch-size", "-4"], InvalidInputError, "got -4"),
    # layers
    ("fit-every-zero", [*FIT, "--every", "0"], InvalidInputError, "--every must be a positive integer, got 0"),
    ("fit-every-negative", [*FIT, "--every", "-2"], InvalidInputError, "--every must be a positive integer"),
    ("fit-every-too-large", [*FIT, "--every", "4"], InvalidInputError, "below the model's 4 layers"),
    ("fit-layers-negative", [*FIT, "--layers", "-1,2"], InvalidInputError, r"holds \[-1\], outside"),
    ("fit-layers-duplicated", [*FIT, "--layers", "1,1"], InvalidInputError, r"repeats layers \[1\]"),
    ("fit-layers-empty", [*FIT, "--layers", ","], InvalidInputError, "--layers is empty"),
    ("fit-layers-above-model", [*FIT, "--layers", "9"], InvalidInputError, r"\[9\], outside .* 0\.\.3"),
    ("fit-layers-not-integers", [*FIT, "--layers", "1,x"], InvalidInputError, "comma-separated integers"),
    ("fit-layers-and-every", [*FIT, "--layers", "1", "--every", "2"], InvalidInputError, "not both"),
    ("fit-probe-layers-zero", [*FIT, "--probe-layers", "0"], InvalidInputError, "--probe-layers must be a positive"),
    ("fit-probe-layers-above", [*FIT, "--probe-layers", "5"], InvalidInputError, "exceeds the 3 candidate layers"),
    ("fit-probe-layers-above-list", [*FIT, "--probe-layers", "3", "--layers", "1,2"], InvalidInputError, "exceeds"),
    ("sas-layers-duplicated", [*SAS, "--layers", "2,2"], InvalidInputError, "repeats layers"),
    # slices of the data
    ("fit-limit-zero", [*FIT, "--limit", "0"], InvalidInputError, "--limit must be a positive integer"),
    ("fit-limit-below-minimum", [*FIT, "--limit", "3"], InvalidInputError, "at least 4 pairs"),
    ("fit-limit-past-data", [*FIT, "--limit", "1000"], InvalidInputError, "runs past the data.*196 items"),
    ("fit-range-past-data", [*FIT, "--range", "190:100000"], InvalidInputError, "runs past the data.*196"),
    ("fit-range-negative-past", [*FIT, "--range", "-1000:"], InvalidInputError, "runs past the data"),
    ("fit-range-empty", [*FIT, "--range", "5:5"], InvalidInputError, "selects nothing"),
    ("fit-range-reversed", [*FIT, "--range", "50:10"], InvalidInputError, "selects nothing"),
    ("fit-range-not-integers", [*FIT, "--range", "a:b"], InvalidInputError, "--range must look like A:B"),
    ("fit-range-three-parts", [*FIT, "--range", "1:2:3"], InvalidInputError, "--range must look like A:B"),
    ("fit-range-and-limit", [*FIT, "--range", "0:4", "--limit", "2"], InvalidInputError, "either --range or --limit"),
    ("sas-one-pair", [*SAS, "--range", "0:1"], InvalidInputError, "at least 2 pairs"),
    # the output folder
    ("fit-out-is-a-file", ["fit", *TINY, "--pairs", "builtin", "--out", f"{W}/a_file"], InvalidInputError, "is a file"),
    (
        "fit-out-under-a-file",
        ["fit", *TINY, "--pairs", "builtin", "--out", f"{W}/a_file/o"],
        InvalidInputError,
        "cannot be created: .*a_file is a file",
    ),
    ("fit-out-not-empty", ["fit", *TINY, "--pairs", "builtin", "--out", f"{W}/full"], InvalidInputError, "not empty"),
    (
        "fit-out-unwritable",
        ["fit", *TINY, "--pairs", "builtin", "--out", "/proc/autosteer-out"],
        InvalidInputError,
        "cannot be created",
    ),
    ("eval-out-under-a-file", [*EVAL[:-1], f"{W}/a_file/o"], InvalidInputError, "cannot be created"),
    ("demo-out-is-a-file", ["demo", "--out", f"{W}/a_file"], InvalidInputError, "is a file"),
    ("demo-out-not-empty", ["demo", "--out", f"{W}/full"], InvalidInputError, "not empty"),
    # data files
    (
        "pairs-missing",
        ["fit", *TINY, "--pairs", f"{W}/nope.jsonl", "--out", f"{W}/o"],
        InvalidInputError,
        "no such file or directory",
    ),
    (
        "pairs-non-utf8",
        [*FIT[:3], "--pairs", f"{W}/non_utf8.jsonl", *FIT[5:]],
        DataFormatError,
        r"non_utf8.jsonl, line 2: not valid UTF-8 \(byte 0xe9",
    ),
    (
        "pairs-wrong-type",
        [*FIT[:3], "--pairs", f"{W}/wrong_type.jsonl", *FIT[5:]],
        DataFormatError,
        r"wrong_type.jsonl, line 2: field 'harmful' must be a string, got int \(123\)",
    ),
    (
        "pairs-equal-texts",
        [*FIT[:3], "--pairs", f"{W}/equal.jsonl", *FIT[5:]],
        DataFormatError,
        "equal.jsonl, line 3: the harmful and the safe text are the same",
    ),
    (
        "pairs-bad-json",
        [*FIT[:3], "--pairs", f"{W}/bad_json.jsonl", *FIT[5:]],
        DataFormatError,
        "bad_json.jsonl, line 2: not valid JSON",
    ),
    (
        "pairs-missing-field",
        [*FIT[:3], "--pairs", f"{W}/missing_field.jsonl", *FIT[5:]],
        DataFormatError,
        "missing_field.jsonl, line 2: missing a non-empty string field 'safe'",
    ),
    (
        "pairs-empty-field",
        [*FIT[:3], "--pairs", f"{W}/empty_field.jsonl", *FIT[5:]],
        DataFormatError,
        "empty_field.jsonl, line 2: field 'safe' is empty",
    ),
    (
        "pairs-array-line",
        [*FIT[:3], "--pairs", f"{W}/array_line.jsonl", *FIT[5:]],
        DataFormatError,
        "array_line.jsonl, line 2: expected a JSON object, got list",
    ),
    ("pairs-empty-file", [*FIT[:3], "--pairs", f"{W}/empty.jsonl", *FIT[5:]], DataFormatError, "holds no pairs"),
    (
        "pairs-vlsafe-uneven",
        [*FIT[:3], "--pairs", f"{W}/vlsafe_uneven", *FIT[5:]],
        DataFormatError,
        "VLSafe files differ in length",
    ),
    (
        "pairs-dir-not-vlsafe",
        [*FIT[:3], "--pairs", f"{W}/not_vlsafe", *FIT[5:]],
        DataFormatError,
        "expected exactly one file matching",
    ),
    (
        "eval-benign-missing",
        [*EVAL[:-4], "--benign", f"{W}/nope.jsonl", *EVAL[-2:]],
        InvalidInputError,
        "is not a file",
    ),
    (
        "eval-harmful-non-utf8",
        [*EVAL, "--harmful", f"{W}/queries_non_utf8.jsonl"],
        DataFormatError,
        "queries_non_utf8.jsonl, line 2: not valid UTF-8",
    ),
    (
        "eval-benign-wrong-file",
        [*EVAL, "--benign", f"{W}/equal.jsonl"],
        DataFormatError,
        "equal.jsonl: no request field among",
    ),
    ("eval-range-without-pairs", [*EVAL, "--range", "0:4"], InvalidInputError, "pass --pairs as well"),
    ("eval-duplicate-set-names", [*EVAL, "--benign", "borderline"], InvalidInputError, "set names must be unique"),
    ("eval-pairs-range-past", [*EVAL, "--pairs", "builtin", "--range", "0:500"], InvalidInputError, "runs past"),
    # artefacts, against the model's sizes before it loads
    ("eval-steer-missing", [*EVAL[:3], "--steer", f"{W}/nope", *EVAL[5:]], InvalidInputError, "no such directory"),
    (
        "eval-steer-not-artefact",
        [*EVAL[:3], "--steer", f"{W}/not_vlsafe", *EVAL[5:]],
        ArtifactError,
        "config.json is missing",
    ),
    (
        "eval-steer-tampered",
        [*EVAL[:3], "--steer", f"{W}/steer_tampered", *EVAL[5:]],
        ArtifactError,
        "prober/config.json does not match the checksum",
    ),
    (
        "eval-steer-other-width",
        [*EVAL[:3], "--steer", f"{W}/steer_d32", *EVAL[5:]],
        ArtifactError,
        "d_model 32; --model tiny-llava-onevision has d_model 64",
    ),
    (
        "eval-steer-layer-outside",
        [*EVAL[:3], "--steer", f"{W}/steer_layer7", *EVAL[5:]],
        ArtifactError,
        r"reads layers \[7\]; --model tiny-llava-onevision has 4 layers",
    ),
    ("robustness-steer-tampered", [*ROB[:3], "--steer", f"{W}/steer_tampered", *ROB[5:]], ArtifactError, "checksum"),
    ("generate-steer-other-width", [*GEN, "--steer", f"{W}/steer_d32"], ArtifactError, "d_model 32"),
    # other options
    ("eval-max-new-tokens-zero", [*EVAL, "--max-new-tokens", "0"], InvalidInputError, "--max-new-tokens must be"),
    ("eval-max-new-tokens-negative", [*EVAL, "--max-new-tokens", "-5"], InvalidInputError, "got -5"),
    ("eval-steer-limit-zero", [*EVAL, "--steer-limit", "0"], InvalidInputError, "--steer-limit must be a positive"),
    ("eval-methods-unknown", [*EVAL, "--methods", "orig,magic"], InvalidInputError, "--methods must be"),
    ("eval-methods-repeated", [*EVAL, "--methods", "orig,orig"], InvalidInputError, "--methods must be"),
    ("eval-judge-unknown", [*EVAL, "--judge", "gpt"], InvalidInputError, "--judge 'gpt'"),
    ("robustness-every-step-zero", [*ROB, "--every-step-tokens", "0"], InvalidInputError, "--every-step-tokens"),
    ("robustness-range-without-pairs", [*ROB, "--limit", "3"], InvalidInputError, "pass --pairs as well"),
    ("generate-max-new-tokens-negative", [*GEN, "--max-new-tokens", "-1"], InvalidInputError, "--max-new-tokens"),
    ("generate-nothing", ["generate", *TINY], InvalidInputError, "nothing to generate"),
    (
        "generate-prompts-missing",
        ["generate", *TINY, "--prompts", f"{W}/nope.jsonl"],
        InvalidInputError,
        "is not a file",
    ),
    ("generate-empty-prompt", [*GEN[:-1], "  "], InvalidInputError, "Prompt.text must be a non-empty string"),
    (
        "model-unknown",
        ["fit", "--model", f"{W}/no-such-model", "--pairs", "builtin", "--out", f"{W}/o"],
        ModelLoadError,
        "could not load",
    ),
    ("demo-limit-too-small", ["demo", "--limit", "4", "--out", f"{W}/d"], InvalidInputError, "at least 16"),
    ("demo-limit-past-data", ["demo", "--limit", "100000", "--out", f"{W}/d"], InvalidInputError, "there are 196"),
    ("migrate-not-an-artefact", ["migrate", f"{W}/not_vlsafe", f"{W}/m"], InvalidInputError, "not an artefact"),
    ("migrate-destination-exists", ["migrate", f"{W}/steer", f"{W}/full"], InvalidInputError, "already exists"),
    ("migrate-current-format", ["migrate", f"{W}/steer", f"{W}/m"], ArtifactError, "not a format-1 artefact"),
]


@pytest.mark.parametrize(("argv", "error", "message"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_the_cli_refuses_bad_input_before_loading_the_model(workspace, no_model, capsys, argv, error, message):
    argv = [arg.replace(W, str(workspace)) for arg in argv]
    before = _snapshot(workspace)
    with pytest.raises(error, match=message):
        cli.run(argv)
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _snapshot(workspace) == before


def test_the_suite_covers_each_class_of_the_issue():
    assert len(CLI_CASES) + len(API_CASES) >= 60 and len({c[0] for c in CLI_CASES + API_CASES}) == len(
        CLI_CASES + API_CASES
    )


def test_the_installed_command_prints_one_line_and_exits_2(workspace):
    argv = [arg.replace(W, str(workspace)) for arg in [*FIT, "--epsilon", "nan"]]
    result = subprocess.run([sys.executable, "-m", "autosteer_interp.cli", *argv], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: --epsilon") and "Traceback" not in result.stderr
    assert not (workspace / "new_out").exists()


# ------------------------------------------------------------------------------------------------ API

API_CASES = [
    ("sas-numpy", "sas(np.zeros((4, 2, 8)), np.ones((4, 2, 8)))", "InvalidInputError", "safe"),
    (
        "sas-integers",
        "sas(torch.zeros(4, 2, 8, dtype=torch.long), torch.ones(4, 2, 8, dtype=torch.long))",
        "InvalidInputError",
        "floating",
    ),
    ("sas-nan", "sas(torch.full((4, 2, 8), float('nan')), torch.ones(4, 2, 8))", "InvalidInputError", "non-finite"),
    ("sas-shapes", "sas(torch.zeros(4, 2, 8), torch.ones(4, 3, 8))", "InvalidInputError", ""),
    ("api-sas-one-pair", "sas(torch.zeros(1, 2, 8), torch.ones(1, 2, 8))", "InvalidInputError", "2 pairs"),
    ("prober-fit-numpy", "SafetyProber.fit(np.zeros((8, 16)), torch.ones(8, 16))", "InvalidInputError", ""),
    (
        "prober-fit-nan",
        "SafetyProber.fit(torch.full((8, 16), float('nan')), torch.ones(8, 16))",
        "InvalidInputError",
        "non-finite",
    ),
    ("prober-predict-width", "SafetyProber(16).predict_proba(torch.zeros(3, 32))", "InvalidInputError", ""),
    ("prober-predict-list", "SafetyProber(16).predict_proba([[0.0] * 16])", "InvalidInputError", ""),
    ("prober-calibrate-fpr-1", "SafetyProber(16).calibrate(torch.zeros(5, 16), 1.0)", "InvalidInputError", "[0, 1)"),
    (
        "prober-calibrate-fpr-nan",
        "SafetyProber(16).calibrate(torch.zeros(5, 16), float('nan'))",
        "InvalidInputError",
        "",
    ),
    ("prober-config-fraction", "ProberConfig(validation_fraction=2.0)", "InvalidInputError", "validation_fraction"),
    ("prober-config-epochs", "ProberConfig(epochs=0)", "InvalidInputError", "epochs"),
    ("prober-config-bagging", "ProberConfig(kind='logistic', bagging=0)", "InvalidInputError", "bagging=0"),
    ("prober-config-bagging-mlp", "ProberConfig(bagging=4)", "InvalidInputError", "unless kind='logistic'"),
    ("head-numpy", "RefusalHead(16)(np.zeros((2, 16), dtype=np.float32))", "InvalidInputError", ""),
    ("head-width", "RefusalHead(16)(torch.zeros(2, 32))", "InvalidInputError", "16"),
    ("head-epsilon-nan", "RefusalHead(16, epsilon=float('nan'))", "InvalidInputError", "epsilon"),
    ("head-config-epochs", "RefusalHeadConfig(epochs=0)", "InvalidInputError", "epochs"),
    ("fit-config-batch", "FitConfig(batch_size=0)", "InvalidInputError", "batch_size must be a positive integer"),
    ("fit-config-layers-repeated", "FitConfig(candidate_layers=[1, 1])", "InvalidInputError", "repeats layers"),
    ("fit-config-layers-negative", "FitConfig(candidate_layers=[-1])", "InvalidInputError", "outside"),
    ("fit-config-layers-empty", "FitConfig(candidate_layers=[])", "InvalidInputError", "is empty"),
    ("fit-config-wrapped", "FitConfig(max_wrapped=-3)", "InvalidInputError", "max_wrapped"),
    ("fit-config-fpr", "FitConfig(calibrate_fpr=1.0)", "InvalidInputError", "calibrate_fpr"),
    ("fit-config-fraction-nan", "FitConfig(validation_fraction=float('nan'))", "InvalidInputError", "finite"),
    ("fit-config-probe-zero", "FitConfig(probe_layers=0)", "InvalidInputError", "probe_layers"),
    ("fit-config-refit", "FitConfig(refit_gate='yes')", "InvalidInputError", "refit_gate must be True or False"),
    ("fit-config-gate-weights", "FitConfig(gate_weights=(2, 3))", "InvalidInputError", "gate_weights"),
    ("gate-weights-zero", "GateWeights(user_pairs=0)", "InvalidInputError", "GateWeights.user_pairs"),
    (
        "prober-fit-weights-length",
        "SafetyProber.fit(torch.ones(8, 16), torch.zeros(8, 16), sample_weights={'harmful': torch.ones(3)})",
        "InvalidInputError",
        "shape (8,)",
    ),
    (
        "prober-fit-weights-key",
        "SafetyProber.fit(torch.ones(8, 16), torch.zeros(8, 16), sample_weights={'benign': torch.ones(8)})",
        "InvalidInputError",
        "unknown keys",
    ),
    (
        "fit-unknown-setting",
        "AutoSteer.fit(model, builtin_pairs()[:8], epsilon=0.1)",
        "InvalidInputError",
        "unknown fit settings",
    ),
    ("fit-pairs-string", "AutoSteer.fit(model, 'pairs.jsonl')", "InvalidInputError", "PromptPair"),
    ("fit-too-few-pairs", "AutoSteer.fit(model, builtin_pairs()[:3])", "InvalidInputError", "at least 4"),
    (
        "fit-negatives-strings",
        "AutoSteer.fit(model, builtin_pairs()[:8], gate_benign=['hi'])",
        "InvalidInputError",
        "Prompt",
    ),
    ("collect-strings", "collect_activations(model, ['hello'], [1])", "InvalidInputError", "Prompt"),
    (
        "collect-too-long",
        "collect_activations(model, [Prompt('word ' * 3000)], [1])",
        "InvalidInputError",
        "longer than the model's context",
    ),
    (
        "collect-huge",
        "collect_activations(model, [Prompt('x' * 10_000_000)], [1])",
        "InvalidInputError",
        "longer than the model's context",
    ),
    (
        "collect-batch-zero",
        "collect_activations(model, [Prompt('hi')], [1], batch_size=0)",
        "InvalidInputError",
        "batch_size",
    ),
    ("encode-string", "encode_prompts(model, 'hello')", "InvalidInputError", "list of Prompt"),
    ("prompt-empty", "Prompt('')", "InvalidInputError", "non-empty"),
    ("threshold-nan", "steer.with_threshold(float('nan'))", "InvalidInputError", "threshold"),
    (
        "generate-negative-tokens",
        "steer.generate(model, [Prompt('hi')], max_new_tokens=-1)",
        "InvalidInputError",
        "max_new_tokens",
    ),
    ("generate-batch-zero", "steer.generate(model, [Prompt('hi')], batch_size=0)", "InvalidInputError", "batch_size"),
    ("load-missing", "AutoSteer.load(workspace / 'nope')", "ArtifactError", "no such directory"),
    ("load-tampered", "AutoSteer.load(workspace / 'steer_tampered')", "ArtifactError", "checksum"),
    ("load-pairs-equal", "load_pairs(workspace / 'equal.jsonl')", "DataFormatError", "line 3"),
    ("load-pairs-non-utf8", "load_pairs(workspace / 'non_utf8.jsonl')", "DataFormatError", "line 2: not valid UTF-8"),
]

API_PRELUDE = """
import json, sys
from pathlib import Path
import numpy as np
import torch
from autosteer_interp.activations import collect_activations
from autosteer_interp.fit import FitConfig
from autosteer_interp.gate import GateWeights
from autosteer_interp.models import load_model
from autosteer_interp.prober import ProberConfig, SafetyProber
from autosteer_interp.prompts import Prompt, builtin_pairs, encode_prompts, load_pairs
from autosteer_interp.refusal_head import RefusalHead, RefusalHeadConfig
from autosteer_interp.sas import safety_awareness_scores as sas
from autosteer_interp.steer import AutoSteer
workspace = Path(sys.argv[1])
model = load_model("tiny-llava-onevision")
steer = AutoSteer.load(workspace / "steer")
"""


def _api_namespace(workspace, tiny_llava):
    """The names the API cases use, with the session's tiny model (what API_PRELUDE builds in a subprocess)."""
    namespace: dict = {}
    prelude = API_PRELUDE.replace('load_model("tiny-llava-onevision")', "MODEL").replace("Path(sys.argv[1])", "WS")
    exec(prelude, {"MODEL": tiny_llava, "WS": workspace}, namespace)
    return namespace


@pytest.fixture(scope="module")
def plain_interpreter_results(workspace):
    """Every API case run in a plain interpreter (no runtime type checker), as a user runs it."""
    body = "\nresults = {}\n"
    for name, code, _, _ in API_CASES:
        body += (
            f"try:\n    {code}\n    results[{name!r}] = ['no error', '']\n"
            f"except Exception as error:\n    results[{name!r}] = [type(error).__name__, str(error)]\n"
        )
    body += "print(json.dumps(results))\n"
    before = _snapshot(workspace)
    result = subprocess.run(
        [sys.executable, "-c", API_PRELUDE + body, str(workspace)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _snapshot(workspace) == before  # no API case wrote anything
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("name", "code", "error", "message"), API_CASES, ids=[c[0] for c in API_CASES])
def test_the_api_refuses_bad_input_with_its_own_error(
    workspace, tiny_llava, plain_interpreter_results, name, code, error, message
):
    import autosteer_interp.errors as errors

    found, text = plain_interpreter_results[name]
    assert found == error and message in text, (found, text)
    namespace = _api_namespace(workspace, tiny_llava)
    with pytest.raises(getattr(errors, error)):
        exec(code, namespace)
