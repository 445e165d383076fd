"""Reference implementations of the paper's formulas, written the slow, literal way (test oracles only)."""

import numpy as np
import torch
from sklearn.metrics.pairwise import cosine_similarity


def pairwise_sas(safe: torch.Tensor, harmful: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """SAS per layer as the paper's code computes it: the full n x n cosine matrix, mean of its upper triangle.

    The paper's code keeps activations as float16 ``.npy`` files, which scikit-learn's ``cosine_similarity``
    upcasts to float64; hence the float64 default.

    Args:
        safe, harmful: ``[n_pairs, n_layers, d_model]``.
        dtype: Precision of the computation.

    Returns:
        ``[n_layers]`` float64.
    """
    scores = []
    for layer in range(safe.shape[1]):
        deltas = (safe[:, layer].to(dtype) - harmful[:, layer].to(dtype)).numpy()
        matrix = cosine_similarity(deltas)
        upper = np.triu_indices(len(deltas), k=1)
        scores.append(float(np.mean(matrix[upper])))
    return torch.tensor(scores, dtype=torch.float64)


def paper_refusal_logits(h: torch.Tensor, weight: torch.Tensor, S: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The refusal head in the paper's literal form: ``logits = h (W + eps W S)^T`` (W: ``[V, d]``, S: ``[d, d]``)."""
    return h @ (weight + epsilon * weight @ S).T


def reference_p_harmful(model, prompts, layers, prober) -> torch.Tensor:
    """The paper's gate, literally: ``softmax(prober(h_L[last prompt token]))[harmful]``, one prompt at a time.

    Each prompt is encoded and run ALONE (no padding, so padding side, cache and chunking cannot matter), with
    ``output_hidden_states`` (``hidden_states[L]`` is the input of decoder layer ``L``); the last prompt token
    is the last token that is not an image placeholder.

    Returns:
        ``[batch]`` float32 P(harmful) on the CPU.
    """
    from autosteer_interp.architectures import resolve
    from autosteer_interp.prompts import encode_prompts

    image_token_id = resolve(model).image_token_id
    p = []
    for prompt in prompts:
        single = encode_prompts(model, [prompt])
        ids = single["input_ids"][0].tolist()
        last = max(i for i, token in enumerate(ids) if token != image_token_id)
        with torch.no_grad():
            hidden = model._module(**single, output_hidden_states=True).hidden_states
            features = torch.stack([hidden[layer][0, last].float().cpu() for layer in layers])[None]
            p.append(torch.softmax(prober(features), dim=-1)[0, 1].detach().cpu())
    return torch.stack(p)
