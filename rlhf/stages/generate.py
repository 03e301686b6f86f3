"""Sample K candidate responses per prompt from a policy, for annotators to rank.

Under several processes (``accelerate launch``) each rank samples its share of the prompts and the
main process gathers them and writes the artifact.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Literal
from pathlib import Path

import torch
from accelerate.utils import gather_object
from datasets import Dataset

from rlhf.artifacts import Artifact, open_artifact, write_artifact
from rlhf.candidates import KIND, candidate_id, prompt_id
from rlhf.config import ConfigError, DataConfig, option
from rlhf.data import load_task
from rlhf.hardware import autocast_dtype, process_state
from rlhf.models import load_causal_lm, load_tokenizer
from rlhf.policies import POLICY_KINDS
from rlhf.sampling import SamplingConfig, join, sample
from rlhf.tasks.gold import gold_reward



@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/candidates", "where the candidates artifact is written", hashed=False)
    policy: str = option("${run_dir}/sft", "policy artifact to sample from (an sft, ppo or dpo artifact)", hashed=False)
    seed: int = option(0, "sampling seed (rank r of a multi-process run uses seed + r)")
    data: DataConfig = option(DataConfig(), "where the prompts come from")
    split: Literal["train", "test"] = option("train", "prompt split: 'train' (for preference data) or 'test' (held out for eval)")
    num_prompts: int = option(64, "distinct prompts to sample for (fewer if the split has fewer)")
    prompt_offset: int | None = option(
        None, "skip the split's first N distinct prompts (null = 0): pipelines.run --rounds gives round k the "
        "prompts after those of rounds 1..k-1, so every round labels fresh prompts")
    num_candidates: int = option(4, "K: candidate responses per prompt (>= 2, so there is something to rank)")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling parameters (temperature, top-p/k, length)")


def inputs(config: Config) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {"policy": (config.policy, POLICY_KINDS)}


def select_prompts(config: Config) -> list[str]:
    """``num_prompts`` distinct prompts of the split from ``prompt_offset`` on, in dataset order."""
    if config.num_prompts < 1:
        raise ConfigError(f"num_prompts must be >= 1, got {config.num_prompts}")
    prompts = list(dict.fromkeys(load_task(config.data)[config.split]["prompt"]))  # dedupe, keep order
    offset = config.prompt_offset or 0
    if not 0 <= offset < len(prompts):
        raise ConfigError(f"prompt_offset={offset} leaves no prompts: the '{config.split}' split has {len(prompts)} "
                          "distinct prompts; lower it (with --rounds: fewer rounds or a smaller num_prompts)")
    return prompts[offset : offset + config.num_prompts]


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    if config.num_candidates < 2:
        raise ConfigError(f"num_candidates must be >= 2 (annotators rank candidates), got {config.num_candidates}")
    prompts = select_prompts(config)
    state = process_state()  # before anything else asks accelerate (rlhf/hardware.py)
    policy = inputs["policy"]
    model = load_causal_lm(policy.path).to(state.device)
    tokenizer = load_tokenizer(policy.path)

    dtype = autocast_dtype()
    with state.split_between_processes(prompts) as shard, \
            torch.autocast(state.device.type, dtype=dtype, enabled=dtype is not None):
        responses = sample(
            model, tokenizer, list(shard), config.sampling, num_samples=config.num_candidates,
            seed=config.seed + state.process_index, progress=state.is_main_process,
        )
    # gather_object concatenates the per-rank lists in rank order, i.e. back in prompt order.
    responses = gather_object(responses) if state.num_processes > 1 else responses

    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        if state.is_main_process:
            rows = []
            for prompt, cands in zip(prompts, responses):
                pid = prompt_id(prompt)
                rows.append({"prompt_id": pid, "prompt": prompt,
                             "candidate_ids": [candidate_id(pid, k, c) for k, c in enumerate(cands)],
                             "candidates": list(cands)})
            Dataset.from_list(rows).save_to_disk(str(Path(out.path) / "data"))
            flat = [(r["prompt"], c) for r in rows for c in r["candidates"]]
            gold = gold_reward(join(p, c) for p, c in flat)
            out.extra["policy_fingerprint"] = policy.fingerprint
            out.extra["sampling"] = {**asdict(config.sampling), "num_candidates": config.num_candidates,
                                     "seed": config.seed, "num_processes": state.num_processes}
            out.metrics.update({
                "num_prompts": len(rows),
                "num_candidates": len(flat),
                "gold/mean": statistics.fmean(gold),
                "gold/std": statistics.pstdev(gold),
                # How much there is to choose between: mean over prompts of (best - worst) gold reward.
                "gold/spread_mean": statistics.fmean(
                    max(g) - min(g) for g in (gold[i : i + config.num_candidates]
                                              for i in range(0, len(gold), config.num_candidates))
                ),
                "candidates/empty": sum(not c.strip() for _, c in flat),
                "candidates/distinct_fraction": statistics.fmean(
                    len(set(r["candidates"])) / len(r["candidates"]) for r in rows
                ),
            })
    return open_artifact(config.output_dir, KIND)
