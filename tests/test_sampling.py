"""rlhf.sampling (the one sampler) and rlhf.evaluation.rollouts (sample and score) on a tiny random GPT-2."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

from rlhf.evaluation.rollouts import sample_and_score
from rlhf.logprobs import response_logprobs, response_mask
from rlhf.sampling import SamplingConfig, concat, draw, encode_prompts, sample, sample_batches
from rlhf.tokenizer import train_tokenizer

CORPUS = ["the film was great and the cast was lovely", "a dull plot, but the music was fine", "I loved it. Ten out of ten."]
PROMPTS = ["the film", "a dull", "I loved it", "the cast was", "music"]
CFG = SamplingConfig(temperature=1.0, max_new_tokens=8, batch_size=2)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS * 10, vocab_size=300)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        initializer_range=0.5,  # peaked next-token distributions, so generation settings matter
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config).eval()
    model.generation_config = GenerationConfig()
    return model


def _tokens(batches) -> list[list[int]]:
    return [row for b in batches for row in b.responses.tolist()]


def test_draw_samples_the_softmax_of_the_logits():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    rows = 40_000
    logits = probs.log().expand(rows, -1) + 3.0  # any shift: softmax is shift-invariant
    torch.manual_seed(0)
    frequencies = torch.bincount(draw(logits), minlength=5) / rows
    assert frequencies[4] == 0  # a -inf logit is never drawn
    torch.testing.assert_close(frequencies, probs, atol=0.01, rtol=0)  # 4 standard errors at p = 0.5


def test_saved_generation_settings_are_ignored(model, tokenizer):
    clean = _tokens(sample_batches(model, tokenizer, PROMPTS, CFG, seed=3))
    tuned = copy.deepcopy(model)
    saved = GenerationConfig(top_k=5, repetition_penalty=50.0, no_repeat_ngram_size=1, suppress_tokens=list(range(3, 150)))
    tuned.generation_config = saved
    assert _tokens(sample_batches(tuned, tokenizer, PROMPTS, CFG, seed=3)) == clean
    assert tuned.generation_config is saved  # restored after sampling
    # The test has teeth: generate() left alone applies those settings and samples other tokens.
    enc = encode_prompts(tokenizer, PROMPTS[:2], "cpu")
    torch.manual_seed(3)
    raw = tuned.generate(**enc, do_sample=True, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
    assert all(t < 3 or t >= 150 for t in raw[:, enc["input_ids"].shape[1]:].flatten().tolist())


def test_saved_generation_settings_are_ignored_under_peft(model, tokenizer):
    from peft import LoraConfig, get_peft_model

    clean = _tokens(sample_batches(model, tokenizer, PROMPTS, CFG, seed=3))
    wrapped = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM"))
    wrapped.get_base_model().generation_config = GenerationConfig(suppress_tokens=list(range(3, 150)))
    assert _tokens(sample_batches(wrapped, tokenizer, PROMPTS, CFG, seed=3)) == clean  # LoRA B = 0: same model


def test_same_seed_same_tokens_per_batch_and_rng_restored(model, tokenizer):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = sample_batches(model, tokenizer, PROMPTS, CFG, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's stream is untouched
    again = sample_batches(model, tokenizer, PROMPTS, CFG, seed=7)
    assert _tokens(again) == _tokens(first)
    assert _tokens(sample_batches(model, tokenizer, PROMPTS, CFG, seed=8)) != _tokens(first)
    # Batch b uses seed + b whatever came before: the second batch alone, with seed + 1, repeats it.
    alone = sample_batches(model, tokenizer, PROMPTS[2:4], CFG, seed=8)
    assert _tokens(alone) == first[1].responses.tolist()


def test_batches_follow_the_logprobs_layout(model, tokenizer):
    batches = sample_batches(model, tokenizer, PROMPTS, CFG, seed=1, num_samples=2)
    for b in batches:
        assert b.responses.shape[1] == CFG.max_new_tokens
        assert torch.equal(b.query_responses[:, b.context_length:], b.responses)
        assert torch.equal(b.mask, response_mask(b.responses, tokenizer.eos_token_id))
        assert torch.equal(b.attention_mask[:, b.context_length:], b.mask)
        assert b.prompts == [p for p in b.prompts[::2] for _ in range(2)]
    texts = sample(model, tokenizer, PROMPTS, CFG, num_samples=2, seed=1, progress=False)
    assert texts == [[t for b in batches for t in b.texts][i : i + 2] for i in range(0, 2 * len(PROMPTS), 2)]
    # Joining batches left-pads the prompts; log-probs of the responses stay the same.
    joined = concat(batches, tokenizer.pad_token_id)
    with torch.no_grad():
        together = response_logprobs(model, joined.query_responses, joined.attention_mask, joined.context_length)
        apart = torch.cat([response_logprobs(model, b.query_responses, b.attention_mask, b.context_length) for b in batches])
    torch.testing.assert_close(together * joined.mask, apart * joined.mask, atol=1e-5, rtol=1e-5)


def test_stop_at_eos_false_keeps_every_token(model, tokenizer):
    (b,) = sample_batches(model, tokenizer, PROMPTS[:2], SamplingConfig(max_new_tokens=12, batch_size=2), seed=0,
                          stop_at_eos=False)
    assert bool(b.mask.all()) and b.responses.shape == (2, 12)


@torch.no_grad()
def _brute_force(policy, reference, tokenizer, prompt: str, tokens: list[int], temperature: float):
    """Exact and k1 KL of one sample: one unpadded forward per prefix, explicit sum over the vocabulary in float64."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    exact = k1 = 0.0
    for t, token in enumerate(tokens):
        context = torch.tensor([ids + tokens[:t]])
        p = torch.softmax(policy(context).logits[0, -1].double() / temperature, -1)
        q = torch.softmax(reference(context).logits[0, -1].double() / temperature, -1)
        exact += sum(float(p[v] * (p[v].log() - q[v].log())) for v in range(len(p)))
        k1 += float(p[token].log() - q[token].log())
    return exact, k1


