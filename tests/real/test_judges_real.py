"""The chat-model judge on the real SmolLM2 over part of the labelled answer set: only what must hold.

Every ninth answer (one of each kind-sized stride, 9 answers) keeps this test short; `benchmarks/bench_judges.py`
measures the whole set.
"""

import pytest

from autosteer_interp.judges import JUDGE_LABELS, ChatModelJudge, judge_accuracy, load_judge_answers

pytestmark = pytest.mark.real


def test_smollm2_as_a_judge_parses_most_replies_and_gets_an_accuracy(smollm2, tmp_path):
    answers = load_judge_answers()[::9]
    judge = ChatModelJudge(smollm2, cache_path=tmp_path / "cache.jsonl")
    report = judge_accuracy(judge, answers)
    print(report.to_markdown())
    assert report.n == len(answers)
    assert report.n_unparsed <= len(answers) // 2, judge.replies([a.answer for a in answers[:5]])
    assert 0.0 <= report.accuracy <= 1.0 and 0.0 <= report.accuracy_strict <= 1.0
    assert set(judge.labels([answers[0].answer], [answers[0].request])) <= {*JUDGE_LABELS, "unparsed"}
    assert judge.n_generated == len(answers)  # the last call came from the cache
