"""rlhf.logprobs: padding-invariant response log-probs on a randomly initialised tiny GPT-2."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf.logprobs import (
    gather_logprobs,
    position_ids,
    response_log_softmax,
    response_logprobs,
    response_mask,
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
