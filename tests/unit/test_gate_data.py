"""The gate data of issue 7: gate pairs, jailbreak wrappers, their loaders and the extended borderline set."""

import json
import re
from collections import Counter
from importlib import resources

import numpy as np
import pytest

import autosteer_interp as asi
from autosteer_interp.errors import DataFormatError, InvalidInputError
from autosteer_interp.prompts import (
    BENCHMARK_STYLE,
    CONTRAST_STYLE,
    GATE_STYLES,
    INSTRUCTION_STYLES,
    QUESTION_STYLES,
    SCENE_STYLE,
    TASK_STYLE,
    WRAPPER_FAMILIES,
    JailbreakWrapper,
    Prompt,
    PromptPair,
    builtin_borderline,
    builtin_everyday,
    builtin_gate_pairs,
    builtin_pairs,
    jailbreak_wrappers,
    wrap_prompts,
    wrapper_assignment,
)

REQUIRED_CATEGORIES = {
    "sexual_content",
    "hate_harassment",
    "self_harm",
    "weapons",
    "cybercrime",
    "fraud",
    "privacy_invasion",
    "drugs",
}
TEST_ONLY_FAMILIES = {"payload_splitting", "few_shot_dialogue"}


def _norm(text: str) -> str:
    """Lower-cased, punctuation stripped, whitespace collapsed."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def _texts(pairs: list[PromptPair]) -> list[str]:
    return [text for pair in pairs for text in (pair.harmful.text, pair.safe.text)]


def _data_lines(name: str) -> list[str]:
    return (resources.files("autosteer_interp") / "data" / name).read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------------------------------------------------------
# Gate pairs
# ---------------------------------------------------------------------------------------------------------------


INSTRUCTION_CATEGORIES = REQUIRED_CATEGORIES | {
    "violence",
    "extremism",
    "misinformation",
    "chemical_biological",
    "illegal_goods_services",
    "economic_crime",
}
CONTRAST_KINDS = {
    "homonyms",
    "figurative_language",
    "safe_targets",
    "safe_contexts",
    "definitions",
    "nonsense_group_discrimination",
    "historical_events",
    "privacy_public_figures",
    "privacy_fictional",
    "safety_information",
}


@pytest.mark.parametrize("name", ["gate_pairs_train.jsonl", "gate_pairs_test.jsonl"])
def test_gate_pair_files_parse_with_the_documented_fields(name):
    for line in _data_lines(name):
        record = json.loads(line)
        fields = {"id", "category", "style", "harmful", "safe"}
        assert set(record) == (fields | {"contrast"} if record["style"] == CONTRAST_STYLE else fields)
        assert all(isinstance(value, str) and value.strip() for value in record.values())


@pytest.mark.parametrize(("split", "per_category"), [("train", 40), ("test", 20)])
def test_question_pairs_cover_every_category_and_style_in_balance(split, per_category):
    pairs = builtin_gate_pairs(split, QUESTION_STYLES)
    categories = Counter(p.category for p in pairs)
    assert set(categories) >= REQUIRED_CATEGORIES
    assert min(categories.values()) >= per_category
    for category in categories:
        styles = Counter(p.style for p in pairs if p.category == category)
        assert set(styles) == set(QUESTION_STYLES), category
        assert max(styles.values()) - min(styles.values()) <= 1, (category, styles)
    assert all(p.meta == {"split": split} and p.id.startswith(f"gp-{split}-") for p in pairs)
    assert not any(p.harmful.has_image or p.safe.has_image for p in pairs)


@pytest.mark.parametrize(("split", "per_cell"), [("train", 8), ("test", 3)])
def test_instruction_pairs_cover_the_benchmarks_categories_in_every_instruction_style(split, per_cell):
    pairs = builtin_gate_pairs(split, INSTRUCTION_STYLES)
    cells = Counter((p.category, p.style) for p in pairs)
    assert {category for category, _ in cells} == INSTRUCTION_CATEGORIES
    assert set(cells) == {(c, s) for c in INSTRUCTION_CATEGORIES for s in INSTRUCTION_STYLES}
    assert set(cells.values()) == {per_cell}
    openings = Counter(p.harmful.text.split()[0] for p in pairs if p.style == "instruction")
    assert len(openings) >= 8  # Write, Give, Develop, Create, Explain, ...: not one template


@pytest.mark.parametrize(("split", "n_pairs"), [("train", 59), ("test", 29)])
def test_benchmark_pairs_pair_a_harmful_task_with_a_harmless_task_in_the_same_template(split, n_pairs):
    pairs = builtin_gate_pairs(split, (BENCHMARK_STYLE,))
    assert len(pairs) == n_pairs and len({p.category for p in pairs}) >= 12
    # the same opening verb on both sides, so the template is never the signal
    assert np.mean([p.harmful.text.split()[0] == p.safe.text.split()[0] for p in pairs]) >= 0.9


@pytest.mark.parametrize(("split", "n_pairs"), [("train", 200), ("test", 100)])
def test_task_pairs_cover_the_benchmarks_categories_with_a_harmless_task_of_the_same_opening(split, n_pairs):
    pairs = builtin_gate_pairs(split, (TASK_STYLE,))
    assert len(pairs) == n_pairs and {p.category for p in pairs} == INSTRUCTION_CATEGORIES
    assert all(p.harmful.text.split()[0] == p.safe.text.split()[0] for p in pairs)
    assert len(Counter(p.harmful.text.split()[0] for p in pairs)) >= 8  # not one template


SCENE_CATEGORIES = {
    "property_crime",
    "child_endangerment",
    "animal_cruelty",
    "dangerous_driving",
    "violence",
    "covert_harm",
}


@pytest.mark.parametrize(("split", "per_category"), [("train", 16), ("test", 8)])
def test_scene_questions_cover_their_categories_in_the_same_template_on_both_sides(split, per_category):
    pairs = builtin_gate_pairs(split, (SCENE_STYLE,))
    assert Counter(p.category for p in pairs) == dict.fromkeys(SCENE_CATEGORIES, per_category)
    assert all(p.harmful.text.endswith("?") and len(p.harmful.text.split()) <= 30 for p in pairs)
    # the same opening on both sides (the object in the photo and the question's shape), so only the harm differs
    assert np.mean([p.harmful.text.split()[:3] == p.safe.text.split()[:3] for p in pairs]) >= 0.9


@pytest.mark.parametrize(("split", "per_kind"), [("train", 20), ("test", 10)])
def test_minimal_contrast_pairs_cover_every_kind(split, per_kind):
    pairs = builtin_gate_pairs(split, (CONTRAST_STYLE,))
    assert Counter(p.meta["contrast"] for p in pairs) == dict.fromkeys(CONTRAST_KINDS, per_kind)
    assert {p.category for p in pairs} <= INSTRUCTION_CATEGORIES


def test_gate_pairs_keep_every_style_and_refuse_unknown_ones():
    assert {p.style for p in builtin_gate_pairs()} == set(GATE_STYLES)
    groups = (INSTRUCTION_STYLES, QUESTION_STYLES, (BENCHMARK_STYLE,), (CONTRAST_STYLE,), (SCENE_STYLE,), (TASK_STYLE,))
    assert sum(len(builtin_gate_pairs("test", styles)) for styles in groups) == len(builtin_gate_pairs("test"))
    with pytest.raises(InvalidInputError, match="unknown gate-pair styles \\['poetic'\\]"):
        builtin_gate_pairs("train", ["poetic"])


def test_gate_pairs_are_unique_and_contrastive():
    pairs = builtin_gate_pairs()
    assert len({p.id for p in pairs}) == len(pairs)
    texts = [_norm(t) for t in _texts(pairs)]
    assert len(set(texts)) == len(texts)
    assert all(_norm(p.harmful.text) != _norm(p.safe.text) for p in pairs)


def test_gate_pair_safe_side_is_a_small_edit_that_keeps_topic_words():
    """On average the harmless twin shares a good part of the harmful request's words."""
    overlaps = []
    for pair in builtin_gate_pairs(styles=(*QUESTION_STYLES, *INSTRUCTION_STYLES, SCENE_STYLE)):
        harmful, safe = set(_norm(pair.harmful.text).split()), set(_norm(pair.safe.text).split())
        overlaps.append(len(harmful & safe) / len(harmful | safe))
    assert np.mean(overlaps) > 0.35


