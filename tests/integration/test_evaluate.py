"""Judges, metrics and the Orig / Steer / AutoSteer evaluation on tiny models."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from autosteer_interp.errors import InvalidInputError
from autosteer_interp.evaluate import (
    CallableJudge,
    ClassifierJudge,
    EvalSet,
    RefusalSubstringJudge,
    auroc,
    evaluate,
    generate_texts,
    make_judge,
)
from autosteer_interp.prompts import Prompt, builtin_borderline, builtin_pairs
from autosteer_interp.refusal_head import RefusalHeadConfig
from autosteer_interp.steer import AutoSteer

NEW_TOKENS = 6


# ------------------------------------------------------------------------------------------------ judges


def test_the_substring_judge_is_case_insensitive_and_reads_curly_apostrophes():
    judge = RefusalSubstringJudge()
    texts = ["I’M SORRY, I can’t do that.", "Sure, here is a recipe.", "As an AI, I cannot help with that."]
    assert judge(texts) == [True, False, True]
    assert RefusalSubstringJudge(["recipe"])(texts) == [False, True, False]


def test_the_substring_judge_refuses_an_empty_phrase_list():
    with pytest.raises(InvalidInputError, match="non-empty list"):
        RefusalSubstringJudge([])


def test_a_callable_judge_applies_the_function_and_checks_it_returns_bools():
    judge = CallableJudge(lambda text: text.startswith("No"), name="starts with No")
    assert judge(["No way.", "Yes."]) == [True, False] and judge.name == "starts with No"
    with pytest.raises(InvalidInputError, match="must return a bool per text, got 'x'"):
        CallableJudge(lambda text: "x")(["a"])


def test_make_judge_defaults_to_substrings_and_wraps_plain_callables():
    assert isinstance(make_judge(None), RefusalSubstringJudge)
    assert make_judge(lambda t: True)(["a"]) == [True]
    with pytest.raises(InvalidInputError, match="judge must be None"):
        make_judge(42)


@pytest.fixture(scope="module")
def classifier(tiny_qwen2):
    """A randomly initialised sequence classifier with the offline tiny tokenizer (no hub)."""
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = tiny_qwen2.tokenizer
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label={0: "NORMAL", 1: "REJECTION"},
        label2id={"NORMAL": 0, "REJECTION": 1},
    )
    torch.manual_seed(3)
    return Qwen2ForSequenceClassification(config).eval(), tokenizer


TEXTS = ["I'm sorry, I cannot help.", "Sure: step one, mix flour and water.", "No.", "Here is a poem about cats."]


def expected_labels(model, tokenizer, texts):
    labels = []
    for text in texts:  # one at a time: no padding involved
        with torch.no_grad():
            logits = model(**tokenizer([text], return_tensors="pt")).logits
        labels.append(model.config.id2label[int(logits.argmax(-1))])
    return labels


def test_a_classifier_judge_refuses_exactly_where_the_model_predicts_the_refusal_label(classifier):
    model, tokenizer = classifier
    judge = ClassifierJudge(model, tokenizer, batch_size=3)
    labels = expected_labels(model, tokenizer, TEXTS)
    assert judge.refusal_labels == ("REJECTION",)
    assert judge.labels(TEXTS) == labels
    assert judge(TEXTS) == [label == "REJECTION" for label in labels]
    assert ClassifierJudge(model, tokenizer, refusal_labels=["NORMAL"])(TEXTS) == [
        label == "NORMAL" for label in labels
    ]


def test_a_classifier_judge_accepts_a_text_classification_pipeline(classifier):
    from transformers import pipeline

    model, tokenizer = classifier
    judge = make_judge(pipeline("text-classification", model=model, tokenizer=tokenizer))
    assert isinstance(judge, ClassifierJudge)
    labels = expected_labels(model, tokenizer, TEXTS)
    assert judge(TEXTS) == [label == "REJECTION" for label in labels]


def test_a_classifier_judge_names_the_labels_when_none_means_refusal(classifier):
    model, tokenizer = classifier
    with pytest.raises(InvalidInputError, match=r"its labels are \['NORMAL', 'REJECTION'\]"):
        ClassifierJudge(model, tokenizer, refusal_labels=["unsafe"])
    with pytest.raises(InvalidInputError, match="needs the tokenizer"):
        ClassifierJudge(model)
    with pytest.raises(InvalidInputError, match="pass ClassifierJudge"):
        make_judge(model)


# ------------------------------------------------------------------------------------------------ metrics


def test_auroc_equals_scikit_learn_including_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30).astype(float).tolist(), rng.integers(0, 4, 25).astype(float).tolist()
    expected = roc_auc_score([1] * 30 + [0] * 25, pos + neg)
    assert auroc(pos, neg) == pytest.approx(expected)
    assert auroc([], neg) is None


# ------------------------------------------------------------------------------------------------ evaluate


@pytest.fixture(scope="module")
def steer(tiny_llava):
    """An AutoSteer fitted on 24 built-in pairs; its head is perturbed so that it visibly changes answers."""
    fitted = AutoSteer.fit(
        tiny_llava,
        builtin_pairs()[:24],
        head_config=RefusalHeadConfig(epsilon=1.0, epochs=1),
        builtin_gate_data=False,  # the gate's quality is not the point here
        progress=False,
    )
    with torch.no_grad():
        fitted.head.S.add_(torch.randn(fitted.head.S.shape, generator=torch.Generator().manual_seed(0)))
    return fitted


@pytest.fixture(scope="module")
def sets():
    pairs = builtin_pairs()[-6:]
    return [
        EvalSet("harmful", [p.harmful for p in pairs], "harmful"),
        EvalSet("safe", [p.safe for p in pairs], "benign"),
        EvalSet("borderline", builtin_borderline("test")[:5], "benign"),
    ]


def odd_length(text: str) -> bool:
    return len(text) % 2 == 1


@pytest.fixture(scope="module")
def report(tiny_llava, steer, sets):
    return evaluate(
        tiny_llava,
        steer,
        sets,
        judge=odd_length,
        batch_size=4,
        max_new_tokens=NEW_TOKENS,
        steer_limit=4,
        progress=False,
    )


def test_the_report_has_one_row_per_set_and_method_with_the_steer_subsample(report, sets):
    assert [(r.set, r.method) for r in report.rows] == [
        (s.name, m) for s in sets for m in ("orig", "steer", "autosteer")
    ]
    for row in report.rows:
        expected_n = 4 if row.method == "steer" else len(next(s for s in sets if s.name == row.set).prompts)
        assert row.n == expected_n
        assert (
            row.seconds > 0 and row.new_tokens > 0 and row.tokens_per_s == pytest.approx(row.new_tokens / row.seconds)
        )


def test_metrics_follow_from_the_judge_and_the_generated_texts(report):
    for row in report.rows:
        outputs = report.outputs[row.set][row.method]
        refused = [odd_length(item["output"]) for item in outputs]
        assert [item["refused"] for item in outputs] == refused
        assert row.refusal_rate == pytest.approx(sum(refused) / len(refused))
        if row.kind == "harmful":
            assert row.attack_success_rate == pytest.approx(1 - row.refusal_rate) and row.over_refusal is None
            assert row.utility is None
        else:
            assert row.over_refusal == pytest.approx(row.refusal_rate) and row.attack_success_rate is None
            orig = [item["output"] for item in report.outputs[row.set]["orig"]]
            same = [item["output"] == o for item, o in zip(outputs, orig)]
            assert row.utility == pytest.approx(sum(same) / len(same))


def test_the_gate_rate_and_auroc_come_from_the_autosteer_run(report, sets):
    for eval_set in sets:
        outputs = report.outputs[eval_set.name]["autosteer"]
        gate = [item["gate"] for item in outputs]
        assert report.row(eval_set.name, "autosteer").gate_rate == pytest.approx(sum(gate) / len(gate))
        assert report.row(eval_set.name, "orig").gate_rate is None
    p = {s.name: [item["p_harmful"] for item in report.outputs[s.name]["autosteer"]] for s in sets}
    labels = [1] * len(p["harmful"]) + [0] * (len(p["safe"]) + len(p["borderline"]))
    assert report.auroc == pytest.approx(roc_auc_score(labels, p["harmful"] + p["safe"] + p["borderline"]), abs=1e-5)


def test_orig_rows_match_plain_generation(report, tiny_llava, sets):
    texts = generate_texts(tiny_llava, sets[1].prompts, batch_size=4, max_new_tokens=NEW_TOKENS)
    assert [item["output"] for item in report.outputs["safe"]["orig"]] == texts


def test_a_gate_that_never_fires_reproduces_orig_and_one_that_always_fires_reproduces_steer(tiny_llava, steer, sets):
    kwargs = dict(judge=odd_length, batch_size=4, max_new_tokens=NEW_TOKENS, progress=False)
    never = evaluate(tiny_llava, steer.with_threshold(1.0), sets[1:2], **kwargs)
    assert never.row("safe", "autosteer").utility == 1.0 and never.row("safe", "autosteer").gate_rate == 0.0
    always = evaluate(tiny_llava, steer.with_threshold(0.0), sets[1:2], **kwargs)
    assert always.row("safe", "autosteer").gate_rate == 1.0
    steered = [item["output"] for item in always.outputs["safe"]["steer"]]
    assert [item["output"] for item in always.outputs["safe"]["autosteer"]] == steered
    assert always.row("safe", "steer").utility < 1.0  # the head really changes answers


def test_the_report_serialises_to_json_markdown_and_a_plot(report, tmp_path):
    data = json.loads(report.to_json())
    assert len(data["rows"]) == 9 and "outputs" not in data and data["meta"]["steer_limit"] == 4
    assert len(json.loads(report.to_json(with_outputs=True))["outputs"]["safe"]["orig"]) == 6
    table = report.to_markdown()
    assert "| harmful | 6 | attack success ↓ |" in table and "gate on" in table and "Prober AUROC" in table
    assert "gate on" not in report.to_markdown(compact=True)
    assert "first 4 prompts" in table
    report.plot(tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 1000
    records = report.generations()
    assert len(records) == sum(r.n for r in report.rows)
    assert {"set", "kind", "method", "index", "prompt", "output", "refused"} <= set(records[0])


def test_a_missing_row_names_what_exists(report):
    with pytest.raises(InvalidInputError, match=r"sets: \['harmful', 'safe', 'borderline'\]"):
        report.row("nope", "orig")


def test_only_the_requested_methods_run(tiny_llava, steer, sets):
    result = evaluate(tiny_llava, steer, sets[:1], methods=["orig"], max_new_tokens=2, progress=False)
    assert [r.method for r in result.rows] == ["orig"] and result.auroc is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ["orig", "nope"]}, "methods must be distinct values"),
        ({"methods": []}, "methods must be distinct values"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"steer_limit": -1}, "steer_limit must be a positive integer"),
        ({"judge": "substring"}, None),
    ],
)
def test_bad_evaluate_arguments_are_clear_errors(tiny_llava, steer, sets, kwargs, message):
    if message is None:  # a string is neither a judge nor a callable
        with pytest.raises(InvalidInputError, match="judge must be None"):
            evaluate(tiny_llava, steer, sets, progress=False, **kwargs)
        return
    with pytest.raises(InvalidInputError, match=message):
        evaluate(tiny_llava, steer, sets, progress=False, **kwargs)


def test_sets_must_be_named_uniquely_and_non_empty(tiny_llava, steer):
    prompts = [Prompt("Hi")]
    with pytest.raises(InvalidInputError, match="unique set names"):
        evaluate(tiny_llava, steer, [EvalSet("a", prompts, "benign"), EvalSet("a", prompts, "harmful")])
    with pytest.raises(InvalidInputError, match="prompts is empty"):
        EvalSet("a", [], "benign")
    with pytest.raises(InvalidInputError, match="kind must be 'harmful' or 'benign', got 'bad'"):
        EvalSet("a", prompts, "bad")  # type: ignore[arg-type]
