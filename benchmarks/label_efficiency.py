"""Label efficiency of the selection strategies (issue 14): reward-model quality against labels spent.

Setup, per run (cached under ``--out``): the tiny SFT policy (configs/tiny/sft.yaml), a pool of
``--pool`` training prompts x 4 sampled candidates to select pairs from, and ``--test`` held-out
prompts x ``--n`` samples to measure on. Simulated annotators label a pair by the gold reward (VADER,
rlhf/tasks/gold.py) with 25 % label flips, AlpacaFarm-style (rlhf.preferences.simulate.noisy_ranks);
each pair's flip is drawn once per seed, so every strategy sees the same annotator. Ties are labels
spent that teach nothing.

The reward model is kept small so that 5 strategies x 5 seeds x 20 retrainings finish in minutes on
2 CPU cores: an ensemble of ``--members`` Bradley-Terry linear heads on bag-of-tokens counts of the text
(the SFT tokenizer's vocabulary), member 0 on all labels, members 1.. on bootstrap resamples (as the
reward stage's ensemble_bootstrap). The gold reward is a word-level lexicon score, so this model can
learn it, and its accuracy keeps rising over the label range (a linear head on the frozen SFT policy's
hidden states stayed near chance even on noise-free labels; retraining the reward stage 500 times is
hours on 2 cores). Every strategy starts from the same ``--start`` random pairs and then runs the
standard active-learning loop: train on the labels so far, select the next ``--batch`` pairs with
``rlhf.preferences.selection.select_pairs``, label, repeat.

Measured at every step, against labels spent:
- held-out pair accuracy: how often the ensemble's mean score orders two held-out samples of a prompt
  like the gold reward (all pairs of the n samples whose gold rewards differ);
- best-of-n gold reward: per held-out prompt, the gold reward of the sample the reward model ranks
  first among the SFT policy's n samples (fixed n, so KL <= log n - (n-1)/n for every strategy).
Printed: per strategy the final values and the area under each curve (mean over the label range), with
95 % t-intervals over seeds, and the labels each strategy needs to reach 95 % of random's final
accuracy; written: results.json and label_efficiency.png.

    python benchmarks/label_efficiency.py [--quick] [--out runs/label_efficiency] [--seeds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from rlhf.config import load_config
from rlhf.console import quiet
from rlhf.data import held_out_prompts, train_prompts
from rlhf.logprobs import best_of_n_kl_bound
from rlhf.models import load_causal_lm, load_tokenizer
from rlhf.preferences.selection import STRATEGIES, SelectionConfig, select_pairs
from rlhf.preferences.simulate import noisy_ranks
from rlhf.preferences.store import Item
from rlhf.sampling import SamplingConfig, join, sample
from rlhf.stage import run_stage
from rlhf.stages import sft
from rlhf.tasks.gold import gold_reward

FLIP_RATE = 0.25  # AlpacaFarm's simulated-annotator label noise


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a small smoke run (minutes): tiny pool, 2 seeds, budgets to 120")
    p.add_argument("--out", default="runs/label_efficiency", help="where the SFT policy, samples and results go")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--pool", type=int, default=1000, help="training prompts to select pairs from (4 samples each)")
    p.add_argument("--test", type=int, default=196, help="held-out prompts to measure on")
    p.add_argument("--n", type=int, default=8, help="samples per held-out prompt (best-of-n and pair accuracy)")
    p.add_argument("--start", type=int, default=100, help="random pairs every strategy starts from")
    p.add_argument("--batch", type=int, default=100, help="pairs selected per active-learning step")
    p.add_argument("--max-labels", type=int, default=2000)
    p.add_argument("--members", type=int, default=4, help="reward-model ensemble members")
    p.add_argument("--l2", type=float, default=1e-2, help="L2 penalty of each linear head (mean-loss scale)")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.pool, args.test, args.n = 2, 120, 48, 4
        args.start, args.batch, args.max_labels = 20, 20, 120
        args.out = str(Path(args.out).with_name(Path(args.out).name + "-quick"))
    return args


# --------------------------------------------------------------------------------------------
# Setup: policy, samples, gold rewards (cached).


def setup(args) -> dict:
    out = Path(args.out)
    cache = out / f"samples-{args.pool}-{args.test}-{args.n}.pt"
    if cache.is_file():
        return torch.load(cache)
    overrides = [f"run_dir={out}", "train.report_to=[]", "num_samples=1"]
    if args.quick:
        overrides += ["data.num_examples=1000", "train.num_train_epochs=1"]
    config = load_config(sft.Config, "configs/tiny/sft.yaml", overrides)
    policy = run_stage(sft, config, log=print)
    data = config.data
    model, tokenizer = load_causal_lm(policy.path).eval(), load_tokenizer(policy.path)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=16 if args.quick else 32, batch_size=64)
    pool_prompts = train_prompts(data, args.pool)
    test_prompts = held_out_prompts(data, args.test)
    t0 = time.time()
    pool = sample(model, tokenizer, pool_prompts, sampling, num_samples=4, seed=1, progress=False)
    test = sample(model, tokenizer, test_prompts, sampling, num_samples=args.n, seed=2, progress=False)
    print(f"sampled {len(pool_prompts)}x4 pool and {len(test_prompts)}x{args.n} held-out responses in {time.time() - t0:.0f} s")
    texts = sorted({join(p, r) for ps, rs in ((pool_prompts, pool), (test_prompts, test)) for p, r_list in zip(ps, rs)
                    for r in r_list})
    result = {
        "pool": [(p, rs) for p, rs in zip(pool_prompts, pool)],
        "test": [(p, rs) for p, rs in zip(test_prompts, test)],
        "texts": texts,
        "gold": dict(zip(texts, gold_reward(texts))),
        "tokenizer": str(policy.path),
    }
    torch.save(result, cache)
    return result


# --------------------------------------------------------------------------------------------
# The small reward model: an ensemble of Bradley-Terry linear heads on bag-of-tokens counts.


def token_counts(texts: list[str], tokenizer_path: str) -> torch.Tensor:
    """[texts, vocabulary] how often each token of the SFT tokenizer occurs in each text."""
    tokenizer = load_tokenizer(tokenizer_path)
    counts = torch.zeros(len(texts), len(tokenizer))
    for row, ids in enumerate(tokenizer(texts)["input_ids"]):
        counts[row].index_add_(0, torch.tensor(ids, dtype=torch.long), torch.ones(len(ids)))
    return counts


class LinearEnsemble:
    """``member_scores`` like rlhf.reward_model.RewardModel, so select_pairs uses it unchanged."""

    def __init__(self, features: torch.Tensor, index: dict[str, int], weights: torch.Tensor):
        self.features, self.index, self.weights = features, index, weights  # weights: [members, dim]

    @property
    def ensemble_size(self) -> int:
        return len(self.weights)

    def member_scores(self, texts: list[str]) -> torch.Tensor:
        return self.weights @ self.features[[self.index[t] for t in texts]].T


def fit_head(diff: torch.Tensor, l2: float) -> torch.Tensor:
    """Bradley-Terry: minimise mean softplus(-w.(x_chosen - x_rejected)) + l2/2 |w|^2 (convex; L-BFGS)."""
    w = torch.zeros(diff.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(diff @ w)).mean() + 0.5 * l2 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def train_ensemble(setup_: dict, labels: list[tuple[str, str]], members: int, l2: float, seed: int) -> LinearEnsemble:
    feats, index = setup_["x"], setup_["index"]
    chosen = feats[[index[c] for c, _ in labels]]
    rejected = feats[[index[r] for _, r in labels]]
    diff = chosen - rejected
    rng = np.random.default_rng([seed, len(labels)])
    weights = [fit_head(diff if k == 0 else diff[rng.integers(0, len(diff), len(diff))], l2) for k in range(members)]
    return LinearEnsemble(feats, index, torch.stack(weights))


# --------------------------------------------------------------------------------------------
# Simulated annotator and measures.


def label(pair: Item, gold: dict[str, float], seed: int) -> tuple[str, str] | None:
    """(chosen text, rejected text) from a simulated annotator with 25 % flips; None for a tie."""
    texts = [join(pair.prompt, c) for c in pair.candidates]
    key = int(hashlib.sha1(f"{seed}:{pair.item_id}".encode()).hexdigest()[:8], 16)
    ranks, _ = noisy_ranks([gold[t] for t in texts], 0.0, FLIP_RATE, 0.0, np.random.default_rng(key))
    if ranks[0] == ranks[1]:
        return None
    return (texts[0], texts[1]) if ranks[0] < ranks[1] else (texts[1], texts[0])


def measure(rm: LinearEnsemble, test: list[tuple[str, list[str]]], gold: dict[str, float]) -> dict[str, float]:
    correct = total = 0
    best = []
    for prompt, responses in test:
        texts = [join(prompt, r) for r in responses]
        score = rm.member_scores(texts).mean(0).numpy()
        g = np.array([gold[t] for t in texts])
        for i, j in combinations(range(len(texts)), 2):
            if g[i] != g[j]:
                total += 1
                correct += (score[i] - score[j]) * (g[i] - g[j]) > 0
        best.append(g[int(np.argmax(score))])
    return {"accuracy": float(correct / max(total, 1)), "bon_gold": float(np.mean(best))}


# --------------------------------------------------------------------------------------------
# The active-learning loop.


def run_strategy(strategy: str, seed: int, s: dict, args) -> list[dict]:
    items = s["items"]
    gold = s["gold"]
    spent: set[str] = set()
    labels: list[tuple[str, str]] = []
    topped_up = 0  # pairs the strategy did not fill, filled with random ones

    def take(pairs: list[Item]) -> None:
        for pair in pairs:
            spent.add(pair.item_id)
            lab = label(pair, gold, seed)
            if lab is not None:
                labels.append(lab)

    # Every strategy starts from the same random pairs (the same seed), like any active-learning run.
    take(select_pairs(items, args.start, SelectionConfig(strategy="random"), seed=seed))
    curve = []
    while True:
        rm = train_ensemble(s, labels, args.members, args.l2, seed)
        curve.append({"labels": len(spent), "usable": len(labels), "random_top_up": topped_up,
                      **measure(rm, s["test"], gold)})
        if len(spent) >= args.max_labels:
            return curve
        batch = min(args.batch, args.max_labels - len(spent))
        step_seed = seed * 1000 + len(spent)
        chosen = select_pairs(items, batch, SelectionConfig(strategy=strategy), rm, seed=step_seed, exclude=spent)
        if len(chosen) < batch:  # double Thompson when the members agree on (nearly) every prompt's best
            topped_up += batch - len(chosen)
            chosen += select_pairs(items, batch - len(chosen), SelectionConfig(strategy="random"), seed=step_seed,
                                   exclude=spent | {it.item_id for it in chosen})
        take(chosen)


# --------------------------------------------------------------------------------------------
# Summary: intervals, areas, labels to 95 % of random's final accuracy.


def interval(values) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval over seeds."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def area(labels, values) -> float:
    """Area under the curve over the label range, divided by its width: the curve's mean height."""
    return float(np.trapezoid(values, labels) / (labels[-1] - labels[0]))


