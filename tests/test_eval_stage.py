"""The eval stage end to end on the shared tiny SFT policy (plus a perturbed copy posing as DPO)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from rlhf.artifacts import ArtifactError, open_artifact, write_artifact
from rlhf.cli import main
from rlhf.config import ConfigError, ModelConfig, load_config
from rlhf.evaluation.report import md_escape
from rlhf.evaluation.rollouts import sample_and_score
from rlhf.models import build_tiny_gpt2, load_causal_lm, load_tokenizer
from rlhf.policies import TRAINING_SAMPLING, sampling_record
from rlhf.reward_model import NORMALIZATION_FILE
from rlhf.sampling import SamplingConfig
from rlhf.stage import run_stage
from rlhf.stages import eval as eval_stage
from rlhf.tasks.gold import gold_reward
from rlhf.tasks.reviews import is_well_formed
from rlhf.tokenizer import train_tokenizer

pytestmark = pytest.mark.slow


@dataclass
class _Made:
    """Config recorded in the hand-made test artifacts' manifests."""

    seed: int = 0


# Small enough for a few seconds per policy: 16 prompts in one batch, 16 new tokens.
_EVAL_OVERRIDES = [
    "policies.ppo=null", "policies.dpo=null", "reward_model=null", "data.num_examples=1500", "num_prompts=16",
    "sampling.max_new_tokens=16", "sampling.batch_size=16", "bootstrap_resamples=200", "samples_in_report=3",
]


def _eval_config(run_dir, sft_path, *extra: str):
    return load_config(eval_stage.Config, "configs/tiny/eval.yaml", [
        *_EVAL_OVERRIDES, f"run_dir={run_dir}", f"reference={sft_path}", f"policies.sft={sft_path}", *extra,
    ])


@pytest.fixture(scope="module")
def perturbed_dpo(sft_artifact, tmp_path_factory):
    """The SFT policy with seeded noise on every weight, written as a 'dpo' artifact with a training log,
    declaring that it was optimised at temperature 0.7 (as a PPO recipe might be)."""
    path = tmp_path_factory.mktemp("policies") / "dpo"
    model, tokenizer = load_causal_lm(sft_artifact.path), load_tokenizer(sft_artifact.path)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    with write_artifact(path, "dpo", _Made(), {"policy": sft_artifact}) as out:
        out.extra[TRAINING_SAMPLING] = sampling_record(0.7, 12, "test fixture")
        model.save_pretrained(out.path)
        tokenizer.save_pretrained(out.path)
        (out.path / "log_history.jsonl").write_text(
            "".join(json.dumps({"step": s, "train/rewards/margins": 0.1 * s}) + "\n" for s in (1, 2, 3))
        )
    return path


@pytest.fixture(scope="module")
def reward_artifact(sft_artifact, tmp_path_factory):
    """A reward artifact with an untrained score head on the SFT body: enough to exercise RM scoring."""
    path = tmp_path_factory.mktemp("policies") / "reward"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(sft_artifact.path), num_labels=1)
    with write_artifact(path, "reward", _Made(), {"policy": sft_artifact}) as out:
        model.save_pretrained(out.path)
        load_tokenizer(sft_artifact.path).save_pretrained(out.path)
        (out.path / NORMALIZATION_FILE).write_text(json.dumps({"mean": 0.5, "std": 2.0}))
    return path


