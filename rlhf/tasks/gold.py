"""Gold reward: VADER sentiment (compound score in [-1, 1]), computable offline.

The same signal TRL's GPT-2 sentiment example and the DPO paper's controlled-sentiment task use
(there from a classifier; VADER is a lexicon, so it needs no download).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def gold_reward(texts: Iterable[str]) -> list[float]:
    """Compound sentiment of each full text (prompt + response)."""
    analyzer = _analyzer()
    return [analyzer.polarity_scores(text)["compound"] for text in texts]