def labels_to_reach(labels, values, target: float) -> float | None:
    """First label count (linear interpolation between steps) where ``values`` reaches ``target``."""
    for k, v in enumerate(values):
        if v >= target:
            if k == 0:
                return float(labels[0])
            lo, hi = values[k - 1], v
            return float(labels[k - 1] + (target - lo) / (hi - lo) * (labels[k] - labels[k - 1]))
    return None


def summarize(results: dict[str, list[list[dict]]]) -> dict:
    summary = {}
    random_final = np.mean([c[-1]["accuracy"] for c in results["random"]]) if "random" in results else None
    target = 0.95 * random_final if random_final is not None else None
    for strategy, curves in results.items():
        labels = [p["labels"] for p in curves[0]]
        row = {"labels": labels}
        for metric in ("accuracy", "bon_gold"):
            per_seed = np.array([[p[metric] for p in c] for c in curves])
            row[metric] = [interval(per_seed[:, k]) for k in range(len(labels))]
            row[f"{metric}/final"] = interval(per_seed[:, -1])
            row[f"{metric}/auc"] = interval([area(labels, v) for v in per_seed])
        if target is not None:
            mean_curve = [m for m, _ in row["accuracy"]]
            row["labels_to_95pct_random_final"] = labels_to_reach(labels, mean_curve, target)
            per_seed_reach = [labels_to_reach(labels, [p["accuracy"] for p in c], target) for c in curves]
            row["labels_to_95pct/per_seed"] = per_seed_reach
        summary[strategy] = row
    return {"target_accuracy": target, "random_final_accuracy": random_final, "strategies": summary}


