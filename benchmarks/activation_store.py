"""Activations at every layer by prompt text, computed once and kept in one float16 file (benchmark helper).

Used by ``eval_gate.py`` and ``eval_gate_default.py``: every gate recipe reads the same cached rows, so a
recipe costs a prober fit, not a forward pass per prompt.
"""

import hashlib
import json
import time
from pathlib import Path

import torch

from autosteer_interp.activations import LayerActivations, collect_activations
from autosteer_interp.architectures import resolve
from autosteer_interp.prompts import Prompt, PromptPair
from autosteer_interp.sas import LayerScores, safety_awareness_scores


class ActivationStore:
    """Last-prompt-token activations at every layer but the embedding, by prompt text (text-only prompts)."""

    def __init__(self, model, path: Path, save_every: int = 2048):
        self.model, self.path, self.save_every = model, Path(path), save_every
        spec = resolve(model)
        self.layers, self.d_model = list(range(1, spec.n_layers)), spec.d_model
        self.rows: dict[str, torch.Tensor] = {}
        if self.path.exists():
            saved = torch.load(self.path)
            self.rows = dict(zip(saved["texts"], saved["values"]))

    def get(self, prompts: list[Prompt], layers: list[int]) -> torch.Tensor:
        """``[n, len(layers), d_model]`` float32, collecting (and saving) the texts not seen before."""
        if not prompts:
            return torch.empty(0, len(layers), self.d_model)
        missing = list(dict.fromkeys(p.text for p in prompts if p.text not in self.rows))
        for start in range(0, len(missing), self.save_every):
            chunk = missing[start : start + self.save_every]
            began = time.perf_counter()
            acts = collect_activations(self.model, [Prompt(t) for t in chunk], self.layers, 16, progress=False)
            self.rows.update(zip(chunk, acts.values.half()))
            self._save()
            seconds = round(time.perf_counter() - began, 1)
            print(json.dumps({"collected": len(chunk), "seconds": seconds, "stored": len(self.rows)}), flush=True)
        index = [self.layers.index(layer) for layer in layers]
        return torch.stack([self.rows[p.text] for p in prompts])[:, index].float()

    def _save(self) -> None:
        texts = list(self.rows)
        partial = self.path.with_suffix(".partial")
        torch.save({"texts": texts, "values": torch.stack([self.rows[t] for t in texts])}, partial)
        partial.replace(self.path)


def vlsafe_store(model, model_name: str, pairs: list[PromptPair], cache: Path) -> ActivationStore:
    """The store of ``model`` for a VLSafe protocol, one file per (data, model) under ``cache``."""
    key = hashlib.sha256(f"{len(pairs)}{pairs[0].harmful.text}".encode()).hexdigest()[:12]
    if model_name != "smollm2-llava-onevision":
        key += "_" + hashlib.sha256(model_name.encode()).hexdigest()[:8]
    return ActivationStore(model, Path(cache) / f"store_{key}.pt")


def sas_of(store: ActivationStore, fit_pairs: list[PromptPair]) -> LayerScores:
    """The SAS of the fitting pairs at every stored layer (printed as one JSON line, top 5)."""
    harmful = LayerActivations(store.get([p.harmful for p in fit_pairs], store.layers), store.layers)
    safe = LayerActivations(store.get([p.safe for p in fit_pairs], store.layers), store.layers)
    sas = safety_awareness_scores(safe, harmful)
    print(json.dumps({"sas_top5": sas.top_k(5)}), flush=True)
    return sas
