"""Reward over-optimization curves (Gao, Schulman, Hilton 2022, https://arxiv.org/abs/2210.10760).

Gold reward as a function of ``d = sqrt(KL(policy || reference))`` (KL in nats) follows

* best-of-n:  ``R_bon(d) = d (alpha - beta d)``
* RL (PPO):   ``R_RL(d)  = d (alpha - beta log d)``

with R measured relative to the reference (R(0) = 0: subtract the reference's gold reward first).
Both are linear in (alpha, beta), so the fit is ordinary least squares. It is made on the low part of
the KL range and its R^2 is reported on the held-out high part: the paper's point is that the form
extrapolates, so the held-out R^2 is the number to read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

Form = Literal["bon", "rl"]


def predict(form: Form, d: np.ndarray | Sequence[float], alpha: float, beta: float) -> np.ndarray:
    """R(d) of the given functional form."""
    d = np.asarray(d, dtype=np.float64)
    if form == "bon":
        return d * (alpha - beta * d)
    if form == "rl":
        with np.errstate(divide="ignore", invalid="ignore"):  # d log d -> 0 as d -> 0
            return np.where(d > 0, d * (alpha - beta * np.log(np.where(d > 0, d, 1.0))), 0.0)
    raise ValueError(f"unknown form {form!r}: use 'bon' (best-of-n) or 'rl'")


def _features(form: Form, d: np.ndarray) -> np.ndarray:
    """Columns multiplying alpha and beta: R = alpha * d - beta * g(d)."""
    g = d * d if form == "bon" else d * np.log(np.where(d > 0, d, 1.0))
    return np.stack([d, -g], axis=1)


def r_squared(y: np.ndarray, y_hat: np.ndarray) -> float:
    """1 - SS_res / SS_tot (nan for fewer than 2 points or constant y)."""
    if len(y) < 2:
        return float("nan")
    total = float(((y - y.mean()) ** 2).sum())
    return 1 - float(((y - y_hat) ** 2).sum()) / total if total > 0 else float("nan")


@dataclass
class OveroptimizationFit:
    form: str
    alpha: float
    beta: float
    r2_fit: float  # on the points the fit was made on
    r2_held_out: float  # on the held-out high-KL points (nan when none)
    fit_max_kl: float  # points with KL <= this were fitted, the rest held out
    peak_d: float  # d where the fitted curve peaks (inf when it does not turn down)
    gold_peak: float  # the highest measured gold reward (relative to the reference) ...
    gold_peak_kl: float  # ... at this KL
    drop_after_peak: float  # gold_peak minus the last measured point (by KL) after it; 0 if the peak is last

    def as_dict(self) -> dict:
        return asdict(self)


def fit_overoptimization(kl: Sequence[float], gold: Sequence[float], form: Form, held_out_fraction: float = 0.25,
                         ) -> OveroptimizationFit:
    """Fit ``form`` to (KL, gold gain) points, holding out the top ``held_out_fraction`` of the KL range.

    ``gold`` is the gold reward minus the reference's; ``kl`` in nats (>= 0). At least 2 points must
    remain for the fit.
    """
    kl_arr, y = np.asarray(kl, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if kl_arr.shape != y.shape or kl_arr.ndim != 1:
        raise ValueError(f"kl and gold must be 1-d and of one length, got {kl_arr.shape} and {y.shape}")
    if (kl_arr < 0).any():
        raise ValueError("KL values must be >= 0 (an exact KL; clip estimator noise first)")
    if not 0 <= held_out_fraction < 1:
        raise ValueError(f"held_out_fraction={held_out_fraction} must be in [0, 1)")
    d = np.sqrt(kl_arr)
    cut = kl_arr.max() - held_out_fraction * (kl_arr.max() - kl_arr.min()) if held_out_fraction else kl_arr.max()
    fit_mask = kl_arr <= cut
    if fit_mask.sum() < 2:
        raise ValueError(f"only {int(fit_mask.sum())} point(s) below KL {cut:.3g}: lower held_out_fraction or add points")
    (alpha, beta), *_ = np.linalg.lstsq(_features(form, d[fit_mask]), y[fit_mask], rcond=None)
    held = ~fit_mask
    r2_held = r_squared(y[held], predict(form, d[held], alpha, beta)) if held.sum() >= 2 else float("nan")
    if beta <= 0:
        peak_d = math.inf
    else:
        peak_d = alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)  # dR/dd = 0
    order = np.argsort(kl_arr)
    best = int(order[np.argmax(y[order])])
    after = order[np.searchsorted(kl_arr[order], kl_arr[best], side="right"):]
    return OveroptimizationFit(
        form=form, alpha=float(alpha), beta=float(beta),
        r2_fit=r_squared(y[fit_mask], predict(form, d[fit_mask], alpha, beta)), r2_held_out=r2_held,
        fit_max_kl=float(cut), peak_d=float(peak_d), gold_peak=float(y[best]), gold_peak_kl=float(kl_arr[best]),
        drop_after_peak=float(y[best] - y[after[-1]]) if len(after) else 0.0,
    )


def overoptimization_plot(series: dict[str, tuple[Sequence[float], Sequence[float], OveroptimizationFit | None]],
                          path: str | Path, proxy: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                          ) -> None:
    """Gold gain against d = sqrt(KL) per method: points, the fitted curve (R^2 in the legend), the peak.

    ``series`` maps a name to (kl, gold gain, fit or None); ``proxy`` optionally to (kl, RM score) drawn dashed.
    """
    from rlhf.evaluation.plots import plt, save_figure  # pyplot on the Agg backend

    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    for i, (name, (kl, gold, fit)) in enumerate(series.items()):
        color = f"C{i}"
        d = np.sqrt(np.asarray(kl, dtype=np.float64))
        ax.scatter(d, gold, color=color, s=18, label=f"{name} gold")
        if fit is not None:
            grid = np.linspace(0, d.max() * 1.1, 200)
            ax.plot(grid, predict(fit.form, grid, fit.alpha, fit.beta), color=color,
                    label=f"{name} fit {fit.form}: a={fit.alpha:.2f} b={fit.beta:.2f}, held-out R2={fit.r2_held_out:.2f}")
            ax.axvline(math.sqrt(fit.fit_max_kl), color=color, alpha=0.2, linestyle=":")
            ax.scatter([math.sqrt(fit.gold_peak_kl)], [fit.gold_peak], color=color, marker="*", s=120, zorder=3)
        if proxy and name in proxy:
            pk, ps = proxy[name]
            ax.plot(np.sqrt(np.asarray(pk, dtype=np.float64)), ps, color=color, linestyle="--", marker=".",
                    label=f"{name} proxy (RM)")
    ax.set_xlabel("d = sqrt(KL(policy || reference)), sqrt(nats)")
    ax.set_ylabel("reward gain over the reference")
    ax.set_title("Over-optimization (Gao et al. 2022); star = gold peak, dotted = fit/held-out split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: the curves fill it
    save_figure(fig, path)
