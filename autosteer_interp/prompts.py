"""Prompts and contrastive pairs: data types, loaders, chat formatting and batch encoding.

A :class:`Prompt` is a user request (text plus an optional image). A :class:`PromptPair` holds a harmful
request and a minimally edited harmless one (same image, if any): the unit of the Safety Awareness Score.

Formatting follows the model: a chat template with the generation prompt (LLaVA-OneVision, chat LMs), so
the last prompt token is the one the model answers from; Chameleon has no chat template and uses its
processor's convention (the ``<image>`` placeholder in the text, the separator token appended).

Loaders read the VLSafe and ToViLaG jsonl formats of the public AutoSteer release, plain jsonl files with a
``query`` field, and the project's own data shipped with the package: the built-in pairs
(:func:`builtin_pairs`), the borderline-benign requests (:func:`builtin_borderline`), and the gate data
(:func:`builtin_gate_pairs`: pairs in many harm categories and phrasing styles, with disjoint train and test
files; :func:`jailbreak_wrappers`: wrapper templates applied alike to harmful and benign requests by
:func:`wrap_prompts`). Malformed files raise :class:`~autosteer_interp.errors.DataFormatError` naming the
file and the line.

Example:
    >>> pairs = builtin_pairs()
    >>> len(pairs) >= 150
    True
"""

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from torch import Tensor

from .architectures import input_placement, resolve
from .errors import DataFormatError, InvalidInputError, UnsupportedModelError

logger = logging.getLogger(__name__)

__all__ = [
    "BENCHMARK_STYLE",
    "CONTRAST_STYLE",
    "GATE_STYLES",
    "INSTRUCTION_STYLES",
    "PROMPT_FORMATS",
    "QUESTION_STYLES",
    "SCENE_STYLE",
    "TASK_STYLE",
    "WRAPPER_FAMILIES",
    "JailbreakWrapper",
    "Prompt",
    "PromptPair",
    "builtin_borderline",
    "builtin_everyday",
    "builtin_gate_pairs",
    "builtin_pairs",
    "check_pairs",
    "check_prompt_format",
    "check_prompt_lengths",
    "check_prompts",
    "deduplicate_pairs",
    "encode_prompts",
    "format_prompt",
    "jailbreak_wrappers",
    "load_pairs",
    "load_queries",
    "load_tovilag",
    "load_vlsafe",
    "wrap_prompts",
    "wrapper_assignment",
]

ImageLike = Image.Image | np.ndarray | str | Path

#: Question-like phrasing styles of the gate pairs (:func:`builtin_gate_pairs`), the first ones written.
QUESTION_STYLES: tuple[str, ...] = ("direct", "polite", "indirect", "image_question", "imperative", "casual")

#: The phrasing of the standard harmful-behaviour benchmarks (HarmBench, AdvBench, JailbreakBench, StrongREJECT):
#: tasks ("Write a tutorial on how to ..."), requests for harmful content (an article, an email, a post) and
#: specific questions with context.
INSTRUCTION_STYLES: tuple[str, ...] = ("instruction", "content", "detailed_question")

#: Benchmark-style tasks paired with a harmless task in the same template ("Write a persuasive article arguing
#: that ..."), not with a minimal edit of it.
BENCHMARK_STYLE = "benchmark"

#: Pairs whose harmless side only sounds harmful (XSTest's kinds: homonyms, safe targets, definitions, ...) and
#: whose harmful side is its minimal edit into a real request for harm.
CONTRAST_STYLE = "minimal_contrast"

#: Short questions about what a shared photo shows (furniture, appliances, vehicles, animals, children) asking how
#: to use it, VLSafe's own phrasing, over harms its pairs hold few of: arson and other property crime, child
#: endangerment, animal cruelty, dangerous driving, violence with everyday objects, covert harm.
SCENE_STYLE = "scene_question"

#: Blunt benchmark-style tasks over the benchmarks' categories, including the ones the other styles hold few of
#: (document and immigration fraud, evading the law, environmental and labour crime, extortion, dangerous "expert"
#: advice, election tampering, gambling harm, cults) and tasks framed as concealment or evasion ("... without
#: being detected", "... and cover my tracks"), each with a harmless task that keeps its opening verb. The gate
#: trains on their harmful sides only (:data:`~autosteer_interp.gate.TWINLESS_STYLES`).
TASK_STYLE = "task"

#: Every phrasing style of the gate pairs.
GATE_STYLES: tuple[str, ...] = (
    *QUESTION_STYLES,
    *INSTRUCTION_STYLES,
    BENCHMARK_STYLE,
    CONTRAST_STYLE,
    SCENE_STYLE,
    TASK_STYLE,
)

