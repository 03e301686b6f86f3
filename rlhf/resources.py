"""Files that ship inside the package: the recipes (configs/) and the annotation guidelines.

``rlhf/_data`` links to the checkout's ``configs/`` and ``docs/annotation_guidelines.md``, and the
wheel copies them there, so both are found from any directory, installed or not.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "_data"
RECIPES = DATA / "configs"
GUIDELINES = DATA / "annotation_guidelines.md"


def find_recipe(name: str | Path) -> Path:
    """``name`` as given if it exists; else the packaged recipe of that name.

    ``configs/tiny/sft.yaml`` (the checkout's path) and ``tiny/sft.yaml`` both name the packaged
    ``tiny/sft.yaml`` when the current directory is not the checkout.
    """
    path = Path(name)
    if path.is_file() or path.is_absolute():
        return path
    parts = path.parts[1:] if path.parts[:1] == ("configs",) else path.parts
    packaged = RECIPES.joinpath(*parts) if parts else RECIPES
    return packaged if packaged.is_file() else path