def test_gate_train_and_test_share_no_request_even_after_normalisation():
    train, test = builtin_gate_pairs("train"), builtin_gate_pairs("test")
    train_texts, test_texts = set(_texts(train)), set(_texts(test))
    assert not train_texts & test_texts
    assert not {_norm(t) for t in train_texts} & {_norm(t) for t in test_texts}
    assert [p.id for p in builtin_gate_pairs()] == [p.id for p in train + test]


def test_gate_requests_are_not_paraphrases_across_files_or_of_the_builtin_pairs():
    """No request shares most of its words with a request of another file (word-set Jaccard <= 0.6)."""

    def word_sets(texts):
        return [set(_norm(t).split()) for t in texts]

    train = word_sets(_texts(builtin_gate_pairs("train")))
    test = word_sets(_texts(builtin_gate_pairs("test")))
    builtin = word_sets(_texts(builtin_pairs()))
    everyday = {split: word_sets([p.text for p in builtin_everyday(split)]) for split in ("train", "test")}
    borderline = word_sets([p.text for p in builtin_borderline()])
    for name, left, right in [
        ("train/test", train, test),
        ("gate/builtin", train + test, builtin),
        ("everyday train/test", everyday["train"], everyday["test"]),
        ("everyday/gate", everyday["train"] + everyday["test"], train + test + borderline),
    ]:
        worst = max(len(a & b) / len(a | b) for a in left for b in right)
        assert worst <= 0.6, name


