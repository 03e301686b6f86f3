"""What a stage command prints: a few lines on the console, the full logs in <run_dir>/logs/, TensorBoard
curves in the artifact, nothing in the current directory.

The base model is saved as a sequence classifier, so loading it as a causal LM makes transformers
write its LOAD REPORT table (``score.weight | UNEXPECTED``), as the reward stage does with an SFT policy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import GPT2Config, GPT2ForSequenceClassification

from rlhf.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "tiny-gpt2-seqcls"
    tokenizer = train_tokenizer([f"Review {i}. The food was {'great' if i % 2 else 'bad'}." for i in range(100)], 256)
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2, num_labels=1,
        pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_sft(base: Path, cwd: Path, *flags: str) -> tuple[str, Path]:
    """``python -m pipelines.sft`` as a user runs it: no quiet settings in the environment, own cwd."""
    run_dir = cwd / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "pipelines.sft", "--config", str(REPO / "configs/tiny/sft.yaml"), *flags,
           f"run_dir={run_dir}", f"model.name_or_path={base}", "data.num_examples=200", "train.max_steps=4",
           "train.logging_steps=1", "train.per_device_train_batch_size=8", "train.report_to=[tensorboard]",
           "num_samples=2", "sampling.max_new_tokens=4"]
    # Bytes, not text=True: universal newlines would turn each progress bar redraw (\r) into a line.
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=600)
    output = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, output[-3000:]
    return output, run_dir


@pytest.fixture(scope="module")
def quiet_run(base_model, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("quiet")
    output, run_dir = run_sft(base_model, cwd)
    return output, run_dir, cwd


def test_stage_console_is_short_and_the_log_file_has_the_details(quiet_run):
    output, run_dir, _ = quiet_run
    assert output.count("\n") <= 6, output  # lines on a terminal: a progress bar redraws itself with \r
    for noise in ("LOAD REPORT", "pin_memory", "{'loss':"):
        assert noise not in output, output
    log = (run_dir / "logs" / "sft.log").read_text()
    assert "LOAD REPORT" in log and "{'loss':" in log and "{'eval_loss':" in log
    assert str(run_dir / "logs" / "sft.log") in output  # the console says where the details are


def test_verbose_shows_trainer_logs_and_warnings(base_model, tmp_path):
    output, _ = run_sft(base_model, tmp_path, "--verbose")
    assert "{'loss':" in output and "LOAD REPORT" in output


def test_trainer_curves_go_into_the_artifact_not_the_cwd(quiet_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir, cwd = quiet_run
    events = EventAccumulator(str(run_dir / "sft" / "logs"))
    events.Reload()
    assert {"train/loss", "eval/loss"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("train/loss")) == 4  # logging_steps=1, max_steps=4: the full curve
    assert not (cwd / "runs").exists()
