"""Per-token log-probabilities of responses under a causal LM: the one place that gathers them.

Batches follow the layout ``generate`` produces from left-padded prompts (``rlhf.sampling.encode_prompts``):

    input_ids = [pad pad p1 p2 p3 | r1 r2 EOS pad]     response_start = width of the prompt block
    attention_mask = [0 0 1 1 1 | 1 1 1 0]             (``response_mask`` builds the response half)

Every row's response starts at the same column, so a response is ``input_ids[:, response_start:]``
and the logits that predict it are those at columns ``response_start - 1 .. -2``. Position ids count
real tokens only (``attention_mask.cumsum(-1) - 1``), so a left-padded row sees the same positions
as the same text unpadded - the convention ``generate`` itself uses.

Logits are divided by the sampling temperature: the policy's sampling distribution at temperature
T is ``softmax(logits / T)``, and log-probs, KL estimators and the exact KL must all refer to it.
Nothing here disables gradients; wrap calls in ``torch.no_grad()`` for rollouts and evaluation.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions of real tokens (0, 1, 2, ...) whatever the left padding; padding gets 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_mask(response_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 for response tokens up to and including the first EOS, 0 after it (generate's padding).

    Masking by EOS rather than by the pad id keeps a sampled token that happens to be the pad token.
    """
    is_eos = (response_ids == eos_token_id).long()
    eos_before = is_eos.cumsum(-1) - is_eos  # number of EOS strictly before each position
    return (eos_before == 0).long()


def response_logits(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[batch, response_len, vocab]`` float32 logits / temperature predicting ``input_ids[:, response_start:]``."""
    if response_start < 1:
        raise ValueError(f"response_start must be >= 1 (the first response token needs a prompt token before it), got {response_start}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                use_cache=False)
    logits = out.logits[:, response_start - 1 : -1].float()
    return logits / temperature


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per position, without materialising the full log-softmax."""
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - logits.logsumexp(-1)


def response_logprobs(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[batch, response_len]`` log-prob of each response token (mask padding with ``response_mask``)."""
    logits = response_logits(model, input_ids, attention_mask, response_start, temperature)
    return gather_logprobs(logits, input_ids[:, response_start:])


def response_log_softmax(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[batch, response_len, vocab]`` full log-distribution at each response position (for exact KL)."""
    return response_logits(model, input_ids, attention_mask, response_start, temperature).log_softmax(-1)
