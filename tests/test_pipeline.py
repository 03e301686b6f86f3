"""pipelines.run: the whole chain on a miniature config, skipping, --from, resuming after a kill."""

import subprocess
import sys

import pytest

from rlhf.artifacts import open_artifact
from rlhf.config import ConfigError
from rlhf.pipeline import DEFAULT_STAGES, load_pipeline_config, run_pipeline
from rlhf.stages import reward

# Every stage, as small as it can be while still doing its real work.
MINIATURE = [
    "sft.data.num_examples=300", "sft.train.max_steps=12", "sft.num_samples=1", "sft.train.report_to=[]",
    "generate.num_prompts=12", "generate.num_candidates=3", "generate.sampling.max_new_tokens=12",
    "reward.train.max_steps=3", "reward.num_eval_prompts=4", "reward.samples_per_prompt=1",
    "reward.sampling.max_new_tokens=12",
    "ppo.total_episodes=16", "ppo.rollout_batch_size=8", "ppo.mini_batch_size=8",
    "ppo.micro_batch_size=8", "ppo.num_ppo_epochs=1", "ppo.response_length=12", "ppo.eval_prompts=4",
    "ppo.report_to=[]",
    "dpo.train.max_steps=2", "dpo.num_eval_prompts=4", "dpo.sampling.max_new_tokens=12",
    "eval.num_prompts=4", "eval.sampling.max_new_tokens=12", "eval.bootstrap_resamples=50",
]


def miniature_config(run_dir, *extra):
    return load_pipeline_config("configs/tiny/pipeline.yaml", [f"run_dir={run_dir}", *MINIATURE, *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pipeline")
    logs = []
    artifacts = run_pipeline(miniature_config(run_dir), log=logs.append)
    return run_dir, artifacts, logs


@pytest.mark.slow
def test_whole_chain_produces_every_artifact(finished_run):
    run_dir, artifacts, logs = finished_run
    assert list(artifacts) == DEFAULT_STAGES
    for name, art in artifacts.items():
        assert art.path.parent == run_dir
        assert open_artifact(art.path, art.kind).kind == art.kind
    report = (artifacts["eval"].path / "report.md").read_text()
    assert all(f"| {policy} |" in report for policy in ("sft", "ppo", "dpo"))
    # the downstream stages really consumed the upstream artifacts of this run
    assert artifacts["ppo"].manifest["inputs"]["reward_model"]["fingerprint"] == artifacts["reward"].fingerprint


@pytest.mark.slow
def test_second_run_skips_every_stage_and_from_reruns_the_tail(finished_run):
    run_dir, artifacts, _ = finished_run
    logs = []
    again = run_pipeline(miniature_config(run_dir), log=logs.append)
    skipped = [line for line in logs if "up to date, skipped" in line]
    assert len(skipped) == len(DEFAULT_STAGES)
    assert {n: a.fingerprint for n, a in again.items()} == {n: a.fingerprint for n, a in artifacts.items()}

    logs = []
    run_pipeline(miniature_config(run_dir), from_stage="dpo", log=logs.append)
    ran = [line.split("]")[0].strip("[") for line in logs if "running ->" in line]
    assert ran == ["dpo", "eval"]


@pytest.mark.slow
def test_moved_run_with_other_bookkeeping_skips_every_stage(tmp_path, finished_run):
    """A run directory copied elsewhere, re-run there with other resume/logging settings: nothing re-trains."""
    import shutil

    source_dir, artifacts, _ = finished_run
    moved = tmp_path / "moved"
    shutil.copytree(source_dir, moved)
    bookkeeping = ["sft.resume=false", "ppo.resume=false", "sft.train.logging_steps=1", "dpo.train.report_to=[tensorboard]",
                   "ppo.log_every=2", "ppo.checkpoint_every=1"]
    logs = []
    again = run_pipeline(miniature_config(moved, *bookkeeping), log=logs.append)
    assert sum("up to date, skipped" in line for line in logs) == len(DEFAULT_STAGES)
    assert all(art.path.parent == moved for art in again.values())


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(tmp_path, monkeypatch, finished_run):
    """Kill the run in the reward stage; the re-run skips what finished and completes the rest."""
    source_dir, _, _ = finished_run
    import shutil

    for stage in ("sft", "candidates", "preferences"):  # a run that got as far as the reward stage
        shutil.copytree(source_dir / stage, tmp_path / stage)
    shutil.copy(source_dir / "labels.sqlite", tmp_path / "labels.sqlite")
    config = miniature_config(tmp_path, "stages=[sft,generate,preferences,reward,dpo]")
    original = reward.run

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reward, "run", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, log=lambda _: None)
    assert not (tmp_path / "reward").exists()
    monkeypatch.setattr(reward, "run", original)
    logs = []
    artifacts = run_pipeline(config, log=logs.append)
    ran = [line.split("]")[0].strip("[") for line in logs if "running ->" in line]
    assert ran == ["reward", "dpo"] and artifacts["dpo"].kind == "dpo"


def test_pipeline_config_errors():
    with pytest.raises(ConfigError, match="unknown stage.*ppx"):
        load_pipeline_config("configs/tiny/pipeline.yaml", ["stages=[sft,ppx]"])
    with pytest.raises(ConfigError, match=r"ppo\.learnin_rate"):
        load_pipeline_config("configs/tiny/pipeline.yaml", ["ppo.learnin_rate=1"])
    with pytest.raises(ConfigError, match="--from eval: not one of the configured stages"):
        run_pipeline(load_pipeline_config(None, ["stages=[sft]"]), from_stage="eval")


def test_every_section_follows_the_pipeline_run_dir(tmp_path):
    config = miniature_config(tmp_path)
    assert config.reward.preferences == f"{tmp_path}/preferences"
    assert config.ppo.reward_model == f"{tmp_path}/reward"
    assert config.eval.policies["dpo"] == f"{tmp_path}/dpo"
    # the stage recipes were loaded into their sections
    assert config.ppo.kl_coef == pytest.approx(0.1)


def test_cli_prints_resolved_config():
    out = subprocess.run([sys.executable, "-m", "pipelines.run", "--config", "configs/tiny/pipeline.yaml",
                          "run_dir=/tmp/elsewhere", "--print-config"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "output_dir: /tmp/elsewhere/ppo" in out.stdout