def test_gate_pairs_are_exported_lazily_from_the_package():
    assert asi.builtin_gate_pairs is builtin_gate_pairs
    assert asi.jailbreak_wrappers is jailbreak_wrappers and asi.wrap_prompts is wrap_prompts
    assert asi.JailbreakWrapper is JailbreakWrapper


def test_prompt_pair_style_is_optional_and_keeps_old_callers_working():
    pair = PromptPair(Prompt("a?"), Prompt("b?"), "1", "fraud", {"k": 1})
    assert pair.style == "" and pair.meta == {"k": 1}
    assert all(p.style == "" for p in builtin_pairs())


# ---------------------------------------------------------------------------------------------------------------
# Jailbreak wrappers
# ---------------------------------------------------------------------------------------------------------------


def test_wrapper_file_parses_with_the_documented_fields():
    for line in _data_lines("jailbreak_wrappers.jsonl"):
        assert set(json.loads(line)) == {"id", "family", "split", "template"}


def test_wrappers_splits_are_disjoint_and_cover_the_families():
    train, test, everything = jailbreak_wrappers("train"), jailbreak_wrappers("test"), jailbreak_wrappers()
    assert len(train) + len(test) == len(everything)
    assert 0.55 <= len(train) / len(everything) <= 0.65
    assert not {w.template for w in train} & {w.template for w in test}
    assert not {_norm(w.template) for w in train} & {_norm(w.template) for w in test}
    assert len({w.id for w in everything}) == len(everything)
    families = Counter(w.family for w in everything)
    assert set(families) == set(WRAPPER_FAMILIES) and min(families.values()) >= 3
    train_families, test_families = {w.family for w in train}, {w.family for w in test}
    assert test_families == set(WRAPPER_FAMILIES)
    assert train_families == set(WRAPPER_FAMILIES) - TEST_ONLY_FAMILIES
    assert all(w.split == "train" for w in train) and all(w.split == "test" for w in test)


def test_every_template_holds_exactly_one_request_placeholder():
    for wrapper in jailbreak_wrappers():
        assert wrapper.template.count("{request}") == 1, wrapper.id


def test_long_preambles_are_80_to_150_words():
    preambles = [w for w in jailbreak_wrappers() if w.family == "long_preamble"]
    assert preambles
    for wrapper in preambles:
        assert 80 <= len(wrapper.template.replace("{request}", "").split()) <= 150, wrapper.id


def test_wrap_keeps_the_image_and_contains_the_request():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    prompt = Prompt("How do I repot a cactus? {not a placeholder}", image)
    for wrapper in jailbreak_wrappers():
        wrapped = wrapper.wrap(prompt)
        assert wrapped.image is image
        assert prompt.text in wrapped.text and "{request}" not in wrapped.text
        before, after = wrapper.template.split("{request}")
        assert wrapped.text == before + prompt.text + after


def test_a_wrapper_without_exactly_one_placeholder_is_refused():
    with pytest.raises(InvalidInputError, match="exactly one '\\{request\\}' placeholder, found 0"):
        JailbreakWrapper("x", "fiction", "train", "no placeholder")
    with pytest.raises(InvalidInputError, match="found 2"):
        JailbreakWrapper("x", "fiction", "train", "{request} {request}")
    with pytest.raises(InvalidInputError, match="split must be 'train' or 'test', got 'all'"):
        JailbreakWrapper("x", "fiction", "all", "{request}")


# ---------------------------------------------------------------------------------------------------------------
# wrap_prompts / wrapper_assignment
# ---------------------------------------------------------------------------------------------------------------