def print_table(summary: dict, n: int) -> None:
    print(f"\nheld-out pair accuracy vs gold and best-of-{n} gold reward (KL <= {best_of_n_kl_bound(n):.2f} nats), "
          "mean ± 95 % t-interval over seeds")
    print(f"{'strategy':24s} {'final acc':>16s} {'AUC acc':>16s} {'final BoN gold':>17s} {'AUC BoN gold':>17s} "
          f"{'labels to 95%':>14s} {'saving':>7s}")
    base = summary["strategies"].get("random", {}).get("labels_to_95pct_random_final")
    for name, row in summary["strategies"].items():
        reach = row.get("labels_to_95pct_random_final")
        saving = f"{1 - reach / base:+.0%}" if reach and base else "-"
        cells = [f"{m:.3f} ± {h:.3f}" for m, h in (row["accuracy/final"], row["accuracy/auc"])]
        cells += [f"{m:+.3f} ± {h:.3f}" for m, h in (row["bon_gold/final"], row["bon_gold/auc"])]
        print(f"{name:24s} {cells[0]:>16s} {cells[1]:>16s} {cells[2]:>17s} {cells[3]:>17s} "
              f"{(f'{reach:.0f}' if reach else 'not reached'):>14s} {saving:>7s}")
    if "bon_reference" in summary:
        print("best-of-n references: " + ", ".join(f"{k} {v:+.3f}" for k, v in summary["bon_reference"].items()))
    if summary["target_accuracy"] is not None:
        print(f"target: 95 % of random's final accuracy = {summary['target_accuracy']:.3f}")


