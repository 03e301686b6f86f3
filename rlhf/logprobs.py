"""Log-probabilities, entropy and KL of responses under a causal LM: the one place that computes them.

Batches follow the layout the sampler returns (``rlhf.sampling``):

    input_ids = [pad pad p1 p2 p3 | r1 r2 EOS pad]     response_start = width of the prompt block
    attention_mask = [0 0 1 1 1 | 1 1 1 0]             (``response_mask`` builds the response half)

Every row's response starts at the same column, so a response is ``input_ids[:, response_start:]``
and the logits that predict it are those at columns ``response_start - 1 .. -2``. Position ids count
real tokens only (``attention_mask.cumsum(-1) - 1``), so a left-padded row sees the same positions
as the same text unpadded - the convention ``generate`` itself uses.

Logits are divided by the sampling temperature: the policy's sampling distribution at temperature
T is ``softmax(logits / T)``, and log-probs, KL estimators and the exact KL must all refer to it.
Nothing here disables gradients; wrap calls in ``torch.no_grad()`` for rollouts and evaluation.

KL conventions (Schulman 2020, "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html):
with tokens y_t sampled from the policy pi and r = ref(y_t | .) / pi(y_t | .),

* exact:  KL(pi(.|x,y<t) || ref(.|x,y<t)), summed over the whole vocabulary at each step;
* k1:     log pi(y_t) - log ref(y_t)   (unbiased, can be negative on single tokens);
* k3:     (r - 1) - log r              (unbiased, never negative, lower variance).

Summed over a response's tokens (``sequence_sum``) each estimates the sequence-level KL.
"""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedModel

KL_ESTIMATORS = ("k1", "k3")