#: Families of the jailbreak wrappers (:func:`jailbreak_wrappers`); the last two appear only in the test split.
WRAPPER_FAMILIES: tuple[str, ...] = (
    "role_play",
    "fiction",
    "prefix_injection",
    "translation",
    "emotional_appeal",
    "long_preamble",
    "research_pretext",
    "developer_mode",
    "refusal_suppression",
    "code_framing",
    "payload_splitting",
    "few_shot_dialogue",
)


@dataclass(frozen=True, eq=False)
class Prompt:
    """One user request.

    Attributes:
        text: The request, without any chat formatting.
        image: Optional image: a PIL image, an ``height x width x 3`` uint8 array, or a file path
            (loaded when the prompt is encoded).
    """

    text: str
    image: ImageLike | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise InvalidInputError(f"Prompt.text must be a non-empty string, got {self.text!r}.")

    @property
    def has_image(self) -> bool:
        """Whether the prompt carries an image."""
        return self.image is not None

    def load_image(self) -> Image.Image | None:
        """The image as an RGB PIL image, or ``None``.

        Raises:
            DataFormatError: If the image path does not exist or is not an image.
        """
        if self.image is None:
            return None
        if isinstance(self.image, Image.Image):
            return self.image.convert("RGB")
        if isinstance(self.image, np.ndarray):
            return Image.fromarray(self.image).convert("RGB")
        path = Path(self.image)
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as error:
            raise DataFormatError(f"cannot read the image {path}: {error}") from error


@dataclass(frozen=True, eq=False)
class PromptPair:
    """A harmful request and its minimally edited harmless counterpart.

    Attributes:
        harmful: The request asking for help causing harm.
        safe: The harmless rewrite (same image, if any).
        id: An identifier (e.g. the line number in the source file).
        category: Optional harm category.
        meta: Any further fields of the source record.
        style: Optional phrasing style (one of :data:`GATE_STYLES` for the gate pairs).
    """

    harmful: Prompt
    safe: Prompt
    id: str = ""
    category: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    style: str = ""


@dataclass(frozen=True)
class JailbreakWrapper:
    """A jailbreak-style template that wraps a request; applied alike to harmful and benign requests.

    Attributes:
        id: Identifier, like ``"jw-001"``.
        family: The wrapper family (one of :data:`WRAPPER_FAMILIES`).
        split: ``"train"`` or ``"test"``; the two splits share no template.
        template: The wrapper text, with exactly one ``{request}`` placeholder (other braces are literal).

    Raises:
        InvalidInputError: If the template does not hold exactly one ``{request}``, or the split is not
            ``"train"`` or ``"test"``.
    """

    id: str
    family: str
    split: str
    template: str

    def __post_init__(self) -> None:
        count = self.template.count("{request}")
        if count != 1:
            raise InvalidInputError(
                f"wrapper {self.id!r}: the template must hold exactly one '{{request}}' placeholder, found {count}."
            )
        if self.split not in ("train", "test"):
            raise InvalidInputError(f"wrapper {self.id!r}: split must be 'train' or 'test', got {self.split!r}.")

    def wrap(self, prompt: Prompt) -> Prompt:
        """The request placed in the template; the image (if any) is kept.

        Args:
            prompt: The request to wrap.

        Returns:
            A new prompt whose text is the template with ``{request}`` replaced by ``prompt.text``.
        """
        return Prompt(self.template.replace("{request}", prompt.text), prompt.image)


# --------------------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------------------


def _read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for every non-empty line (line numbers start at 1)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"data file not found: {path}")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DataFormatError(
                    f"{path}, line {number}: not valid UTF-8 (byte {raw[error.start]:#04x} at column "
                    f"{error.start + 1}); save the file as UTF-8."
                ) from error
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{path}, line {number}: not valid JSON ({error.msg}).") from error
            if not isinstance(record, dict):
                raise DataFormatError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}.")
            yield number, record


def _field(record: dict[str, Any], names: Sequence[str], path: Path, number: int) -> str:
    """The first of ``names`` present in ``record``: a non-empty string, or a :class:`DataFormatError`."""
    for name in names:
        if name not in record:
            continue
        value = record[name]
        if not isinstance(value, str):
            raise DataFormatError(
                f"{path}, line {number}: field {name!r} must be a string, got {type(value).__name__} "
                f"({json.dumps(value)[:60]})."
            )
        if not value.strip():
            raise DataFormatError(f"{path}, line {number}: field {name!r} is empty.")
        return value
    raise DataFormatError(
        f"{path}, line {number}: missing a non-empty string field {' or '.join(map(repr, names))}; "
        f"found fields {sorted(record)}."
    )


def _check_distinct(harmful: str, safe: str, where: str) -> None:
    if harmful.strip() == safe.strip():
        raise DataFormatError(
            f"{where}: the harmful and the safe text are the same ({harmful[:60]!r}); a contrastive pair needs "
            "two different requests."
        )


