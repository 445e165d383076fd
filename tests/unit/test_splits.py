"""Every split in the library is disjoint by text: deduplication, the gate data, the prober's validation."""

import pytest
import torch

from autosteer_interp.gate import GateData
from autosteer_interp.prober import _split
from autosteer_interp.prompts import Prompt, PromptPair, builtin_pairs, deduplicate_pairs, load_vlsafe
from autosteer_interp.splits import activation_keys, move_shared_to_train, split_by_keys


def generator():
    return torch.Generator().manual_seed(0)


def test_rows_sharing_a_key_land_on_the_same_side():
    keys = [{i % 7} for i in range(70)]  # ten copies of seven requests
    for seed in range(5):
        train, held_out = split_by_keys(keys, 0.3, torch.Generator().manual_seed(seed))
        assert sorted(train + held_out) == list(range(70))
        assert not {i % 7 for i in train} & {i % 7 for i in held_out}
        assert 10 <= len(held_out) <= 30


def test_keys_chain_through_shared_members():
    keys = [{"a", "b"}, {"b", "c"}, {"c"}, {"d"}, {"e"}]  # rows 0-2 form one request group
    for seed in range(10):
        train, held_out = split_by_keys(keys, 0.5, torch.Generator().manual_seed(seed))
        assert {0, 1, 2} <= set(train) or {0, 1, 2} <= set(held_out)


def test_nothing_is_held_out_of_a_single_group_and_everything_is_never_held_out():
    assert split_by_keys([{"x"}] * 5, 0.5, generator()) == ([0, 1, 2, 3, 4], [])
    train, held_out = split_by_keys([{"x"}, {"x"}, {"y"}], 0.9, generator())
    assert train and held_out


def test_held_out_rows_shared_with_another_splits_training_move_to_training():
    first = ([0], [1], [{"a"}, {"b"}])
    second = ([0], [1, 2], [{"b"}, {"c"}, {"d"}])
    move_shared_to_train([first, second])
    assert first == ([0, 1], [], first[2]) and second == ([0], [1, 2], second[2])


def test_identical_activation_rows_get_one_id():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[3.0, 4.0], [5.0, 6.0]])
    ids_a, ids_b = activation_keys(a, b)
    assert ids_a[1] == ids_b[0] and len({*ids_a, *ids_b}) == 3


def test_the_probers_validation_split_never_straddles_a_repeated_request():
    torch.manual_seed(0)
    unique = torch.randn(10, 1, 8)
    harmful = unique[torch.arange(40) % 10]  # every harmful request four times
    safe = torch.randn(40, 1, 8)
    (train_x, _, _), (val_x, _, _) = _split(harmful, safe, None, 0.25, generator())
    train_rows = {tuple(row.flatten().tolist()) for row in train_x}
    assert len(val_x) > 0 and not any(tuple(row.flatten().tolist()) in train_rows for row in val_x)


def repeated_pairs():
    pairs = builtin_pairs()[:40]
    copies = [PromptPair(Prompt(p.harmful.text), Prompt(p.safe.text), id=f"copy-{p.id}") for p in pairs[:15]]
    return pairs + copies


def test_deduplication_drops_pairs_repeating_any_earlier_text():
    pairs = repeated_pairs()
    swapped = PromptPair(Prompt(pairs[3].safe.text), Prompt("A new harmful text?"))  # a safe text as harmful
    kept, dropped = deduplicate_pairs([*pairs, swapped])
    assert dropped == 16 and len(kept) == 40
    texts = [t for p in kept for t in (p.harmful.text, p.safe.text)]
    assert len(texts) == len(set(texts))


def test_the_gate_datas_training_and_held_out_parts_share_no_text():
    data = GateData.build(repeated_pairs(), builtin=True, wrap=True, max_wrapped=64)
    pairs = repeated_pairs()

    def texts(stage):
        return {p.text for name, part in data.parts.items() if name.startswith(stage) for p in part.all_prompts(pairs)}

    assert texts("val_") and texts("train_") and not texts("train_") & texts("val_")


@pytest.mark.data
def test_the_readme_protocol_on_vlsafe_is_disjoint_by_text(data_dir):
    everything = load_vlsafe(data_dir / "vlsafe", deduplicate=False)
    pairs = load_vlsafe(data_dir / "vlsafe")
    assert len(everything) == 2000 and len(pairs) == 1798
    fit, held_out = pairs[:-400], pairs[-400:]  # --range :-400 and --range -400:

    def texts(chosen):
        return {t for p in chosen for t in (p.harmful.text, p.safe.text)}

    assert len(held_out) == 400 and not texts(fit) & texts(held_out)
    data = GateData.build(fit, builtin=True, wrap=False)
    train = {p.text for n, part in data.parts.items() if n.startswith("train_") for p in part.all_prompts(fit)}
    val = {p.text for n, part in data.parts.items() if n.startswith("val_") for p in part.all_prompts(fit)}
    assert not train & val and not (train | val) & texts(held_out)
    # the round-1 protocol (--range 0:1600 and -400: on the raw file): 48 of the 400 held-out harmful requests
    raw_fit = {p.harmful.text for p in everything[:1600]}
    assert sum(p.harmful.text in raw_fit for p in everything[-400:]) == 48
