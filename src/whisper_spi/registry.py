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
    "DEFAULT_FRONT_END",
    "DECODED_BASELINES",
    "FALLBACK",
    "FASTER",
    "FASTER_SILENCE",
    "FASTER_VAD",
    "FRONT_ENDS",
    "GATING",
    "GRADED_PARAM",
    "HARSHER",
    "HELL",
    "INTERVENTIONS",
    "LEVEL_SEP",
    "Method",
    "NONSPEECH",
    "NONSPEECH_PARAMS",
    "NO_SPEECH",
    "OBSERVABLES",
    "OBSERVABLE_SPECS",
    "PAPER_OBSERVABLES",
    "PLAIN",
    "POOLED",
    "STRESSED",
    "STRESSES",
    "STRESS_PARAMS",
    "TRANSCRIBE",
    "USER_BASELINES",
    "Observable",
    "condition_order",
    "graded_condition",
    "split_condition",
]


def _param(kind: str, default, description: str, **bounds) -> dict:
    """One parameter as a JSON-schema property (type, default, description, bounds)."""
    return {"type": kind, "default": default, "description": description, **bounds}


def _levels(kind: str, what: str, **bounds) -> dict:
    """A stress's extra levels (graded stress): each one a condition of its own."""
    return _param(
        "array",
        [],
        f"{what} decoded besides the level above, each as condition '<stress>@<level>' "
        "(graded stress: the level plot; Tables 1 and 2 use the level above).",
        items={"type": kind, **bounds},
        uniqueItems=True,
    )


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
            levels=_levels("number", "Speed factors", exclusiveMinimum=0),
        ),
        "speaker_mix": _block(
            "Target speaker plus others at equal RMS.",
            n_speakers=_param("integer", 6, "Speakers in the mix, target included.", minimum=2),
            levels=_levels("integer", "Speaker counts", minimum=2),
        ),
        "gaussian_noise": _block(
            "White Gaussian noise.",
            snr_db=_param(
                "number", 0.0, "Signal-to-noise ratio in dB relative to the utterance's mean power."
            ),
            levels=_levels("number", "SNRs in dB"),
        ),
    }
)
STRESSES = tuple(STRESS_PARAMS)
CONDITIONS = (CLEAN, *STRESSES)
# Graded stress: the one parameter each stress is graded by; the extra levels of
# stresses.<name>.levels are conditions of their own, named "<stress>@<level>" (the paper's
# level keeps the plain name: Tables 1 and 2 compare it with the paper).
GRADED_PARAM = MappingProxyType(
    {"time_stretch": "factor", "speaker_mix": "n_speakers", "gaussian_noise": "snr_db"}
)
# the direction in which each parameter makes the stress harsher (+1: a larger value)
HARSHER = MappingProxyType({"time_stretch": 1, "speaker_mix": 1, "gaussian_noise": -1})
LEVEL_SEP = "@"


def graded_condition(stress: str, level: float) -> str:
    """The condition of ``stress`` at an extra ``level``: ``gaussian_noise@-5``."""
    return f"{stress}{LEVEL_SEP}{level:g}"


def condition_order(conditions) -> list[str]:
    """The distinct ``conditions`` in the one display order: clean, each stress followed by
    its graded levels (mildest first), the non-speech inputs, then unknown names sorted."""
    known = (*CONDITIONS, *NONSPEECH_PARAMS)

    def key(condition: str) -> tuple:
        name, _, level = condition.partition(LEVEL_SEP)
        if name not in known or (level and name not in GRADED_PARAM):
            return (len(known), 0, 0.0, condition)
        try:
            harshness = HARSHER[name] * float(level) if level else 0.0
        except ValueError:
            return (len(known), 0, 0.0, condition)
        return (known.index(name), 1 if level else 0, harshness, condition)

    return sorted(set(conditions), key=key)