def plot(summary: dict, path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, row in summary["strategies"].items():
        for ax, metric in zip(axes, ("accuracy", "bon_gold")):
            mean = np.array([m for m, _ in row[metric]])
            half = np.nan_to_num(np.array([h for _, h in row[metric]]))
            ax.plot(row["labels"], mean, label=name)
            ax.fill_between(row["labels"], mean - half, mean + half, alpha=0.15)
    axes[0].set(xlabel="labels spent (pairs)", ylabel="held-out pair accuracy vs gold", title="reward model")
    axes[1].set(xlabel="labels spent (pairs)", ylabel="gold reward", title=f"best-of-{n} of the SFT policy")
    reference = summary.get("bon_reference", {})
    for (name, value), style in zip(reference.items(), (":", "--")):
        axes[1].axhline(value, color="grey", ls=style, lw=1, label=name.replace("_", " "))
    axes[1].legend(fontsize=8)
    if summary["target_accuracy"] is not None:
        axes[0].axhline(summary["target_accuracy"], color="grey", ls=":", lw=1, label="95 % of random's final")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    args = parse_args(argv)
    quiet(True)
    torch.set_num_threads(2)
    t0 = time.time()
    s = setup(args)
    s["x"] = token_counts(s["texts"], s.get("tokenizer") or str(Path(args.out) / "sft"))
    s["index"] = {t: i for i, t in enumerate(s["texts"])}
    s["items"] = [Item(f"q{i:05d}", p, [f"q{i:05d}-{k}" for k in range(len(rs))], rs) for i, (p, rs) in enumerate(s["pool"])]
    print(f"setup {time.time() - t0:.0f} s; pool {len(s['items'])} prompts x 4, held out {len(s['test'])} x {args.n}")
    results: dict[str, list[list[dict]]] = {}
    for strategy in args.strategies.split(","):
        t1 = time.time()
        results[strategy] = [run_strategy(strategy, seed, s, args) for seed in range(args.seeds)]
        print(f"{strategy}: {time.time() - t1:.0f} s; final accuracy per seed "
              f"{[round(c[-1]['accuracy'], 3) for c in results[strategy]]}")
    summary = summarize(results)
    golds = [[s["gold"][join(p, r)] for r in rs] for p, rs in s["test"]]
    summary["bon_reference"] = {"sft_sample": float(np.mean(golds)), "gold_best_of_n": float(np.mean([max(g) for g in golds]))}
    print_table(summary, args.n)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "curves": results, "summary": summary}, indent=1))
    plot(summary, out / "label_efficiency.png", args.n)
    print(f"wrote {out / 'results.json'} and {out / 'label_efficiency.png'} ({time.time() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
