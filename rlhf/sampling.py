"""Batched sampling from a causal LM: left padding, KV cache, seeded, stop at EOS."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.config import option


@dataclass
class SamplingConfig:
    temperature: float = option(1.0, "softmax temperature (>0)")
    top_p: float = option(1.0, "nucleus sampling mass (1.0 = off)")
    top_k: int = option(0, "top-k sampling (0 = off)")
    max_new_tokens: int = option(32, "response length limit in tokens")
    batch_size: int = option(64, "prompts per generate() call")


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str], device) -> dict[str, torch.Tensor]:
    """Left-padded prompt batch: generation appends on the right, so every row ends at its prompt."""
    tokenizer.padding_side = "left"
    return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)


@torch.no_grad()
def sample(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], cfg: SamplingConfig,
    num_samples: int = 1, seed: int = 0, progress: bool = True,
) -> list[list[str]]:
    """``num_samples`` responses per prompt (text after the prompt, EOS and padding removed)."""
    model.eval()
    device = next(model.parameters()).device
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    out: list[list[str]] = []
    batches = range(0, len(prompts), cfg.batch_size)
    for start in tqdm(batches, desc="sampling", disable=not progress, unit="batch"):
        chunk = prompts[start : start + cfg.batch_size]
        enc = encode_prompts(tokenizer, chunk, device)
        generated = model.generate(
            **enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
            max_new_tokens=cfg.max_new_tokens, num_return_sequences=num_samples, use_cache=True,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        responses = tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out.extend(responses[i : i + num_samples] for i in range(0, len(responses), num_samples))
    torch.random.set_rng_state(generator_state)
    return out


def join(prompt: str, response: str) -> str:
    """Full text of a prompt and its response, as scored by the gold reward."""
    return prompt + response
