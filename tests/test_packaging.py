"""Packaging: the conda environments list what pyproject.toml lists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


@pytest.mark.parametrize(("env", "torch"), [("cpu", "torch==2.13.0"), ("gpu", "torch>=2.4")])
def test_conda_env_matches_pyproject(env, torch):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = project["dependencies"] + project["optional-dependencies"]["demo"]
    spec = yaml.safe_load((ROOT / "envs" / f"{env}.yaml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    pip = [p for p in pip if not p.startswith("-e")]
    assert torch in pip
    mine = {_name(p): p for p in pip}
    theirs = {_name(p): p for p in want}
    assert mine.keys() == theirs.keys()
    for name, req in theirs.items():
        if name != "torch":
            assert mine[name] == req, name
    assert "rubberband" in spec["dependencies"]  # the program pyrubberband shells out to
