"""Run the shell blocks of the Markdown docs (tests/test_docs.py).

Every fenced block whose info string is a shell (``bash``, ``sh``, ``shell``, ``console``) carries a
marker on the line right before its opening fence, saying what the test does with it:

    <!-- docs-test: run -->            run every command; each must exit 0
    <!-- docs-test: run key=value -->  the same, with these overrides appended to every command
    <!-- docs-test: serve -->          start each command with ``--port <free port>`` appended, wait until it
                                       answers HTTP, then stop it (the annotation app)
    <!-- docs-test: fails -->          needs the hub, a GPU, or state the demo does not create (people's
                                       labels): each command must exit non-zero with a one-line
                                       ``error:`` and no traceback
    <!-- docs-test: skip REASON -->    not run; the reason is required

A shell block without a marker is an error, so a new command cannot slip past the test.

Commands run with ``bash -c`` in a scratch directory that holds ``configs/`` (the repository's),
``runs/tiny`` (a copy of one finished miniature demo run) and ``users.yaml`` (account ``alice``), with
the repository on PYTHONPATH, its Python first on PATH and the hub offline. So that the whole file
runs in minutes, ``SMALL`` below is appended to every ``pipelines.<stage>`` command (keys the command
sets itself win); ``pipelines.run`` gets the settings the miniature run was made with, so on the copied
run it does what it does after ``make demo``. The settings shrink steps and sample counts only: batch
sizes stay the recipes' own, so a recipe whose batch sizes are invalid (e.g. for 2 processes) fails.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from annotation_ui.users import add_user
from zygote import Zygote, module_command

REPO = Path(__file__).resolve().parents[1]
SHELLS = {"bash", "sh", "shell", "console"}
MODES = ("run", "serve", "fails", "skip")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(\S+)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```\s*([\w-]*)")

# Per entry point, settings that keep a command small. Batch sizes are left to the recipes.
SMALL = {
    "pipelines.sft": ["data.num_examples=300", "train.max_steps=2", "num_samples=1", "train.report_to=[]"],
    "pipelines.generate": ["num_prompts=6", "sampling.max_new_tokens=8"],
    "pipelines.preferences": [],
    "pipelines.reward": ["train.max_steps=2", "num_eval_prompts=4", "samples_per_prompt=1",
                         "sampling.max_new_tokens=8"],
    "pipelines.ppo": ["total_episodes=64", "num_ppo_epochs=1", "response_length=8", "eval_prompts=0",
                      "report_to=[]"],
    "pipelines.dpo": ["train.max_steps=2", "num_eval_prompts=4", "sampling.max_new_tokens=8"],
    "pipelines.eval": ["num_prompts=4", "sampling.max_new_tokens=8", "bootstrap_resamples=50"],
    "pipelines.rloo": ["train.max_steps=2", "num_prompts=16", "num_eval_prompts=4", "sampling.max_new_tokens=8"],
    "pipelines.grpo": ["train.max_steps=2", "num_prompts=16", "num_eval_prompts=4", "sampling.max_new_tokens=8"],
    "pipelines.online_dpo": ["train.max_steps=2", "num_prompts=16", "num_eval_prompts=4", "sampling.max_new_tokens=8"],
    "pipelines.best_of_n": ["num_eval_prompts=4", "sampling.max_new_tokens=8"],
    "pipelines.rejection_sampling": ["train.max_steps=2", "num_prompts=8", "num_eval_prompts=4",
                                     "sampling.max_new_tokens=8"],
    "pipelines.arena": ["num_prompts=4", "sampling.max_new_tokens=8", "bootstrap_rounds=50"],
    # the miniature demo: runs/tiny in the scratch directory was made with exactly these
    "pipelines.run": [
        "sft.data.num_examples=300", "sft.train.max_steps=12", "sft.num_samples=1", "sft.train.report_to=[]",
        "generate.num_prompts=12", "generate.num_candidates=3", "generate.sampling.max_new_tokens=12",
        "reward.train.max_steps=3", "reward.num_eval_prompts=4", "reward.samples_per_prompt=1",
        "reward.sampling.max_new_tokens=12",
        "ppo.total_episodes=64", "ppo.num_ppo_epochs=1", "ppo.response_length=12", "ppo.eval_prompts=4",
        "ppo.report_to=[]",
        "dpo.train.max_steps=2", "dpo.num_eval_prompts=4", "dpo.sampling.max_new_tokens=12",
        "eval.num_prompts=4", "eval.sampling.max_new_tokens=12", "eval.bootstrap_resamples=50",
    ],
}
ENTRY = re.compile(r"-m\s+(pipelines\.\w+)")
PASSWORD = "pw-alice"  # alice's password in the users.yaml every scratch checkout gets


@dataclass
class Block:
    file: Path
    line: int  # of the opening fence, 1-based
    info: str
    mode: str | None
    arg: str
    commands: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(REPO) if self.file.is_relative_to(REPO) else self.file}:{self.line}"


def commands(lines: list[str]) -> list[str]:
    """One string per command: continuation lines joined, comment lines and trailing comments dropped."""
    out, current = [], ""
    for raw in lines:
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        out.append(re.sub(r"\s+#\s.*$", "", current).strip())
        current = ""
    return out


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file with its marker (None when unmarked)."""
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, info = i, fence.group(2)
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            j += 1
        prev = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        mark = MARKER.match(prev)
        mode, arg = (mark.group(1), mark.group(2)) if mark else (None, "")
        found.append(Block(path, start + 1, info, mode, arg, commands(lines[start + 1:j])))
        i = j + 1
    return found


