"""Sample responses from a policy and measure, per response, its KL to the reference policy.

Sampling keeps the generated token ids: the KL terms are computed on exactly the tokens the
policy sampled (decoding and re-tokenizing the text could split it differently).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.evaluation.metrics import exact_kl_per_token, k1_per_token, k3_per_token, masked_sum
from rlhf.logprobs import response_log_softmax, response_mask
from rlhf.sampling import SamplingConfig, encode_prompts


@dataclass
class PolicySamples:
    """One sampled response per prompt, with its per-sequence statistics (lists aligned with the prompts)."""

    responses: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # response tokens, the final EOS not counted
    kl: list[float] = field(default_factory=list)  # exact sum_t KL(pi(.|x,y<t) || ref(.|x,y<t))
    kl_k1: list[float] = field(default_factory=list)
    kl_k3: list[float] = field(default_factory=list)


@torch.no_grad()
def sample_with_kl(
    policy: PreTrainedModel, reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
    sampling: SamplingConfig, seed: int,
) -> PolicySamples:
    """Sample one response per prompt from ``policy`` and score its KL to ``reference``.

    Batch ``b`` is sampled under seed ``seed + b``, so two policies see the same random numbers
    batch for batch whatever the lengths of earlier batches, and a model compared with itself
    gives identical samples and a KL of exactly 0.
    """
    policy.eval()
    reference.eval()
    device = next(policy.parameters()).device
    devices = [device] if device.type == "cuda" else []
    out = PolicySamples()
    for b, start in enumerate(range(0, len(prompts), sampling.batch_size)):
        enc = encode_prompts(tokenizer, prompts[start : start + sampling.batch_size], device)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + b)
            # Plain temperature sampling (top_k=0 overrides generate's default of 50), so the samples
            # come from softmax(logits / T), the distribution the KL below is measured on.
            sequences = policy.generate(
                **enc, do_sample=True, temperature=sampling.temperature, top_k=0, top_p=1.0,
                max_new_tokens=sampling.max_new_tokens, use_cache=True,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
        prompt_width = enc["input_ids"].shape[1]
        response = sequences[:, prompt_width:]
        mask = response_mask(response, tokenizer.eos_token_id)
        attention_mask = torch.cat([enc["attention_mask"], mask], dim=1)
        # Both forward passes see the same batch, so identical weights give bit-identical log-probs.
        logp = response_log_softmax(policy, sequences, attention_mask, prompt_width, sampling.temperature)
        ref_logp = response_log_softmax(reference, sequences, attention_mask, prompt_width,
                                        sampling.temperature)
        token_logp = logp.gather(-1, response.unsqueeze(-1)).squeeze(-1)
        token_ref_logp = ref_logp.gather(-1, response.unsqueeze(-1)).squeeze(-1)

        out.kl += masked_sum(exact_kl_per_token(logp, ref_logp), mask).tolist()
        out.kl_k1 += masked_sum(k1_per_token(token_logp, token_ref_logp), mask).tolist()
        out.kl_k3 += masked_sum(k3_per_token(token_logp, token_ref_logp), mask).tolist()
        eos = ((response == tokenizer.eos_token_id) & mask.bool()).sum(-1)
        out.lengths += (mask.sum(-1) - eos).tolist()
        out.responses += [
            tokenizer.decode(row[keep.bool()], skip_special_tokens=True) for row, keep in zip(response, mask)
        ]
    return out
