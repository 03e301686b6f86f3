"""One PPO batch laid out for training: every tensor is ``[batch, response_length]`` aligned with the
response tokens (sampled by ``rlhf.sampling``), after left-padded prompts."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Rollout:
    """One PPO batch on this process; every field is a tensor with the batch as first dimension."""

    query_responses: torch.Tensor  # [B, Q+R] left-padded prompt + response
    attention_mask: torch.Tensor  # [B, Q+R]
    responses: torch.Tensor  # [B, R]
    mask: torch.Tensor  # [B, R] float, 1 on real response tokens
    logprobs: torch.Tensor  # [B, R] under the rollout policy
    values: torch.Tensor  # [B, R] rollout value estimates
    advantages: torch.Tensor  # [B, R]
    returns: torch.Tensor  # [B, R]
    context_length: int  # prompt block width: response token i is query_responses[:, context_length + i]

    def __getitem__(self, idx) -> "Rollout":
        """The rows ``idx`` (a micro-batch)."""
        return Rollout(**{f.name: getattr(self, f.name) if f.name == "context_length" else getattr(self, f.name)[idx]
                          for f in fields(self)})

    def trimmed(self) -> "Rollout":
        """The same episodes without the columns that are padding in every row: the prompt block's
        leading ones and the response columns after the longest response. Forwarding them is wasted
        work: attention never reads a padded key, position ids count real tokens only, a causal model's
        outputs do not depend on later columns, and every loss and metric is a masked sum."""
        start = int(self.attention_mask[:, : self.context_length].any(0).long().argmax())
        width = max(int(self.mask.sum(1).max()), 1)
        return Rollout(**{f.name: self._trim(getattr(self, f.name), f.name, start, width) for f in fields(self)})

    def _trim(self, value, name: str, start: int, width: int):
        if name == "context_length":
            return value - start
        if name in ("query_responses", "attention_mask"):
            return value[:, start : self.context_length + width]
        return value[:, :width]

