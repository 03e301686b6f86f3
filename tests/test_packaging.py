"""`pip install .` into a fresh venv that already has torch and the other dependencies (offline), then the
commands and the packaged recipes work from a directory that is not the checkout."""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "rlhf", "pipelines", "annotation_ui", "configs", "docs"]


def run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"  # a copy, so the build's build/ and egg-info stay out of the checkout
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # torch & co. (and pip) come from the running interpreter's site-packages, as if preinstalled.
    venv_site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp,
                         os.environ).strip())
    (venv_site / "preinstalled.pth").write_text("\n".join([sysconfig.get_path("purelib"), *site.getsitepackages()]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # import the installed copy, not the checkout
    run([str(python), "-m", "pip", "install", "--no-build-isolation", "--no-index", "--disable-pip-version-check",
         "-q", str(source)], tmp, env)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return python, elsewhere, env


def test_installed_package_is_the_copy_not_the_checkout(installed):
    python, elsewhere, env = installed
    where = run([str(python), "-c", "import rlhf; print(rlhf.__file__, rlhf.__version__)"], elsewhere, env)
    path, version = where.split()
    assert not Path(path).is_relative_to(ROOT) and "site-packages" in path
    from importlib.metadata import version as dist_version

    assert version == dist_version("rlhf")  # one version source: rlhf.__version__ feeds the metadata


def test_sft_help_lists_trainer_fields_outside_the_checkout(installed):
    python, elsewhere, env = installed
    out = run([str(python), "-m", "pipelines.sft", "--help"], elsewhere, env)
    assert "train.learning_rate (" in out and "train.max_length (" in out


@pytest.mark.parametrize("recipe", ["tiny/sft.yaml", "configs/tiny/sft.yaml"])
def test_packaged_recipes_are_found_from_any_directory(installed, recipe):
    python, elsewhere, env = installed
    out = run([str(python), "-m", "pipelines.sft", "--config", recipe, "--print-config"], elsewhere, env)
    assert "max_length: 64" in out  # from configs/tiny/sft.yaml, not the class default
    guide = run([str(python), "-c", "from rlhf.resources import GUIDELINES; print(GUIDELINES.read_text()[:40])"],
                elsewhere, env)
    assert guide.strip() == (ROOT / "docs" / "annotation_guidelines.md").read_text()[:40].strip()
