"""Using a reward-model artifact: load it and score texts with the stored normalization.

The reward stage writes an HF sequence-classification model (one logit) plus
``normalization.json`` holding the mean and std of its raw scores on the reference policy's
samples; ``score`` returns ``(raw - mean) / std`` so the reference scores mean 0 / std 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.models import load_sequence_classifier, load_tokenizer

NORMALIZATION_FILE = "normalization.json"


@dataclass
class RewardModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    mean: float = 0.0
    std: float = 1.0
    max_length: int = 128

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "RewardModel":
        path = Path(path)
        model = load_sequence_classifier(path).to(device).eval()
        model.requires_grad_(False)
        norm = json.loads((path / NORMALIZATION_FILE).read_text()) if (path / NORMALIZATION_FILE).exists() else {}
        return cls(model, load_tokenizer(path), norm.get("mean", 0.0), norm.get("std", 1.0))

    @torch.no_grad()
    def raw_scores(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Unnormalized scalar score of each full text (prompt + response)."""
        device = next(self.model.parameters()).device
        self.tokenizer.padding_side = "right"
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                [t + self.tokenizer.eos_token for t in texts[start : start + batch_size]],
                return_tensors="pt", padding=True, truncation=True, max_length=self.max_length,
                add_special_tokens=False,
            ).to(device)
            out.append(self.model(**enc).logits[:, 0].float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def score(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Normalized score: the reference policy's samples score mean 0, std 1."""
        return (self.raw_scores(texts, batch_size) - self.mean) / self.std
