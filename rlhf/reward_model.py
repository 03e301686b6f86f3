"""Using a reward-model artifact: load it and score texts with the stored normalization.

The reward stage writes an HF sequence-classification model (one logit) plus
``normalization.json`` holding the mean and std of its raw scores on the reference policy's
samples; ``score`` returns ``(raw - mean) / std`` so the reference scores mean 0 / std 1.

Scoring builds inputs exactly as TRL 1.16's RewardTrainer did in training (non-conversational
data): the text is ``prompt + response`` (plain concatenation), EOS is appended unless the text
already ends with it, and the string is tokenized with the tokenizer's default special tokens
(``tokenizer(text)``), right-padded; the model reads the score at the last non-pad token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.models import load_sequence_classifier, load_tokenizer

NORMALIZATION_FILE = "normalization.json"
SCORING_FILE = "scoring.json"  # how texts were tokenized in training (max_length)


def training_text(text: str, eos_token: str) -> str:
    """The string RewardTrainer tokenized for ``text``: EOS appended unless already there."""
    return text if text.endswith(eos_token) else text + eos_token


@dataclass
class RewardModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    mean: float = 0.0
    std: float = 1.0
    max_length: int | None = None  # training's max_length; longer texts are truncated on the right

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "RewardModel":
        """A merged model dir or an adapter artifact (adapter + ``base/``), with its normalization."""
        path = Path(path)
        model = load_sequence_classifier(path)
        if hasattr(model, "merge_and_unload"):  # LoRA adapter: fold it in once, scoring is then a plain forward
            model = model.merge_and_unload()
        model = model.to(device).eval()
        model.requires_grad_(False)
        norm = _read_json(path / NORMALIZATION_FILE)
        scoring = _read_json(path / SCORING_FILE)
        return cls(model, load_tokenizer(path), norm.get("mean", 0.0), norm.get("std", 1.0),
                   scoring.get("max_length"))

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Right-padded batch of the training-format inputs for ``texts`` (prompt + response each)."""
        self.tokenizer.padding_side = "right"
        return self.tokenizer(
            [training_text(t, self.tokenizer.eos_token) for t in texts], return_tensors="pt", padding=True,
            truncation=self.max_length is not None, max_length=self.max_length,
        )

    @torch.no_grad()
    def raw_scores(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Unnormalized scalar score of each full text (prompt + response)."""
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.encode(list(texts[start : start + batch_size])).to(device)
            out.append(self.model(**enc).logits[:, 0].float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def score(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Normalized score: the reference policy's samples score mean 0, std 1."""
        return (self.raw_scores(texts, batch_size) - self.mean) / self.std


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