# ---------------------------------------------------------------------------------------------
# Masked reductions over response tokens (mask: 1 on real tokens, 0 on padding).


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` over the masked-in positions: all of them (``dim=None``, a scalar) or along ``dim``."""
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def sequence_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[batch, len] -> [batch]``: each response's sum over its real tokens (e.g. a sequence KL)."""
    return masked_sum(x, mask, dim=-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the masked-in positions (all of them, or along ``dim``); 0 where nothing is masked in."""
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over all masked-in positions; ``unbiased`` applies Bessel's correction (as TRL's masked_var)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1)
    return var


# ---------------------------------------------------------------------------------------------
# Layout helpers.


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions of real tokens (0, 1, 2, ...) whatever the left padding; padding gets 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_mask(response_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 for response tokens up to and including the first EOS, 0 after it (generate's padding).

    Masking by EOS rather than by the pad id keeps a sampled token that happens to be the pad token.
    """
    is_eos = (response_ids == eos_token_id).long()
    eos_before = is_eos.cumsum(-1) - is_eos  # number of EOS strictly before each position
    return (eos_before == 0).long()


# ---------------------------------------------------------------------------------------------
# From logits.


def response_slice(logits: torch.Tensor, response_start: int, temperature: float = 1.0) -> torch.Tensor:
    """float32 ``logits / temperature`` at the columns that predict ``input_ids[:, response_start:]``.

    ``logits`` cover prompt + response; the logits at column i predict token i + 1.
    """
    _check(response_start, temperature)
    return temperature_scaled(logits[:, response_start - 1 : -1], temperature)


def temperature_scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 ``logits / temperature``."""
    logits = logits.float()
    # x / 1.0 == x exactly: skip a vocabulary-wide op (and its backward) at the usual temperature.
    return logits / temperature if temperature != 1.0 else logits


def _check(response_start: int, temperature: float) -> None:
    if response_start < 1:
        raise ValueError(f"response_start must be >= 1 (the first response token needs a prompt token before it), got {response_start}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor, logsumexp: torch.Tensor | None = None) -> torch.Tensor:
    """log softmax(logits)[token] per position, without materialising the full log-softmax
    (``logsumexp``: ``logits.logsumexp(-1)`` if the caller already has it)."""
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - (logits.logsumexp(-1) if logsumexp is None else logsumexp)


def entropy_from_logits(logits: torch.Tensor, logsumexp: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy of softmax(logits) at each position: logsumexp(l) - sum(p * l) (``logsumexp`` as above)."""
    if logsumexp is None:
        probs = torch.softmax(logits, dim=-1)
        return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)
    return logsumexp - ((logits - logsumexp.unsqueeze(-1)).exp() * logits).sum(-1)


def logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor,
                         entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log-prob of each token, entropy or None) from one logsumexp; the entropy without gradient
    (for logging)."""
    logsumexp = logits.logsumexp(-1)
    logprobs = gather_logprobs(logits, tokens, logsumexp)
    if not entropy:
        return logprobs, None
    with torch.no_grad():
        return logprobs, entropy_from_logits(logits, logsumexp)


def logprobs_from_logits(logits: torch.Tensor, responses: torch.Tensor, response_start: int,
                         temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the response tokens and the entropy at each response position, both under
    softmax(logits / temperature); ``logits`` cover prompt + response (``[batch, P+R, vocab]``)."""
    logits = response_slice(logits, response_start, temperature)
    return gather_logprobs(logits, responses), entropy_from_logits(logits)


# ---------------------------------------------------------------------------------------------
# From a model.


def response_logits(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[batch, response_len, vocab]`` float32 logits / temperature predicting ``input_ids[:, response_start:]``."""
    _check(response_start, temperature)  # before the forward pass
    # logits_to_keep: the LM head only on the columns that predict response tokens (+ the last one),
    # not on the prompt's: the same numbers for less work.
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                use_cache=False, logits_to_keep=input_ids.shape[1] - response_start + 1)
    return response_slice(out.logits, 1, temperature)


def head_at(model: PreTrainedModel, last_hidden: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """The LM head (vocabulary-wide, often the largest matmul of a small model) only at the positions
    ``where`` marks: ``[marked, vocab]`` in row-major order. ``last_hidden`` is the model's final
    hidden state (GPT-2: after ``ln_f``, the LM head's input)."""
    return model.get_output_embeddings()(last_hidden[where])


def unpack(where: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """``[marked]`` values back to the ``where`` layout, 0 at the unmarked positions."""
    return where.new_zeros(where.shape, dtype=packed.dtype).masked_scatter(where, packed)


def response_logprobs(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[batch, response_len]`` log-prob of each response token; 0 where the response is padding
    (``attention_mask`` 0), whose logits are never computed (``head_at``)."""
    _check(response_start, temperature)
    real = attention_mask[:, response_start:].bool()
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                use_cache=False, output_hidden_states=True, logits_to_keep=1)  # the head is applied below
    logits = temperature_scaled(head_at(model, out.hidden_states[-1][:, response_start - 1 : -1], real), temperature)
    return unpack(real, gather_logprobs(logits, input_ids[:, response_start:][real]))


def response_log_softmax(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[batch, response_len, vocab]`` full log-distribution at each response position (for exact KL)."""
    return response_logits(model, input_ids, attention_mask, response_start, temperature).log_softmax(-1)


# ---------------------------------------------------------------------------------------------
# KL(policy || reference).


def exact_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """KL(pi || ref) at every position from full log-distributions ``[..., vocab]`` -> ``[...]``.

    Clamped at 0: the true value is never negative, and float rounding on near-identical
    distributions must not report a tiny negative divergence. Identical inputs give exactly 0.
    """
    return (logp.exp() * (logp - ref_logp)).sum(-1).clamp(min=0.0)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from the log-probs of tokens sampled from pi.

    k1 = log pi - log ref: unbiased, high variance, negative on single tokens (its batch mean may dip
    below 0). k3 = (r - 1) - log r with r = ref/pi: unbiased and always >= 0, lower variance.
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (choose k1 or k3)")


def best_of_n_kl_bound(n: int) -> float:
    """Upper bound on KL(best-of-n || base policy) in nats: log n - (n-1)/n (Beirami et al. 2024,
    https://arxiv.org/abs/2401.01879; the usual "analytic" value, which is a bound, not the KL)."""
    return math.log(n) - (n - 1) / n


def best_of_n_kl_estimate(scores: list[float], texts: list[str], n: int) -> float:
    """Exact KL(best-of-n || pool) when the base distribution is one prompt's pool of samples (identical
    texts merged, ranked by RM score): P_bon(rank <= i) = F(i)^n. Equals log n - (n-1)/n only for
    an infinite pool of distinct samples; duplicates (a peaked base policy) make it smaller."""
    probs: dict[str, float] = {}
    score: dict[str, float] = {}
    for s, t in zip(scores, texts):
        probs[t] = probs.get(t, 0.0) + 1 / len(texts)
        score[t] = s
    cdf, kl = 0.0, 0.0
    for t in sorted(probs, key=score.__getitem__):
        p = probs[t]
        q = (cdf + p) ** n - cdf ** n
        cdf += p
        if q > 0:
            kl += q * math.log(q / p)
    return kl
