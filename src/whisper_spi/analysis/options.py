"""The metric options (config ``metrics.*``) and, as data, which stages each one affects.

The workflow passes each rule only the options of its stage (:func:`stage_options`), so a
changed option reruns exactly the jobs it affects. Every field must say which stages it
affects: :func:`check_stages` refuses one that does not, at import.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whisper_spi.analysis.spectra import ObservableOptions

__all__ = ["DEFAULT_PAPER_MODELS", "STAGES", "MetricOptions", "stage_keys", "stage_options"]

DEFAULT_PAPER_MODELS = {
    "tiny": "tiny",
    "small": "small",
    "large-v3-turbo": "large-v3-turbo",
    "tiny-en": "tiny",  # approximation: the English-only tiny checkpoint stands in for tiny
}


@dataclass(frozen=True)
class MetricOptions(ObservableOptions):
    """Every analysis choice: the observables' (:class:`ObservableOptions`) and these.

    pooled: also compute the pooled scope (one spectrum of the N x d matrix of per-utterance
        row means per model x condition x layer x component).
    pooled_center: center that matrix before its SVD; None = as the spectra were (decode.center).
    n_boot: bootstrap replicates over pairs, utterance scope (0 = no CI).
    pooled_n_boot: subsamples of the pooled scope, each a re-decomposition.
    pooled_fraction: each pooled subsample keeps this fraction of the units, drawn without
        replacement (m-of-n subsampling: no duplicate rows to shrink the spectrum).
    pooled_boot_rank: 0 = exact pooled replicates; r >= 4 max(k) = Rayleigh-Ritz in the
        top-r principal subspace (faster; point estimates stay exact).
    resample_unit: what every interval resamples: speaker (all utterances of a drawn speaker
        together) or utterance.
    ci: coverage of the intervals.
    paper_models: our model name -> the paper's, for the paper-value columns.
    figure_k: the K of the figures; None = the largest K.
    """

    pooled: bool = True
    pooled_center: bool | None = None
    n_boot: int = 1000
    pooled_n_boot: int = 200
    pooled_fraction: float = 0.5
    pooled_boot_rank: int = 0
    resample_unit: str = "speaker"
    ci: float = 0.95
    paper_models: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PAPER_MODELS))
    figure_k: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "paper_models", dict(self.paper_models))
        if self.figure_k is None:
            object.__setattr__(self, "figure_k", max(self.k))
        if self.pooled_boot_rank != 0 and self.pooled_boot_rank < 4 * max(self.k):
            # top-r Ritz values of a replicate are biased low when r is near K
            raise ValueError("metrics.pooled_boot_rank must be 0 (exact) or >= 4 * max(k)")
        if not 0 < self.pooled_fraction < 1:
            raise ValueError(
                f"metrics.pooled_fraction must be in (0, 1), got {self.pooled_fraction!r}"
            )
        if self.resample_unit not in ("speaker", "utterance"):
            raise ValueError(
                f"metrics.resample_unit must be speaker or utterance, got {self.resample_unit!r}"
            )
        if self.n_boot < 0 or self.pooled_n_boot < 0:
            raise ValueError("metrics.n_boot and metrics.pooled_n_boot must be >= 0")
        if not 0 < self.ci < 1:
            raise ValueError(f"metrics.ci must be in (0, 1), got {self.ci!r}")
        if self.figure_k not in self.k:
            raise ValueError(f"metrics.figure_k ({self.figure_k}) must be one of k {self.k}")


_KERNEL = ("layer_metrics", "pooled", "detect")  # the stages that compute observables

# option -> the stages whose results it changes (their jobs rerun when it does). The tables
# and figures also rerun whenever their inputs do, so they list only what they read directly.
STAGES: dict[str, tuple[str, ...]] = {
    "k": (*_KERNEL, "tables", "figures", "levels"),
    "neff_power": _KERNEL,
    "alpha_start": _KERNEL,
    "alpha_stop": _KERNEL,
    "alpha_method": _KERNEL,
    "rank_tol": _KERNEL,
    "kf_floor": _KERNEL,
    "kf_pad_to_k": _KERNEL,
    "pooled": ("tables",),
    "pooled_center": ("pooled",),
    "n_boot": ("tables", "levels"),
    "pooled_n_boot": ("pooled", "tables"),
    "pooled_fraction": ("pooled", "tables"),
    "pooled_boot_rank": ("pooled",),
    "resample_unit": ("pooled", "tables", "levels"),
    "ci": ("tables", "levels"),
    "paper_models": ("tables",),
    "figure_k": ("figures", "levels"),
}
KNOWN_STAGES = ("layer_metrics", "pooled", "tables", "figures", "detect", "levels")


def check_stages(options_class: type, stages: Mapping[str, tuple[str, ...]]) -> None:
    """Every field of ``options_class`` names its stages (known ones), and nothing else does."""
    fields = [f.name for f in dataclasses.fields(options_class)]
    missing = [f for f in fields if not stages.get(f)]
    if missing:
        raise TypeError(f"metric option(s) {missing} do not say which stages they affect (STAGES)")
    extra = sorted(set(stages) - set(fields))
    unknown = sorted({s for v in stages.values() for s in v} - set(KNOWN_STAGES))
    if extra or unknown:
        raise TypeError(f"STAGES names unknown option(s) {extra} or stage(s) {unknown}")


check_stages(MetricOptions, STAGES)


def stage_keys(stage: str) -> tuple[str, ...]:
    """The options ``stage`` depends on, in field order."""
    if stage not in KNOWN_STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {KNOWN_STAGES}")
    return tuple(f.name for f in dataclasses.fields(MetricOptions) if stage in STAGES[f.name])


def stage_options(metrics: Mapping[str, Any], stage: str) -> str:
    """The options of ``stage`` from a ``metrics`` config mapping, as JSON for the CLI."""
    keys = stage_keys(stage)
    return json.dumps({k: v for k, v in metrics.items() if k in keys}, sort_keys=True)
