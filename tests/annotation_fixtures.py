"""A small "candidates" artifact for the annotation tests (no generate stage needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'


@dataclass
class FixtureConfig:
    """Stands in for the generate stage's config in the fixture's manifest."""

    num_prompts: int = 6
    num_candidates: int = 3


def fixture_rows(num_prompts: int = 6, num_candidates: int = 3) -> list[dict]:
    rows = []
    for p in range(num_prompts):
        texts = [f"Candidate {c} for prompt {p}: the film was {'great' if c % 2 else 'dull'}." for c in range(num_candidates)]
        if p == 0:  # untrusted model output must render as text
            texts[0] = f"Sneaky {XSS_SCRIPT} and {XSS_IMG} end."
        rows.append({
            "prompt_id": f"p{p:03d}",
            "prompt": f"Review #{p}: This movie",
            "candidate_ids": [f"p{p:03d}-c{c}" for c in range(num_candidates)],
            "candidates": texts,
        })
    return rows


def make_candidates_artifact(path: str | Path, num_prompts: int = 6, num_candidates: int = 3) -> Path:
    """Write a finished candidates artifact (manifest + data/ saved with save_to_disk) at ``path``."""
    from datasets import Dataset

    from rlhf.artifacts import write_artifact

    rows = fixture_rows(num_prompts, num_candidates)
    with write_artifact(path, "candidates", FixtureConfig(num_prompts, num_candidates)) as out:
        Dataset.from_list(rows).save_to_disk(str(out.path / "data"))
    return Path(path)
