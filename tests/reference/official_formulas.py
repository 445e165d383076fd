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


def official_p_toxic(model, prompt, layer, prober: OfficialLinearProber) -> float:
    """``prober(hidden_states[layer][0][-1])[0]`` for one prompt run alone (as the official code rates it)."""
    from autosteer_interp.prompts import encode_prompts

    inputs = encode_prompts(model, [prompt])
    with torch.no_grad():
        hidden = model._module(**inputs, output_hidden_states=True).hidden_states
        return float(prober(hidden[layer][0][-1].float())[0])


def official_logits(model, prompt, S: torch.Tensor, epsilon: float, gate: bool) -> torch.Tensor:
    """The official next-token logits at the last prompt position: ``h (W + eps W S)^T`` (eps 0 when not gated)."""
    from autosteer_interp.architectures import get_module, resolve
    from autosteer_interp.prompts import encode_prompts

    inputs = encode_prompts(model, [prompt])
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
