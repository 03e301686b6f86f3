"""The one sampler: batched, left-padded, KV-cached, seeded per batch, plain temperature sampling.

Every stage that samples (generate, the stages' end-of-stage metrics, the eval stage, PPO
rollouts) calls ``sample_batches`` (or ``sample`` for text only), so the token ids that log-probs
and KL are computed on are exactly the ones sampled, from exactly ``softmax(logits / T)``:

* the model's saved ``generation_config`` (a top_k=50, a repetition penalty, a min length...) is
  swapped for an empty one during the call, also under a peft wrapper: only our options apply;
* top_k=0 / top_p=1 (no truncation) unless the config sets them (Huang et al. 2023: PPO's
  log-probs must be those of the distribution actually sampled from);
* batch ``b`` is sampled under seed ``seed + b``, inside ``torch.random.fork_rng`` over the CPU and
  every CUDA device: two policies see the same random numbers batch for batch, whatever the
  lengths of earlier batches, and the caller's RNG streams are left exactly as they were.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from rlhf.config import option
from rlhf.logprobs import response_mask


@dataclass
class SamplingConfig:
    temperature: float = option(1.0, "softmax temperature (>0)")
    top_p: float = option(1.0, "nucleus sampling mass (1.0 = off)")
    top_k: int = option(0, "top-k sampling (0 = off)")
    max_new_tokens: int = option(32, "response length limit in tokens")
    batch_size: int = option(64, "prompts per generate() call")


@dataclass
class SampledBatch:
    """One batch of samples; row i is a sample for ``prompts[i]`` (a prompt repeats num_samples times).

    Tensors follow the layout of ``rlhf.logprobs``: response token t is ``query_responses[:, context_length + t]``.
    """

    prompts: list[str]
    query_responses: torch.Tensor  # [B, P+R] left-padded prompt, then the response
    attention_mask: torch.Tensor  # [B, P+R] prompt mask, then ``mask``
    context_length: int  # P, the prompt block width
    responses: torch.Tensor  # [B, R] (R = max_new_tokens), pad token after the stop token
    mask: torch.Tensor  # [B, R] long, 1 up to and including the stop token
    texts: list[str]  # decoded responses, special tokens (EOS, pad) removed
    # [B, R, H] with ``keep_hidden``: the model's final hidden state that predicted response token t
    # (the LM head's input; 0 after generation ended), so a caller needs no second forward for log-probs.
    hidden: torch.Tensor | None = None


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str], device) -> dict[str, torch.Tensor]:
    """Left-padded prompt batch: generation appends on the right, so every row ends at its prompt.

    Per call (``padding_side=``): the tokenizer's own setting is left as it is."""
    return tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left",
                     add_special_tokens=False).to(device)


def truncate_after_stop(responses: torch.Tensor, stop_token_id: int | None, pad_token_id: int):
    """Keep each response up to and including its first stop token, pad after it.

    Returns (responses, mask); with no stop token every sampled token is kept (mask all ones).
    """
    if stop_token_id is None:
        return responses, torch.ones_like(responses)
    mask = response_mask(responses, stop_token_id)
    return torch.where(mask.bool(), responses, torch.full_like(responses, pad_token_id)), mask


