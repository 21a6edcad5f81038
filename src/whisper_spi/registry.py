"""The registries: every name a list is needed for, in the one order tables, figures and
reports use, with what the config schema, the CLI choices and the wildcard constraints need
to know of it. Add a stress, a non-speech input, an observable or an intervention here and
in its implementation; everything else is derived (tests/test_registry.py checks that).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "BASELINES",
    "CLEAN",
    "COMPONENTS",
    "CONDITIONS",
    "FALLBACK",
    "GATING",
    "HELL",
    "INTERVENTIONS",
    "Method",
    "NONSPEECH",
    "NONSPEECH_PARAMS",
    "NO_SPEECH",
    "OBSERVABLES",
    "PLAIN",
    "POOLED",
    "STRESSED",
    "STRESSES",
    "STRESS_PARAMS",
]


def _param(kind: str, default, description: str, **bounds) -> dict:
    """One parameter as a JSON-schema property (type, default, description, bounds)."""
    return {"type": kind, "default": default, "description": description, **bounds}


def _block(description: str, **params: dict) -> dict:
    """A condition's config block as a JSON-schema object (unknown keys are errors)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": description,
        "properties": params,
    }


CLEAN = "clean"

# The acoustic stresses, each applied to every utterance (config ``stresses.<name>``);
# implementations: whisper_spi.corpus.stress.APPLY.
STRESS_PARAMS = MappingProxyType(
    {
        "time_stretch": _block(
            "pyrubberband time stretch.",
            factor=_param(
                "number",
                3.5,
                "Speed factor (rubberband rate); 3.5 = 3.5x faster, shorter audio.",
                exclusiveMinimum=0,
            ),
        ),
        "speaker_mix": _block(
            "Target speaker plus others at equal RMS.",
            n_speakers=_param("integer", 6, "Speakers in the mix, target included.", minimum=2),
        ),
        "gaussian_noise": _block(
            "White Gaussian noise.",
            snr_db=_param(
                "number", 0.0, "Signal-to-noise ratio in dB relative to the utterance's mean power."
            ),
        ),
    }
)
STRESSES = tuple(STRESS_PARAMS)
CONDITIONS = (CLEAN, *STRESSES)

# Inputs with no speech: the reference is empty, so any transcript is a hallucination
# (config ``nonspeech.<name>``); implementations: whisper_spi.corpus.stress.APPLY.
NONSPEECH_PARAMS = MappingProxyType(
    {
        "silence": _block(
            "Digital silence and very low-level noise.",
            levels_dbfs=_param(
                "array",
                [None, -60.0],
                "One level drawn per item from (seed, condition, utt_id); null = digital zero, "
                "else white noise at this RMS in dBFS.",
                items={"type": ["number", "null"]},
                minItems=1,
            ),
        ),
        "noise_only": _block(
            "Noise with no speech, at the utterance's RMS.",
            colors=_param(
                "array",
                ["white", "pink"],
                "One colour drawn per item.",
                items={"type": "string", "enum": ["white", "pink"]},
                minItems=1,
            ),
        ),
        "environmental": _block(
            "Real non-speech recordings (music jingles, event sounds) of Debian packages, "
            "looped or trimmed to the utterance's length at its RMS "
            "(whisper_spi.corpus.stress.RECORDINGS).",
            packages=_param(
                "array",
                ["oxygen-sounds", "sound-theme-freedesktop"],
                "The packages whose recordings are drawn from (one recording per item).",
                items={"type": "string", "enum": ["oxygen-sounds", "sound-theme-freedesktop"]},
                minItems=1,
            ),
        ),
    }
)
NONSPEECH = tuple(NONSPEECH_PARAMS)

HELL = "hell"  # the union of the three stresses' kept pairs
COMPONENTS = ("cross_attn", "self_attn", "ffn", "residual")
OBSERVABLES = ("neff", "log10_kf", "alpha", "tail_energy")


@dataclass(frozen=True)
class Method:
    """An intervention in the decoder: the component it edits (None: config
    ``intervene.component``) and the paper's regime whose prediction it tests, if any."""

    component: str | None
    regime: str | None
    description: str


# implementations: whisper_spi.mitigation.intervene.EDITS
INTERVENTIONS = MappingProxyType(
    {
        "project": Method(None, None, "remove the output's projection on a fitted subspace"),
        "cross_gain": Method(
            "cross_attn", "Regime I (cross_gain up)", "cross-attention output x (1 + strength)"
        ),
        "self_damp": Method(
            "self_attn", "Regime II (self_damp)", "self-attention output x (1 - strength)"
        ),
    }
)
# The mitigation table's baselines: the decode stage's transcripts, those with OpenAI's
# no-speech skip, and OpenAI's temperature fallback.
PLAIN, GATING, FALLBACK = "plain", "gating", "fallback"
BASELINES = (PLAIN, FALLBACK, GATING)
STRESSED = "stressed"  # every stress pooled
NO_SPEECH = "nonspeech"  # every non-speech input pooled
POOLED = MappingProxyType({STRESSED: STRESSES, NO_SPEECH: NONSPEECH})
