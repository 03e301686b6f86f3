"""rlhf.logprobs: padding-invariant response log-probs on a tiny random GPT-2, KL estimators, entropy."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf.logprobs import (
    entropy_from_logits,
    exact_kl,
    gather_logprobs,
    kl_estimate,
    logprobs_from_logits,
    position_ids,
    response_log_softmax,
    response_logits,
    response_logprobs,
    response_mask,
    sequence_sum,
)

PAD, EOS = 0, 1


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=2, pad_token_id=PAD, eos_token_id=EOS,
                        bos_token_id=EOS)
    return GPT2LMHeadModel(config).eval()


def _left_padded(prompts: list[list[int]], responses: list[list[int]]):
    """The layout generate() returns: left-padded prompts, then right-padded responses."""
    width = max(map(len, prompts))
    resp_width = max(map(len, responses))
    ids, mask = [], []
    for p, r in zip(prompts, responses):
        pad_l, pad_r = width - len(p), resp_width - len(r)
        ids.append([PAD] * pad_l + p + r + [PAD] * pad_r)
        mask.append([0] * pad_l + [1] * (len(p) + len(r)) + [0] * pad_r)
    return torch.tensor(ids), torch.tensor(mask), width


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_left_padded_batch_matches_unpadded_single_sequences(model):
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    responses = [[20, 21, 22, EOS], [23, 24], [25, 26, 27, 28, 29]]
    ids, mask, start = _left_padded(prompts, responses)
    with torch.no_grad():
        batch = response_logprobs(model, ids, mask, start, temperature=0.7)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            single = response_logprobs(model, torch.tensor([p + r]), torch.ones(1, len(p) + len(r), dtype=torch.long),
                                       len(p), temperature=0.7)
            torch.testing.assert_close(batch[i, : len(r)], single[0], atol=1e-5, rtol=1e-5)


def test_logprobs_are_zero_on_response_padding_and_exact_elsewhere(model):
    prompts, responses = [[5, 6, 7], [8, 9]], [[20, 21, EOS], [22]]
    ids, mask, start = _left_padded(prompts, responses)
    with torch.no_grad():
        packed = response_logprobs(model, ids, mask, start, temperature=0.7)
        full = gather_logprobs(response_logits(model, ids, mask, start, temperature=0.7), ids[:, start:])
    real = mask[:, start:].bool()
    torch.testing.assert_close(packed[real], full[real])
    assert (packed[~real] == 0).all() and (full[~real] != 0).all()


def test_logprobs_use_temperature_scaled_distribution(model):
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logits = model(ids).logits[:, 2:-1]
        expected = torch.log_softmax(logits / 2.0, -1).gather(-1, ids[:, 3:, None]).squeeze(-1)
        torch.testing.assert_close(response_logprobs(model, ids, mask, 3, temperature=2.0), expected)
        full = response_log_softmax(model, ids, mask, 3, temperature=2.0)
    assert full.shape == (1, 3, 50)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(1, 3))
    torch.testing.assert_close(full.gather(-1, ids[:, 3:, None]).squeeze(-1), expected)


def test_gather_logprobs_equals_log_softmax_gather():
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 7, (2, 4), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gather_logprobs(logits, tokens), logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1))


def test_response_mask_keeps_first_eos_and_drops_what_follows():
    responses = torch.tensor([[4, EOS, PAD, PAD], [4, 5, 6, 7], [EOS, PAD, EOS, PAD], [PAD, 4, EOS, PAD]])
    assert response_mask(responses, EOS).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]]


def test_rejects_bad_arguments(model):
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="response_start"):
        response_logprobs(model, ids, torch.ones_like(ids), 0)
    with pytest.raises(ValueError, match="temperature"):
        response_logprobs(model, ids, torch.ones_like(ids), 1, temperature=0.0)


def _log_dists(seed: int, shape=(3, 5, 11)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).mul(2).log_softmax(-1)


def test_exact_kl_matches_torch_distributions_and_is_nonnegative():
    logp, ref = _log_dists(0), _log_dists(1)
    ours = exact_kl(logp, ref)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=logp), torch.distributions.Categorical(logits=ref)
    )
    torch.testing.assert_close(ours, expected)
    assert (ours > 0).all()
    # A hand-computed case: KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 log 2 + 1/2 log(2/3).
    p, q = torch.tensor([0.5, 0.5]).log(), torch.tensor([0.25, 0.75]).log()
    assert exact_kl(p, q).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))


def test_kl_of_a_distribution_with_itself_is_exactly_zero():
    logp = _log_dists(2)
    assert (exact_kl(logp, logp.clone()) == 0).all()
    tokens = logp[..., 0]
    assert (kl_estimate(tokens, tokens, "k1") == 0).all()
    assert (kl_estimate(tokens, tokens, "k3") == 0).all()


def test_k3_is_nonnegative_and_a_function_of_k1():
    logp = torch.log(torch.rand(1000, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    ref = torch.log(torch.rand(1000, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    k1, k3 = kl_estimate(logp, ref, "k1"), kl_estimate(logp, ref, "k3")
    assert (k3 >= 0).all()
    assert (k1 < 0).any()  # k1 alone can go negative; k3 never does
    # Per sample, k3 = exp(-k1) - 1 + k1: the k1 sample plus a zero-mean control variate r - 1.
    torch.testing.assert_close(k3, torch.expm1(-k1) + k1)


def test_k1_and_k3_are_unbiased_estimates_of_the_exact_kl():
    logp = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64).log()
    ref = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64).log()
    exact = exact_kl(logp, ref).item()
    samples = torch.multinomial(logp.exp(), 200_000, replacement=True, generator=torch.Generator().manual_seed(5))
    k1 = kl_estimate(logp[samples], ref[samples], "k1").mean().item()
    k3 = kl_estimate(logp[samples], ref[samples], "k3").mean().item()
    assert k1 == pytest.approx(exact, abs=0.01)
    assert k3 == pytest.approx(exact, abs=0.01)


def test_sequence_sum_counts_only_response_tokens():
    values = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert sequence_sum(values, mask).tolist() == [3.0, 8.0]


def test_kl_estimators():
    logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([math.log(2)]))
    # k3 = (q/p - 1) - log(q/p) = -0.5 + log 2
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), torch.tensor([-0.5 + math.log(2)]))
    # k1 is negative when the policy puts less mass than the reference on the token; k3 never is.
    assert kl_estimate(ref, logp, "k1").item() < 0 < kl_estimate(ref, logp, "k3").item()
    with pytest.raises(ValueError, match="k1 or k3"):
        kl_estimate(logp, ref, "k2")


def test_logprobs_from_logits_match_a_hand_computation():
    # One row: prompt of 2 tokens, response [2, 0]. Logits at column 1 predict token 2, column 2 predicts token 0.
    logits = torch.tensor([[[9.0, 9.0, 9.0], [0.0, 0.0, math.log(2.0)], [math.log(3.0), 0.0, 0.0], [5.0, 5.0, 5.0]]])
    responses = torch.tensor([[2, 0]])
    logprobs, entropy = logprobs_from_logits(logits, responses, 2, temperature=1.0)
    # softmax([0, 0, log 2]) = [1/4, 1/4, 1/2]; softmax([log 3, 0, 0]) = [3/5, 1/5, 1/5]
    torch.testing.assert_close(logprobs, torch.tensor([[math.log(1 / 2), math.log(3 / 5)]]))
    h1 = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    h2 = -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2))
    torch.testing.assert_close(entropy, torch.tensor([[h1, h2]]))
    # Temperature 2 halves the logits: softmax([0, 0, log 2 / 2]) -> p(2) = sqrt 2 / (2 + sqrt 2).
    hot, _ = logprobs_from_logits(logits, responses, 2, temperature=2.0)
    assert hot[0, 0].item() == pytest.approx(math.log(math.sqrt(2) / (2 + math.sqrt(2))))


def test_entropy_of_uniform_logits_is_log_vocab():
    torch.testing.assert_close(entropy_from_logits(torch.zeros(1, 4)), torch.tensor([math.log(4)]))