def test_wrap_prompts_is_deterministic_and_seeded():
    prompts = [p.harmful for p in builtin_gate_pairs("test")[:30]]
    wrappers = jailbreak_wrappers("test")
    first = [p.text for p in wrap_prompts(prompts, wrappers, per_prompt=2, seed=3)]
    assert first == [p.text for p in wrap_prompts(prompts, wrappers, per_prompt=2, seed=3)]
    assert first != [p.text for p in wrap_prompts(prompts, wrappers, per_prompt=2, seed=4)]


def test_wrap_prompts_wraps_twin_requests_identically():
    pairs = builtin_gate_pairs("test")[:40]
    wrappers = jailbreak_wrappers("test")
    harmful = wrap_prompts([p.harmful for p in pairs], wrappers, seed=7)
    safe = wrap_prompts([p.safe for p in pairs], wrappers, seed=7)
    for pair, h, s in zip(pairs, harmful, safe):
        assert h.text.replace(pair.harmful.text, "") == s.text.replace(pair.safe.text, "")
    # the assignment of prompt i does not depend on how long the list is
    assert [p.text for p in wrap_prompts([p.harmful for p in pairs[:5]], wrappers, seed=7)] == [
        p.text for p in harmful[:5]
    ]


@pytest.mark.parametrize(("n_prompts", "per_prompt"), [(10, 1), (26, 1), (61, 2), (100, 3)])
def test_wrapper_assignment_is_balanced_and_distinct_per_prompt(n_prompts, per_prompt):
    wrappers = jailbreak_wrappers("test")
    assigned = wrapper_assignment(n_prompts, wrappers, per_prompt=per_prompt, seed=0)
    assert len(assigned) == n_prompts * per_prompt
    counts = Counter(w.id for w in assigned)
    if n_prompts * per_prompt >= len(wrappers):
        assert set(counts) == {w.id for w in wrappers}
    assert max(counts.values()) - min(counts.values(), default=0) <= 1
    for start in range(0, len(assigned), per_prompt):
        chunk = assigned[start : start + per_prompt]
        assert len({w.id for w in chunk}) == per_prompt


