"""PPO's pure functions against values computed by hand."""

from __future__ import annotations

import dataclasses

import math

import pytest
import torch

from rlhf.config import ConfigError, load_config
from rlhf.ppo import core
from rlhf.ppo.config import PPOConfig, PPOSizes
from rlhf.ppo.trainer import prompt_indices
from rlhf.sampling import truncate_after_stop

EOS, PAD = 0, 1


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_matches_hand_computation_and_ignores_padding():
    rewards, values, mask = t([1.0, 0.0, 2.0, 0.0]), t([0.5, 1.0, 1.5, 9.0]), t([1, 1, 1, 0])
    adv, ret = core.gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # t=2: 2 - 1.5 = 0.5 (terminal: no bootstrap from the padding value 9)
    # t=1: 0 + 0.9*1.5 - 1 = 0.35, + 0.45*0.5 = 0.575
    # t=0: 1 + 0.9*1.0 - 0.5 = 1.4, + 0.45*0.575 = 1.65875
    torch.testing.assert_close(adv, t([1.65875, 0.575, 0.5, 0.0]))
    torch.testing.assert_close(ret, t([2.15875, 1.575, 2.0, 0.0]))


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards, values, mask = t([0.1, 0.2, 0.3]), t([1.0, 2.0, 3.0]), t([1, 1, 1])
    adv, ret = core.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(ret, t([0.6, 0.5, 0.3]))
    torch.testing.assert_close(adv, t([-0.4, -1.5, -2.7]))


def test_whiten_uses_only_real_tokens():
    x, mask = t([2.0, 4.0, 6.0, 100.0]), t([1, 1, 1, 0])
    # mean 4, unbiased var (4 + 0 + 4) / 2 = 4
    torch.testing.assert_close(core.whiten(x, mask), t([-1.0, 0.0, 1.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(core.whiten(x, mask, shift_mean=False), t([3.0, 4.0, 5.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(core.masked_mean(x, mask), torch.tensor(4.0))
    torch.testing.assert_close(core.masked_var(x, mask), torch.tensor(4.0))


def test_per_token_rewards_put_score_on_last_real_token():
    logprobs, ref = t([0.1, 0.2, 0.3], [0.1, 0.1, 0.1]), torch.zeros(2, 3)
    mask = t([1, 1, 1], [1, 0, 0])
    rewards, non_score, kl = core.per_token_rewards(torch.tensor([1.0, 2.0]), logprobs, ref, mask, kl_coef=0.5)
    torch.testing.assert_close(kl, t([0.1, 0.2, 0.3], [0.1, 0.0, 0.0]))
    torch.testing.assert_close(non_score, t([-0.05, -0.1, -0.15], [-0.05, 0.0, 0.0]))
    torch.testing.assert_close(rewards, t([-0.05, -0.1, 0.85], [1.95, 0.0, 0.0]))


def test_truncation_after_eos_feeds_the_reward_layout():
    sampled = torch.tensor([[5, 7, EOS, 8, EOS], [5, 6, 7, 8, 9], [EOS, 3, 3, 3, 3]])
    responses, mask = truncate_after_stop(sampled, EOS, PAD)
    assert responses.tolist() == [[5, 7, EOS, PAD, PAD], [5, 6, 7, 8, 9], [EOS, PAD, PAD, PAD, PAD]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    rewards, _, _ = core.per_token_rewards(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3, 5), torch.zeros(3, 5),
                                           mask.float(), kl_coef=0.1)
    # The score lands on the EOS token itself (the last real token), padding gets nothing.
    assert rewards.tolist() == [[0, 0, 1.0, 0, 0], [0, 0, 0, 0, 2.0], [3.0, 0, 0, 0, 0]]
    unchanged, ones = truncate_after_stop(sampled, None, PAD)
    assert torch.equal(unchanged, sampled) and bool(ones.all())


def test_policy_loss_clips_pessimistically():
    new = torch.log(t([1.5, 0.5]))
    old = torch.zeros(1, 2)
    out = core.policy_loss(new, old, t([1.0, 1.0]), t([1, 1]), cliprange=0.2)
    # max(-A*r, -A*clip(r)): [max(-1.5, -1.2), max(-0.5, -0.8)] = [-1.2, -0.5]
    torch.testing.assert_close(out.loss, torch.tensor(-0.85))
    torch.testing.assert_close(out.clipfrac, torch.tensor(0.5))
    torch.testing.assert_close(out.approxkl, torch.tensor(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2))
    torch.testing.assert_close(out.ratio, torch.tensor(1.0))
    neg = core.policy_loss(new, old, t([-1.0, -1.0]), t([1, 1]), cliprange=0.2)
    torch.testing.assert_close(neg.loss, torch.tensor((1.5 + 0.8) / 2))  # [max(1.5, 1.2), max(0.5, 0.8)]
    # Padding never contributes, even with extreme log-probs there.
    padded = core.policy_loss(torch.tensor([[0.0, 80.0]]), torch.tensor([[0.0, -80.0]]), t([1.0, 1.0]), t([1, 0]), 0.2)
    assert torch.isfinite(padded.loss) and padded.loss.item() == -1.0


def test_value_loss_clipping():
    out = core.value_loss(t([1.5]), t([1.0]), t([2.0]), t([1]), cliprange_value=0.2)
    # clipped value 1.2: (1.2 - 2)^2 = 0.64 > (1.5 - 2)^2 = 0.25
    torch.testing.assert_close(out.loss, torch.tensor(0.32))
    torch.testing.assert_close(out.clipfrac, torch.tensor(1.0))
    out = core.value_loss(t([2.0, 0.0, 7.0]), t([1.0, 0.0, 0.0]), t([1.0, 1.0, 0.0]), t([1, 1, 0]), 0.2)
    torch.testing.assert_close(out.loss, torch.tensor(0.5))  # 0.5 * mean(1, 1), padding ignored
    torch.testing.assert_close(out.clipfrac, torch.tensor(0.0))


def test_kl_controllers():
    fixed = core.FixedKLController(0.1)
    fixed.update(100.0, 256)
    assert fixed.value == 0.1
    adaptive = core.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    adaptive.update(12.0, 256)  # error clipped to +0.2
    assert adaptive.value == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))
    adaptive.update(6.0, 256)  # on target: unchanged
    assert adaptive.value == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))
    adaptive.update(4.5, 1000)  # error -0.25 clipped to -0.2
    assert adaptive.value == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000) * (1 - 0.2 * 1000 / 10000))
    restored = core.AdaptiveKLController(0.5, 6.0, 10000)
    restored.load_state_dict(adaptive.state_dict())
    assert restored.value == adaptive.value


