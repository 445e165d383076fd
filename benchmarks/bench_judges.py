"""Refusal judges on the labelled answer set: the substring judge vs a chat-model judge (SmolLM2 by default).

Prints one JSON object per judge (accuracy, accuracy on refusal vs compliance only, kappa against the gold
labels, per-kind accuracy, confusion table, unparsed replies, seconds), then one with the agreement between the
two judges' refused / not-refused decisions (an unparsed reply is its own category there).

    python benchmarks/bench_judges.py [--model smollm2 --batch-size 8 --max-new-tokens 4 --cache judge_cache.jsonl]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosteer_interp.evaluate import RefusalSubstringJudge  # noqa: E402
from autosteer_interp.judges import ChatModelJudge, judge_accuracy, judge_agreement, load_judge_answers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="load_model name of the chat-model judge")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--cache", default=None, help="jsonl cache of the chat-model judge's replies")
    parser.add_argument("--show-replies", action="store_true", help="also print the chat model's raw replies")
    args = parser.parse_args()

    answers = load_judge_answers()
    common = {"bench": "judges", "n_answers": len(answers), "threads": torch.get_num_threads()}

    substring = judge_accuracy(RefusalSubstringJudge(), answers)
    print(json.dumps(common | substring.to_dict()))

    start = time.perf_counter()
    judge = ChatModelJudge.from_name(
        args.model, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, cache_path=args.cache
    )
    load_s = time.perf_counter() - start
    chat = judge_accuracy(judge, answers)
    print(
        json.dumps(
            common
            | chat.to_dict()
            | {
                "model": args.model,
                "load_seconds": load_s,
                "batch_size": args.batch_size,
                "cached": judge.n_generated == 0,
            }
        )
    )
    agreement = judge_agreement(substring.decisions, chat.decisions)
    print(json.dumps(common | {"agreement": f"{substring.judge} vs {chat.judge}"} | agreement.to_dict()))
    if args.show_replies:
        replies = judge.replies([a.answer for a in answers], [a.request for a in answers])
        for answer, reply, decision in zip(answers, replies, chat.decisions):
            print(json.dumps({"line": answer.line, "gold": answer.label, "reply": reply, "decision": decision}))


if __name__ == "__main__":
    main()
