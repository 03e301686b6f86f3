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