def test_batch_sizes_are_global_and_checked():
    cfg = PPOConfig(rollout_batch_size=64, mini_batch_size=32, micro_batch_size=8, total_episodes=640)
    one, two = PPOSizes.from_config(cfg, 1), PPOSizes.from_config(cfg, 2)
    assert (one.grad_accum, one.num_mini_batches, one.num_steps) == (4, 2, 10)
    assert (two.local_rollout_batch, two.local_mini_batch, two.grad_accum) == (32, 16, 2)
    with pytest.raises(ConfigError, match="micro_batch_size"):
        PPOSizes.from_config(PPOConfig(rollout_batch_size=64, mini_batch_size=32, micro_batch_size=12), 1)
    # micro_batch_size null: each process forwards its whole share of a minibatch, no accumulation.
    whole = dataclasses.replace(cfg, micro_batch_size=None)
    one, two = PPOSizes.from_config(whole, 1), PPOSizes.from_config(whole, 2)
    assert (one.micro_batch, one.grad_accum, two.micro_batch, two.grad_accum) == (32, 1, 16, 1)
    with pytest.raises(ConfigError, match="micro_batch_size"):
        PPOSizes.from_config(dataclasses.replace(cfg, micro_batch_size=0), 1)
    with pytest.raises(ConfigError, match="kl_estimator"):  # choices are checked when the config loads
        load_config(PPOConfig, None, ["kl_estimator=k2"])


def test_prompt_order_is_a_function_of_the_step():
    first = prompt_indices(1, 4, 6, seed=0) + prompt_indices(2, 4, 6, seed=0) + prompt_indices(3, 4, 6, seed=0)
    assert sorted(first[:6]) == list(range(6)) and sorted(first[6:]) == list(range(6))  # two full epochs
    assert prompt_indices(2, 4, 6, seed=0) == first[4:8]
    assert prompt_indices(1, 4, 6, seed=1) != prompt_indices(1, 4, 6, seed=0)


def test_whiten_with_given_stats_uses_them_and_matches_whole_batch_whitening():
    x, mask = t([2.0, 4.0, 6.0, 100.0], [8.0, 10.0, 0.0, 0.0]), t([1, 1, 1, 0], [1, 1, 0, 0])
    # Global stats over the 5 real tokens: mean 6, unbiased var (16 + 4 + 0 + 4 + 16) / 4 = 10.
    stats = (torch.tensor(6.0), torch.tensor(10.0))
    whole = core.whiten(x, mask)
    halves = torch.cat([core.whiten(x[:1], mask[:1], stats=stats), core.whiten(x[1:], mask[1:], stats=stats)])
    torch.testing.assert_close(halves, whole)
    torch.testing.assert_close(halves[0], (t([2.0, 4.0, 6.0, 6.0]) - 6.0)[0] / math.sqrt(10.0) * mask[0], atol=1e-6, rtol=0)
    # Without stats each half would be whitened on its own statistics: different numbers.
    assert not torch.allclose(core.whiten(x[:1], mask[:1]), whole[:1])
    # shift_mean=False rescales only: (x - m) / s + m.
    torch.testing.assert_close(core.whiten(x[1:], mask[1:], shift_mean=False, stats=stats),
                               t([(8 - 6) / math.sqrt(10) + 6, (10 - 6) / math.sqrt(10) + 6, 0.0, 0.0]))


def test_missing_eos_penalty_hits_only_responses_without_eos():
    responses = torch.tensor([[5, EOS, PAD], [5, 6, 7], [EOS, PAD, PAD], [5, 6, 7]])
    scores = torch.tensor([1.0, 1.0, -0.5, 2.0])
    out = core.missing_eos_penalty(scores, responses, EOS, 1.0)
    assert out.tolist() == [1.0, 0.0, -0.5, 1.0]
    assert torch.equal(core.missing_eos_penalty(scores, responses, EOS, None), scores)


def test_token_mean_over_micro_batches_is_the_minibatch_token_mean():
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    mask = t([1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0])
    whole = core.masked_mean(x, mask)
    n = mask.sum()
    for size in (1, 2, 4):
        parts = sum(core.token_mean(x[i : i + size], mask[i : i + size], n) for i in range(0, 4, size))
        torch.testing.assert_close(parts, whole)
