"""Run ``python -m pipelines.<stage> ...`` commands without paying the imports each time.

Every documented command is a fresh ``python -m`` process, and most of a small one's time is importing
torch, transformers, TRL and peft (about 4-5 s of CPU each on the 2-core CI machine, against
~60 commands in the docs test). A ``Zygote`` is one server process that imports those once and
then forks a child per command; the child changes to the command's directory and environment and
runs the module as ``__main__`` (``runpy``), exactly what ``python -m`` does after its imports.

The zygote never runs a torch op, so no thread pool exists when it forks. Commands it cannot run
like that (a shell pipeline, an environment prefix, torchrun, anything not ``python -m`` of our
packages) are left to the caller's subprocess.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("pipelines.", "annotation_ui")
PRELOAD = ["torch", "transformers", "peft", "datasets", "trl", "pipelines.run"]
QUOTED = re.compile(r"'[^']*'|\"[^\"$`\\]*\"")  # quoted text bash passes on literally


def module_command(command: str) -> list[str] | None:
    """``[module, *args]`` for a plain ``python -m <our module> args`` command (nothing for bash to expand,
    redirect or glob outside quotes, no environment prefix), else None."""
    if set(QUOTED.sub("", command)) & set("|&;<>()$`*?[]{}!~\\"):
        return None
    words = shlex.split(command)
    if len(words) < 3 or words[0] not in ("python", "python3") or words[1] != "-m" or not words[2].startswith(PACKAGES):
        return None
    return words[2:]


# The server: read one JSON request per line, fork, run the module in the child, answer with its exit code.
SERVER = r"""
import atexit, json, os, runpy, sys, traceback
for name in json.loads(sys.argv[1]):
    __import__(name)
requests, replies = sys.stdin, sys.stdout
for line in requests:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setsid()
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, req["stdout"], os.O_WRONLY),
                                   (2, req["stderr"], os.O_WRONLY)):
                os.dup2(os.open(path, mode), fd)
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            sys.argv = [req["argv"][0], *req["argv"][1:]]
            sys.path[0] = req["cwd"]
            runpy.run_module(req["argv"][0], run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    replies.write(json.dumps({"pid": pid}) + "\n")
    replies.flush()
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
    replies.flush()
"""


class Zygote:
    """One pre-imported Python that runs ``python -m`` commands of our packages in forked children."""

    def __init__(self, env: dict[str, str], preload: list[str] = PRELOAD):
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(preload)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=str(Path(__file__).resolve().parents[1]))
        self._pending = b""

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        """Run ``python -m argv[0] argv[1:]`` in ``cwd`` with ``env``, like ``subprocess.run(capture_output=True,
        timeout=timeout)``: past the timeout the command's process group is killed and TimeoutExpired raised."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"the zygote exited with {self.proc.returncode}")
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            out.touch()
            err.touch()
            request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            pid = self._reply(60)["pid"]
            try:
                returncode = self._reply(timeout)["returncode"]
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
                self._reply(60)
                raise subprocess.TimeoutExpired(["python", "-m", *argv], timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess(["python", "-m", *argv], returncode, out.read_text(), err.read_text())

    def _reply(self, timeout: float) -> dict:
        """The server's next JSON line (TimeoutError when none comes within ``timeout`` seconds)."""
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the zygote died (exit {self.proc.wait()})")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