def test_kl_of_identical_copies_is_zero_and_of_perturbed_weights_matches_brute_force(model, tokenizer):
    cfg = SamplingConfig(temperature=0.8, max_new_tokens=6, batch_size=2)
    twin = copy.deepcopy(model)
    same = sample_and_score(model, tokenizer, PROMPTS, cfg, seed=0, reference=twin)
    assert same.kl == [0.0] * len(PROMPTS) and same.kl_k1 == [0.0] * len(PROMPTS) and same.kl_k3 == [0.0] * len(PROMPTS)

    perturbed = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    out = sample_and_score(perturbed, tokenizer, PROMPTS, cfg, seed=0, reference=model)
    assert all(kl > 0.01 for kl in out.kl)
    for i in range(3):
        exact, k1 = _brute_force(perturbed, model, tokenizer, out.prompts[i], out.tokens[i], cfg.temperature)
        assert out.kl[i] == pytest.approx(exact, rel=1e-4, abs=1e-5)
        assert out.kl_k1[i] == pytest.approx(k1, rel=1e-4, abs=1e-5)
    assert out.responses == [tokenizer.decode(t, skip_special_tokens=True) for t in out.tokens]


def test_kept_hidden_states_give_the_forward_passs_logprobs_and_values(model, tokenizer):
    """PPO takes rollout log-probs and values from the sampler's hidden states instead of a second
    forward pass: they must be that pass's numbers, on every real token, in every batch."""
    from rlhf.ppo.modeling import PolicyAndValue, response_outputs, sampled_outputs

    model = copy.deepcopy(model)
    with torch.no_grad():  # make EOS likely, so rows (and whole batches) stop before max_new_tokens
        model.transformer.ln_f.bias += model.transformer.wte.weight[tokenizer.eos_token_id]
    policy = PolicyAndValue(model)
    torch.nn.init.normal_(policy.value_head.weight)  # zero-initialised in training; any head will do here
    batches = sample_batches(model, tokenizer, PROMPTS, CFG, seed=0, keep_hidden=True)
    assert any(int(b.mask.sum(1).max()) < CFG.max_new_tokens for b in batches)  # a batch that ended early
    joined = concat(batches, tokenizer.pad_token_id)
    assert joined.hidden.shape[:2] == joined.responses.shape
    assert all(b.hidden is not None for b in batches)
    with torch.no_grad():
        kept_logprobs, kept_values = sampled_outputs(policy, joined.hidden, joined.responses, joined.mask, 0.7)
        logprobs, _, values = response_outputs(policy, joined.query_responses, joined.attention_mask,
                                               joined.context_length, 0.7)
    real = joined.mask.bool()
    torch.testing.assert_close(kept_logprobs[real], logprobs[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kept_values[real], values[real], atol=1e-5, rtol=1e-5)
    assert (kept_logprobs[~real] == 0).all()


def test_top_k_and_top_p_truncate_the_sampled_distribution(model, tokenizer):
    from dataclasses import replace

    greedy = _tokens(sample_batches(model, tokenizer, PROMPTS, CFG, seed=0, do_sample=False))
    assert _tokens(sample_batches(model, tokenizer, PROMPTS, replace(CFG, top_k=1), seed=5)) == greedy
    assert _tokens(sample_batches(model, tokenizer, PROMPTS, replace(CFG, top_p=1e-6), seed=5)) == greedy
    assert _tokens(sample_batches(model, tokenizer, PROMPTS, CFG, seed=5)) != greedy  # untruncated: not greedy
