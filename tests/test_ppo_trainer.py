"""PPOTrainer pieces on a tiny random GPT-2 (no reward model needed): value alignment, the critic's
initial scale, gradient accumulation invariant to the micro-batch split, the learning-rate schedule
per PPO step and across a resume, and the fp16 loss scaler in checkpoints."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel
from transformers.activations import NewGELUActivation

from rlhf.config import ConfigError
from rlhf.models import fuse_gelu
from rlhf.logprobs import entropy_from_logits, gather_logprobs, response_logits
from rlhf.ppo import core
from rlhf.ppo.config import PPOConfig
from rlhf.ppo.modeling import PolicyAndValue, normalised_critic, response_outputs
from rlhf.ppo.rollout import Rollout
from rlhf.ppo.trainer import PPOTrainer

PAD, EOS, VOCAB, CONTEXT, RESPONSE = 0, 1, 20, 3, 5


def tiny_gpt2_config(**kwargs) -> GPT2Config:
    return GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # as set_dropout(0) in PPO
                      eos_token_id=EOS, pad_token_id=PAD, bos_token_id=EOS, **kwargs)


def tiny_policy() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(tiny_gpt2_config())


def tiny_trainer(tmp_path, **cfg) -> PPOTrainer:
    policy = tiny_policy()
    config = PPOConfig(**{"rollout_batch_size": 4, "mini_batch_size": 4, "micro_batch_size": 4, "total_episodes": 4,
                          "num_ppo_epochs": 1, "max_grad_norm": 1e9, "learning_rate": 1e-3, "report_to": [],
                          "checkpoint_every": 0, "sample_table_every": 0, **cfg})
    return PPOTrainer(config, policy, copy.deepcopy(policy), SimpleNamespace(model=torch.nn.Linear(1, 1), to=lambda device: None),
                      SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS), ["unused"] * 4, tmp_path)


def fake_rollout() -> Rollout:
    """Four episodes with responses of 5, 1, 3 and 2 tokens and arbitrary old log-probs/values/advantages."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([5, 1, 3, 2])
    mask = (torch.arange(RESPONSE)[None] < lengths[:, None]).float()
    responses = torch.where(mask.bool(), torch.randint(2, VOCAB, (4, RESPONSE), generator=g), PAD)
    query_responses = torch.cat([torch.randint(2, VOCAB, (4, CONTEXT), generator=g), responses], 1)
    attention_mask = torch.cat([torch.ones(4, CONTEXT), mask], 1).long()
    noise = lambda: torch.randn(4, RESPONSE, generator=g) * mask  # noqa: E731
    return Rollout(query_responses, attention_mask, responses, mask, logprobs=noise() - 3.0, values=noise(),
                   advantages=noise(), returns=noise(), context_length=CONTEXT)


def record_optimizer_steps(trainer: PPOTrainer) -> list[tuple[torch.Tensor, float]]:
    """(flat gradient, learning rate) at each real optimizer step."""
    inner = trainer.optimizer.optimizer
    step, seen = inner.step, []

    def recording_step(*args, **kwargs):
        params = [p for group in inner.param_groups for p in group["params"] if p.grad is not None]
        seen.append((torch.cat([p.grad.flatten() for p in params]).clone(), inner.param_groups[0]["lr"]))
        return step(*args, **kwargs)

    inner.step = recording_step
    return seen


def test_value_at_t_is_the_value_of_the_state_before_response_token_t():
    model = PolicyAndValue(tiny_policy())
    torch.nn.init.normal_(model.value_head.weight)  # zero-initialised in training; any head will do here
    batch = fake_rollout()
    with torch.no_grad():
        _, _, values = response_outputs(model, batch.query_responses, batch.attention_mask, CONTEXT, 1.0)
        for t in range(RESPONSE):
            # The state before token t: prompt + response tokens < t, nothing after.
            prefix = batch.query_responses[:1, : CONTEXT + t]
            _, prefix_values = model(prefix, torch.ones_like(prefix))
            assert values[0, t].item() == pytest.approx(prefix_values[0, -1].item(), abs=1e-5)
        # Changing token t changes values after t only.
        changed = batch.query_responses.clone()
        changed[0, CONTEXT + 2] = (changed[0, CONTEXT + 2] + 1) % VOCAB
        _, _, values2 = response_outputs(model, changed, batch.attention_mask, CONTEXT, 1.0)
    torch.testing.assert_close(values2[0, :3], values[0, :3])
    assert not torch.allclose(values2[0, 3:], values[0, 3:])


