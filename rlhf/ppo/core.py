"""PPO's math as small pure functions on ``[batch, response_len]`` tensors (no models, no state).

Layout: column t is the t-th response token; ``mask`` is 1 for real response tokens (up to and
including the stop token) and 0 for the padding after it. Every function ignores masked positions,
so a padded row behaves exactly as the same row unpadded.

References: Schulman et al. 2017 (PPO), Schulman et al. 2016 (GAE), Ziegler et al. 2019 (KL-shaped
reward, adaptive KL), Huang et al. 2023 "The N Implementation Details of RLHF with PPO" (TRL's
PPOv2Trainer), Schulman 2020 "Approximating KL Divergence" (k1/k3 estimators).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.logprobs import kl_estimate, masked_mean, masked_sum, masked_var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
           stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """(x - mean) / std over the real tokens; masked positions come back as 0.

    ``shift_mean=False`` keeps the mean: (x - mean) / std + mean, i.e. the deviations from the mean
    are scaled to unit variance and the mean is added back (TRL's ``whiten(shift_mean=False)``, used
    for rewards: moving their mean to 0 would change the per-token reward every extra token earns,
    hence the policy's preference for longer/shorter responses). Not a pure rescaling x / std.
    ``stats`` = (mean, var) computed elsewhere, e.g. over all processes, so the result does not
    depend on how the batch was split.
    """
    mean, var = stats if stats is not None else (masked_mean(x, mask), masked_var(x, mask))
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def missing_eos_penalty(scores: torch.Tensor, responses: torch.Tensor, eos_token_id: int,
                        penalty: float | None) -> torch.Tensor:
    """Scores minus ``penalty`` for each response without an EOS token (truncated at the length limit)."""
    if penalty is None:
        return scores
    has_eos = (responses == eos_token_id).any(1)
    return scores - penalty * (~has_eos).to(scores.dtype)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Column of each row's last real response token (the stop token, if it was generated)."""
    return (mask.sum(1).long() - 1).clamp(min=0)


def per_token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                      mask: torch.Tensor, kl_coef: float, estimator: str = "k1"):
    """Ziegler et al.'s shaped reward: -kl_coef * KL on every token, plus the score on the last one.

    ``estimator``: k1 or k3 (``rlhf.logprobs.kl_estimate``). Returns (rewards, non_score_reward, kl),
    all zero on padding.
    """
    kl = kl_estimate(logprobs, ref_logprobs, estimator) * mask
    non_score_reward = -kl_coef * kl
    rewards = non_score_reward.clone()
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards, non_score_reward, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016), right to left over each response.

    The episode ends at the last real token: the state after it has value 0 (no bootstrap from a
    padding position). Returns (advantages, returns = advantages + values), 0 on padding.
    """
    values = values * mask
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        # A padding column passes nothing back: it is after the episode's end.
        advantages[:, t] = advantage * mask[:, t]
        next_advantage = advantages[:, t]
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


@dataclass
class LossStats:
    loss: torch.Tensor
    clipfrac: torch.Tensor
    approxkl: torch.Tensor | None = None
    ratio: torch.Tensor | None = None


def token_mean(x: torch.Tensor, mask: torch.Tensor, num_tokens: torch.Tensor | None) -> torch.Tensor:
    """Mean over real tokens; with ``num_tokens`` this micro-batch's share of the mean over a larger
    batch: sum here / num_tokens there. Summed over a minibatch's micro-batches (and processes) with
    ``num_tokens`` = the minibatch's token count, it is the minibatch token mean whatever the split,
    so gradient accumulation gives the same gradient for any micro-batch size (variable lengths too)."""
    return masked_mean(x, mask) if num_tokens is None else masked_sum(x, mask) / num_tokens.clamp(min=1)


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float, num_tokens: torch.Tensor | None = None) -> LossStats:
    """PPO's clipped surrogate (to minimise), averaged over real tokens (see ``token_mean``).

    approxkl = 0.5 * mean((log ratio)^2) with ratio = new / old on tokens sampled from the rollout
    (old) policy: Schulman's k2 estimator of KL(old || new), low-variance but biased (exact only to
    second order in the log-ratio), as CleanRL/TRL log it. It and clipfrac are means over this
    micro-batch's tokens (not the minibatch's).
    """
    log_ratio = (logprobs - old_logprobs) * mask  # padding: ratio 1, never inf * 0
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = token_mean(torch.max(unclipped, clipped), mask, num_tokens)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approxkl = 0.5 * masked_mean(log_ratio ** 2, mask)
        mean_ratio = masked_mean(ratio, mask)
    return LossStats(loss, clipfrac, approxkl, mean_ratio)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float, num_tokens: torch.Tensor | None = None) -> LossStats:
    """Clipped value loss 0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2), averaged over real tokens
    (see ``token_mean``)."""
    values, old_values, returns = values * mask, old_values * mask, returns * mask
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    loss = 0.5 * token_mean(torch.max(unclipped_loss, clipped_loss), mask, num_tokens)
    with torch.no_grad():
        clipfrac = masked_mean((clipped_loss > unclipped_loss).float(), mask)
    return LossStats(loss, clipfrac)


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, value: float):
        self.value = value

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. 2019 (sec. 2.2): move the coefficient so the KL tracks ``target``.

    beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon), where n_steps is the
    number of episodes since the last update.
    """

    def __init__(self, value: float, target: float, horizon: int):
        super().__init__(value)
        self.target, self.horizon = target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
