"""Selection strategies pick what their definitions say, on hand-made items with hand-set scores;
the select stage writes a candidates artifact that the preferences stage and the annotation app read."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from rlhf.artifacts import open_artifact
from rlhf.candidates import KIND as CANDIDATES, load_candidates
from rlhf.config import ConfigError, load_config
from rlhf.preferences.selection import SelectionConfig, select_pairs
from rlhf.preferences.store import Item
from rlhf.sampling import join


class FakeEnsemble:
    """member_scores from a table: text -> one score per member."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table
        self.ensemble_size = len(next(iter(table.values())))

    def member_scores(self, texts):
        return torch.tensor([self.table[t] for t in texts]).T


def item(pid: str, prompt: str, k: int = 3) -> Item:
    return Item(pid, prompt, [f"{pid}-c{i}" for i in range(k)], [f" answer {i} of {pid}" for i in range(k)])


def scores_for(items: list[Item], per_candidate: dict[str, list[float]]) -> FakeEnsemble:
    """per_candidate: candidate id -> member scores (missing: 0 from every member)."""
    members = len(next(iter(per_candidate.values())))
    return FakeEnsemble({join(it.prompt, c): per_candidate.get(cid, [0.0] * members)
                         for it in items for cid, c in zip(it.candidate_ids, it.candidates)})


def pair_ids(chosen: list[Item]) -> list[set[str]]:
    return [set(it.candidate_ids) for it in chosen]


def test_entropy_picks_the_near_tie():
    items = [item("p0", "first prompt"), item("p1", "second prompt")]
    # p0: c0 and c1 within 0.05 of each other (a coin flip); every other pair is at least 2 apart.
    rm = scores_for(items, {"p0-c0": [1.0], "p0-c1": [1.05], "p0-c2": [5.0], "p1-c0": [-4.0], "p1-c1": [0.0],
                            "p1-c2": [4.0]})
    chosen = select_pairs(items, 1, SelectionConfig(strategy="entropy"), rm)
    assert pair_ids(chosen) == [{"p0-c0", "p0-c1"}]


def test_disagreement_picks_the_pair_members_disagree_on():
    items = [item("p0", "first prompt"), item("p1", "second prompt")]
    # Every member is unsure about p0's c0 vs c1 (the entropy pick), but the members agree; on p1's c0 vs
    # c1 they are each confident and opposite: the disagreement pick.
    rm = scores_for(items, {"p0-c0": [0.0, 0.0, 0.0], "p0-c1": [0.1, 0.1, 0.1], "p0-c2": [6.0, 6.0, 6.0],
                            "p1-c0": [3.0, -3.0, 3.0], "p1-c1": [-3.0, 3.0, -3.0], "p1-c2": [9.0, 9.0, 9.0]})
    chosen = select_pairs(items, 1, SelectionConfig(strategy="ensemble_disagreement"), rm)
    assert pair_ids(chosen) == [{"p1-c0", "p1-c1"}]
    assert pair_ids(select_pairs(items, 1, SelectionConfig(strategy="entropy"), rm)) == [{"p0-c0", "p0-c1"}]