def split_condition(condition: str) -> tuple[str, float | None]:
    """(stress or condition, level): the level of a graded condition, None for the others."""
    name, sep, level = condition.partition(LEVEL_SEP)
    if not sep:
        return condition, None
    if name not in GRADED_PARAM:
        raise ValueError(f"{condition!r}: {name!r} is not a stress that can be graded")
    try:
        return name, float(level)
    except ValueError:
        raise ValueError(f"{condition!r}: the level {level!r} is not a number") from None


# Inputs with no speech: the reference is empty, so any transcript is a hallucination
# (config ``nonspeech.<name>``); implementations: whisper_spi.corpus.stress.APPLY.
_NONSPEECH_LEVEL = _param(
    "array",
    [0.0, 0.0],
    "[low, high]: each item's level in dB relative to its utterance's RMS, drawn uniformly "
    "from this range (low <= high) and recorded as level_db; [0, 0] = the utterance's RMS.",
    items={"type": "number"},
    minItems=2,
    maxItems=2,
)
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
            "Noise with no speech, at the utterance's RMS (shifted by a level drawn from "
            "level_range_db).",
            colors=_param(
                "array",
                ["white", "pink"],
                "One colour drawn per item.",
                items={"type": "string", "enum": ["white", "pink"]},
                minItems=1,
            ),
            level_range_db=_NONSPEECH_LEVEL,
        ),
        "environmental": _block(
            "Real non-speech recordings: by default the music jingles and event sounds of "
            "Debian packages (whisper_spi.corpus.nonspeech.RECORDINGS), or every audio file of "
            "your own folder (folder). Item i (its rank by utt_id) takes recording perm[i mod "
            "n], perm a permutation seeded from the global seed: no recording repeats before "
            "all n are used. Leading and trailing digital silence (|x| < 1e-4) is trimmed, and "
            "the recording looped from a random offset to the utterance's length, at the "
            "utterance's RMS shifted by a level drawn from level_range_db; params records "
            "source (the file), offset_s and level_db. A file that cannot be decoded, or is "
            "silent, stops the job with an error naming it.",
            packages=_param(
                "array",
                ["oxygen-sounds", "sound-theme-freedesktop"],
                "The Debian packages whose recordings are used (when folder is null).",
                items={"type": "string", "enum": ["oxygen-sounds", "sound-theme-freedesktop"]},
                minItems=1,
            ),
            folder=_param(
                ["string", "null"],
                None,
                "A folder of your own non-speech recordings, used instead of the packages "
                "(MUSAN, ESC-50 or UrbanSound8K as distributed): every audio file under it, "
                "recursively (.wav .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .caf .w64 "
                ".rf64), in order of relative path; hidden files, other files (metadata .csv, "
                "README) and every file under a directory named speech (MUSAN's speech part) "
                "are left out, the last said once in the stress job's log. null = the Debian "
                "packages.",
                minLength=1,
            ),
            level_range_db=_NONSPEECH_LEVEL,
        ),
    }
)
NONSPEECH = tuple(NONSPEECH_PARAMS)

HELL = "hell"  # the union of the three stresses' kept pairs
COMPONENTS = ("cross_attn", "self_attn", "ffn", "residual")
# The log-mel front ends (config decode.features; whisper_spi.decode.loop.log_mel), the
# default first: what the Whisper people run, and what transformers' extractor gives.
FRONT_ENDS = MappingProxyType(
    {
        "openai": "OpenAI's transcribe() and faster-whisper's: 0.0 past the clip's end",
        "transformers": "transformers' feature extractor: the waveform zero-padded to 30 s",
    }
)
DEFAULT_FRONT_END = next(iter(FRONT_ENDS))


