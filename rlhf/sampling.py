"""The one sampler: batched, left-padded, KV-cached, seeded per batch, plain temperature sampling.

Every stage that samples (generate, the stages' end-of-stage metrics, the eval stage, PPO
rollouts) calls ``sample_batches`` (or ``sample`` for text only), so the token ids that log-probs
and KL are computed on are exactly the ones sampled, from exactly ``softmax(logits / T)``:

* the decoding loop is ours (``decode``), not ``generate()``: the model's saved
  ``generation_config`` (a top_k=50, a repetition penalty, a min length...) never applies, also
  under a peft wrapper; only our options do;
* each token is drawn by inverse-CDF sampling (``draw``): one uniform number per row instead of
  ``torch.multinomial``'s exponential per vocabulary entry, which alone took ~30 % of a tiny
  policy's sampling time on CPU. Same distribution, another random stream;
* top_k=0 / top_p=1 (no truncation) unless the config sets them (Huang et al. 2023: PPO's
  log-probs must be those of the distribution actually sampled from);
* batch ``b`` is sampled under seed ``seed + b``, inside ``torch.random.fork_rng`` over the CPU and
  every CUDA device: two policies see the same random numbers batch for batch, whatever the
  lengths of earlier batches, and the caller's RNG streams are left exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from rlhf.config import option
from rlhf.logprobs import position_ids, response_mask


@dataclass
class SamplingConfig:
    temperature: float = option(1.0, "softmax temperature (>0)")
    top_p: float = option(1.0, "nucleus sampling mass (1.0 = off)")
    top_k: int = option(0, "top-k sampling (0 = off)")
    max_new_tokens: int = option(32, "response length limit in tokens")
    batch_size: int = option(64, "prompts per decoding batch")


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


def draw(logits: torch.Tensor) -> torch.Tensor:
    """One index per row of ``logits`` ``[B, V]``, drawn from ``softmax(logits)``: inverse-CDF sampling
    with one uniform number per row on the unnormalised weights ``exp(logits - max)`` (the cumulative
    sum in float64, so tail tokens keep their weight). ``right=True``: an index of weight 0 (a -inf
    logit, a flat step of the CDF) is never returned."""
    weights = (logits - logits.amax(-1, keepdim=True)).double().exp()
    cdf = weights.cumsum(-1)
    u = torch.rand(logits.shape[0], 1, device=logits.device, dtype=torch.float64) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp(max=logits.shape[-1] - 1)


def warpers(cfg: SamplingConfig) -> LogitsProcessorList:
    """transformers' temperature / top-k / top-p warpers for the settings that are on."""
    out = LogitsProcessorList()
    if cfg.temperature != 1.0:
        out.append(TemperatureLogitsWarper(cfg.temperature))
    if cfg.top_k:
        out.append(TopKLogitsWarper(cfg.top_k))
    if cfg.top_p < 1.0:
        out.append(TopPLogitsWarper(cfg.top_p))
    return out


def decode(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, cfg: SamplingConfig, *,
           stop_token_id: int | None, pad_token_id: int, do_sample: bool = True,
           keep_hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """KV-cached decoding of ``cfg.max_new_tokens`` tokens after left-padded prompts.

    Returns the ``[B, max_new_tokens]`` tokens (``pad_token_id`` after a row's stop token) and, with
    ``keep_hidden``, the ``[B, max_new_tokens, H]`` final hidden states each token was drawn from (0
    after every row has stopped). Position ids count real tokens only, as ``rlhf.logprobs`` does.
    """
    process = warpers(cfg)
    rows = input_ids.shape[0]
    finished = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
    tokens, hidden, cache = [], [], None
    step_ids, mask = input_ids, attention_mask
    for _ in range(cfg.max_new_tokens):
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=position_ids(mask)[:, -step_ids.shape[1]:],
                    cache=cache, use_cache=True, output_hidden_states=keep_hidden, logits_to_keep=1)
        cache = out.cache
        logits = out.logits[:, -1].float()
        if do_sample:
            token = draw(process(None, logits))
        else:
            token = logits.argmax(-1)
        token = token.masked_fill(finished, pad_token_id)
        tokens.append(token)
        if keep_hidden:
            hidden.append(out.hidden_states[-1][:, -1])
        if stop_token_id is not None:
            finished |= token == stop_token_id
            if bool(finished.all()):
                break
        step_ids, mask = token[:, None], torch.cat([mask, mask.new_ones(rows, 1)], 1)
    missing = cfg.max_new_tokens - len(tokens)  # every row stopped early: pad to the full length
    out_tokens = torch.nn.functional.pad(torch.stack(tokens, 1), (0, missing), value=pad_token_id)
    out_hidden = torch.nn.functional.pad(torch.stack(hidden, 1), (0, 0, 0, missing)) if keep_hidden else None
    return out_tokens, out_hidden


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
    stop = tokenizer.eos_token_id if stop_at_eos else None
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    out = []
    starts = range(0, len(prompts), cfg.batch_size)
    for b, start in enumerate(tqdm(starts, desc="sampling", disable=not progress, unit="batch")):
        chunk = prompts[start : start + cfg.batch_size]
        enc = encode_prompts(tokenizer, chunk, device)
        prompt_ids = enc["input_ids"].repeat_interleave(num_samples, 0)
        prompt_mask = enc["attention_mask"].repeat_interleave(num_samples, 0)
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed + b)  # seeds the CPU and every CUDA device
            raw, hidden = decode(model, prompt_ids, prompt_mask, cfg, stop_token_id=stop,
                                 pad_token_id=tokenizer.pad_token_id, do_sample=do_sample, keep_hidden=keep_hidden)
        responses, mask = truncate_after_stop(raw, stop, tokenizer.pad_token_id)
        out.append(SampledBatch(
            prompts=[p for p in chunk for _ in range(num_samples)],
            query_responses=torch.cat([prompt_ids, responses], 1),
            attention_mask=torch.cat([prompt_mask, mask], 1), context_length=prompt_ids.shape[1],
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
