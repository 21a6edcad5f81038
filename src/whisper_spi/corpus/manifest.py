"""The corpus reader: a LibriSpeech-layout tree in, the manifest and the rejected files out.

Layout (as distributed by OpenSLR)::

    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utterance>.flac
    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   (lines "UTT_ID TEXT")

Audio may also be WAV (``.wav``) in place of FLAC. ``root`` may be ``"demo"`` (or None):
the small corpus shipped inside the package; or a manifest FILE (``.csv`` / ``.jsonl``, one
row per recording), read by :mod:`whisper_spi.corpus.user_manifest`. Both kinds of root give
:class:`Candidate` rows that go through the same ranking (stable-hash ``limit``, duplicate
ids) and the same audio checks here, so the frames out have the same contracts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path

import polars as pl
from tqdm import tqdm

from whisper_spi import schemas
from whisper_spi.corpus.audio import WHISPER_WINDOW_S, inspect_audio
from whisper_spi.corpus.candidates import Candidate
from whisper_spi.corpus.user_manifest import read_candidates
from whisper_spi.errors import AudioError, ConfigError
from whisper_spi.io import stable_hash

DEMO = "demo"
AUDIO_SUFFIXES = (".flac", ".wav")
ON_BAD_AUDIO = ("skip", "fail")

_MANIFEST_SCHEMA = {
    "utt_id": pl.String,
    "split": pl.String,
    "speaker": pl.String,
    "chapter": pl.String,
    "path": pl.String,
    "duration_s": pl.Float64,
    "sample_rate": pl.Int32,
    "text": pl.String,
    "note": pl.String,
}
_REJECTED_SCHEMA = {"path": pl.String, "reason": pl.String}


def demo_root() -> Path:
    """Root of the embedded demo corpus, wherever the package is installed."""
    root = resources.files("whisper_spi") / "data" / DEMO
    # Only a package unpacked on disk has real paths the decoders can open.
    if not isinstance(root, Path) or not root.is_dir():
        raise ConfigError(f"the embedded demo corpus is missing from this install: {root}")
    return root


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``None`` or ``"demo"`` name the embedded corpus; anything else is a LibriSpeech
    directory or a manifest file (its extension is checked by the manifest reader).
    """
    if root is None or (isinstance(root, str) and root == DEMO):
        return demo_root()
    path = Path(root).expanduser()
    if not (path.is_dir() or path.is_file()):
        what = "is neither a directory nor a file" if path.exists() else "does not exist"
        raise ConfigError(f"corpus root {what}: {path}")
    return path.resolve()


def _read_transcripts(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    texts: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        utt_id, _, text = line.strip().partition(" ")
        if utt_id:
            texts[utt_id] = text.strip()
    return texts


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir())


def _scan_split(root: Path, split: str) -> Iterator[Candidate]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise ConfigError(f"split directory does not exist: {split_dir}")
    for speaker_dir in _subdirs(split_dir):
        for chapter_dir in _subdirs(speaker_dir):
            speaker, chapter = speaker_dir.name, chapter_dir.name
            prefix = f"{speaker}-{chapter}-"
            trans_path = chapter_dir / f"{speaker}-{chapter}.trans.txt"
            texts = _read_transcripts(trans_path)
            audio_ids = set()
            audio_files = (p for p in chapter_dir.iterdir() if p.suffix in AUDIO_SUFFIXES)
            for audio in sorted(audio_files):
                utt_id = audio.stem
                audio_ids.add(utt_id)
                problem = None
                if not utt_id.startswith(prefix):
                    problem = f"file name is not {prefix}<utterance>{audio.suffix}"
                elif utt_id not in texts:
                    problem = f"no transcript line for {utt_id} in {trans_path.name}"
                yield Candidate(utt_id, split, speaker, chapter, audio, texts.get(utt_id), problem)
            for utt_id in sorted(texts.keys() - audio_ids):
                yield Candidate(
                    utt_id,
                    split,
                    speaker,
                    chapter,
                    chapter_dir / f"{utt_id}.flac",
                    texts[utt_id],
                    "transcript line without an audio file",
                )


def _normalise_splits(splits: str | Sequence[str]) -> list[str]:
    splits = [splits] if isinstance(splits, str) else list(splits)
    if not splits:
        raise ConfigError("no corpus split given (e.g. test-clean)")
    if len(set(splits)) != len(splits):
        raise ConfigError(f"a corpus split is listed twice: {splits}")
    return splits


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"corpus limit must be a positive integer or null, got {limit!r}")


def rank_candidates(found: Sequence[Candidate]) -> list[Candidate]:
    """``found`` in subset order, with repeated ids marked as problems.

    Subset order is stable_hash(utt_id), so a limit keeps the same utterances whatever
    the file order; ties (repeated ids) keep the order of ``found`` (the splits as given,
    the manifest's rows). An id is claimed by the first candidate that passes the layout
    checks; later ones with it are duplicates.
    """
    ranked = [
        c for _, c in sorted(enumerate(found), key=lambda ic: (stable_hash(ic[1].utt_id), ic[0]))
    ]
    claimed: dict[str, str] = {}
    for i, cand in enumerate(ranked):
        if cand.problem is not None:
            continue
        if cand.utt_id in claimed:
            ranked[i] = replace(
                cand, problem=f"duplicate utterance id {cand.utt_id} (also {claimed[cand.utt_id]})"
            )
        else:
            claimed[cand.utt_id] = cand.where or str(cand.path)
    return ranked