def shell_blocks(paths) -> list[Block]:
    return [b for p in paths for b in blocks(Path(p)) if b.info in SHELLS or b.mode is not None]


def problems(block: Block) -> list[str]:
    """Why a block's marker is not acceptable (empty when it is)."""
    if block.mode is None:
        return [f"{block.where}: shell block without a marker; put <!-- docs-test: run|serve|fails|skip REASON --> "
                "on the line before it (see tests/docs_runner.py)"]
    if block.mode not in MODES:
        return [f"{block.where}: unknown docs-test mode {block.mode!r}; one of {', '.join(MODES)}"]
    if block.mode == "skip" and not block.arg:
        return [f"{block.where}: docs-test: skip needs a reason"]
    return []


def with_small_settings(command: str, extra: str = "") -> str:
    """``command`` plus the block's extra overrides and SMALL[entry point] for keys it does not set."""
    words = shlex.split(command)
    if "--help" in words or "--print-config" in words:
        return command
    added = shlex.split(extra)
    entry = ENTRY.search(command)
    if entry:
        given = {w.split("=", 1)[0] for w in words + added if "=" in w and not w.startswith("-")}
        added += [s for s in SMALL.get(entry.group(1), []) if s.split("=", 1)[0] not in given]
    return " ".join([command, *map(shlex.quote, added)])


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    env.pop("ANNOTATION_USERS", None)
    # torchrun reads its options from PET_* too: a free rendezvous port instead of the shared 29500
    env.update(PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(_free_port()))
    return env


def scratch_dir(path: Path, run: Path | None) -> Path:
    """A directory laid out like a checkout right after ``make demo`` (run = a finished runs/tiny)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "configs").symlink_to(REPO / "configs")
    if run is not None:
        shutil.copytree(run, path / "runs" / "tiny", symlinks=True)
    add_user(path / "users.yaml", "alice", PASSWORD, admin=True)  # what `annotation_ui.users add alice` writes
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(command: str, cwd: Path, env: dict, timeout: float) -> str | None:
    port = _free_port()
    proc = subprocess.Popen(["bash", "-c", f"exec {command} --port {port}"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"exited with {proc.returncode} before serving:\n{proc.stdout.read()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                    return None
            except OSError:
                time.sleep(0.5)
        return f"did not answer on port {port} within {timeout:.0f} s"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run(command: str, cwd: Path, env: dict, timeout: float, zygote: Zygote | None) -> subprocess.CompletedProcess:
    """``bash -c command``; a plain ``python -m pipelines...`` goes to the zygote when there is one (same result,
    without the imports)."""
    argv = module_command(command) if zygote is not None else None
    if argv is not None:
        return zygote.run(argv, cwd, env, timeout)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def run_block(block: Block, cwd: Path, timeout: float = 300, zygote: Zygote | None = None) -> list[str]:
    """Run one block as its marker says; returns the failures (empty = the block works as documented).
    ``zygote`` (tests/zygote.py) runs the plain ``python -m`` commands without re-importing torch each time."""
    errors = problems(block)
    if errors or block.mode == "skip":
        return errors
    env = environment()
    if block.mode == "fails":
        for command in block.commands:
            try:
                proc = _run(command, cwd, env, timeout, zygote)
            except subprocess.TimeoutExpired:
                errors.append(f"{block.where}: `{command}` still running after {timeout:.0f} s")
                continue
            out, err = proc.stdout, proc.stderr
            last = err.strip().splitlines()[-1:] or [""]
            if proc.returncode == 0:
                errors.append(f"{block.where}: `{command}` is marked 'fails' (hub, GPU, or state the demo does not create) but succeeded")
            elif "Traceback" in out + err or not last[0].startswith("error:"):
                errors.append(f"{block.where}: `{command}` failed without a one-line error:\n{(out + err)[-3000:]}")
        return errors
    for command in block.commands:
        if block.mode == "serve":
            error = _serve(command, cwd, env, timeout)
            if error:
                errors.append(f"{block.where}: `{command}` {error}")
            continue
        full = with_small_settings(command, block.arg)
        try:
            proc = _run(full, cwd, env, timeout, zygote)
        except subprocess.TimeoutExpired:
            errors.append(f"{block.where}: `{full}` still running after {timeout:.0f} s")
            continue
        if proc.returncode != 0:
            errors.append(f"{block.where}: `{full}` exited with {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return errors