@dataclass(frozen=True)
class Observable:
    """A spectral observable of the top-K singular values, as the contracts, tables and
    figures show it; its kernel: whisper_spi.analysis.observables.KERNELS."""

    name: str  # its column in layer_metrics and its value of ``observable`` elsewhere
    title: str  # in figures and prose: "Delta <title>"
    symbol: str  # in the tables' headers: "Δ<symbol>"
    delta: str  # stressed vs clean: "percent" 100 (s - c) / c, or "difference" s - c
    digits: int  # decimals of its delta in the tables
    doc: str  # its layer_metrics column's description
    unit: str = ""

    def __post_init__(self) -> None:
        if self.delta not in ("percent", "difference"):
            raise ValueError(f"{self.name}: delta must be percent or difference")

    @property
    def percent(self) -> bool:
        return self.delta == "percent"

    @property
    def column(self) -> str:
        """Its delta's column in the tables (d_<name>, _pct for a percent change)."""
        return f"d_{self.name}_pct" if self.percent else f"d_{self.name}"

    @property
    def label(self) -> str:
        """Its delta in the tables' headers."""
        return f"Δ{self.symbol} %" if self.percent else f"Δ{self.symbol}"


OBSERVABLE_SPECS = MappingProxyType(
    {
        o.name: o
        for o in (
            Observable(
                name="neff",
                title="N_eff",
                symbol="N_eff",
                delta="percent",
                digits=2,
                doc="effective rank exp(H(p)) of the top K (metrics.neff_power)",
            ),
            Observable(
                name="log10_kf",
                title="log10 Kf",
                symbol="log10 Kf",
                delta="difference",
                digits=2,
                doc="log10 Kirchhoff index K*sum 1/lambda_i of the top-K second-moment "
                "eigenvalues s^2/(n_rows-1) above the relative floor (covariance eigenvalues "
                "only when the spectra are centred)",
                unit="log10(1/activation units^2)",
            ),
            Observable(
                name="alpha",
                title="alpha",
                symbol="α",
                delta="difference",
                digits=3,
                doc="spectral alpha: minus the LSQ slope of log s_i vs log i over ranks "
                "alpha_start+1..K (default 2..K, the tail)",
            ),
            Observable(
                name="tail_energy",
                title="tail energy",
                symbol="tail energy",
                delta="difference",
                digits=3,
                doc="sum_{i>K} s_i^2 / sum_i s_i^2 over the full spectrum",
            ),
        )
    }
)
OBSERVABLES = tuple(OBSERVABLE_SPECS)
# The paper's Tables 1 and 2 report these (with its values: analysis.tables.PAPER_VALUES).
PAPER_OBSERVABLES = ("neff", "log10_kf", "alpha")


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
# The mitigation table's baselines: the decode stage's transcripts (plain), those with
# OpenAI's no-speech skip (gating), and the decodes of the intervene stage's baselines rule
# (config intervene.baselines; decoded by whisper_spi.mitigation.run.run_shard).
PLAIN, GATING = "plain", "gating"
FALLBACK, TRANSCRIBE = "fallback", "transcribe"
FASTER, FASTER_VAD, FASTER_SILENCE = "faster", "faster_vad", "faster_silence"
DECODED_BASELINES = MappingProxyType(
    {
        FALLBACK: "OpenAI's temperature fallback and no-speech skip, no timestamps (our decoder)",
        TRANSCRIBE: "OpenAI's transcribe() on one window: timestamp mode, fallback, no-speech "
        "skip (our decoder)",
        FASTER: "faster-whisper's default transcribe (CTranslate2): beam 5, best_of 5, "
        "fallback, timestamps, no-speech skip",
        FASTER_VAD: "faster-whisper with vad_filter=True (Silero VAD)",
        FASTER_SILENCE: "faster-whisper with hallucination_silence_threshold (word timestamps)",
    }
)
BASELINES = (PLAIN, GATING, *DECODED_BASELINES)
# What a user can already run against hallucinations: the arms an intervention must beat.
USER_BASELINES = (GATING, *DECODED_BASELINES)
STRESSED = "stressed"  # every stress pooled
NO_SPEECH = "nonspeech"  # every non-speech input pooled
POOLED = MappingProxyType({STRESSED: STRESSES, NO_SPEECH: NONSPEECH})
