"""Rollouts: sample responses with the KV cache, then lay them out for PPO.

Every tensor is ``[batch, response_length]`` aligned with the response tokens, from left-padded
prompts (``rlhf.sampling.encode_prompts``); padding uses the pad token, never EOS
(``rlhf.models.load_tokenizer`` guarantees they differ).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from transformers import GenerationConfig, PreTrainedModel

from rlhf.logprobs import gather_logprobs, response_mask
from rlhf.ppo.core import entropy_from_logits


def truncate_after_stop(responses: torch.Tensor, stop_token_id: int | None, pad_token_id: int):
    """Keep each response up to and including its first stop token, pad after it.

    Returns (responses, mask); with no stop token every sampled token is kept (mask all ones).
    """
    if stop_token_id is None:
        return responses, torch.ones_like(responses)
    mask = response_mask(responses, stop_token_id)
    return torch.where(mask.bool(), responses, torch.full_like(responses, pad_token_id)), mask


@torch.no_grad()
def generate(policy: PreTrainedModel, query_ids: torch.Tensor, query_mask: torch.Tensor, response_length: int,
             temperature: float, do_sample: bool, stop_token_id: int | None, pad_token_id: int) -> torch.Tensor:
    """``[batch, response_length]`` sampled token ids, padded with pad_token_id if generation stopped early.

    top_k=0 / top_p=1 and no other logits processors: PPO's log-probs must be those of the
    distribution actually sampled from (Huang et al. 2023).
    """
    config = GenerationConfig(
        max_new_tokens=response_length, do_sample=do_sample, temperature=temperature if do_sample else None,
        top_k=0 if do_sample else None, top_p=1.0 if do_sample else None, pad_token_id=pad_token_id,
        eos_token_id=stop_token_id, use_cache=True,
    )
    # generate() fills unset options from the model's generation_config (a saved top_k=50, a
    # repetition penalty, its EOS as stop token...): swap in an empty one so ours are the only ones.
    model = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    saved, model.generation_config = model.generation_config, GenerationConfig()
    try:
        out = policy.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=config)
    finally:
        model.generation_config = saved
    responses = out[:, query_ids.shape[1]:]
    missing = response_length - responses.shape[1]  # generate stops once every row has stopped
    return torch.nn.functional.pad(responses, (0, missing), value=pad_token_id)


def logprobs_from_logits(logits: torch.Tensor, responses: torch.Tensor, context_length: int,
                         temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the response tokens and the entropy, both under softmax(logits / temperature).

    ``logits`` cover query+response; the logits at column i predict token i+1.
    """
    logits = logits[:, context_length - 1 : -1].float() / temperature
    return gather_logprobs(logits, responses), entropy_from_logits(logits)


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
