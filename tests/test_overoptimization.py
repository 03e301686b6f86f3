"""Gao et al. (2022) over-optimization fits: recover known coefficients from synthetic points."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf.evaluation.overoptimization import fit_overoptimization, overoptimization_plot, predict


@pytest.mark.parametrize("form,alpha,beta", [("bon", 1.2, 0.3), ("rl", 0.5, 0.3)])
def test_fit_recovers_alpha_beta_and_extrapolates(form, alpha, beta):
    rng = np.random.default_rng(0)
    kl = np.linspace(0.05, 30, 40)
    gold = predict(form, np.sqrt(kl), alpha, beta) + rng.normal(0, 0.01, kl.shape)
    fit = fit_overoptimization(kl, gold, form, held_out_fraction=0.3)
    assert fit.alpha == pytest.approx(alpha, abs=0.03) and fit.beta == pytest.approx(beta, abs=0.03)
    assert fit.r2_fit > 0.98 and fit.r2_held_out > 0.9  # the form extrapolates to the held-out high KL
    assert fit.fit_max_kl < kl.max()
    # The measured peak is where the curve turns down; the gold drops after it.
    true_peak_d = alpha / (2 * beta) if form == "bon" else np.exp(alpha / beta - 1)
    assert fit.peak_d == pytest.approx(true_peak_d, rel=0.1)
    assert np.sqrt(fit.gold_peak_kl) == pytest.approx(true_peak_d, abs=0.6)
    assert fit.drop_after_peak == pytest.approx(gold.max() - gold[-1])


def test_wrong_form_fits_worse_on_held_out_and_bad_input_is_refused(tmp_path):
    kl = np.linspace(0.1, 40, 30)
    gold = predict("bon", np.sqrt(kl), 1.0, 0.2)
    right, wrong = fit_overoptimization(kl, gold, "bon"), fit_overoptimization(kl, gold, "rl")
    assert right.r2_held_out > 0.999 > wrong.r2_held_out
    with pytest.raises(ValueError, match="only 1 point"):
        fit_overoptimization([0.1, 10.0], [0.1, 0.2], "rl", held_out_fraction=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        fit_overoptimization([-1.0, 1.0, 2.0], [0.0, 0.1, 0.2], "rl")
    overoptimization_plot({"best-of-n": (kl, gold, right)}, tmp_path / "o.png", proxy={"best-of-n": (kl, gold * 1.5)})
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"
