"""The shared names, each tuple in the one order tables, figures and reports use."""

from __future__ import annotations

from .spectra import OBSERVABLES

__all__ = ["CLEAN", "COMPONENTS", "CONDITIONS", "HELL", "NONSPEECH", "OBSERVABLES", "STRESSES"]

CLEAN = "clean"
STRESSES = ("time_stretch", "speaker_mix", "gaussian_noise")
CONDITIONS = (CLEAN, *STRESSES)
# Inputs with no speech: the reference is empty, so any transcript is a hallucination.
NONSPEECH = ("silence", "noise_only", "environmental")
HELL = "hell"  # the union of the three stresses' kept pairs
COMPONENTS = ("cross_attn", "self_attn", "ffn", "residual")