def deduplicate_pairs(pairs: Sequence[PromptPair]) -> tuple[list[PromptPair], int]:
    """Drop every pair whose harmful or safe text already appeared (on either side) in an earlier pair.

    Afterwards no text occurs twice, so any split of the list by index is disjoint by text.

    Returns:
        ``(kept pairs, number dropped)``.
    """
    seen: set[str] = set()
    kept = []
    for pair in pairs:
        texts = {pair.harmful.text.strip(), pair.safe.text.strip()}
        if not texts & seen:
            kept.append(pair)
        seen |= texts
    if len(kept) < len(pairs):
        logger.info("dropped %d of %d pairs that repeat an earlier pair's text", len(pairs) - len(kept), len(pairs))
    return kept, len(pairs) - len(kept)


def _image_path(image_dir: str | Path | None, name: str | None, path: Path, number: int) -> Path | None:
    if image_dir is None or name is None:
        return None
    image = Path(image_dir) / name
    if not image.is_file():
        raise DataFormatError(f"{path}, line {number}: image {name!r} not found in {image_dir}.")
    return image


def _find_one(directory: Path, pattern: str) -> Path:
    matches = sorted(directory.glob(pattern))
    if len(matches) != 1:
        raise DataFormatError(
            f"expected exactly one file matching {pattern!r} in {directory}, found {[m.name for m in matches]}."
        )
    return matches[0]


def load_vlsafe(
    harmful_path: str | Path,
    safe_path: str | Path | None = None,
    image_dir: str | Path | None = None,
    limit: int | None = None,
    deduplicate: bool = True,
) -> list[PromptPair]:
    """Load VLSafe contrastive pairs in the format of the public AutoSteer release.

    Line ``i`` of ``harmful_path`` (fields ``image_id``, ``query``, optional ``caption``) and line ``i`` of
    ``safe_path`` (fields ``image_id``, ``safe_query``, optional ``orig_query``) form one pair.

    Args:
        harmful_path: e.g. ``VLSafe_harmlessnss_alignment.jsonl``; or, with ``safe_path=None``, a directory
            holding one ``VLSafe_harmlessnss_alignment*.jsonl`` and one ``vlsafe_convert_safe*.jsonl``.
        safe_path: e.g. ``vlsafe_convert_safe.jsonl``.
        image_dir: Directory of the COCO images named by ``image_id``; ``None`` gives text-only prompts.
        limit: Keep only the first ``limit`` pairs (after deduplication).
        deduplicate: Drop pairs whose harmful or safe text repeats an earlier pair's (the shared 2000 pairs
            hold 187 repeated harmful and 162 repeated safe texts; 1798 pairs remain). The count is logged.

    Returns:
        The pairs, in file order; ``id`` is the 1-based line number, ``meta`` holds ``image_id`` and ``caption``.

    Raises:
        DataFormatError: If a file is missing or malformed, the files have different lengths, a line's
            ``orig_query`` / ``image_id`` does not match the harmful file's line, or a pair's two texts are equal.
    """
    harmful_path = Path(harmful_path)
    if safe_path is None:
        if not harmful_path.is_dir():
            raise DataFormatError(f"{harmful_path} is not a directory; pass both the harmful and the safe file.")
        directory = harmful_path
        harmful_path = _find_one(directory, "VLSafe_harmlessnss_alignment*.jsonl")
        safe_path = _find_one(directory, "vlsafe_convert_safe*.jsonl")
    safe_path = Path(safe_path)
    harmful_records = list(_read_jsonl(harmful_path))
    safe_records = list(_read_jsonl(safe_path))
    if len(harmful_records) != len(safe_records):
        raise DataFormatError(
            f"VLSafe files differ in length: {harmful_path} has {len(harmful_records)} records, "
            f"{safe_path} has {len(safe_records)}; line i of both must form one pair."
        )
    pairs: list[PromptPair] = []
    for (h_line, h_rec), (s_line, s_rec) in zip(harmful_records, safe_records):
        query = _field(h_rec, ["query"], harmful_path, h_line)
        safe_query = _field(s_rec, ["safe_query"], safe_path, s_line)
        _check_distinct(query, safe_query, f"{safe_path}, line {s_line} (pair of line {h_line} of {harmful_path})")
        if "orig_query" in s_rec and s_rec["orig_query"] != query:
            raise DataFormatError(
                f"{safe_path}, line {s_line}: orig_query does not match the query on line {h_line} of "
                f"{harmful_path}; the two files are out of step."
            )
        image_id = h_rec.get("image_id")
        if s_rec.get("image_id", image_id) != image_id:
            raise DataFormatError(
                f"{safe_path}, line {s_line}: image_id {s_rec.get('image_id')!r} differs from {image_id!r} "
                f"on line {h_line} of {harmful_path}."
            )
        image = _image_path(image_dir, image_id, harmful_path, h_line)
        pairs.append(
            PromptPair(
                harmful=Prompt(query, image),
                safe=Prompt(safe_query, image),
                id=str(h_line),
                meta={"image_id": image_id, "caption": h_rec.get("caption")},
            )
        )
    if deduplicate:
        pairs = deduplicate_pairs(pairs)[0]
    return pairs[:limit]