@pytest.fixture(scope="module")
def evaluated(sft_artifact, perturbed_dpo, reward_artifact, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval_run")
    config = _eval_config(run_dir, sft_artifact.path, f"policies.dpo={perturbed_dpo}", f"reward_model={reward_artifact}",
                          "also_own_setting=true")
    return run_stage(eval_stage, config, log=lambda _: None)


def _metrics(artifact) -> dict:
    return json.loads((artifact.path / "metrics.json").read_text())


def _samples(artifact) -> list[dict]:
    return [json.loads(line) for line in (artifact.path / "samples.jsonl").read_text().splitlines()]


def test_kl_is_zero_between_separately_loaded_copies_and_positive_for_perturbed_weights(
        evaluated, sft_artifact, perturbed_dpo):
    # Not through the stage's sample cache: two models loaded separately from disk (the tiny-model
    # brute-force check of the KL values is in tests/test_sampling.py).
    prompts = [r["prompt"] for r in _samples(evaluated) if r["policy"] == "sft"][:8]
    tokenizer, cfg = load_tokenizer(sft_artifact.path), SamplingConfig(max_new_tokens=16, batch_size=8)
    policy, twin = load_causal_lm(sft_artifact.path), load_causal_lm(sft_artifact.path)
    same = sample_and_score(policy, tokenizer, prompts, cfg, seed=0, reference=twin)
    assert same.kl == same.kl_k1 == same.kl_k3 == [0.0] * len(prompts)
    moved = sample_and_score(load_causal_lm(perturbed_dpo), tokenizer, prompts, cfg, seed=0, reference=policy)
    assert min(moved.kl) > 0 and min(moved.kl_k3) > 0


def test_perturbed_policy_rows_are_scored_on_their_own_text_against_the_reference_samples(evaluated):
    m = _metrics(evaluated)["policies"]["dpo"]
    assert m["kind"] == "dpo"
    assert m["kl"]["mean"] > 0 and m["kl"]["low"] <= m["kl"]["mean"] <= m["kl"]["high"]
    rows = [r for r in _samples(evaluated) if r["policy"] == "dpo"]
    reference = {r["prompt_id"]: r for r in _samples(evaluated) if r["policy"] == "sft"}  # sft is the reference here
    assert [r["gold_reward"] for r in rows] == gold_reward(r["prompt"] + r["response"] for r in rows)
    for r in rows:  # the win-rate baseline is the reference's own sample of the same prompt
        assert (r["reference_response"], r["reference_gold_reward"]) == (reference[r["prompt_id"]]["response"],
                                                                        reference[r["prompt_id"]]["gold_reward"])
    assert sum(r["response"] != r["reference_response"] for r in rows) > len(rows) // 2  # the perturbation shows
    assert m["rm_score"] is not None and all(isinstance(r["rm_score"], float) for r in rows)
    assert 0 < m["distinct_1"] <= 1 and 0 < m["distinct_2"] <= 1
    assert m["response_length"]["mean"] <= 16


def test_policy_trained_at_another_temperature_is_flagged_and_also_reported_at_its_own(evaluated):
    metrics = _metrics(evaluated)
    sft, dpo = metrics["policies"]["sft"], metrics["policies"]["dpo"]
    assert metrics["sampling"]["temperature"] == 1.0
    assert sft["training_sampling"]["temperature"] == 1.0 and sft["same_temperature"] and sft["own_setting"] is None
    assert dpo["training_sampling"]["temperature"] == 0.7 and dpo["same_temperature"] is False
    own = dpo["own_setting"]  # sampled again at its own setting, the reference too (KL and wins measured there)
    assert own["sampling"]["temperature"] == 0.7 and own["sampling"]["max_new_tokens"] == 12
    assert own["response_length"]["mean"] <= 12 < 16 and own["kl"]["mean"] != dpo["kl"]["mean"]
    report = (evaluated.path / "report.md").read_text()
    summary = report.split("## Summary")[1].split("## ")[0]
    assert "| dpo | dpo | T=0.7 (!) |" in summary and "| sft | sft | T=1 |" in summary
    assert "Not at their training temperature in this table: dpo (trained at T=0.7)" in summary
    assert "## At each policy's own training setting" in report
    assert evaluated.metrics["eval/dpo/own_setting/gold_reward"] == own["gold_reward"]["mean"]


def test_fluency_measures_are_in_the_table(evaluated):
    metrics, rows = _metrics(evaluated), _samples(evaluated)
    for name, m in metrics["policies"].items():
        mine = [r for r in rows if r["policy"] == name]
        assert [r["well_formed"] for r in mine] == [is_well_formed(r["response"]) for r in mine]
        assert m["well_formed"]["mean"] == pytest.approx(sum(r["well_formed"] for r in mine) / len(mine))
        assert 0 <= m["repeated_3grams"]["mean"] < 1
    # Noise on every weight breaks the text. (How many of the SFT policy's 16 samples, cut at 16 tokens,
    # are finished reviews varies with the fixture's CPU training: 3 to 5 of 16 seen, so no floor on it.)
    assert metrics["policies"]["dpo"]["well_formed"]["mean"] <= metrics["policies"]["sft"]["well_formed"]["mean"]
    assert "well-formed" in (evaluated.path / "report.md").read_text()


def test_report_lists_every_policy_with_plots(evaluated):
    report = (evaluated.path / "report.md").read_text()
    assert "## Policy: sft" in report and "## Policy: dpo" in report
    assert "![Gold reward vs KL to the reference](frontier.png)" in report
    assert "(training_curves.png)" in report
    assert "No training curves for: sft" in report  # the SFT artifact has no log_history.jsonl
    for png in ("frontier.png", "training_curves.png"):
        assert (evaluated.path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert evaluated.kind == "eval" and "eval/dpo/kl" in evaluated.metrics


def test_report_states_the_disjoint_prompt_split_and_the_train_vs_held_out_gap(evaluated):
    metrics = _metrics(evaluated)
    split = metrics["data_split"]
    assert split["disjoint"] and split["split"] == "by prompt" and split["train_prompts"] > 1000
    report = (evaluated.path / "report.md").read_text()
    assert (f"16 of {split['test_prompts']} distinct held-out prompts evaluated; {split['train_prompts']} distinct "
            "training prompts; the two sets are disjoint") in report
    assert "## Generalization: training vs held-out prompts" in report
    gen = metrics["generalization"]
    assert set(gen) == {"sft", "dpo"}
    for name in gen:
        assert gen[name]["gold_held_out"] == pytest.approx(metrics["policies"][name]["gold_reward"]["mean"])
        assert gen[name]["gold_gap"] == pytest.approx(gen[name]["gold_train"] - gen[name]["gold_held_out"])
    assert gen["sft"]["rm_agreement_train"] is None  # the reference itself: every gold comparison ties
    assert 0 <= gen["dpo"]["rm_agreement_held_out"] <= 1
    assert evaluated.metrics["eval/dpo/gold_gap"] == pytest.approx(gen["dpo"]["gold_gap"])


def test_same_seed_reproduces_identical_metrics(evaluated, sft_artifact, perturbed_dpo, reward_artifact, tmp_path):
    extra = [f"policies.dpo={perturbed_dpo}", f"reward_model={reward_artifact}", "also_own_setting=true"]
    again = run_stage(eval_stage, _eval_config(tmp_path, sft_artifact.path, *extra), log=lambda _: None)
    assert _metrics(again) == _metrics(evaluated)
    assert _samples(again) == _samples(evaluated)


def test_cli_runs_and_another_seed_gives_other_samples(evaluated, sft_artifact, tmp_path, capsys):
    main(eval_stage, ["--config", "configs/tiny/eval.yaml", *_EVAL_OVERRIDES, f"run_dir={tmp_path}",
                      f"reference={sft_artifact.path}", f"policies.sft={sft_artifact.path}", "seed=1"])
    assert f"report: {tmp_path / 'eval' / 'report.md'}" in capsys.readouterr().out
    main(eval_stage, ["--config", "configs/tiny/eval.yaml", *_EVAL_OVERRIDES, f"run_dir={tmp_path}",
                      f"reference={sft_artifact.path}", f"policies.sft={sft_artifact.path}", "seed=1"])
    skipped = capsys.readouterr().out
    assert "up to date" in skipped and f"report: {tmp_path / 'eval' / 'report.md'}" in skipped
    other = [r["response"] for r in _samples(open_artifact(tmp_path / "eval", "eval"))]
    assert other != [r["response"] for r in _samples(evaluated) if r["policy"] == "sft"]


def test_policy_with_another_vocabulary_is_refused(sft_artifact, tmp_path):
    tokenizer = train_tokenizer(["a tiny corpus for another tokenizer"] * 20, vocab_size=300)
    model = build_tiny_gpt2(ModelConfig(), tokenizer)
    with write_artifact(tmp_path / "other", "dpo", _Made()) as out:
        model.save_pretrained(out.path)
        tokenizer.save_pretrained(out.path)
    config = _eval_config(tmp_path, sft_artifact.path, f"policies.other={tmp_path / 'other'}", "num_prompts=2")
    with pytest.raises(ArtifactError, match="policy 'other' .* does not share the reference's vocabulary"):
        run_stage(eval_stage, config, log=lambda _: None)


def test_missing_policy_and_bad_sampling_are_clear_config_errors(sft_artifact, tmp_path):
    with pytest.raises(ConfigError, match=r"policy 'ppo': no artifact .* policies.ppo=null"):
        eval_stage.inputs(_eval_config(tmp_path, sft_artifact.path, f"policies.ppo={tmp_path / 'ppo'}"))
    with pytest.raises(ConfigError, match="sampling.top_p=1.0 sampling.top_k=0"):
        eval_stage.inputs(_eval_config(tmp_path, sft_artifact.path, "sampling.top_k=50"))
    with pytest.raises(ConfigError, match="no policies"):
        eval_stage.inputs(_eval_config(tmp_path, sft_artifact.path, "policies.sft=null"))


def test_md_escape_keeps_table_cells_intact():
    cell = md_escape("a | b *bold* <script> [link](x)\nnext")
    assert "|" not in cell.replace("\\|", "")
    assert "<script>" not in cell and "&lt;script&gt;" in cell
    assert "\\*bold\\*" in cell and "\\[link\\]" in cell and "<br>next" in cell
    assert md_escape("  ") == "*(empty)*"
