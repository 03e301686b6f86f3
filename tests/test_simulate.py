"""Simulated annotators and the preferences stage (simulated and human label sources)."""

import pytest
from datasets import load_from_disk

from rlhf.artifacts import open_artifact
from rlhf.config import ConfigError, load_config
from rlhf.preferences.agreement import agreement
from rlhf.preferences.export import candidate_items
from rlhf.preferences.simulate import SimulatorConfig, item_gold, noisy_ranks, simulate
from rlhf.preferences.store import Item, LabelStore
from rlhf.sampling import join
from rlhf.stage import run_stage
from rlhf.stages import generate, preferences
from rlhf.tasks.gold import gold_reward

WORDS = ["wonderful", "terrible", "okay", "great", "awful", "boring", "superb", "fine", "bad", "lovely"]


def _items(n=24, k=4):
    """Items whose candidates have clearly different gold rewards (one sentiment word each)."""
    return [Item(f"i{i}", f"Review {i}:", [f"i{i}c{c}" for c in range(k)],
                 [f" it was {WORDS[(i + 3 * c) % len(WORDS)]}." for c in range(k)]) for i in range(n)]


# Hand-ordered candidates: an annotator that follows the gold reward (sentiment) ranks them 1, 2, 3.
BY_SENTIMENT = {1: " it was wonderful, I loved it.", 2: " it was a film.", 3: " it was awful, I hated it."}


def _ordered_items(n=12):
    """Items whose candidates are the three above, in a different order per item."""
    items = []
    for i in range(n):
        order = [(i + c) % 3 + 1 for c in range(3)] if i % 2 else [3 - (i + c) % 3 for c in range(3)]
        items.append(Item(f"o{i}", f"Review {i}:", [f"o{i}r{r}" for r in order], [BY_SENTIMENT[r] for r in order]))
    return items


def _store(tmp_path, name="sim.sqlite", items=None):
    store = LabelStore(tmp_path / name)
    store.add_items(items or _items())
    return store


def test_noise_free_annotators_rank_by_gold_reward(tmp_path):
    store = _store(tmp_path, items=_ordered_items())
    counts = simulate(store, SimulatorConfig(num_annotators=3, overlap=2, temperature=0.0, tie_margin=0.0))
    labels = store.labels()
    assert counts["sim/labels"] == len(labels) == 12 * 2
    for lab in labels:
        # The candidate id ends with its hand-given rank (o<i>r<rank>).
        assert lab.ranks == {c: int(c[-1]) for c in store.item(lab.item_id).candidate_ids}


def test_pairwise_order_follows_bradley_terry_and_flips_at_their_rate():
    import math

    import numpy as np

    # Gumbel noise of scale T: P(a above b) = sigmoid((gold_a - gold_b) / T), e.g. sigmoid(1) = 0.731.
    # (Gaussian noise of the same scale would give 0.760; no noise 1.0.)
    rng = np.random.default_rng(0)
    n = 10_000
    for temperature, expected in [(0.1, 1 / (1 + math.exp(-1))), (0.2, 1 / (1 + math.exp(-0.5)))]:
        above = sum(noisy_ranks([0.1, 0.0], temperature, 0.0, 0.0, rng)[0] == [1, 2] for _ in range(n)) / n
        assert above == pytest.approx(expected, abs=0.02)  # binomial std is 0.005
    flips = [noisy_ranks([0.5, 0.0], 0.0, 0.3, 0.0, rng) for _ in range(n)]
    assert sum(f for _, f in flips) / n == pytest.approx(0.3, abs=0.02)
    assert all(ranks == ([2, 1] if flipped else [1, 2]) for ranks, flipped in flips)


def test_labels_go_through_the_store_with_overlap(tmp_path):
    store = _store(tmp_path)
    simulate(store, SimulatorConfig(num_annotators=3, overlap=2))
    by_item = {}
    for lab in store.labels(latest_only=False):
        by_item.setdefault(lab.item_id, []).append(lab.annotator)
        assert lab.supersedes is None and lab.meta["simulated"] is True
    assert len(by_item) == 24
    assert all(len(a) == len(set(a)) == 2 for a in by_item.values())  # 2 distinct annotators, no revisions
    assert {a for anns in by_item.values() for a in anns} == {"sim-0", "sim-1", "sim-2"}
    assert store.progress("sim-0", 2)["done_items"] == 24
    # Running again finds nothing left to label.
    assert simulate(store, SimulatorConfig(num_annotators=3, overlap=2))["sim/labels"] == 0


