"""The layer contract in pyproject.toml ([tool.importlinter]) holds, and the check catches a violation.

The linter runs in a subprocess on a given source tree: in-process, grimp would find the packages
this test session has already imported instead of the copy under test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rlhf", "annotation_ui", "pipelines")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
           "--no-cache", "--no-logo", "--config", str(root / "pyproject.toml")]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def copy_tree(dest: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_layer_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_copied_tree_is_what_the_linter_reads(tmp_path):
    # Guards the violation tests below: they must lint the copy, not the installed checkout.
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module, line, contract", [
    ("rlhf/preferences/store.py", "import annotation_ui.app", "rlhf is the library"),
    ("rlhf/artifacts.py", "import pipelines.run", "rlhf is the library"),
    ("rlhf/stages/dpo.py", "from rlhf.stages.reward import load_base", "stages never import each other"),
    ("annotation_ui/export.py", "from rlhf.stages.preferences import Config", "annotation_ui uses the rlhf library"),
])
def test_a_violation_breaks_the_contract(tmp_path, module, line, contract):
    root = copy_tree(tmp_path)
    path = root / module
    source = path.read_text()
    # After the module docstring and `from __future__`, so the file stays valid Python.
    anchor = "from __future__ import annotations\n"
    assert anchor in source
    path.write_text(source.replace(anchor, f"{anchor}\n{line}\n", 1))
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Broken contracts" in result.stdout, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[1]  # only the broken contracts are listed here
    assert contract in broken, result.stdout
