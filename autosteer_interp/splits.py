"""Train / held-out splits that never put one request on both sides.

A data set with repeated texts (VLSafe holds 188 repeated harmful and 163 repeated safe texts among its 2000
pairs) split by index leaks: held-out rows are verbatim in the training part, and held-out metrics measure
memory. Here rows are keyed (by text, or by an exact activation row: one text, one activation) and every row
that shares a key with another lands on the same side.

Example:
    >>> keys = [{"a"}, {"b"}, {"a"}, {"c"}]
    >>> train, val = split_by_keys(keys, 0.5, torch.Generator().manual_seed(0))
    >>> sorted(train + val) == [0, 1, 2, 3] and ((0 in val) == (2 in val))
    True
"""

from collections.abc import Hashable, Sequence
from collections.abc import Set as AbstractSet

import torch
from torch import Tensor

__all__ = ["activation_keys", "move_shared_to_train", "split_by_keys"]

Keys = Sequence[AbstractSet[Hashable]]


def split_by_keys(keys: Keys, fraction: float, generator: torch.Generator) -> tuple[list[int], list[int]]:
    """Split rows at random into ``(train, held_out)`` so that rows sharing any key are on the same side.

    Args:
        keys: The keys of each row (e.g. ``{harmful_text, safe_text}`` for a pair).
        fraction: Share of the rows held out (rounded; at least one row when there are two groups or more).
        generator: Seeds the shuffle of the groups.

    Returns:
        Sorted row indices of the two sides.
    """
    groups = _groups(keys)
    members: dict[int, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    order = [list(members.values())[i] for i in torch.randperm(len(members), generator=generator).tolist()]
    want = max(1, round(fraction * len(keys))) if len(order) >= 2 else 0
    held_out: list[int] = []
    for rows in order:
        if len(held_out) >= want:
            break
        if len(held_out) + len(rows) < len(keys):  # never hold out everything
            held_out += rows
    chosen = set(held_out)
    return [row for row in range(len(keys)) if row not in chosen], sorted(held_out)


def move_shared_to_train(parts: Sequence[tuple[list[int], list[int], Keys]]) -> None:
    """Across several splits, move held-out rows that share a key with any training row to training (in place).

    Args:
        parts: ``(train_rows, held_out_rows, keys)`` of each split; the lists are edited.
    """
    while True:
        seen = {key for train, _, keys in parts for row in train for key in keys[row]}
        moved = False
        for train, held_out, keys in parts:
            shared = [row for row in held_out if seen & set(keys[row])]
            for row in shared:
                held_out.remove(row)
                train.append(row)
            train.sort()
            moved |= bool(shared)
        if not moved:
            return


def activation_keys(*stacks: Tensor) -> list[list[int]]:
    """One id per row of each stack, equal exactly when two rows (of any of the stacks) are identical.

    A model maps one prompt to one activation, so identical rows are the same request.
    """
    rows = torch.cat([stack.reshape(len(stack), -1) for stack in stacks])
    ids = torch.unique(rows, dim=0, return_inverse=True)[1].tolist() if len(rows) else []
    out, start = [], 0
    for stack in stacks:
        out.append(ids[start : start + len(stack)])
        start += len(stack)
    return out


def _groups(keys: Keys) -> list[int]:
    """Union-find: the group of each row, rows sharing a key being one group."""
    parent = list(range(len(keys)))

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    owner: dict[Hashable, int] = {}
    for row, row_keys in enumerate(keys):
        for key in row_keys:
            if key in owner:
                parent[root(row)] = root(owner[key])
            else:
                owner[key] = row
    return [root(row) for row in range(len(keys))]