def load_pairs(
    path: str | Path, harmful_field: str = "harmful", safe_field: str = "safe", deduplicate: bool = True
) -> list[PromptPair]:
    """Load contrastive pairs from jsonl: one object per line with a harmful and a safe request.

    Args:
        path: The jsonl file.
        harmful_field: Name of the harmful request's field.
        safe_field: Name of the safe request's field.
        deduplicate: Drop pairs that repeat an earlier pair's text (see :func:`deduplicate_pairs`).

    Returns:
        The pairs in file order; ``id`` is the line number, ``category`` the optional ``category`` field.

    Raises:
        DataFormatError: If the file is missing or malformed, or a pair's two texts are equal.
    """
    path = Path(path)
    pairs = []
    for line, record in _read_jsonl(path):
        harmful, safe = _field(record, [harmful_field], path, line), _field(record, [safe_field], path, line)
        _check_distinct(harmful, safe, f"{path}, line {line}")
        category = record.get("category", "")
        pairs.append(PromptPair(Prompt(harmful), Prompt(safe), id=str(line), category=str(category)))
    if not pairs:
        raise DataFormatError(f"{path} holds no pairs (every line is empty).")
    return deduplicate_pairs(pairs)[0] if deduplicate else pairs


def load_tovilag(path: str | Path, image_dir: str | Path | None = None) -> list[Prompt]:
    """Load a ToViLaG jsonl file of the public AutoSteer release (fields ``image_pth``, ``query``).

    Args:
        path: The jsonl file.
        image_dir: Directory the ``image_pth`` values are relative to; ``None`` gives text-only prompts.

    Returns:
        One prompt per line.

    Raises:
        DataFormatError: If the file is missing or malformed, or a named image does not exist.
    """
    path = Path(path)
    return [
        Prompt(_field(rec, ["query"], path, line), _image_path(image_dir, rec.get("image_pth"), path, line))
        for line, rec in _read_jsonl(path)
    ]


def load_queries(
    path: str | Path,
    text_field: str = "query",
    image_field: str = "image",
    image_dir: str | Path | None = None,
) -> list[Prompt]:
    """Load plain jsonl requests: one object per line with a ``query`` field and an optional image file name.

    Args:
        path: The jsonl file.
        text_field: Name of the request field.
        image_field: Name of the optional image field (a file name relative to ``image_dir``).
        image_dir: Directory of the images; ``None`` ignores the image field.

    Returns:
        One prompt per line.

    Raises:
        DataFormatError: If the file is missing or malformed.
    """
    path = Path(path)
    return [
        Prompt(_field(rec, [text_field], path, line), _image_path(image_dir, rec.get(image_field), path, line))
        for line, rec in _read_jsonl(path)
    ]


def builtin_pairs() -> list[PromptPair]:
    """The project's own contrastive pairs (requests only), shipped with the package.

    Written for this library in the style of VLSafe: each harmful request has a minimally edited harmless
    twin. 14 harm categories; about 40% refer to an image the user shows, but no image files ship, so the
    prompts are text-only.

    Returns:
        The pairs; ``id`` like ``"cp-001"``, ``category`` set, ``meta["about_image"]`` a bool.
    """
    source = resources.files("autosteer_interp") / "data" / "contrastive_pairs.jsonl"
    with resources.as_file(source) as path:
        return [
            PromptPair(
                harmful=Prompt(_field(rec, ["harmful"], path, line)),
                safe=Prompt(_field(rec, ["safe"], path, line)),
                id=rec.get("id", str(line)),
                category=rec.get("category", ""),
                meta={"about_image": bool(rec.get("about_image", False))},
            )
            for line, rec in _read_jsonl(path)
        ]


def builtin_borderline(split: str = "all") -> list[Prompt]:
    """The project's own borderline-benign requests: harmless, but worded with alarming words.

    Examples of the kind: ending a stuck process with "kill", portrait photography with "shoot". A prober
    trained on harmful/harmless pairs alone flags many of these; they serve as extra negatives when fitting
    and calibrating, and their held-out part measures over-refusal.

    Args:
        split: ``"train"`` (three quarters), ``"test"`` (every fourth request, never used for fitting or
            calibration) or ``"all"``.

    Returns:
        The requests, text only.
    """
    _check_split(split)
    source = resources.files("autosteer_interp") / "data" / "borderline_benign.jsonl"
    with resources.as_file(source) as path:
        records = list(_read_jsonl(path))
    return [
        Prompt(_field(rec, ["query"], path, line))
        for index, (line, rec) in enumerate(records)
        if split == "all" or (index % 4 == 3) == (split == "test")
    ]


