"""The trainable PPO module: policy + value function, so one DDP wrapper and one optimizer hold both."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from rlhf.logprobs import gather_logprobs, head_at, logprobs_and_entropy, position_ids, temperature_scaled, unpack


class PolicyAndValue(nn.Module):
    """``forward`` returns (logits, values) for a batch of query+response tokens.

    value_model 'shared': a value head on the policy's last hidden state, zero-initialised so the
    first value estimates are 0. The trunk is shared: the value loss's gradient (weighted by vf_coef)
    reaches the policy's weights as soon as the head's weights are non-zero, i.e. from the second
    optimizer step on (the first one, through a zero head, only trains the head).
    value_model 'separate': a critic (sequence classifier initialised from the reward model, see
    ``normalised_critic``) whose score head is applied at every position, as TRL's PPOv2Trainer.
    """

    def __init__(self, policy: PreTrainedModel, critic: PreTrainedModel | None = None):
        super().__init__()
        self.policy = policy
        self.critic = critic
        if critic is None:
            self.value_head = nn.Linear(policy.config.hidden_size, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep_last: int = 0,
                logits_at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and values at every column, or at the last ``keep_last`` columns only (0 = all): the
        LM head (vocab-wide) and the value head then skip the prompt's columns. ``logits_at`` (bool,
        ``[batch, keep_last]``) narrows the LM head further to the marked columns, returned packed
        ``[marked, vocab]`` in row-major order (the columns that predict padding are not computed)."""
        positions = position_ids(attention_mask)
        shared, packed = self.critic is None, logits_at is not None
        out = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                          output_hidden_states=shared or packed, use_cache=False,
                          logits_to_keep=1 if packed else keep_last)  # packed: the head is applied below
        logits = head_at(self.policy, out.hidden_states[-1][:, -keep_last:], logits_at) if packed else out.logits
        if shared:
            hidden = out.hidden_states[-1]
        else:
            trunk = getattr(self.critic, self.critic.base_model_prefix)
            hidden = trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                           use_cache=False).last_hidden_state
        head = self.value_head if shared else self.critic.score
        return logits, head(hidden[:, -keep_last:]).squeeze(-1).float()


def normalised_critic(critic: PreTrainedModel, mean: float, std: float) -> PreTrainedModel:
    """Fold the reward normalisation ``(raw - mean) / std`` into the critic's score head, in place.

    PPO's rewards are the reward model's *normalised* scores; a critic copied from the raw reward
    model would start off by ``mean`` and ``std`` (e.g. -0.50 and 2.80) and, with value clipping
    (``cliprange_value`` per step), take many steps to catch up. The head becomes a Linear with a
    bias (GPT-2's score head has none): weight / std, bias (bias - mean) / std.
    """
    head = critic.score
    folded = nn.Linear(head.in_features, head.out_features, bias=True, device=head.weight.device,
                       dtype=head.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(head.weight / std)
        bias = head.bias if head.bias is not None else torch.zeros_like(folded.bias)
        folded.bias.copy_((bias - mean) / std)
    folded.weight.requires_grad_(head.weight.requires_grad)
    folded.bias.requires_grad_(head.weight.requires_grad)
    critic.score = folded
    return critic


def response_outputs(model: nn.Module, query_responses: torch.Tensor, attention_mask: torch.Tensor,
                     context_length: int, temperature: float,
                     entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(logprobs, entropy, values), each ``[batch, response_len]``, from one forward of a PolicyAndValue
    (or its DDP wrapper). ``values[:, t]`` is the value of the state before response token t: the
    output at the column whose logits predict token t, which has seen the prompt and tokens < t only.

    The LM head runs only where the response is real (``attention_mask`` 1): log-probs and entropy
    are 0 on padding, which every loss and metric masks anyway. The entropy is for logging: computed
    without gradient (it is not in the loss), and skipped with ``entropy=False`` (None).
    """
    real = attention_mask[:, context_length:].bool()
    keep = real.shape[1] + 1  # the columns predicting response tokens, + the last
    logits, values = model(query_responses, attention_mask, keep, torch.nn.functional.pad(real, (0, 1)))
    logprobs, ent = logprobs_and_entropy(temperature_scaled(logits, temperature),
                                         query_responses[:, context_length:][real], entropy)
    return unpack(real, logprobs), unpack(real, ent) if ent is not None else None, values[:, :-1]


def sampled_outputs(model: PolicyAndValue, hidden: torch.Tensor, responses: torch.Tensor, mask: torch.Tensor,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(logprobs, values) of sampled responses from the final hidden states the sampler kept
    (``sample_batches(keep_hidden=True)``): the numbers ``response_outputs`` gives, to float rounding,
    without a second forward pass of the policy. Shared value head only (a separate critic has its own trunk)."""
    real = mask.bool()
    logits = temperature_scaled(head_at(model.policy, hidden, real), temperature)
    return unpack(real, gather_logprobs(logits, responses[real])), model.value_head(hidden).squeeze(-1).float()
