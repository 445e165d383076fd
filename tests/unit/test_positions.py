import pytest
import torch

from autosteer_interp.activations import last_prompt_positions
from autosteer_interp.errors import InvalidInputError


def test_left_padding_gives_the_last_column():
    ids = torch.tensor([[0, 0, 5, 6], [4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_prompt_positions(ids, mask).tolist() == [3, 3]


def test_right_padding_uses_the_attention_mask():
    ids = torch.tensor([[5, 6, 0, 0], [4, 5, 6, 7]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert last_prompt_positions(ids, mask).tolist() == [1, 3]


def test_image_tokens_never_count_as_last():
    ids = torch.tensor([[5, 6, 9, 9]])
    mask = torch.ones_like(ids)
    assert last_prompt_positions(ids, mask, image_token_id=9).tolist() == [1]


def test_a_row_without_text_is_refused():
    ids = torch.tensor([[9, 9]])
    with pytest.raises(InvalidInputError, match="no text token"):
        last_prompt_positions(ids, torch.ones_like(ids), image_token_id=9)