def test_noise_and_flips_lower_agreement(tmp_path):
    cfg = dict(num_annotators=3, overlap=3, tie_margin=0.0)
    exact = _store(tmp_path, "exact.sqlite")
    simulate(exact, SimulatorConfig(temperature=0.0, **cfg))
    noisy = _store(tmp_path, "noisy.sqlite")
    counts = simulate(noisy, SimulatorConfig(temperature=0.5, flip_rate=0.3, **cfg))
    a_exact, a_noisy = agreement(exact.labels()), agreement(noisy.labels())
    assert a_exact.pairwise_rate == 1.0 and a_exact.kendall_tau == pytest.approx(1.0)
    assert a_noisy.pairwise_rate < 0.8 and a_noisy.kendall_tau < 0.6
    assert a_noisy.krippendorff_alpha < a_exact.krippendorff_alpha
    assert 0 < counts["sim/flipped"] < counts["sim/labels"]


def test_flips_reverse_and_close_rewards_tie():
    import numpy as np

    rng = np.random.default_rng(0)
    assert noisy_ranks([0.9, -0.5, 0.1], 0.0, 0.0, 0.0, rng) == ([1, 3, 2], False)
    assert noisy_ranks([0.9, -0.5, 0.1], 0.0, 1.0, 0.0, rng) == ([3, 1, 2], True)
    # 0.50 and 0.45 are within the margin of the group's best; -0.2 starts a new group.
    assert noisy_ranks([0.45, 0.5, -0.2], 0.0, 0.0, 0.1, rng) == ([1, 1, 2], False)
    # Same seed, same labels.
    a = noisy_ranks([0.3, 0.2, 0.1, 0.0], 0.5, 0.2, 0.0, np.random.default_rng(3))
    assert a == noisy_ranks([0.3, 0.2, 0.1, 0.0], 0.5, 0.2, 0.0, np.random.default_rng(3))


