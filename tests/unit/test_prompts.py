import json
from collections import Counter

import numpy as np
import pytest

from autosteer_interp.errors import DataFormatError, InvalidInputError
from autosteer_interp.prompts import Prompt, builtin_pairs, load_queries, load_tovilag, load_vlsafe


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def vlsafe_files(tmp_path):
    harmful = _write_jsonl(
        tmp_path / "VLSafe_harmlessnss_alignment.jsonl",
        [
            {"image_id": "a.jpg", "caption": "a bus", "query": "harmful one?", "reference": "no"},
            {"image_id": "b.jpg", "caption": "a jar", "query": "harmful two?", "reference": "no"},
        ],
    )
    safe = _write_jsonl(
        tmp_path / "vlsafe_convert_safe.jsonl",
        [
            {"image_id": "a.jpg", "safe_query": "safe one?", "orig_query": "harmful one?"},
            {"image_id": "b.jpg", "safe_query": "safe two?", "orig_query": "harmful two?"},
        ],
    )
    return harmful, safe


def test_vlsafe_lines_pair_up_in_order(vlsafe_files):
    pairs = load_vlsafe(*vlsafe_files)
    assert [(p.harmful.text, p.safe.text) for p in pairs] == [
        ("harmful one?", "safe one?"),
        ("harmful two?", "safe two?"),
    ]
    assert pairs[0].id == "1" and pairs[1].meta == {"image_id": "b.jpg", "caption": "a jar"}
    assert not pairs[0].harmful.has_image


def test_vlsafe_directory_is_discovered_and_limit_applies(vlsafe_files, tmp_path):
    assert len(load_vlsafe(tmp_path, limit=1)) == 1


def test_vlsafe_images_resolve_against_image_dir(vlsafe_files, tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(images / name)
    pairs = load_vlsafe(*vlsafe_files, image_dir=images)
    assert pairs[0].harmful.image == pairs[0].safe.image == images / "a.jpg"
    assert pairs[0].harmful.load_image().size == (8, 8)


def test_vlsafe_missing_image_names_file_and_line(vlsafe_files, tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataFormatError, match=r"VLSafe_harmlessnss_alignment.jsonl, line 1: image 'a.jpg' not found"):
        load_vlsafe(*vlsafe_files, image_dir=tmp_path / "images")


def test_vlsafe_files_of_different_length_are_refused(vlsafe_files):
    harmful, safe = vlsafe_files
    safe.write_text(safe.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataFormatError, match="differ in length.*2 records.*1"):
        load_vlsafe(harmful, safe)


def test_vlsafe_out_of_step_files_are_refused(vlsafe_files):
    harmful, safe = vlsafe_files
    lines = safe.read_text().splitlines()
    safe.write_text(lines[1] + "\n" + lines[0] + "\n")
    with pytest.raises(DataFormatError, match=r"line 1: orig_query does not match"):
        load_vlsafe(harmful, safe)


def test_malformed_json_names_file_and_line(vlsafe_files):
    harmful, safe = vlsafe_files
    harmful.write_text(harmful.read_text() + "{not json\n")
    with pytest.raises(DataFormatError, match=r"VLSafe_harmlessnss_alignment.jsonl, line 3: not valid JSON"):
        load_vlsafe(harmful, safe)


def test_missing_field_lists_the_fields_found(tmp_path):
    path = _write_jsonl(tmp_path / "q.jsonl", [{"query": "fine?"}, {"prompt": "wrong field"}])
    with pytest.raises(
        DataFormatError, match=r"q.jsonl, line 2: missing a non-empty string field 'query'.*\['prompt'\]"
    ):
        load_queries(path)


def test_missing_file_is_a_data_format_error(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        load_queries(tmp_path / "absent.jsonl")


def test_non_object_line_is_refused(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('["a list"]\n')
    with pytest.raises(DataFormatError, match="line 1: expected a JSON object, got list"):
        load_queries(path)


def test_tovilag_and_plain_queries_load(tmp_path):
    tovilag = _write_jsonl(tmp_path / "t.jsonl", [{"image_pth": "x/1.jpg", "query": "Describe it.", "caption": "c"}])
    assert [p.text for p in load_tovilag(tovilag)] == ["Describe it."]
    plain = _write_jsonl(tmp_path / "p.jsonl", [{"query": "one?"}, {"query": "two?"}])
    assert [p.text for p in load_queries(plain)] == ["one?", "two?"]


def test_prompt_text_must_be_non_empty():
    with pytest.raises(InvalidInputError, match="non-empty string"):
        Prompt("   ")


def test_array_images_load_as_rgb():
    image = Prompt("x", np.zeros((4, 6, 3), dtype=np.uint8)).load_image()
    assert image.mode == "RGB" and image.size == (6, 4)


def test_builtin_pairs_are_many_varied_and_contrastive():
    pairs = builtin_pairs()
    assert len(pairs) >= 150
    assert len({p.harmful.text for p in pairs}) == len(pairs) == len({p.safe.text for p in pairs})
    assert all(p.harmful.text != p.safe.text for p in pairs)
    categories = Counter(p.category for p in pairs)
    assert len(categories) >= 10 and min(categories.values()) >= 10
    about_image = sum(p.meta["about_image"] for p in pairs)
    assert 0.2 * len(pairs) < about_image < 0.6 * len(pairs)


def test_builtin_borderline_requests_split_into_disjoint_train_and_test_parts():
    from autosteer_interp.prompts import builtin_borderline

    train, test, everything = builtin_borderline("train"), builtin_borderline("test"), builtin_borderline()
    assert len(everything) >= 100 and len(train) + len(test) == len(everything)
    assert not {p.text for p in train} & {p.text for p in test}
    assert 0.2 < len(test) / len(everything) < 0.3
    with pytest.raises(InvalidInputError, match="split must be 'train', 'test' or 'all', got 'dev'"):
        builtin_borderline("dev")
