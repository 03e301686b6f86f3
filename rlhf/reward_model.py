"""Using a reward-model artifact: load it and score texts with the stored normalization.

The reward stage writes an HF sequence-classification model (one logit) plus
``normalization.json`` holding the mean and std of its raw scores on the reference policy's
samples; ``score`` returns ``(raw - mean) / std`` so the reference scores mean 0 / std 1.

Scoring builds inputs exactly as TRL 1.16's RewardTrainer did in training (non-conversational
data): the text is ``prompt + response`` (plain concatenation), EOS is appended unless the text
already ends with it, and the string is tokenized with the tokenizer's default special tokens
(``tokenizer(text)``), right-padded; the model reads the score at the last non-pad token.

An ensemble artifact (the reward stage with ``ensemble_size`` K > 1) holds member 0 at the top level,
exactly like a single reward model, and members 1..K-1 under ``members/<k>/``, each with its own
normalization. ``score`` then combines the K normalized scores by an objective (Coste et al. 2024,
"Reward Model Ensembles Help Mitigate Overoptimization", https://arxiv.org/abs/2310.02743): the
mean, the worst case (min over members) or the uncertainty-weighted mean - lambda * std.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.config import option
from rlhf.models import load_sequence_classifier, load_tokenizer

NORMALIZATION_FILE = "normalization.json"
SCORING_FILE = "scoring.json"  # how texts were tokenized in training (max_length)
MEMBERS_DIR = "members"  # ensemble members 1..K-1, one model directory each
Objective = Literal["mean", "worst_case", "uncertainty_weighted"]


@dataclass
class EnsembleObjective:
    """How an ensemble's member scores become one reward (a single reward model ignores it)."""

    objective: Objective = option(
        "mean", "mean: average of the members' normalized scores; worst_case: their minimum (WCO); "
        "uncertainty_weighted: mean - uncertainty_coef * std over members (UWO; Coste et al. 2024, "
        "https://arxiv.org/abs/2310.02743, penalise the variance, we the std so lambda is in reward units)")
    uncertainty_coef: float = option(0.5, "lambda of uncertainty_weighted (>= 0)")


def combine_scores(scores: torch.Tensor, objective: Objective = "mean", uncertainty_coef: float = 0.5) -> torch.Tensor:
    """[K members, N texts] normalized scores -> [N] rewards under ``objective`` (std over members, ddof 0)."""
    if objective == "mean":
        return scores.mean(0)
    if objective == "worst_case":
        return scores.min(0).values
    if objective == "uncertainty_weighted":
        return scores.mean(0) - uncertainty_coef * scores.std(0, correction=0)
    raise ValueError(f"unknown ensemble objective {objective!r}; use mean, worst_case or uncertainty_weighted")


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
    members: list["RewardModel"] = field(default_factory=list)  # ensemble members 1..K-1 (this is member 0)
    objective: EnsembleObjective = field(default_factory=EnsembleObjective)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             objective: EnsembleObjective | None = None) -> "RewardModel":
        """A merged model dir or an adapter artifact (adapter + ``base/``), with its normalization; an
        ensemble artifact with all its members, combined by ``objective`` (default: the mean)."""
        path = Path(path)
        model = cls._load_one(path, device)
        members_dir = path / MEMBERS_DIR
        if members_dir.is_dir():
            model.members = [cls._load_one(p, device) for p in sorted(members_dir.iterdir(), key=lambda p: int(p.name))]
        model.objective = objective or EnsembleObjective()
        return model

    @classmethod
    def _load_one(cls, path: Path, device: str | torch.device) -> "RewardModel":
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

    def normalized_scores(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """This model's normalized score (member 0's, for an ensemble): the reference's samples score mean 0, std 1."""
        return (self.raw_scores(texts, batch_size) - self.mean) / self.std

    @property
    def ensemble_size(self) -> int:
        return 1 + len(self.members)

    def member_scores(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """[K, N]: every member's normalized score of every text."""
        return torch.stack([m.normalized_scores(texts, batch_size) for m in (self, *self.members)])

    def score(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """The reward of each text: the normalized score, or for an ensemble the members' scores combined
        by ``objective``."""
        if not self.members:
            return self.normalized_scores(texts, batch_size)
        return combine_scores(self.member_scores(texts, batch_size), self.objective.objective,
                              self.objective.uncertainty_coef)

    def to(self, device: str | torch.device) -> "RewardModel":
        """Every member onto ``device``."""
        for m in (self, *self.members):
            m.model.to(device)
        return self


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