def test_wrap_prompts_output_lines_up_with_the_assignment():
    prompts = [Prompt(f"How do I cook dish number {i}?") for i in range(7)]
    wrappers = jailbreak_wrappers("train")
    wrapped = wrap_prompts(prompts, wrappers, per_prompt=3, seed=1)
    assigned = wrapper_assignment(len(prompts), wrappers, per_prompt=3, seed=1)
    assert [w.wrap(prompts[k // 3]).text for k, w in enumerate(assigned)] == [p.text for p in wrapped]
    assert wrap_prompts([], wrappers) == []


def test_wrap_prompts_refuses_bad_arguments():
    wrappers = jailbreak_wrappers("test")
    with pytest.raises(InvalidInputError, match="at least one wrapper"):
        wrap_prompts([Prompt("a?")], [])
    with pytest.raises(InvalidInputError, match=f"between 1 and the number of wrappers \\({len(wrappers)}\\), got 0"):
        wrap_prompts([Prompt("a?")], wrappers, per_prompt=0)
    with pytest.raises(InvalidInputError, match="got 999"):
        wrap_prompts([Prompt("a?")], wrappers, per_prompt=999)


# ---------------------------------------------------------------------------------------------------------------
# Splits, errors, borderline
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", [builtin_gate_pairs, jailbreak_wrappers, builtin_borderline])
def test_bad_split_names_the_allowed_values(loader):
    with pytest.raises(InvalidInputError, match="split must be 'train', 'test' or 'all', got 'dev'"):
        loader("dev")


def test_malformed_gate_data_names_the_file_and_line(tmp_path, monkeypatch):
    import autosteer_interp.prompts as prompts_module

    data = tmp_path / "gate_pairs_train.jsonl"
    good = {"id": "g1", "category": "fraud", "style": "direct", "harmful": "h?", "safe": "s?"}
    data.write_text(json.dumps(good) + "\n" + json.dumps({**good, "style": "poetic"}) + "\n")
    wrappers = tmp_path / "jailbreak_wrappers.jsonl"
    wrappers.write_text(json.dumps({"id": "w1", "family": "fiction", "split": "train", "template": "none"}) + "\n")

    def fake_records(name):
        path = tmp_path / name
        return path, list(prompts_module._read_jsonl(path))

    monkeypatch.setattr(prompts_module, "_data_records", fake_records)
    with pytest.raises(DataFormatError, match=r"gate_pairs_train.jsonl, line 2: style must be one of .*'poetic'"):
        builtin_gate_pairs("train")
    with pytest.raises(DataFormatError, match=r"jailbreak_wrappers.jsonl, line 1: .*exactly one"):
        jailbreak_wrappers()


def test_borderline_set_was_extended_without_touching_the_existing_lines():
    lines = _data_lines("borderline_benign.jsonl")
    records = [json.loads(line) for line in lines]
    assert len(records) >= 179 + 150
    assert [r["id"] for r in records] == [f"bb-{i:03d}" for i in range(1, len(records) + 1)]
    assert records[0]["query"].startswith("How do I kill a stuck Python process")
    assert all(set(r) == {"id", "category", "trigger", "query"} for r in records)
    queries = [_norm(r["query"]) for r in records]
    assert len(set(queries)) == len(queries)
    categories = Counter(r["category"] for r in records[179:])
    assert {"security_defence", "pest_control", "fiction_writing", "health_medicine"} <= set(categories)
    test = builtin_borderline("test")
    assert [p.text for p in test] == [r["query"] for i, r in enumerate(records) if i % 4 == 3]


BORDERLINE_KINDS = {
    "definitions",
    "historical_events",
    "privacy_public_figures",
    "privacy_fictional",
    "nonsense_discrimination",
    "safe_contexts",
    "figurative_language",
    "safe_targets",
}


def test_borderline_set_holds_plain_requests_of_every_over_refusal_kind_in_both_splits():
    """Lines bb-336 on: short harmless requests of the kinds that only sound harmful, 15 per kind."""
    records = [json.loads(line) for line in _data_lines("borderline_benign.jsonl")][335:]
    assert Counter(r["category"] for r in records) == dict.fromkeys(BORDERLINE_KINDS, 15)
    test_kinds = {r["category"] for i, r in enumerate(records, start=335) if i % 4 == 3}
    assert test_kinds == BORDERLINE_KINDS
    assert all(r["trigger"].lower() in r["query"].lower() for r in records)


def test_borderline_requests_are_not_gate_requests():
    gate = {_norm(t) for t in _texts(builtin_gate_pairs())}
    assert not gate & {_norm(p.text) for p in builtin_borderline()}


# ---------------------------------------------------------------------------------------------------------------
# Everyday instructions
# ---------------------------------------------------------------------------------------------------------------


def test_everyday_file_parses_with_the_documented_fields_and_splits():
    records = [json.loads(line) for line in _data_lines("everyday_instructions.jsonl")]
    assert all(set(r) == {"id", "category", "split", "text"} for r in records)
    assert [r["id"] for r in records] == [f"ev-{i:03d}" for i in range(1, len(records) + 1)]
    cells = Counter((r["category"], r["split"]) for r in records)
    assert len({c for c, _ in cells}) == 22
    topics = {n for (c, _), n in cells.items() if c not in ("short_tasks", "harmless_constraints")}
    assert topics == {10, 20}  # 20 topics, 20 train + 10 test
    assert (cells["short_tasks", "train"], cells["short_tasks", "test"]) == (95, 47)  # short Alpaca-like tasks
    # benchmark templates with a harmless "without ..." constraint, the shape of evasion requests
    assert (cells["harmless_constraints", "train"], cells["harmless_constraints", "test"]) == (21, 10)
    assert [p.text for p in builtin_everyday("test")] == [r["text"] for r in records if r["split"] == "test"]
    assert len(builtin_everyday("train")) == 516 and len(builtin_everyday()) == 773
    texts = [_norm(r["text"]) for r in records]
    assert len(set(texts)) == len(texts)


def test_everyday_instructions_share_the_benchmarks_openings():
    """About half open like harmful-behaviour benchmark tasks, so that phrasing is never the gate's signal."""
    openings = ("write", "give", "create", "develop", "draft", "explain", "describe", "list", "provide", "design")
    share = np.mean([p.text.split()[0].lower() in openings for p in builtin_everyday()])
    assert 0.4 <= share <= 0.7


def test_everyday_loader_refuses_a_bad_split(tmp_path, monkeypatch):
    import autosteer_interp.prompts as prompts_module

    data = tmp_path / "everyday_instructions.jsonl"
    data.write_text(json.dumps({"id": "ev-001", "category": "math", "split": "dev", "text": "Add 2 and 2."}) + "\n")
    monkeypatch.setattr(prompts_module, "_data_records", lambda name: (data, list(prompts_module._read_jsonl(data))))
    with pytest.raises(DataFormatError, match="everyday_instructions.jsonl, line 1: split must be 'train' or 'test'"):
        builtin_everyday()
    with pytest.raises(InvalidInputError, match="split must be 'train', 'test' or 'all'"):
        builtin_everyday("dev")
