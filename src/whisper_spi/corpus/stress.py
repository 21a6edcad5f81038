"""The acoustic stresses: pure functions from a 16 kHz mono wave to a stressed one, and the
stress stage's shards of every condition.

Conditions: ``clean`` (identity), ``time_stretch`` (3.5x faster), ``speaker_mix`` (the
target plus five other speakers at equal RMS) and ``gaussian_noise`` (white noise at 0 dB
SNR), each also at the graded levels of ``<stress>@<level>``; the non-speech inputs are
whisper_spi.corpus.nonspeech's. Each function returns :class:`Stressed` (wave, gain): if the
result would exceed the FLAC full scale it is scaled down as a whole to a peak of
whisper_spi.corpus.waves.MAX_PEAK, and ``gain`` records that factor (1.0 when nothing was
done); nothing is ever clipped.

Randomness comes only from ``derive_seed(seed, condition, utt_id)``, so an utterance's
stressed audio is the same whatever the shard size, worker count or job order.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyrubberband
from tqdm import tqdm

from whisper_spi import schemas
from whisper_spi.corpus.audio import TARGET_SR, load_audio, save_flac
from whisper_spi.corpus.nonspeech import (
    SPEECH_DIR,
    environmental_item,
    environmental_recordings,
    noise_item,
    silent_item,
)
from whisper_spi.corpus.waves import Item, Stressed, limit_peak, mono, rms_of
from whisper_spi.errors import ConfigError, WhisperSpiError
from whisper_spi.io import derive_seed
from whisper_spi.registry import (
    CLEAN,
    CONDITIONS,
    GRADED_PARAM,
    NONSPEECH,
    NONSPEECH_PARAMS,
    STRESS_PARAMS,
    split_condition,
)

# each condition's parameters with their defaults, from the registry's schema blocks
DEFAULT_PARAMS: dict[str, dict] = {
    CLEAN: {},
    **{
        name: {key: prop["default"] for key, prop in block["properties"].items()}
        for name, block in {**STRESS_PARAMS, **NONSPEECH_PARAMS}.items()
    },
}
# rubberband round-trips audio through 16-bit WAV files and lowers the gain by itself if
# its output would clip; feeding it this peak leaves room for the stretched peaks.
_STRETCH_HEADROOM_PEAK = 0.5


def clean(wave: np.ndarray) -> Stressed:
    """The unstressed reference: the wave as is (peak-limited like every condition)."""
    return limit_peak(mono(wave))


def time_stretch(wave: np.ndarray, sr: int = TARGET_SR, factor: float = 3.5) -> Stressed:
    """Change tempo without changing pitch, with rubberband (via pyrubberband).

    ``factor`` is a speed factor: 3.5 makes speech 3.5 times FASTER, so the output lasts
    ``len(wave) / factor`` samples; a factor below 1 slows it down. Speeding up is the
    stress of the paper: slowing down 3.5x leaves Whisper's WER well below 0.5.
    Needs the ``rubberband`` command-line program.
    """
    if not factor > 0:
        raise ConfigError(f"time_stretch factor must be > 0, got {factor!r}")
    if shutil.which("rubberband") is None:
        raise WhisperSpiError(
            "time_stretch needs the `rubberband` program on PATH: install it with "
            "`apt-get install rubberband-cli` (Debian/Ubuntu) or `brew install rubberband`"
        )
    wave = mono(wave)
    peak = float(np.abs(wave).max())
    if peak == 0.0:
        return Stressed(np.zeros(round(wave.size / factor), np.float32), 1.0)
    scale = _STRETCH_HEADROOM_PEAK / peak
    stretched = pyrubberband.time_stretch(wave * scale, sr, rate=factor)
    return limit_peak(np.asarray(stretched, dtype=np.float64) / scale)


def speaker_mix(target: np.ndarray, others: Sequence[np.ndarray]) -> Stressed:
    """Add the ``others`` to ``target``, each at the target's RMS over the target's length.

    A partner shorter than the target is looped, a longer one trimmed, before its RMS is
    matched, so every voice carries the same power in the mix.
    """
    target = mono(target, "target")
    if not others:
        raise ValueError("speaker_mix needs at least one other utterance")
    target_rms = rms_of(target)
    mix = target.copy()
    for i, other in enumerate(others):
        fitted = np.resize(mono(other, f"partner {i}"), target.size)  # loops or trims
        other_rms = rms_of(fitted)
        if other_rms == 0.0:
            raise ValueError(f"partner {i} is silent over the target's length")
        mix += fitted * (target_rms / other_rms)
    return limit_peak(mix)


def gaussian_noise(wave: np.ndarray, snr_db: float = 0.0, *, rng: np.random.Generator) -> Stressed:
    """Add white Gaussian noise at ``snr_db`` below the utterance's mean power.

    The signal power is the mean square over the whole utterance (pauses included). The
    noise drawn from ``rng`` is scaled so that its own realised mean square is exactly
    ``signal power / 10**(snr_db / 10)``: the SNR of the output is the target exactly,
    not only in expectation. The anti-clipping gain scales signal and noise alike.
    """
    wave = mono(wave)
    signal_power = float(np.mean(np.square(wave)))
    if signal_power == 0.0:
        raise ValueError("cannot set an SNR on a silent wave")
    noise = rng.standard_normal(wave.size)
    noise *= math.sqrt(signal_power / 10 ** (snr_db / 10) / np.mean(np.square(noise)))
    return limit_peak(wave + noise)


def base_condition(condition: str) -> str:
    """The condition's implementation: a graded ``<stress>@<level>`` is its stress's."""
    try:
        name, _ = split_condition(condition)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if name not in CONDITIONS + NONSPEECH:
        known = CONDITIONS + NONSPEECH
        raise ConfigError(f"unknown stress condition {condition!r}; known: {known}")
    return name


def _resolve_params(condition: str, params: Mapping | None) -> dict:
    """The condition's parameters: its defaults, ``params`` over them and, for a graded
    condition, the level its name gives (``levels`` lists conditions, not a parameter)."""
    name = base_condition(condition)
    resolved = {k: v for k, v in DEFAULT_PARAMS[name].items() if k != "levels"}
    given = {k: v for k, v in (params or {}).items() if k != "levels"}
    unknown = set(given) - set(resolved)
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {sorted(unknown)} for stress {condition!r};"
            f" known: {sorted(resolved)}"
        )
    resolved.update(given)
    _, level = split_condition(condition)
    if level is not None:
        key = GRADED_PARAM[name]
        value = type(resolved[key])(level)  # n_speakers stays an integer
        if key in given and given[key] != value:
            raise ConfigError(
                f"condition {condition!r} sets {name}.{key} = {value:g}, but its parameters "
                f"say {given[key]!r}"
            )
        if value != level:
            raise ConfigError(f"condition {condition!r}: {name}.{key} must be an integer")
        resolved[key] = value
    return resolved


def draw_mix_partners(
    manifest: pl.DataFrame, utt_id: str, n_speakers: int = 6, seed: int = 0
) -> list[str]:
    """Choose the ``n_speakers - 1`` utterances mixed into ``utt_id``.

    Each comes from a different speaker, none the target's: speakers are drawn without
    replacement, then one utterance of each. The draw depends only on (seed, utt_id) and
    the manifest's contents, not its row order.
    """
    if isinstance(n_speakers, bool) or not isinstance(n_speakers, int) or n_speakers < 2:
        raise ConfigError(f"speaker_mix n_speakers must be an integer >= 2, got {n_speakers!r}")
    target = manifest.filter(pl.col("utt_id") == utt_id)
    if target.height == 0:
        raise ConfigError(f"utterance {utt_id} is not in the manifest")
    target_speaker = target["speaker"][0]
    by_speaker: dict[str, list[str]] = {}
    others = manifest.filter(pl.col("speaker") != target_speaker).sort("utt_id")
    for speaker, other_id in others.select("speaker", "utt_id").iter_rows():
        by_speaker.setdefault(speaker, []).append(other_id)
    speakers = sorted(by_speaker)
    if len(speakers) < n_speakers - 1:
        raise ConfigError(
            f"speaker_mix with n_speakers={n_speakers} needs {n_speakers - 1} speakers other "
            f"than {target_speaker} (speaker of {utt_id}); the manifest has {len(speakers)}"
        )
    rng = np.random.default_rng(derive_seed(seed, "speaker_mix", utt_id))
    chosen = rng.choice(len(speakers), size=n_speakers - 1, replace=False)
    return [by_speaker[speakers[i]][rng.integers(len(by_speaker[speakers[i]]))] for i in chosen]


def apply_stress(
    condition: str,
    wave: np.ndarray,
    sr: int,
    utt_id: str,
    seed: int,
    params: Mapping | None = None,
    partner_waves: Mapping[str, np.ndarray] | None = None,
    *,
    rank: int | None = None,
    recordings: Sequence[str] | None = None,
) -> tuple[np.ndarray, float, str]:
    """Apply one condition to one utterance: (stressed wave, gain, params as JSON).

    ``params`` overrides :data:`DEFAULT_PARAMS` for the condition. For ``speaker_mix``,
    ``partner_waves`` maps the partner utterance ids (from :func:`draw_mix_partners`) to
    their waves; the ids go into the JSON. For ``environmental``, ``rank`` is the item's
    rank among the utterances by utt_id (it takes recording perm[rank mod n]: see
    :func:`recording_order`; None = a recording drawn at random from (seed, utt_id)) and
    ``recordings`` the files (None = :func:`environmental_recordings` of the params).
    """
    if sr != TARGET_SR:
        raise ValueError(f"stress functions expect {TARGET_SR} Hz audio, got {sr} Hz")
    resolved = _resolve_params(condition, params)
    # a graded level draws what its stress draws (the same noise, the same partners): the
    # levels differ in the parameter alone
    name = base_condition(condition)
    item = Item(wave, sr, utt_id, seed, name, resolved, partner_waves or {}, rank, recordings)
    out = APPLY[name](item)
    return out.wave, out.gain, json.dumps(resolved, sort_keys=True)


def _mixed(item: Item) -> Stressed:
    need = item.params["n_speakers"] - 1
    if len(item.partners) != need:
        raise ValueError(
            f"speaker_mix of {item.utt_id} needs {need} partner waves, got {len(item.partners)}"
        )
    item.params["partners"] = list(item.partners)
    return speaker_mix(item.wave, list(item.partners.values()))


# condition -> implementation: one entry per registry name (tests/test_registry.py checks)
APPLY: dict[str, Callable[[Item], Stressed]] = {
    CLEAN: lambda item: clean(item.wave),
    "time_stretch": lambda item: time_stretch(item.wave, item.sr, float(item.params["factor"])),
    "speaker_mix": _mixed,
    "gaussian_noise": lambda item: gaussian_noise(
        item.wave, float(item.params["snr_db"]), rng=item.rng()
    ),
    "silence": silent_item,
    "noise_only": noise_item,
    "environmental": environmental_item,
}


def read_stress_shard(
    stress_manifests: str | Path | Sequence[str | Path],
    corpus_manifest: str | Path,
    ids: Sequence[str] | None = None,
    condition: str | None = None,
) -> list[dict]:
    """Stressed utterances (utt_id, path, speaker, text, wave) of the manifests, sorted by
    utt_id; only ``ids`` if given. A non-speech ``condition`` has an empty reference: nothing
    is said, so any transcript is a hallucination."""
    import soundfile as sf

    paths = [stress_manifests] if isinstance(stress_manifests, str | Path) else stress_manifests
    shard = schemas.scan_parquet(paths, "stress_manifest", ["utt_id", "path"])
    if ids is not None:
        shard = shard.filter(pl.col("utt_id").is_in(list(ids)))
    columns = ["utt_id", "speaker", "text"]
    corpus = schemas.scan_parquet([corpus_manifest], "manifest", columns).select(columns)
    rows = shard.select("utt_id", "path").join(corpus, on="utt_id", how="left")
    rows = rows.sort("utt_id").collect()
    if condition in NONSPEECH:
        rows = rows.with_columns(text=pl.lit(""))
    return [
        dict(row, wave=sf.read(row["path"], dtype="float32")[0])
        for row in rows.iter_rows(named=True)
    ]


def n_shards(n_utterances: int, shard_size: int) -> int:
    """How many shards of ``shard_size`` utterances cover ``n_utterances``."""
    if shard_size < 1:
        raise ConfigError(f"shard size must be >= 1, got {shard_size}")
    return math.ceil(n_utterances / shard_size)


def write_stress_shard(
    manifest_path: str | os.PathLike,
    condition: str,
    shard_index: int,
    shard_size: int,
    seed: int,
    params: Mapping | None,
    out_dir: str | os.PathLike,
    out_manifest: str | os.PathLike,
    limit: int | None = None,
) -> pl.DataFrame:
    """Stress the ``shard_index``-th block of ``shard_size`` utterances (manifest sorted by
    utt_id): FLACs to ``out_dir/<utt_id>.flac``, rows to ``out_manifest`` (contract
    ``stress_manifest``). Returns the rows written.

    A shard past the end of the manifest is written empty: jobs are planned from
    :func:`whisper_spi.corpus.manifest.list_utterances`, which counts files before their audio is
    checked, so the plan may hold a shard that no usable utterance fills. ``limit``: only the
    first ``limit`` utterances are stressed (the non-speech inputs' nonspeech.n_items); mix
    partners are still drawn from the whole manifest. An environmental item's rank (which
    recording it takes) is its row in the sorted manifest, whatever the shard size.
    """
    if shard_index < 0 or shard_size < 1:
        raise ConfigError(
            f"need shard index >= 0 and shard size >= 1, got {shard_index} and {shard_size}"
        )
    manifest = schemas.scan_parquet([manifest_path], "manifest").collect().sort("utt_id")
    resolved = _resolve_params(condition, params)
    block = manifest.head(limit or manifest.height).slice(shard_index * shard_size, shard_size)
    paths = dict(manifest.select("utt_id", "path").iter_rows())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # the rule's output even when empty
    recordings = None
    if base_condition(condition) == "environmental":
        listing = environmental_recordings(resolved)
        recordings = listing.paths
        if resolved.get("folder") is not None:
            print(
                f"environmental: {len(recordings)} recordings in {resolved['folder']}; left "
                f"out: {listing.speech} files under directories named {SPEECH_DIR!r} (speech, "
                f"not non-speech), {listing.other} hidden or non-audio files",
                file=sys.stderr,
            )
    rows = []
    for rank, (utt_id, path) in enumerate(
        tqdm(
            block.select("utt_id", "path").iter_rows(),
            total=block.height,
            desc=f"{condition} shard {shard_index}",
            unit="utt",
        ),
        start=shard_index * shard_size,
    ):
        partners = None
        if base_condition(condition) == "speaker_mix":
            ids = draw_mix_partners(manifest, utt_id, resolved["n_speakers"], seed)
            partners = {pid: load_audio(paths[pid]) for pid in ids}
        wave, gain, params_json = apply_stress(
            condition,
            load_audio(path),
            TARGET_SR,
            utt_id,
            seed,
            resolved,
            partners,
            rank=rank,
            recordings=recordings,
        )
        out_path = out_dir / f"{utt_id}.flac"
        save_flac(out_path, wave)
        rows.append(
            {
                "utt_id": utt_id,
                "stress": condition,
                "path": str(out_path.resolve()),
                "params": params_json,
                "gain": gain,
                "seed": derive_seed(seed, base_condition(condition), utt_id),
            }
        )
    shard = schemas.frame_from_rows(rows, "stress_manifest")
    schemas.write_parquet(shard, "stress_manifest", out_manifest)
    return shard