def _ranked_candidates(
    root: str | os.PathLike | None, splits: str | Sequence[str]
) -> tuple[Path, list[str], list[Candidate]]:
    """The root (a directory or a manifest file), the splits and :func:`rank_candidates`."""
    source = resolve_root(root)
    splits = _normalise_splits(splits)
    if source.is_file():
        found = read_candidates(source, splits)
    else:
        found = [c for split in splits for c in _scan_split(source, split)]
    return source, splits, rank_candidates(found)


def list_utterances(
    root: str | os.PathLike | None, splits: str | Sequence[str], limit: int | None = None
) -> list[str]:
    """The utterance ids the manifest will draw from, sorted, without reading any audio.

    Cheap enough for planning jobs. An upper bound: :func:`build_manifest` may reject some
    of these for their audio (it then fills a ``limit`` from further utterances, so with a
    limit and enough good files the counts agree).
    """
    _check_limit(limit)
    _, _, ranked = _ranked_candidates(root, splits)
    return sorted([c.utt_id for c in ranked if c.problem is None][:limit])


def build_manifest(
    root: str | os.PathLike | None,
    splits: str | Sequence[str],
    limit: int | None = None,
    on_bad_audio: str = "skip",
    max_duration_s: float = WHISPER_WINDOW_S,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scan ``root`` and return (manifest, rejected) frames under those data contracts.

    ``limit`` keeps the ``limit`` usable utterances with the smallest stable hash of their
    id, across all ``splits``: a fixed, order-independent subset. Files are checked in that
    order until enough are usable, so with a limit the rejected frame lists only the files
    looked at. Under ``on_bad_audio="skip"`` unusable files go to the rejected frame with
    the reason; under ``"fail"`` the first one raises AudioError naming it. A missing root
    or split always raises ConfigError. An utterance id found more than once belongs to
    the first file with it (in the order of ``splits``) that has a transcript line; the
    others are rejected as duplicates.

    A manifest file as ``root`` (:mod:`whisper_spi.corpus.user_manifest`) goes through the
    same checks: a bad row is rejected with its audio path and "line N: <reason>", or under
    ``"fail"`` raises AudioError naming the manifest, the line and the reason; a manifest
    that cannot be parsed raises DataError (ConfigError for an unknown extension).
    """
    if on_bad_audio not in ON_BAD_AUDIO:
        raise ConfigError(f"on_bad_audio must be one of {ON_BAD_AUDIO}, got {on_bad_audio!r}")
    _check_limit(limit)
    root_dir, splits, ranked = _ranked_candidates(root, splits)

    rows: list[dict] = []
    rejected: list[dict] = []
    want = limit if limit is not None else len(ranked)
    progress = tqdm(total=want, desc="corpus", unit="utt", disable=None)
    for cand in ranked:
        if len(rows) == want:
            break
        problem, report = cand.problem, None
        if problem is None:
            report = inspect_audio(cand.path, max_duration_s)
            problem = "; ".join(report.problems) or None
        if problem is not None:
            if on_bad_audio == "fail" and cand.where is not None:
                audio = "" if cand.path == root_dir else f" (audio {cand.path})"
                raise AudioError(
                    f"bad row in corpus manifest {root_dir}, {cand.where}: {problem}{audio}"
                )
            if on_bad_audio == "fail":
                raise AudioError(f"unusable audio {cand.path}: {problem}")
            reason = problem if cand.where is None else f"{cand.where}: {problem}"
            rejected.append({"path": str(cand.path), "reason": reason})
            continue
        rows.append(
            {
                "utt_id": cand.utt_id,
                "split": cand.split,
                "speaker": cand.speaker,
                "chapter": cand.chapter,
                "path": str(cand.path.resolve()),
                "duration_s": report.duration_s,
                "sample_rate": report.sample_rate,
                "text": cand.text,
                "note": "; ".join(report.notes),
            }
        )
        progress.update()
    progress.close()

    if not rows:
        first = f"; first: {rejected[0]['path']}: {rejected[0]['reason']}" if rejected else ""
        where = f"in corpus manifest {root_dir}" if root_dir.is_file() else f"under {root_dir}"
        raise AudioError(
            f"no usable utterance {where} in splits {splits} ({len(rejected)} rejected{first})"
        )
    manifest = pl.DataFrame(rows, schema=_MANIFEST_SCHEMA).sort("utt_id")
    rejected_df = pl.DataFrame(rejected, schema=_REJECTED_SCHEMA).sort("path")
    return manifest, rejected_df


def write_manifest(
    root: str | os.PathLike | None,
    splits: str | Sequence[str],
    limit: int | None,
    on_bad_audio: str,
    out_manifest: str | os.PathLike,
    out_rejected: str | os.PathLike,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build the manifest and write both frames (contracts ``manifest`` and ``rejected``)."""
    manifest, rejected = build_manifest(root, splits, limit, on_bad_audio)
    schemas.write_parquet(manifest, "manifest", out_manifest)
    schemas.write_parquet(rejected, "rejected", out_rejected)
    return manifest, rejected
