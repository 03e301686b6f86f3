"""Annotator quality control, measured with simulated annotators on synthetic pairs (no training).

Per seed: a fresh label DB of ``--items`` pairs whose two candidates get uniform(-1, 1) gold
rewards; pairs with a reward margin >= ``--margin`` become gold items (rlhf.preferences.quality.
gold_from_rewards). Honest annotators rank by the gold reward with ``--noise`` label flips
(AlpacaFarm-style, rlhf.preferences.simulate.noisy_ranks); careless ones press a random button
(A, B, tie, both bad). Every annotator works through the app's assignment (quality.choose_item,
overlap 3) with the quality-control hook after each label, until paused or ``--labels`` labels.

Prints the share of careless annotators paused within 20 labels and the share of honest ones
paused at all, over all seeds (targets: 100 % and < 5 %).

    python benchmarks/qc_study.py [--seeds 20] [--honest 20] [--careless 5] [--labels 200]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from rlhf.preferences import quality
from rlhf.preferences.simulate import label_with_qc
from rlhf.preferences.store import Item, LabelStore


def one_seed(seed: int, args, root: str) -> dict:
    rng = np.random.default_rng(seed)
    items = [Item(f"i{i:05d}", f"prompt {i}", [f"i{i:05d}a", f"i{i:05d}b"], ["A", "B"]) for i in range(args.items)]
    rewards = {it.item_id: list(rng.uniform(-1, 1, size=2)) for it in items}
    store = LabelStore(os.path.join(root, f"seed{seed}.sqlite"))
    store.add_items(items)
    quality.add_gold_items(store, quality.gold_from_rewards(items, rewards, args.margin), source="simulated")
    qc = quality.QCConfig()
    careless = [label_with_qc(store, f"rand-{i}", rewards, qc, 3, args.labels, rng, careless=True)
                for i in range(args.careless)]
    honest = [label_with_qc(store, f"honest-{i}", rewards, qc, 3, args.labels, rng, flip_rate=args.noise)
              for i in range(args.honest)]
    store.close()
    return {"careless_paused_by_20": sum(r["paused_at"] is not None and r["paused_at"] <= 20 for r in careless),
            "careless_paused_at": [r["paused_at"] for r in careless],
            "honest_paused": sum(r["paused_at"] is not None for r in honest),
            "honest_labels": sum(r["labels"] for r in honest)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--honest", type=int, default=20)
    p.add_argument("--careless", type=int, default=5)
    p.add_argument("--labels", type=int, default=200, help="labels per annotator at most")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--margin", type=float, default=0.8, help="gold-reward margin that makes a gold item")
    p.add_argument("--noise", type=float, default=0.25, help="honest annotators' label flip rate")
    args = p.parse_args()
    start = time.time()
    # /dev/shm when there is one: the study measures the QC rule, not fsync.
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as root:
        runs = [one_seed(s, args, root) for s in range(args.seeds)]
    n_careless, n_honest = args.seeds * args.careless, args.seeds * args.honest
    paused_at = [a for r in runs for a in r["careless_paused_at"] if a is not None]
    out = {
        "careless_paused_within_20": sum(r["careless_paused_by_20"] for r in runs) / n_careless,
        "careless_paused_at_max": max(paused_at) if paused_at else None,
        "careless_paused_at_mean": float(np.mean(paused_at)) if paused_at else None,
        "honest_paused": sum(r["honest_paused"] for r in runs) / n_honest,
        "honest_annotators": n_honest, "careless_annotators": n_careless,
        "honest_labels_mean": sum(r["honest_labels"] for r in runs) / n_honest,
        "seconds": round(time.time() - start, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