def _check_split(split: str) -> None:
    if split not in ("train", "test", "all"):
        raise InvalidInputError(f"split must be 'train', 'test' or 'all', got {split!r}.")


def _data_records(name: str) -> tuple[Path, list[tuple[int, dict[str, Any]]]]:
    source = resources.files("autosteer_interp") / "data" / name
    with resources.as_file(source) as path:
        return Path(path), list(_read_jsonl(path))


def builtin_gate_pairs(split: str = "all", styles: Sequence[str] | None = None) -> list[PromptPair]:
    """The project's contrastive pairs for training and testing the gate (requests only).

    Written for this library, in groups of phrasing styles (:data:`GATE_STYLES`):

    * :data:`QUESTION_STYLES`: harm categories VLSafe barely covers (sexual content, hate and harassment,
      self-harm, weapons, cybercrime, fraud, privacy invasion, drugs, violence, extremism, misinformation), each
      asked directly, politely, indirectly, about an image the model does not see, as a command and casually;
    * :data:`INSTRUCTION_STYLES`: the phrasing of the standard harmful-behaviour benchmarks (tasks, requests for
      harmful content, specific questions with context) over those categories and chemical and biological
      harm, illegal goods and services and economic crime;
    * :data:`CONTRAST_STYLE`: a harmless request that only sounds harmful (a homonym, a safe target, a
      definition, a fictional character's address, ...; ``meta["contrast"]`` names the kind) and its minimal
      edit into a real request for harm;
    * :data:`SCENE_STYLE`: short questions about what a photo shows ("How to use the ... in this picture to
      ...?"), VLSafe's phrasing, over property crime (arson first), child endangerment, animal cruelty,
      dangerous driving, violence with everyday objects and covert harm: the harms a gate trained on the
      broader data missed most in VLSafe's own training pairs (out-of-fold);
    * :data:`BENCHMARK_STYLE` and :data:`TASK_STYLE`: benchmark-style tasks, each paired with a harmless task in
      the same template.

    The harmless side is a minimal edit of the harmful side that keeps its topic words where possible, so a
    prober must learn the intent, not the vocabulary. The test split shares no request with the training split
    or with :func:`builtin_pairs`.

    Args:
        split: ``"train"``, ``"test"`` (never used for fitting or calibration) or ``"all"`` (train then test).
        styles: Keep only these styles (default: every style).

    Returns:
        The pairs, text only; ``category`` and ``style`` set, ``meta["split"]`` the file they came from.

    Raises:
        InvalidInputError: If ``split`` or a style is unknown.
        DataFormatError: If a data file is malformed (the message names the file and the line).
    """
    _check_split(split)
    unknown = sorted(set(styles or ()) - set(GATE_STYLES))
    if unknown:
        raise InvalidInputError(f"unknown gate-pair styles {unknown}; allowed: {list(GATE_STYLES)}.")
    parts = ("train", "test") if split == "all" else (split,)
    pairs: list[PromptPair] = []
    for part in parts:
        path, records = _data_records(f"gate_pairs_{part}.jsonl")
        for line, rec in records:
            style = _field(rec, ["style"], path, line)
            if style not in GATE_STYLES:
                raise DataFormatError(f"{path}, line {line}: style must be one of {GATE_STYLES}, got {style!r}.")
            if styles is not None and style not in styles:
                continue
            meta = {"split": part} | ({"contrast": _field(rec, ["contrast"], path, line)} if "contrast" in rec else {})
            pairs.append(
                PromptPair(
                    harmful=Prompt(_field(rec, ["harmful"], path, line)),
                    safe=Prompt(_field(rec, ["safe"], path, line)),
                    id=_field(rec, ["id"], path, line),
                    category=_field(rec, ["category"], path, line),
                    meta=meta,
                    style=style,
                )
            )
    return pairs


