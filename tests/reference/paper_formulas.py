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
