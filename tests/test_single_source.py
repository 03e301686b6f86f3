"""Sampling, log-probs and KL are written once (issue #10): a second copy in the code fails this test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rlhf", "annotation_ui", "pipelines")

# pattern -> the one module allowed to contain it
SINGLE_HOMES = {
    r"\.generate\(|torch\.multinomial|torch\.searchsorted": "rlhf/sampling.py",  # sampling from a model, drawing tokens
    r"LogitsProcessorList\(": "rlhf/sampling.py",
    r"\.(log_softmax|logsumexp|softmax)\(": "rlhf/logprobs.py",  # log-probs, entropy, exact KL: x.f(, torch.f(,
    # F.f( (not response_log_softmax( or prose)
    r"expm1": "rlhf/logprobs.py",  # the k3 estimator
    r"def masked_(sum|mean|var)\b": "rlhf/logprobs.py",
    r"\bdef \w*kl\w*\(": "rlhf/logprobs.py",  # any KL function
}


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def test_sampling_logprob_and_kl_code_lives_in_one_module_each():
    strays = [
        f"{name}: {pattern!r} belongs in {home} only"
        for name, text in _sources() for pattern, home in SINGLE_HOMES.items()
        if name != home and re.search(pattern, text)
    ]
    assert not strays, "\n".join(strays)


def test_the_check_sees_the_code_it_guards():
    sources = dict(_sources())
    for pattern, home in SINGLE_HOMES.items():
        assert re.search(pattern, sources[home]), f"{pattern!r} not found in {home}: update SINGLE_HOMES"