def builtin_everyday(split: str = "all") -> list[Prompt]:
    """The project's everyday instructions: what people ask a general assistant (writing, code, maths, ...).

    The gate's main negatives besides the harmless twins: about half open like the harmful-behaviour
    benchmarks ("Write a tutorial on how to ...", "Draft an email ...") with harmless content, so that phrasing
    is never the signal, and a few use alarming words harmlessly ("kill time", "a killer app").

    Args:
        split: ``"train"`` (two thirds), ``"test"`` (never used for fitting or calibration) or ``"all"``.

    Returns:
        The requests, text only, in file order.

    Raises:
        InvalidInputError: If ``split`` is unknown.
        DataFormatError: If the data file is malformed (the message names the file and the line).
    """
    _check_split(split)
    path, records = _data_records("everyday_instructions.jsonl")
    prompts = []
    for line, rec in records:
        part = _field(rec, ["split"], path, line)
        if part not in ("train", "test"):
            raise DataFormatError(f"{path}, line {line}: split must be 'train' or 'test', got {part!r}.")
        if split in ("all", part):
            prompts.append(Prompt(_field(rec, ["text"], path, line)))
    return prompts


def jailbreak_wrappers(split: str = "all") -> list[JailbreakWrapper]:
    """The project's jailbreak-style wrapper templates, shipped with the package.

    Every family of :data:`WRAPPER_FAMILIES` but the last two has templates in both splits (never the same
    template); ``payload_splitting`` and ``few_shot_dialogue`` appear only in the test split, as wrapper
    families the gate never saw. Every template reads naturally around a benign request too, so that,
    applied to both sides (:func:`wrap_prompts`), the wrapper itself is never the signal.

    Args:
        split: ``"train"`` (about 60% of the templates), ``"test"`` or ``"all"``.

    Returns:
        The wrappers, in file order.

    Raises:
        InvalidInputError: If ``split`` is not ``"train"``, ``"test"`` or ``"all"``.
        DataFormatError: If the data file is malformed (the message names the file and the line).
    """
    _check_split(split)
    path, records = _data_records("jailbreak_wrappers.jsonl")
    wrappers: list[JailbreakWrapper] = []
    for line, rec in records:
        try:
            wrapper = JailbreakWrapper(
                id=_field(rec, ["id"], path, line),
                family=_field(rec, ["family"], path, line),
                split=_field(rec, ["split"], path, line),
                template=_field(rec, ["template"], path, line),
            )
        except InvalidInputError as error:
            raise DataFormatError(f"{path}, line {line}: {error}") from error
        if split in ("all", wrapper.split):
            wrappers.append(wrapper)
    return wrappers


def wrapper_assignment(
    n_prompts: int, wrappers: Sequence[JailbreakWrapper], per_prompt: int = 1, seed: int = 0
) -> list[JailbreakWrapper]:
    """Which wrapper :func:`wrap_prompts` applies to each output prompt (same order, same arguments).

    The wrappers are shuffled once with ``seed``, then dealt round-robin: prompt ``i`` gets the
    ``per_prompt`` consecutive wrappers starting at position ``i * per_prompt`` (cyclically). So every
    prompt gets different wrappers, the wrappers are used equally often (counts differ by at most one), and
    prompt ``i`` gets the same wrappers whatever the list it is in, which wraps a harmful list and its
    benign twin list identically.

    Args:
        n_prompts: Number of prompts.
        wrappers: The wrappers to deal.
        per_prompt: Wrappers per prompt, ``1 <= per_prompt <= len(wrappers)``.
        seed: Seed of the shuffle.

    Returns:
        ``n_prompts * per_prompt`` wrappers: those of prompt 0, then those of prompt 1, ...

    Raises:
        InvalidInputError: If ``wrappers`` is empty, ``n_prompts`` is negative or ``per_prompt`` is out of range.
    """
    if len(wrappers) == 0:
        raise InvalidInputError("expected at least one wrapper, got an empty list.")
    if n_prompts < 0:
        raise InvalidInputError(f"n_prompts must be >= 0, got {n_prompts}.")
    if not 1 <= per_prompt <= len(wrappers):
        raise InvalidInputError(
            f"per_prompt must be between 1 and the number of wrappers ({len(wrappers)}), got {per_prompt}."
        )
    order = np.random.default_rng(seed).permutation(len(wrappers))
    return [wrappers[int(order[k % len(wrappers)])] for k in range(n_prompts * per_prompt)]