@contextlib.contextmanager
def own_generation_config(model: PreTrainedModel):
    """An empty generation_config while sampling, so generate() adds none of the saved settings."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved, target.generation_config = target.generation_config, GenerationConfig()
    try:
        yield
    finally:
        target.generation_config = saved


@torch.no_grad()
def sample_batches(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], cfg: SamplingConfig, *,
    seed: int, num_samples: int = 1, stop_at_eos: bool = True, do_sample: bool = True, progress: bool = False,
    keep_hidden: bool = False,
) -> list[SampledBatch]:
    """``num_samples`` responses per prompt, ``cfg.batch_size`` prompts per batch (see the module doc).

    ``stop_at_eos=False`` keeps every one of the ``max_new_tokens`` sampled tokens (PPO's stop_token=null);
    ``do_sample=False`` decodes greedily; ``keep_hidden`` also returns the final hidden states the
    tokens were sampled from (``SampledBatch.hidden``). Runs the model in eval mode.
    """
    model.eval()
    device = next(model.parameters()).device
    generation = GenerationConfig(
        max_new_tokens=cfg.max_new_tokens, do_sample=do_sample, num_return_sequences=num_samples, use_cache=True,
        temperature=cfg.temperature if do_sample else None, top_k=cfg.top_k if do_sample else None,
        top_p=cfg.top_p if do_sample else None, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id if stop_at_eos else None,
        return_dict_in_generate=keep_hidden, output_hidden_states=keep_hidden,
    )
    stop = tokenizer.eos_token_id if stop_at_eos else None
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    out = []
    starts = range(0, len(prompts), cfg.batch_size)
    for b, start in enumerate(tqdm(starts, desc="sampling", disable=not progress, unit="batch")):
        chunk = prompts[start : start + cfg.batch_size]
        enc = encode_prompts(tokenizer, chunk, device)
        with torch.random.fork_rng(devices=cuda_devices), own_generation_config(model):
            torch.manual_seed(seed + b)  # seeds the CPU and every CUDA device
            generated = model.generate(**enc, generation_config=generation)
        hidden = None
        if keep_hidden:
            # Per generation step, the last layer's output at the newest column (step 0: the prompt's last).
            hidden = torch.cat([step[-1][:, -1:] for step in generated.hidden_states], 1)
            hidden = torch.nn.functional.pad(hidden, (0, 0, 0, cfg.max_new_tokens - hidden.shape[1]))
            generated = generated.sequences
        width = enc["input_ids"].shape[1]
        raw = generated[:, width:]
        # generate stops once every row has stopped: pad to the full length so every batch has one shape.
        raw = torch.nn.functional.pad(raw, (0, cfg.max_new_tokens - raw.shape[1]), value=tokenizer.pad_token_id)
        responses, mask = truncate_after_stop(raw, stop, tokenizer.pad_token_id)
        prompt_mask = enc["attention_mask"].repeat_interleave(num_samples, 0)
        out.append(SampledBatch(
            prompts=[p for p in chunk for _ in range(num_samples)],
            query_responses=torch.cat([generated[:, :width], responses], 1),
            attention_mask=torch.cat([prompt_mask, mask], 1), context_length=width,
            responses=responses, mask=mask,
            texts=[tokenizer.decode(row[keep.bool()], skip_special_tokens=True) for row, keep in zip(responses, mask)],
            hidden=hidden,
        ))
    return out


def concat(batches: list[SampledBatch], pad_token_id: int) -> SampledBatch:
    """One batch of all rows: prompt blocks left-padded to the widest (position ids make that invisible)."""
    width = max(b.context_length for b in batches)

    def left_pad(x: torch.Tensor, extra: int, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (extra, 0), value=value)

    return SampledBatch(
        prompts=[p for b in batches for p in b.prompts],
        query_responses=torch.cat([left_pad(b.query_responses, width - b.context_length, pad_token_id) for b in batches]),
        attention_mask=torch.cat([left_pad(b.attention_mask, width - b.context_length, 0) for b in batches]),
        context_length=width,
        responses=torch.cat([b.responses for b in batches]),
        mask=torch.cat([b.mask for b in batches]),
        texts=[t for b in batches for t in b.texts],
        hidden=torch.cat([b.hidden for b in batches]) if all(b.hidden is not None for b in batches) else None,
    )


def sample(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], cfg: SamplingConfig,
    num_samples: int = 1, seed: int = 0, progress: bool = True,
) -> list[list[str]]:
    """``num_samples`` response texts per prompt (EOS and padding removed)."""
    texts = [t for b in sample_batches(model, tokenizer, prompts, cfg, seed=seed, num_samples=num_samples,
                                       progress=progress) for t in b.texts]
    return [texts[i : i + num_samples] for i in range(0, len(texts), num_samples)]


def join(prompt: str, response: str) -> str:
    """Full text of a prompt and its response, as scored by the gold reward."""
    return prompt + response
