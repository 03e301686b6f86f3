"""Docs that run: every shell block of README.md and docs/ is marked, and the marked commands work.

How blocks are marked and what the test does with each mark: tests/docs_runner.py. The commands run
on a copy of one finished miniature demo run (the ``demo_run`` fixture), as a newcomer's would after
``make demo``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from docs_runner import (REPO, SMALL, PASSWORD, _free_port, blocks, environment, problems, run_block, scratch_dir,
                         shell_blocks, with_small_settings)
from zygote import Zygote, module_command

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BLOCKS = shell_blocks(DOCS)
# The README's torchrun PPO block has its own test below, which also checks the artifact.
TORCHRUN_PPO = next(b for b in BLOCKS if b.file.name == "README.md" and any("torchrun" in c for c in b.commands))
RUNNABLE = [b for b in BLOCKS if b.mode in ("run", "serve", "fails") and b is not TORCHRUN_PPO]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``python -m pipelines.run --config configs/tiny/pipeline.yaml`` with the docs test's small settings."""
    root = scratch_dir(tmp_path_factory.mktemp("demo"), None)
    proc = subprocess.run([sys.executable, "-m", "pipelines.run", "--config", "configs/tiny/pipeline.yaml",
                           *SMALL["pipelines.run"]], cwd=root, env=environment(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root / "runs" / "tiny"


@pytest.fixture(scope="module")
def zygote():
    """Runs the docs' plain ``python -m`` commands without importing torch & co. for each (tests/zygote.py)."""
    server = Zygote(environment())
    yield server
    server.close()


def test_every_shell_block_is_marked():
    assert len(BLOCKS) > 20  # README and docs/ were found
    assert [p for b in BLOCKS for p in problems(b)] == []


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.where)
def test_documented_commands_work(block, demo_run, tmp_path, zygote):
    assert run_block(block, scratch_dir(tmp_path / "work", demo_run), zygote=zygote) == []


@pytest.mark.parametrize("through_zygote", [False, True], ids=["bash", "zygote"])
def test_the_runner_fails_a_broken_command(tmp_path, zygote, through_zygote):
    """A doc edit that breaks a command (here: a typo in an option) fails the docs test."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "<!-- docs-test: run -->\n```bash\npython -m pipelines.sft --config configs/tiny/sft.yaml --print-config\n```\n\n"
        "<!-- docs-test: run -->\n```bash\npython -m pipelines.sft --config configs/tiny/sft.yaml --print-config "
        "train.learning_rat=3e-4\n```\n\n"
        "```bash\npython -m pipelines.sft --help\n```\n\n"
        "<!-- docs-test: fails -->\n```bash\necho fine\n```\n\n"
        "<!-- docs-test: fails -->\n```bash\npython -c 'raise RuntimeError(1)'\n```\n\n"
        "<!-- docs-test: skip -->\n```bash\nmake demo\n```\n"
    )
    work = scratch_dir(tmp_path / "work", None)
    good, typo, unmarked, succeeds, traceback, no_reason = blocks(doc)
    runner = zygote if through_zygote else None
    assert run_block(good, work, zygote=runner) == []
    (error,) = run_block(typo, work, zygote=runner)
    assert "learning_rat" in error and "exited with 2" in error
    assert "without a marker" in problems(unmarked)[0]
    assert "succeeded" in run_block(succeeds, work, zygote=runner)[0]
    assert "without a one-line error" in run_block(traceback, work, zygote=runner)[0]
    assert "needs a reason" in problems(no_reason)[0]


def test_only_plain_module_commands_go_to_the_zygote():
    assert module_command("python -m pipelines.sft --config c.yaml 'stages=[sft,eval]' \"x=[1]\"") == [
        "pipelines.sft", "--config", "c.yaml", "stages=[sft,eval]", "x=[1]"]
    for command in ("OMP_NUM_THREADS=1 python -m pipelines.sft", "python -m pipelines.sft > out.txt",
                    "python -m pipelines.sft && echo done", "python -m pipelines.sft x=$HOME", 'python -m pipelines.sft "x=$HOME"',
                    "python -c 'print(1)'", "python -m json.tool f", "torchrun -m pipelines.ppo", "python -m pipelines.sft x=[a]"):
        assert module_command(command) is None, command


def test_a_zygote_run_matches_a_fresh_process(tmp_path, zygote):
    """Same output, exit code, working directory and environment as ``python -m`` in a new process."""
    work = scratch_dir(tmp_path / "work", None)
    env = {**environment(), "RLHF_DOCS_PROBE": "from-the-request"}
    command = "python -m pipelines.sft --config configs/tiny/sft.yaml --print-config run_dir=${RLHF_DOCS_PROBE}"
    fresh = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True)
    forked = zygote.run(["pipelines.sft", "--config", "configs/tiny/sft.yaml", "--print-config",
                         "run_dir=${oc.env:RLHF_DOCS_PROBE}"], work, env, timeout=120)
    assert fresh.returncode == forked.returncode == 0, forked.stderr
    assert "run_dir: from-the-request" in fresh.stdout
    assert forked.stdout == fresh.stdout  # the relative configs/ path resolved in ``work``; the env var seen
    typo = zygote.run(["pipelines.sft", "--config", "configs/tiny/sft.yaml", "--print-config", "train.learning_rat=1"],
                      work, env, timeout=120)
    assert typo.returncode == 2 and "learning_rat" in typo.stderr


def test_small_settings_keep_the_recipes_batch_sizes():
    """Otherwise the docs test could not catch batch sizes that are invalid for 2 processes."""
    for entry, settings in SMALL.items():
        assert not [s for s in settings if "batch_size" in s], entry


@pytest.mark.slow
def test_readme_torchrun_ppo_runs_two_processes_after_the_demo(demo_run, tmp_path):
    block = TORCHRUN_PPO
    (command,) = [c for c in block.commands if "torchrun" in c]
    assert "--nproc_per_node 2" in command and "configs/tiny/ppo.yaml" in command
    work = scratch_dir(tmp_path / "work", demo_run)
    assert run_block(block, work) == []
    out = next(w.split("=", 1)[1] for w in command.split() if w.startswith("output_dir="))
    manifest = json.loads((work / out / "manifest.json").read_text())
    assert manifest["kind"] == "ppo" and manifest["metrics"]["train/num_processes"] == 2
    demo = json.loads((work / "runs/tiny/ppo/manifest.json").read_text())
    assert demo["fingerprint"] == json.loads((demo_run / "ppo/manifest.json").read_text())["fingerprint"]


@pytest.mark.slow
def test_human_labelling_flow_after_the_demo_uses_only_human_labels(demo_run, tmp_path):
    """README: serve the app, label through its API, export, ``pipelines.run --from reward``."""
    from gradio_client import Client

    from rlhf.artifacts import open_artifact
    from rlhf.preferences.artifact import load_pairs

    (serve,) = [c for b in BLOCKS if b.file.name == "README.md" and b.mode == "serve" for c in b.commands
                if "-m annotation_ui " in c]
    export, rerun = _readme_commands("-m pipelines.preferences", "--from reward preferences.annotators=human")
    work = scratch_dir(tmp_path / "work", demo_run)
    env, port = environment(), _free_port()
    app = subprocess.Popen(["bash", "-c", f"exec {serve} --port {port}"], cwd=work, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = _connect(Client, f"http://127.0.0.1:{port}/", ("alice", PASSWORD), app)
        labelled = 0
        while (item := client.predict(api_name="/next_item")) is not None and labelled < 6:
            ranks = {cid: r + 1 for r, cid in enumerate(item["candidate_ids"])}
            client.predict(item["item_id"], ranks, False, False, "", f"r{labelled}", api_name="/submit")
            labelled += 1
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert labelled == 6, "the app served no items to a person after the demo"
    for command in (export, rerun):
        proc = subprocess.run(["bash", "-c", with_small_settings(command)], cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    prefs = work / "runs/tiny/preferences"
    pairs = load_pairs(open_artifact(prefs, "preferences"))
    annotators = {a for split in pairs.values() for row in split["annotators"] for a in row}
    assert annotators == {"alice"}
    reward = json.loads((work / "runs/tiny/reward/manifest.json").read_text())
    assert reward["inputs"]["preferences"]["fingerprint"] == json.loads((prefs / "manifest.json").read_text())["fingerprint"]


def _readme_commands(*needles):
    readme = [c for b in blocks(REPO / "README.md") for c in b.commands]
    return [next(c for c in readme if n in c) for n in needles]


def _connect(client_cls, url, auth, app, timeout=120):
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return client_cls(url, auth=auth, verbose=False, download_files=False)
        except Exception:
            if app.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the annotation app did not start: {app.stdout.read()[-2000:]}")
            time.sleep(1)
