"""PPO fine-tuning of the SFT policy against a reward model (our own trainer on torch + accelerate)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Callable


from rlhf.artifacts import Artifact, open_artifact, write_artifact, work_dir
from rlhf.config import ConfigError, DataConfig, LoraConfig, option
from rlhf.data import train_prompts
from rlhf.evaluation.rollouts import sample_and_score
from rlhf.models import fit_embeddings, fuse_gelu, is_adapter, load_causal_lm, load_sequence_classifier, load_tokenizer, peft_config, save_model, set_dropout
from rlhf.policies import POLICY_KINDS, reference_input, TRAINING_SAMPLING, sampling_record
from rlhf.ppo.config import PPOConfig
from rlhf.ppo.modeling import normalised_critic
from rlhf.ppo.tracking import HISTORY_FILE, SAMPLES_FILE
from rlhf.ppo.trainer import PPOTrainer
from rlhf.reward_model import EnsembleObjective, RewardModel
from rlhf.sampling import SamplingConfig

KIND = "ppo"


@dataclass
class Config(PPOConfig):
    """Every PPO hyperparameter (top level: ``ppo.kl_coef`` in the pipeline), plus the stage's paths."""

    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/ppo", "where the PPO policy artifact is written", hashed=False)
    policy: str = option("${run_dir}/sft", "the initial policy and KL reference (an sft artifact)", hashed=False)
    reference: str | None = option(
        None, "KL reference policy artifact when it is not the initial policy (null = policy); pipelines.run "
        "--rounds sets it to the SFT policy while later rounds start from the previous round's policy", hashed=False)
    reward_model: str = option("${run_dir}/reward", "the reward artifact scoring prompt + response", hashed=False)
    data: DataConfig = option(DataConfig(), "prompts: the train split's prompts for rollouts, the test split's for eval")
    lora: LoraConfig = option(LoraConfig(), "LoRA adapters; the reference is then the adapter-disabled base (one backbone)")
    resume: bool = option(True, "continue from the last checkpoint in ${run_dir}/.work/ppo after a kill", hashed=False)
    reward_ensemble: EnsembleObjective = option(
        EnsembleObjective(), "how the members of an ensemble reward artifact (reward stage ensemble_size > 1) are "
        "combined into the PPO reward; no effect on a single reward model")
    eval_prompts: int = option(64, "training-split prompts sampled before and after training for eval/* metrics (0 = skip); "
        "the held-out prompts are left to the eval stage")


def inputs(config: Config) -> dict[str, tuple[str, str]]:
    return {"policy": (config.policy, POLICY_KINDS), "reward_model": (config.reward_model, "reward"),
            **reference_input(config.reference, config.lora.enabled)}


def build_trainer(config: Config, inputs: dict[str, Artifact]) -> PPOTrainer:
    if is_adapter(inputs["policy"].path):
        raise ConfigError(f"policy {inputs['policy'].path} is a LoRA adapter artifact; PPO needs a merged policy "
                          "(re-run its stage with lora.merge=true)")
    tokenizer = load_tokenizer(inputs["policy"].path)
    policy = load_causal_lm(inputs["policy"].path, is_trainable=True)
    fit_embeddings(policy, tokenizer)
    ref_policy = None
    if config.lora.enabled:
        from peft import get_peft_model

        policy = get_peft_model(policy, peft_config(config.lora))
    else:
        ref_policy = load_causal_lm(inputs.get("reference", inputs["policy"]).path)
    # Loaded on the CPU: the trainer moves every member to its device. (Asking PartialState() for a
    # device here would initialise accelerate's process state before the trainer's Accelerator(cpu=...),
    # and under torchrun on CPUs every rank would then run as a separate single process.)
    reward_model = RewardModel.load(inputs["reward_model"].path, "cpu", config.reward_ensemble)
    critic = None
    if config.value_model == "separate":
        if reward_model.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ConfigError("value_model=separate initialises the critic from the reward model, whose tokenizer "
                              "differs from the policy's; use value_model=shared")
        critic = load_sequence_classifier(inputs["reward_model"].path, is_trainable=True)
        if hasattr(critic, "merge_and_unload"):  # a LoRA reward artifact: the critic trains all its weights
            critic = critic.merge_and_unload().requires_grad_(True)
        # Rewards are normalised scores: start the critic on that scale, not the raw one.
        critic = normalised_critic(critic, reward_model.mean, reward_model.std)
    # Dropout off everywhere (Huang et al. 2023): the rollout log-probs must equal the first epoch's.
    # The fused GELU kernel: the same numbers to float rounding, a large share of a tiny model's step on CPU.
    for model in (policy, ref_policy, critic, *(m.model for m in (reward_model, *reward_model.members))):
        if model is not None:
            set_dropout(model, 0.0)
            fuse_gelu(model)
    prompts = train_prompts(config.data)
    return PPOTrainer(PPOConfig.of(config), policy, ref_policy, reward_model, tokenizer, prompts, work_dir(config), critic)


def evaluate(model, tokenizer, reward_model: RewardModel, prompts: list[str], cfg: PPOConfig) -> dict[str, float]:
    """Mean gold reward and reward-model score of one sample per prompt."""
    sampling = SamplingConfig(temperature=cfg.temperature, max_new_tokens=cfg.response_length)
    samples = sample_and_score(model, tokenizer, prompts, sampling, cfg.seed, reward_model=reward_model)
    return {"gold_reward": samples.mean("gold"), "score": samples.mean("rm")}


def run(config: Config, inputs: dict[str, Artifact],
        on_step_end: Callable[[int, PPOTrainer], None] | None = None) -> Artifact:
    trainer = build_trainer(config, inputs)
    acc = trainer.accelerator
    eval_prompts = train_prompts(config.data, config.eval_prompts)  # held-out prompts are the eval stage's
    metrics = {}
    if eval_prompts and acc.is_main_process:
        before = evaluate(trainer.policy(), trainer.tokenizer, trainer.reward_model, eval_prompts, config)
        metrics.update({f"eval/{k}_initial": v for k, v in before.items()})
    history = trainer.train(resume=config.resume, on_step_end=on_step_end)

    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        out.extra[TRAINING_SAMPLING] = sampling_record(
            config.temperature, config.response_length, "PPO rollouts: temperature and response_length")
        if acc.is_main_process:
            save_model(trainer.policy(), trainer.tokenizer, out.path, merge=config.lora.merge)
            for name in (HISTORY_FILE, SAMPLES_FILE):
                if (trainer.work_dir / name).is_file():
                    shutil.copy(trainer.work_dir / name, out.path / name)
            if (trainer.work_dir / "runs").is_dir():
                shutil.copytree(trainer.work_dir / "runs", out.path / "logs", dirs_exist_ok=True)
            if eval_prompts:
                after = evaluate(trainer.policy(), trainer.tokenizer, trainer.reward_model, eval_prompts, config)
                metrics.update({f"eval/{k}": v for k, v in after.items()})
            last = history[-1] if history else {}
            metrics.update({f"train/{k}": last[k] for k in ("objective/kl", "objective/scores", "objective/rlhf_reward")
                            if k in last})
            metrics["train/steps"] = trainer.step
            metrics["train/num_processes"] = acc.num_processes
            out.metrics.update(metrics)
    if acc.is_main_process:
        shutil.rmtree(trainer.work_dir, ignore_errors=True)  # the artifact is complete
    acc.wait_for_everyone()
    return open_artifact(config.output_dir, KIND)