def test_gradient_does_not_depend_on_the_micro_batch_size(tmp_path):
    grads = {}
    for micro in (4, 2, 1):
        trainer = tiny_trainer(tmp_path / str(micro), micro_batch_size=micro)
        seen = record_optimizer_steps(trainer)
        trainer.update(fake_rollout(), step=1)
        assert len(seen) == 1  # one minibatch, one optimizer step, however many micro-batches
        grads[micro] = seen[0][0]
    assert grads[4].abs().max() > 0
    torch.testing.assert_close(grads[2], grads[4], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(grads[1], grads[4], atol=1e-6, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # our recorder
def test_learning_rate_follows_the_schedule_once_per_ppo_step(tmp_path):
    # 5 PPO steps of 2 minibatches each; linear warmup over 2 PPO steps, then linear decay to 0.
    trainer = tiny_trainer(tmp_path, total_episodes=20, mini_batch_size=2, micro_batch_size=1,
                           lr_scheduler_type="linear", warmup_steps=2)
    seen = record_optimizer_steps(trainer)
    batch = fake_rollout()
    trainer.rollout = lambda step: (batch, {"objective/kl": 0.0}, [], {})
    history = trainer.train()
    schedule = [0.0, 0.5e-3, 1e-3, 2e-3 / 3, 1e-3 / 3, 0.0]  # lr after k scheduler steps, by hand
    assert [round(h["lr"], 12) for h in history] == [round(x, 12) for x in schedule[1:]]
    # Both optimizer steps of PPO step k use the lr after k - 1 scheduler steps.
    assert [round(lr, 12) for _, lr in seen] == [round(x, 12) for x in schedule[:5] for _ in range(2)]


def test_separate_critic_starts_at_the_normalised_reward_scores():
    torch.manual_seed(1)
    reward_model = GPT2ForSequenceClassification(tiny_gpt2_config(num_labels=1)).eval()
    torch.nn.init.normal_(reward_model.score.weight)  # scores spread over a few units, like a trained head
    mean, std = -0.5, 2.8  # the demo reward model's normalisation
    model = PolicyAndValue(tiny_policy(), normalised_critic(copy.deepcopy(reward_model), mean, std))
    ids = torch.randint(2, VOCAB, (3, 6), generator=torch.Generator().manual_seed(2))  # no pad: score at the end
    with torch.no_grad():
        raw = reward_model(input_ids=ids).logits[:, 0]
        _, values = model(ids, torch.ones_like(ids))
    assert raw.std() > 0.1 and (raw.mean() - mean).abs() > 0.1  # raw and normalised scales differ here
    torch.testing.assert_close(values[:, -1], (raw - mean) / std, atol=1e-5, rtol=1e-5)
    assert model.critic.score.weight.requires_grad and model.critic.score.bias.requires_grad


def test_resume_keeps_the_learning_rate_schedule_and_refuses_a_changed_length(tmp_path):
    options = dict(total_episodes=20, lr_scheduler_type="linear", warmup_steps=1, checkpoint_every=1)
    batch = fake_rollout()

    def trainer(work_dir=tmp_path / "resumed", **cfg):
        t = tiny_trainer(work_dir, **{**options, **cfg})
        t.rollout = lambda step: (batch, {"objective/kl": 0.0}, [], {})
        return t

    class Killed(Exception):
        pass

    def kill_at_2(step, _):
        if step == 2:
            raise Killed

    straight = [h["lr"] for h in trainer(tmp_path / "straight").train()]
    with pytest.raises(Killed):
        trainer().train(resume=True, on_step_end=kill_at_2)
    with pytest.raises(ConfigError, match=r"ppo.total_episodes=20, which sets the length of the linear"):
        trainer(total_episodes=40).train(resume=True)
    resumed = trainer()
    history = resumed.train(resume=True)
    assert [h["step"] for h in history] == [3, 4, 5]
    assert [h["lr"] for h in history] == pytest.approx(straight[2:], abs=1e-12)


def test_constant_schedule_may_change_its_length_on_resume(tmp_path):
    first = tiny_trainer(tmp_path, lr_scheduler_type="constant")
    first.save()
    longer = tiny_trainer(tmp_path, lr_scheduler_type="constant", total_episodes=8)
    assert longer.resume()
    assert longer.scheduler.get_last_lr() == first.scheduler.get_last_lr()


def test_fp16_loss_scaler_state_is_checkpointed(tmp_path):
    # accelerate creates a GradScaler under fp16 (GPU only); a CPU GradScaler stands in for it here.
    trained = tiny_trainer(tmp_path)
    trained.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=7)
    trained.accelerator.scaler.scale(torch.ones(()))  # materialise the scale, then back off as after overflows
    trained.accelerator.scaler.update(new_scale=2.0**9)
    trained.save()
    resumed = tiny_trainer(tmp_path)
    resumed.accelerator.scaler = torch.amp.GradScaler("cpu")
    assert resumed.resume()
    assert resumed.accelerator.scaler.get_scale() == 2.0**9
    assert resumed.accelerator.scaler.state_dict() == trained.accelerator.scaler.state_dict()


def test_fused_gelu_changes_neither_outputs_gradients_nor_the_saved_model():
    plain, fused = tiny_policy(), tiny_policy()
    fuse_gelu(fused)
    assert fused.config.activation_function == "gelu_new"  # a saved model is unchanged
    acts = [block.mlp.act for block in fused.transformer.h]
    assert acts and not any(isinstance(act, NewGELUActivation) for act in acts)
    # On a wide range (a tiny random model barely leaves GELU's linear part): the same values and slopes.
    x_ref, x_new = (torch.linspace(-6, 6, 1201, requires_grad=True) for _ in range(2))
    y_ref, y_new = NewGELUActivation()(x_ref), acts[0](x_new)
    (y_ref.sum() + y_new.sum()).backward()
    assert torch.allclose(y_new, y_ref, atol=1e-6)
    assert torch.allclose(x_new.grad, x_ref.grad, atol=1e-5)
    ids = torch.randint(2, VOCAB, (3, 8), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(plain(ids).logits, fused(ids).logits, atol=1e-5)


def test_a_trimmed_micro_batch_gives_the_same_losses_with_fewer_columns():
    full = fake_rollout()[torch.tensor([1, 3])]  # responses of 1 and 2 tokens: 3 all-padding response columns
    pad = lambda x, value: torch.nn.functional.pad(x, (2, 0), value=value)  # noqa: E731 (2 all-padding prompt columns)
    full.query_responses, full.attention_mask = pad(full.query_responses, PAD), pad(full.attention_mask, 0)
    full.context_length += 2
    trimmed = full.trimmed()
    assert trimmed.query_responses.shape == (2, CONTEXT + 2) and trimmed.mask.shape == (2, 2)
    model = PolicyAndValue(tiny_policy())
    torch.nn.init.normal_(model.value_head.weight)
    outs = []
    for b in (full, trimmed):
        logprobs, _, values = response_outputs(model, b.query_responses, b.attention_mask, b.context_length, 1.0)
        pg = core.policy_loss(logprobs, b.logprobs, b.advantages, b.mask, 0.2)
        vf = core.value_loss(values, b.values, b.returns, b.mask, 0.2)
        outs.append(torch.stack([pg.loss, vf.loss, pg.approxkl, pg.clipfrac]))
    assert torch.allclose(outs[0], outs[1], atol=1e-6)


def test_log_probs_come_from_the_lm_head_at_real_response_tokens_only():
    batch = fake_rollout()
    model = PolicyAndValue(tiny_policy())
    with torch.no_grad():
        logprobs, entropy, _ = response_outputs(model, batch.query_responses, batch.attention_mask, CONTEXT, 0.7)
        full_logits = response_logits(model.policy, batch.query_responses, batch.attention_mask, CONTEXT, 0.7)
        full = gather_logprobs(full_logits, batch.query_responses[:, CONTEXT:])
        full_entropy = entropy_from_logits(full_logits)
    real = batch.mask.bool()
    assert torch.allclose(logprobs[real], full[real], atol=1e-6)
    assert torch.allclose(entropy[real], full_entropy[real], atol=1e-5)
    assert (logprobs[~real] == 0).all() and (entropy[~real] == 0).all() and (entropy[real] > 0).all()
