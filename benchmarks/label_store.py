"""Label store speed: submits by 50 concurrent annotators, and next_item at 1k vs 100k items.

  submit    50 threads (one annotator each, own connection) loop next_item -> submit on one DB
            (WAL, synchronous=FULL, overlap 3); prints submits/s and p50/p95 submit latency.
  next_item one call (it takes a lease and commits) for an annotator on a DB with 1k and 100k items,
            half of them already full and 200 already labelled by that annotator; median of 200.
            The open-slot index keeps this flat: it must not grow with the number of items.

    python benchmarks/label_store.py [--annotators 50] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from rlhf.preferences.store import Item, LabelStore


def items(n: int, k: int = 2) -> list[Item]:
    return [Item(f"i{j:06d}", f"prompt {j}", [f"i{j:06d}c{c}" for c in range(k)], [f"text {c}" for c in range(k)])
            for j in range(n)]


def bench_submit(root: Path, annotators: int, seconds: float, overlap: int = 3) -> dict[str, float]:
    store = LabelStore(root / "submit.sqlite", overlap=overlap)
    store.add_items(items(20_000))  # more than 50 annotators label in the run
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(annotators)
    stop = time.perf_counter() + seconds + 1

    def work(name: str) -> None:
        mine = []
        start.wait()
        while time.perf_counter() < stop:
            item = store.next_item(name)
            t0 = time.perf_counter()
            store.submit(name, item.item_id, {c: r + 1 for r, c in enumerate(item.candidate_ids)},
                         request_id=f"{name}-{item.item_id}")
            mine.append(time.perf_counter() - t0)
        store.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(f"ann{i:02d}",)) for i in range(annotators)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=20)
    return {"submits": len(latencies), "submits_per_s": len(latencies) / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * q[18]}


def bench_next_item(root: Path, n: int, overlap: int = 3, calls: int = 200) -> float:
    store = LabelStore(root / f"next-{n}.sqlite", overlap=overlap)
    store.add_items(items(n))
    con = store._con()
    con.execute("UPDATE items SET taken = ? WHERE seq <= ?", (overlap, n // 2))  # the first half is full
    for j in range(n // 2, n // 2 + 200):  # the annotator under test already labelled 200 open items
        store.submit("busy", f"i{j:06d}", {f"i{j:06d}c0": 1, f"i{j:06d}c1": 2})
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        item = store.next_item("busy")
        times.append(time.perf_counter() - t0)
        store.release("busy", item.item_id)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", type=int, default=50)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        r = bench_submit(root, args.annotators, args.seconds)
        print(f"submit, {args.annotators} concurrent annotators: {r['submits']} submits, "
              f"{r['submits_per_s']:.0f}/s, p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms")
        small, large = bench_next_item(root, 1_000), bench_next_item(root, 100_000)
        print(f"next_item median: 1k items {small:.2f} ms, 100k items {large:.2f} ms (ratio {large / small:.2f})")


if __name__ == "__main__":
    main()