def test_diversity_covers_every_prompt_cluster_before_a_repeat():
    # Three clusters of near-identical prompts (hotel / concert / restaurant), two prompts each.
    prompts = ["we stayed at the harbor hotel", "we stayed at the harbor hotel again",
               "the jazz concert downtown", "the jazz concert downtown last night",
               "dinner at the noodle place", "dinner at the noodle place on friday"]
    items = [item(f"p{i}", p) for i, p in enumerate(prompts)]
    for seed in range(5):
        chosen = select_pairs(items, 6, SelectionConfig(strategy="diversity"), seed=seed)
        clusters = [int(it.candidate_ids[0][1]) // 2 for it in chosen]
        assert sorted(clusters[:3]) == [0, 1, 2]  # one pair per cluster first
        assert len({it.prompt for it in chosen}) == 6  # then the other prompt of each, before a second pair


def test_double_thompson_pairs_the_members_favourites():
    items = [item("p0", "first prompt", k=4), item("p1", "second prompt", k=4)]
    # Member 0 likes c0 best, member 1 likes c3 best, on every prompt.
    table = {f"{p}-c{i}": [s0, s1] for p in ("p0", "p1") for i, (s0, s1) in enumerate([(5, 0), (1, 1), (0, 0), (0, 5)])}
    chosen = select_pairs(items, 2, SelectionConfig(strategy="double_thompson"), scores_for(items, table))
    assert sorted(map(sorted, pair_ids(chosen))) == [["p0-c0", "p0-c3"], ["p1-c0", "p1-c3"]]
    with pytest.raises(ConfigError, match="ensemble"):
        select_pairs(items, 2, SelectionConfig(strategy="double_thompson"), FakeEnsemble({"x": [1.0]}))


def test_random_is_seeded_uniform_and_within_budget():
    items = [item(f"p{i}", f"prompt number {i}", k=4) for i in range(5)]  # 30 pairs
    config = SelectionConfig(strategy="random")
    assert select_pairs(items, 7, config, seed=3) == select_pairs(items, 7, config, seed=3)
    assert select_pairs(items, 7, config, seed=3) != select_pairs(items, 7, config, seed=4)
    counts = Counter(it.item_id for seed in range(600) for it in select_pairs(items, 5, config, seed=seed))
    assert len(counts) == 30 and max(counts.values()) < 2 * min(counts.values())  # each ~100 times


@pytest.mark.parametrize("strategy", ["random", "entropy", "ensemble_disagreement", "diversity", "double_thompson"])
def test_pairs_keep_candidate_ids_and_respect_budget_and_exclude(strategy):
    items = [item(f"p{i}", f"prompt number {i}", k=4) for i in range(4)]
    rng = np.random.default_rng(0)
    rm = scores_for(items, {cid: list(rng.normal(size=3)) for it in items for cid in it.candidate_ids})
    chosen = select_pairs(items, 5, SelectionConfig(strategy=strategy), rm)
    assert 0 < len(chosen) <= 5 and len({it.item_id for it in chosen}) == len(chosen)
    by_id = {it.item_id: it for it in items}
    for it in chosen:
        source = by_id[it.item_id.split("~")[0]]
        assert len(it.candidate_ids) == 2 and set(it.candidate_ids) <= set(source.candidate_ids)
        assert [dict(zip(source.candidate_ids, source.candidates))[c] for c in it.candidate_ids] == it.candidates
    again = select_pairs(items, 24, SelectionConfig(strategy=strategy), rm, exclude={it.item_id for it in chosen})
    assert not {it.item_id for it in again} & {it.item_id for it in chosen}


def test_all_keeps_items_and_active_strategies_need_a_reward_model():
    items = [item(f"p{i}", f"prompt {i}") for i in range(3)]
    assert select_pairs(items, None, SelectionConfig()) == items
    for strategy in ("entropy", "ensemble_disagreement", "double_thompson"):
        with pytest.raises(ConfigError, match="reward_model="):
            select_pairs(items, 2, SelectionConfig(strategy=strategy))


def test_stage_output_feeds_the_preferences_stage_and_the_app(tmp_path):
    from annotation_fixtures import make_candidates_artifact
    from annotation_ui.__main__ import import_candidates
    from rlhf.preferences.store import LabelStore
    from rlhf.stage import run_stage
    from rlhf.stages import preferences, select

    source = make_candidates_artifact(tmp_path / "candidates", num_prompts=8, num_candidates=4)
    config = load_config(select.Config, "configs/tiny/select.yaml",
                         [f"run_dir={tmp_path}", "selection.budget=16", "selection.strategy=diversity"])
    selected = run_stage(select, config, log=lambda _: None)
    assert selected.kind == CANDIDATES and selected.metrics["selected/prompts"] == 8
    rows = load_candidates(selected)
    assert len(rows) == 16 and all(len(ids) == 2 for ids in rows["candidate_ids"])

    store = LabelStore(tmp_path / "app.sqlite")
    assert import_candidates(store, str(selected.path)) == 16  # the app serves exactly the selected pairs
    assert {it.item_id for it in store.items()} == set(rows["prompt_id"])

    prefs = load_config(preferences.Config, "configs/tiny/preferences.yaml",
                        [f"run_dir={tmp_path}", f"candidates={selected.path}", "simulator.temperature=0", "test_fraction=0.25"])
    artifact = run_stage(preferences, prefs, log=lambda _: None)
    assert artifact.metrics["items/labelled"] == 16
    assert artifact.manifest["inputs"]["candidates"]["fingerprint"] == selected.fingerprint
    from rlhf.preferences.artifact import load_pairs

    pairs = load_pairs(artifact)  # two pairs of one prompt never straddle the train/test split
    split_prompts = {name: set(pairs[name]["prompt"]) for name in ("train", "test")}
    assert split_prompts["test"] and not split_prompts["train"] & split_prompts["test"]

    with pytest.raises(ConfigError, match="reward_model="):
        run_stage(select, load_config(select.Config, "configs/tiny/select.yaml",
                                      [f"run_dir={tmp_path}", "selection.strategy=entropy"]), log=lambda _: None)


def make_reward_artifact(path, members: int):
    """A reward artifact of untrained tiny GPT-2 scorers (member 0 at the top, the rest under members/)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from rlhf.artifacts import write_artifact
    from rlhf.reward_model import MEMBERS_DIR
    from rlhf.tokenizer import train_tokenizer

    tokenizer = train_tokenizer([f"Review #{i}: This movie was great dull" for i in range(20)], 300)
    with write_artifact(path, "reward", SelectionConfig()) as out:
        for k in range(members):
            torch.manual_seed(k)
            model = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_head=2, n_embd=16,
                                                             n_positions=256, num_labels=1,
                                                             pad_token_id=tokenizer.pad_token_id))
            target = out.path / (f"{MEMBERS_DIR}/{k}" if k else "")
            model.save_pretrained(target)
            tokenizer.save_pretrained(target)
    return path


def test_stage_scores_pairs_with_a_reward_model_ensemble_artifact(tmp_path):
    from annotation_fixtures import make_candidates_artifact
    from rlhf.stage import run_stage
    from rlhf.stages import select

    make_candidates_artifact(tmp_path / "candidates", num_prompts=4, num_candidates=3)
    single, ensemble = make_reward_artifact(tmp_path / "rm1", 1), make_reward_artifact(tmp_path / "rm3", 3)
    for strategy in ("entropy", "ensemble_disagreement", "double_thompson"):
        config = load_config(select.Config, "configs/tiny/select.yaml",
                             [f"run_dir={tmp_path}", f"reward_model={ensemble}", f"selection.strategy={strategy}",
                              "selection.budget=5", f"output_dir={tmp_path}/{strategy}"])
        rows = load_candidates(run_stage(select, config, log=lambda _: None))
        assert 0 < len(rows) <= 5 and all(len(ids) == 2 for ids in rows["candidate_ids"])
    config.reward_model, config.output_dir = str(single), str(tmp_path / "single")
    with pytest.raises(ConfigError, match="ensemble_size"):
        run_stage(select, config, log=lambda _: None)