@pytest.fixture(scope="module")
def tiny_candidates(sft_artifact, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("prefs_run")
    cfg = load_config(generate.Config, "configs/tiny/generate.yaml", [
        f"run_dir={run_dir}", f"policy={sft_artifact.path}", "data.num_examples=600", "num_prompts=24",
        "num_candidates=4", "sampling.max_new_tokens=24",
    ])
    return run_dir, run_stage(generate, cfg, log=lambda _: None)


def _prefs_config(run_dir, *extra):
    return load_config(preferences.Config, "configs/tiny/preferences.yaml", [f"run_dir={run_dir}", *extra])


@pytest.mark.slow
def test_preferences_stage_end_to_end_prefers_higher_gold_reward(tiny_candidates):
    run_dir, candidates = tiny_candidates
    art = run_stage(preferences, _prefs_config(run_dir, "simulator.temperature=0.05"), log=lambda _: None)
    assert art.manifest["inputs"]["candidates"]["fingerprint"] == candidates.fingerprint
    data = load_from_disk(str(art.path / "data"))
    rows = [r for split in ("train", "test") for r in data[split]]
    assert len(data["train"]) > 0 and len(data["test"]) > 0
    assert all(a.startswith("sim-") for r in rows for a in r["annotators"])
    chosen = gold_reward(join(r["prompt"], r["chosen"]) for r in rows)
    rejected = gold_reward(join(r["prompt"], r["rejected"]) for r in rows)
    better = sum(c > r for c, r in zip(chosen, rejected)) / len(rows)
    assert better >= 0.85, better
    assert art.metrics["agreement/overlapping_items"] > 0 and art.metrics["sim/labels"] == 24 * 2

    # Re-running rebuilds the simulated DB from scratch: same config, same pairs.
    again = run_stage(preferences, _prefs_config(run_dir, "simulator.temperature=0.05"), force=True,
                      log=lambda _: None)
    assert load_from_disk(str(again.path / "data"))["train"]["chosen"] == data["train"]["chosen"]


@pytest.fixture
def fixture_candidates(tmp_path):
    """Hand-written candidates (no policy needed): enough for the label-source logic."""
    from annotation_fixtures import make_candidates_artifact

    make_candidates_artifact(tmp_path / "candidates", num_prompts=6)
    return tmp_path, open_artifact(tmp_path / "candidates", "candidates")


def test_human_mode_exports_only_human_labels_and_guides_when_empty(fixture_candidates, tmp_path):
    run_dir, candidates = fixture_candidates
    db = tmp_path / "labels.sqlite"
    human = _prefs_config(run_dir, f"db={db}", "annotators=human", f"output_dir={tmp_path}/prefs")
    with pytest.raises(ConfigError, match="no label DB.*python -m annotation_ui --candidates"):
        run_stage(preferences, human, log=lambda _: None)

    # The simulated annotators label everything in a DB of their own: the human DB is not even created.
    sim = run_stage(preferences, _prefs_config(run_dir, f"db={db}", f"output_dir={tmp_path}/sim"), log=lambda _: None)
    assert not db.exists() and sim.metrics["sim/labels"] > 0
    with pytest.raises(ConfigError, match="no label DB at .*python -m annotation_ui --candidates"):
        run_stage(preferences, human, log=lambda _: None)

    # People label (one of them happens to be called sim-x: still a person, still exported).
    store = LabelStore(db, overlap=2)
    store.add_items(candidate_items(run_dir / "candidates")[1])
    for name, item in [("alice", store.items()[0]), ("alice", store.items()[1]), ("sim-x", store.items()[2])]:
        gold = item_gold(item)
        best, worst = gold.index(max(gold)), gold.index(min(gold))
        store.submit(name, item.item_id, {c: 1 if k == best else 3 if k == worst else 2
                                          for k, c in enumerate(item.candidate_ids)})
    art = run_stage(preferences, human, log=lambda _: None)
    data = load_from_disk(str(art.path / "data"))
    rows = [r for split in ("train", "test") for r in data[split]]
    assert {a for r in rows for a in r["annotators"]} == {"alice", "sim-x"}
    assert art.metrics["labels/total"] == 3

    # Unchanged DB: skipped as up to date; one more human label: exported again without --force.
    logs = []
    assert run_stage(preferences, human, log=logs.append).fingerprint == art.fingerprint
    assert "up to date" in logs[0]
    item = store.items()[3]
    store.submit("bob", item.item_id, {c: k + 1 for k, c in enumerate(item.candidate_ids)})
    assert run_stage(preferences, human, log=lambda _: None).metrics["labels/total"] == 4

    # Re-running the simulation (forced, same or new settings) never touches the human DB; the
    # simulated labels of the first run are still there, beside the new run's file.
    before = [(lab.label_id, lab.annotator) for lab in store.labels(latest_only=False)]
    for extra in ([], ["simulator.seed=1"]):
        again = run_stage(preferences, _prefs_config(run_dir, f"db={db}", f"output_dir={tmp_path}/sim", *extra),
                          force=True, log=lambda _: None)
        assert again.metrics["sim/labels"] == sim.metrics["sim/labels"]
    assert [(lab.label_id, lab.annotator) for lab in store.labels(latest_only=False)] == before
    assert len(list((run_dir / "labels.sim").glob("*.sqlite"))) == 2

    # pipelines.run --annotate after a simulated run: the app's DB (the human one) serves items.
    assert store.next_item("carol", 2) is not None


def test_gold_agreement_metric_of_exact_and_reversed_annotators(fixture_candidates, tmp_path):
    # Every fixture prompt has a "...the film was great." candidate, the one a sentiment-following
    # annotator ranks first: exact annotators always choose it, annotators who reverse every ranking never.
    run_dir, _ = fixture_candidates
    for flip_rate, chosen_better in [(0.0, 1.0), (1.0, 0.0)]:
        art = run_stage(preferences, _prefs_config(
            run_dir, f"db={tmp_path}/{flip_rate}.sqlite", f"output_dir={tmp_path}/prefs-{flip_rate}",
            "simulator.temperature=0", f"simulator.flip_rate={flip_rate}"), log=lambda _: None)
        data = load_from_disk(str(art.path / "data"))
        rows = [r for split in ("train", "test") for r in data[split]]
        side = "chosen" if flip_rate == 0 else "rejected"
        assert len(rows) == 6 and all("the film was great." in r[side] for r in rows)
        assert art.metrics["gold/chosen_better"] == chosen_better
        assert art.metrics["gold/margin_mean"] > 0 if chosen_better else art.metrics["gold/margin_mean"] < 0


def test_bad_simulator_settings_are_refused(fixture_candidates, tmp_path):
    run_dir, _ = fixture_candidates
    for override, message in [("simulator.flip_rate=1.5", "flip_rate"), ("simulator.overlap=0", "overlap"),
                              ("annotators=robots", "annotators"), ("pairing=best", "pairing.*best_vs_worst")]:
        with pytest.raises(ConfigError, match=message):
            run_stage(preferences, _prefs_config(run_dir, f"db={tmp_path}/x.sqlite", override), log=lambda _: None)
