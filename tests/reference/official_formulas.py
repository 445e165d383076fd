"""The official AutoSteer inference, re-implemented from its description (test oracles only).

The released code (github.com/zjunlp/AutoSteer, ``source/steer/SteerLlava``) keeps its prober as a
``LinearProber``: ``nn.ModuleList`` of ``Linear(d, 64)``, ``ReLU``, ``Linear(64, 2)``, then a softmax whose index 0
is "toxic", fed the raw hidden state entering the probed decoder layer at the last prompt token; the model gates
when that probability exceeds 0.5, and its logits are ``h (W + eps W S)^T`` on the final-norm output.
"""

import torch
from torch import nn


class OfficialLinearProber(nn.Module):
    """A module with the official prober's state-dict keys and forward (softmax output, index 0 = toxic)."""

    def __init__(self, hidden_sizes=(64, 64, 2)) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for width_in, width_out in zip(hidden_sizes[:-2], hidden_sizes[1:-1]):
            self.layers.append(nn.Linear(width_in, width_out))
            self.layers.append(nn.ReLU())
        self.layers.append(nn.Linear(hidden_sizes[-2], hidden_sizes[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return torch.softmax(x, dim=-1)


def official_inputs(model, prompt) -> dict:
    """The official code's inputs for one request, built step by step as it builds them.

    LLaVA-OneVision (``Eval_Llava.process_llava_input``): the image resized to 256 x 256; the conversation
    ``[{"role": "user", "content": [text, image]}]`` through the processor's chat template with
    ``add_generation_prompt=False``; then the processor. Chameleon: ``[BOS] text [BOI] image tokens [EOI]`` with
    no chat format and no separator (the processor's image placeholder expanded as the model expects it).
    """
    from autosteer_interp.architectures import resolve

    kind = resolve(model).model_type
    image = prompt.load_image()
    if kind == "llava_onevision":
        content = [{"type": "text", "text": prompt.text}] + ([{"type": "image"}] if image is not None else [])
        text = model.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=False)
        images = image.resize((256, 256)) if image is not None else None
        return dict(model.processor(text=text, images=images, return_tensors="pt", padding="longest"))
    assert kind == "chameleon"
    processor, tokenizer = model.processor, model.tokenizer
    ids = tokenizer(prompt.text)["input_ids"]  # [BOS] + text
    if image is not None:
        n_codes = processor.image_seq_length
        ids += [processor.image_start_token_id] + [processor.image_token_id] * n_codes + [processor.image_end_token_id]
        pixels = processor.image_processor(image.resize((256, 256)), return_tensors="pt")["pixel_values"]
        return {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "pixel_values": pixels,
        }
    return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}


def official_p_toxic(model, prompt, layer, prober: OfficialLinearProber) -> float:
    """``prober(hidden_states[layer][0][-1])[0]`` for one request run alone, on the official inputs."""
    inputs = official_inputs(model, prompt)
    with torch.no_grad():
        hidden = model._module(**inputs, output_hidden_states=True).hidden_states
        return float(prober(hidden[layer][0][-1].float())[0])


def official_logits(model, prompt, S: torch.Tensor, epsilon: float, gate: bool) -> torch.Tensor:
    """The official next-token logits at the last prompt position: ``h (W + eps W S)^T`` (eps 0 when not gated)."""
    from autosteer_interp.architectures import get_module, resolve

    inputs = official_inputs(model, prompt)
    spec = resolve(model)
    captured = {}
    norm = get_module(model._module, spec.row.final_norm_path)
    handle = norm.register_forward_hook(lambda module, args, output: captured.__setitem__("h", output))
    try:
        with torch.no_grad():
            model._module(**inputs)
    finally:
        handle.remove()
    weight = get_module(model._module, spec.row.lm_head_path).weight.float()
    eps = epsilon if gate else 0.0
    return captured["h"][0, -1].float() @ (weight + eps * weight @ S).T