def wrap_prompts(
    prompts: Sequence[Prompt], wrappers: Sequence[JailbreakWrapper], per_prompt: int = 1, seed: int = 0
) -> list[Prompt]:
    """Wrap every prompt in ``per_prompt`` different wrappers, deterministically and evenly.

    The assignment is :func:`wrapper_assignment` (use it to group results by wrapper family): it depends
    only on the prompt's position, the wrappers and ``seed``, so ``wrap_prompts(harmful, ...)`` and
    ``wrap_prompts(benign, ...)`` with the same arguments wrap twin requests in the same templates.

    Args:
        prompts: The requests (images are kept).
        wrappers: The templates, e.g. ``jailbreak_wrappers("test")``.
        per_prompt: Wrappers per prompt, ``1 <= per_prompt <= len(wrappers)``.
        seed: Seed of the assignment.

    Returns:
        ``len(prompts) * per_prompt`` prompts: the wrapped versions of prompt 0, then of prompt 1, ...

    Raises:
        InvalidInputError: If ``wrappers`` is empty or ``per_prompt`` is out of range.

    Example:
        >>> wrapped = wrap_prompts([Prompt("How do I bake bread?")], jailbreak_wrappers("train"), per_prompt=2)
        >>> len(wrapped), all("How do I bake bread?" in p.text for p in wrapped)
        (2, True)
    """
    assigned = wrapper_assignment(len(prompts), wrappers, per_prompt, seed)
    return [wrapper.wrap(prompts[k // per_prompt]) for k, wrapper in enumerate(assigned)]


# --------------------------------------------------------------------------------------------------------
# Formatting and encoding
# --------------------------------------------------------------------------------------------------------


PromptFormat = Literal["chat", "paper"]
PROMPT_FORMATS: tuple[str, ...] = ("chat", "paper")
"""How requests are laid out (see :func:`format_prompt`): ``"chat"`` (ours, the default) or ``"paper"``."""

PAPER_IMAGE_SIZE = (256, 256)
"""The official code resizes every image to 256 x 256 before its processor."""


def check_prompt_format(prompt_format: Any) -> PromptFormat:
    """Refuse an unknown prompt format."""
    if prompt_format not in PROMPT_FORMATS:
        raise InvalidInputError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}.")
    return prompt_format  # type: ignore[no-any-return]


def format_prompt(model: Any, prompt: Prompt, prompt_format: PromptFormat = "chat") -> str:
    """The exact text the model sees for ``prompt``.

    ``"chat"`` (the default) ends where the model starts answering: the chat template with its generation prompt
    (LLaVA-OneVision, chat LMs), so the probed last prompt token is the one the answer is predicted from; for
    Chameleon, the request with an ``<image>`` placeholder in front (the processor appends the separator token).

    ``"paper"`` reproduces the official AutoSteer code, token for token, for its two models: LLaVA-OneVision gets
    the processor's chat template of ``[text, image]`` **without** the generation prompt (the probed token is the
    end of the user turn); Chameleon gets the bare request followed by the image, no chat format and no separator
    (``[BOS] text [BOI] image tokens [EOI]``: the probed token is the end-of-image token). A prober is only
    meaningful at the token it was trained on, so an AutoSteer records its format.

    Args:
        model: A model returned by :func:`~autosteer_interp.models.load_model` or
            :func:`~autosteer_interp.models.wrap` (it carries ``.tokenizer`` and ``.processor``).
        prompt: The request.
        prompt_format: ``"chat"`` or ``"paper"``.

    Returns:
        The formatted string (before tokenisation; the processor expands ``<image>``).

    Raises:
        InvalidInputError: If the prompt has an image but the model is text-only, or the format is unknown.
        UnsupportedModelError: ``"paper"`` on a model other than LLaVA-OneVision or Chameleon.
    """
    check_prompt_format(prompt_format)
    spec = resolve(model)
    if prompt.has_image and not spec.is_multimodal:
        raise InvalidInputError(
            f"this prompt has an image but the {spec.model_type} model is text-only; pass Prompt(text) without "
            "an image, or use a multimodal model (llava_onevision, chameleon)."
        )
    if prompt_format == "paper":
        return _paper_format(model, spec.model_type, prompt)
    if spec.model_type == "chameleon":
        return ("<image>" if prompt.has_image else "") + prompt.text
    templater = model.processor if model.processor is not None else model.tokenizer
    if spec.is_multimodal:
        content: Any = ([{"type": "image"}] if prompt.has_image else []) + [{"type": "text", "text": prompt.text}]
    else:
        content = prompt.text
    return templater.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )


def _paper_format(model: Any, model_type: str, prompt: Prompt) -> str:
    if model_type == "chameleon":
        return prompt.text + ("<image>" if prompt.has_image else "")
    if model_type == "llava_onevision":
        content = [{"type": "text", "text": prompt.text}] + ([{"type": "image"}] if prompt.has_image else [])
        return model.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=False, tokenize=False
        )
    raise UnsupportedModelError(
        f"the paper's prompt format exists for its models (llava_onevision, chameleon), not {model_type}; use "
        "prompt_format='chat'."
    )


def check_prompts(prompts: Any, name: str = "prompts") -> list[Prompt]:
    """Refuse anything but a non-empty sequence of :class:`Prompt` (a bare string included), before any work.

    Raises:
        InvalidInputError: Naming the first bad element and its type.
    """
    if isinstance(prompts, str | bytes | Prompt) or not isinstance(prompts, Sequence):
        raise InvalidInputError(
            f"{name} must be a list of Prompt objects, got {type(prompts).__name__}; wrap texts as [Prompt(text), ...]."
        )
    if len(prompts) == 0:
        raise InvalidInputError(f"{name} is empty; expected at least one prompt, got an empty list.")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, Prompt):
            raise InvalidInputError(
                f"{name}[{index}] must be a Prompt, got {type(prompt).__name__} ({str(prompt)[:40]!r}); wrap texts "
                "as Prompt(text)."
            )
    return list(prompts)


