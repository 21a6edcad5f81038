"""Captions of the workflow's tables and figures, each written once as package data
(data/captions/<name>.rst): the Snakemake report reads the file, the project's report the
text (:data:`whisper_spi.analysis.figures.FIGURES`,
:data:`whisper_spi.report.sections.EXTRA_FIGURES`).
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["caption_file", "captions"]

_DIR = files("whisper_spi") / "data" / "captions"


def caption_file(name: str) -> str:
    """The caption's .rst file, as Snakemake's report(caption=...) takes it."""
    return str(_DIR / f"{name}.rst")


def captions(*names: str) -> dict[str, str]:
    """name -> caption text, on one line."""
    return {name: " ".join((_DIR / f"{name}.rst").read_text("utf-8").split()) for name in names}
