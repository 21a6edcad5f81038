"""A single-pass hallucination detector on decoder spectra, against Whisper's own heuristics.

At inference there is no clean twin: one decode pass is all there is. Do the spectral
observables of that pass (every decoder layer x component, at each K, plus the decoded
length T) predict a hallucination (WER > threshold) better than avg_logprob,
compression_ratio and no_speech_prob?

* :mod:`.features`: one row per decoded utterance (from files, or from an in-memory decode);
* :mod:`.crossval`: out-of-fold scores of every method on shared speaker-grouped folds, in
  settings ``all`` (clean + stressed) and ``stressed`` (the harder question), the
  decoder-state probe (an L2 LR on the layers' row means) among them;
* :mod:`.evaluate`: AUROC / AUPRC with stratified, paired bootstrap CIs;
* :mod:`.detector`: the final detector as JSON, applied with numpy;
* :mod:`.figure`: ROC curves; :mod:`.run`: everything the detect rule writes.
"""

from __future__ import annotations

from whisper_spi.detect.crossval import BASELINES, METHODS, REFERENCES, SETTINGS, cross_validate
from whisper_spi.detect.detector import (
    feature_kwargs,
    fit_detector,
    load_detector,
    probability,
    save_detector,
    score,
)
from whisper_spi.detect.evaluate import comparison_table, evaluate, markdown_report, results_table
from whisper_spi.detect.features import (
    HEURISTICS,
    KEYS,
    META,
    features,
    features_from_capture,
    row_mean_names,
    spectral_feature_names,
)
from whisper_spi.detect.figure import roc_figure
from whisper_spi.detect.model import speaker_folds
from whisper_spi.detect.run import run_detect

__all__ = [
    "BASELINES",
    "HEURISTICS",
    "KEYS",
    "META",
    "METHODS",
    "REFERENCES",
    "SETTINGS",
    "comparison_table",
    "cross_validate",
    "evaluate",
    "feature_kwargs",
    "features",
    "features_from_capture",
    "fit_detector",
    "load_detector",
    "markdown_report",
    "probability",
    "results_table",
    "roc_figure",
    "run_detect",
    "row_mean_names",
    "save_detector",
    "score",
    "speaker_folds",
    "spectral_feature_names",
]