def check_pairs(pairs: Any, name: str = "pairs", minimum: int = 1) -> list[PromptPair]:
    """Refuse anything but a sequence of at least ``minimum`` :class:`PromptPair`, before any work.

    Raises:
        InvalidInputError: Naming the first bad element, or the count and the minimum.
    """
    if isinstance(pairs, str | bytes | PromptPair) or not isinstance(pairs, Sequence):
        raise InvalidInputError(f"{name} must be a list of PromptPair objects, got {type(pairs).__name__}.")
    for index, pair in enumerate(pairs):
        if not isinstance(pair, PromptPair):
            raise InvalidInputError(
                f"{name}[{index}] must be a PromptPair(harmful=Prompt(...), safe=Prompt(...)), got "
                f"{type(pair).__name__}."
            )
    if len(pairs) < minimum:
        raise InvalidInputError(f"{name} holds {len(pairs)} pairs; at least {minimum} are needed.")
    return list(pairs)


def check_prompt_lengths(
    model: Any, prompts: Sequence[Prompt], name: str = "prompts", prompt_format: PromptFormat = "chat"
) -> None:
    """Refuse prompts longer than the model's context, before any forward pass (text tokens; images add more).

    Raises:
        InvalidInputError: Naming the first prompt that is too long, its length and the model's context.
    """
    limit = resolve(model).context_length
    if limit is None:
        return
    longest_token = max((len(token) for token in model.tokenizer.get_vocab()), default=1)
    for index, prompt in enumerate(prompts):
        if len(prompt.text) > limit * max(longest_token, 1):  # longer than any tokenisation could make fit
            _too_long(name, index, f"{len(prompt.text)} characters", limit)
    texts = [format_prompt(model, p, prompt_format) for p in prompts]
    lengths = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    for index, length in enumerate(lengths):
        if length > limit:
            _too_long(name, index, f"{length} tokens", limit)


def _too_long(name: str, index: int, size: str, limit: int) -> None:
    raise InvalidInputError(
        f"{name}[{index}] is {size}, longer than the model's context ({limit} tokens); shorten it or split it."
    )


def encode_prompts(model: Any, prompts: Sequence[Prompt], prompt_format: PromptFormat = "chat") -> dict[str, Any]:
    """Format and tokenise a batch of prompts (left-padded), with images for multimodal models.

    Args:
        model: A wrapped model (see :func:`format_prompt`).
        prompts: The requests; a batch may mix prompts with and without images.
        prompt_format: ``"chat"`` (default) or ``"paper"`` (see :func:`format_prompt`; images are resized to
            256 x 256 first, as the official code does).

    Returns:
        Keyword arguments for the model's forward: ``input_ids`` and ``attention_mask`` of shape
        ``[batch, pos]``, plus the image tensors the processor makes (``pixel_values``, ...); all on the device
        of the model's token embedding, floating-point image tensors in its dtype.

    Raises:
        InvalidInputError: If ``prompts`` is empty or not made of :class:`Prompt`, or a prompt is longer than the
            model's context.
    """
    prompts = check_prompts(prompts)
    texts = [format_prompt(model, prompt, prompt_format) for prompt in prompts]
    images = [prompt.load_image() for prompt in prompts if prompt.has_image]
    if prompt_format == "paper":
        images = [image.resize(PAPER_IMAGE_SIZE) for image in images if image is not None]
    if model.processor is None:
        encoded = model.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    else:
        kwargs: dict[str, Any] = {"images": images} if images else {}
        if prompt_format == "paper" and resolve(model).model_type == "chameleon":
            kwargs["return_for_text_completion"] = True  # no separator token: the official prompt ends at EOI
        encoded = model.processor(text=texts, padding=True, return_tensors="pt", **kwargs)
    encoded = dict(encoded)
    encoded.pop("batch_num_images", None)
    limit = resolve(model).context_length
    if limit is not None and encoded["input_ids"].shape[1] > limit:
        lengths = encoded["attention_mask"].sum(1)
        index = int(lengths.argmax())
        _too_long("prompts", index, f"{int(lengths[index])} tokens (images included)", limit)
    device, dtype = input_placement(model)
    return {
        key: value.to(device, dtype) if value.is_floating_point() else value.to(device)
        for key, value in encoded.items()
        if isinstance(value, Tensor)
    } | {key: value for key, value in encoded.items() if not isinstance(value, Tensor)}
