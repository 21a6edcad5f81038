"""The corpus reader, the audio loader and the embedded demo corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import whisper_spi
from whisper_spi import schemas
from whisper_spi.corpus.audio import inspect_audio, load_audio, save_flac
from whisper_spi.corpus.manifest import build_manifest, demo_root, list_utterances, write_manifest
from whisper_spi.errors import AudioError, ConfigError
from whisper_spi.io import stable_hash

SR = 16000


def speechy(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A tone with a noisy envelope: neither silent nor constant."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * rng.random(t.size))).astype(np.float32)


class Tree:
    """A LibriSpeech-layout corpus under construction in a temp dir."""

    def __init__(self, root: Path):
        self.root = root

    def add(
        self,
        utt_id: str,
        wave: np.ndarray | None = None,
        sr: int = SR,
        split="test-clean",
        text: str | None = "HELLO WORLD",
        suffix=".flac",
        raw: bytes | None = None,
        subtype: str | None = None,
    ) -> Path:
        speaker, chapter, _ = utt_id.split("-")
        chapter_dir = self.root / split / speaker / chapter
        chapter_dir.mkdir(parents=True, exist_ok=True)
        path = chapter_dir / f"{utt_id}{suffix}"
        if raw is not None:
            path.write_bytes(raw)
        else:
            sf.write(path, speechy(1.0) if wave is None else wave, sr, subtype=subtype)
        trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
        if text is not None:
            with trans.open("a", encoding="utf-8") as f:
                f.write(f"{utt_id} {text}\n")
        else:
            trans.touch()
        return path


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path / "LibriSpeech")


def test_good_files_and_conversion_notes(tree: Tree):
    tree.add("100-200-0000")
    tree.add("100-200-0001", np.stack([speechy(1.0), speechy(1.0, seed=1)], axis=1))
    tree.add("100-200-0002", speechy(1.5, sr=44100), sr=44100)
    tree.add("100-200-0003", speechy(1.0, sr=48000), sr=48000)
    tree.add("100-200-0004", speechy(31.0) * 0.1)
    tree.add("101-300-0000", speechy(2.0), suffix=".wav")
    manifest, rejected = build_manifest(tree.root, ["test-clean"])

    assert rejected.height == 0
    rows = {r["utt_id"]: r for r in manifest.iter_rows(named=True)}
    assert sorted(rows) == manifest["utt_id"].to_list()
    assert rows["100-200-0000"]["note"] == ""
    assert "downmixed 2 channels" in rows["100-200-0001"]["note"]
    assert "resampled 44100 Hz" in rows["100-200-0002"]["note"]
    assert "resampled 48000 Hz" in rows["100-200-0003"]["note"]
    assert "truncated to 30 s" in rows["100-200-0004"]["note"]
    # duration and rate describe the source file, not the 16 kHz version
    assert rows["100-200-0002"]["sample_rate"] == 44100
    assert rows["100-200-0002"]["duration_s"] == pytest.approx(1.5)
    assert rows["100-200-0004"]["duration_s"] == pytest.approx(31.0)
    r = rows["101-300-0000"]
    assert (r["split"], r["speaker"], r["chapter"], r["text"]) == (
        "test-clean",
        "101",
        "300",
        "HELLO WORLD",
    )
    assert Path(r["path"]).is_absolute() and Path(r["path"]).is_file()
    schemas.conform(manifest, "manifest")


BAD = {
    "unreadable": (dict(raw=b"this is not audio at all" * 10), "unreadable (Format not"),
    "empty_file": (dict(raw=b""), "empty file"),
    "no_samples": (dict(wave=np.zeros(0, np.float32), suffix=".wav"), "empty (no samples)"),
    "silent": (dict(wave=np.zeros(SR, np.float32)), "silent"),
    "too_short": (dict(wave=speechy(0.05)), "too short"),
    "nan": (
        dict(
            wave=np.where(np.arange(SR) == 500, np.nan, speechy(1.0)),
            suffix=".wav",
            subtype="FLOAT",
        ),
        "non-finite",
    ),
    "inf": (
        dict(
            wave=np.where(np.arange(SR) == 500, np.inf, speechy(1.0)),
            suffix=".wav",
            subtype="FLOAT",
        ),
        "non-finite",
    ),
    "no_transcript": (dict(text=None), "no transcript line"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_file_is_rejected_with_reason_or_fails(tree: Tree, kind: str):
    kwargs, reason = BAD[kind]
    tree.add("100-200-0000")
    bad = tree.add("100-200-0001", **kwargs)

    manifest, rejected = build_manifest(tree.root, ["test-clean"], on_bad_audio="skip")
    assert manifest["utt_id"].to_list() == ["100-200-0000"]
    assert rejected["path"].to_list() == [str(bad)]
    assert reason in rejected["reason"][0]
    schemas.conform(rejected, "rejected")

    with pytest.raises(AudioError, match=str(bad)):
        build_manifest(tree.root, ["test-clean"], on_bad_audio="fail")


def test_transcript_line_without_audio_is_reported(tree: Tree):
    tree.add("100-200-0000")
    trans = tree.root / "test-clean/100/200/100-200.trans.txt"
    trans.write_text(trans.read_text() + "100-200-0009 NO SUCH FILE\n")
    _, rejected = build_manifest(tree.root, ["test-clean"])
    assert rejected.row(0) == (
        str(trans.parent / "100-200-0009.flac"),
        "transcript line without an audio file",
    )


def test_duplicate_utterance_id_across_splits_keeps_the_first(tree: Tree):
    first = tree.add("100-200-0000", split="test-clean")
    second = tree.add("100-200-0000", split="test-other")
    manifest, rejected = build_manifest(tree.root, ["test-clean", "test-other"])
    assert manifest["path"].to_list() == [str(first.resolve())]
    assert rejected["path"].to_list() == [str(second)]
    assert "duplicate utterance id 100-200-0000" in rejected["reason"][0]
    with pytest.raises(AudioError, match="duplicate"):
        build_manifest(tree.root, ["test-clean", "test-other"], on_bad_audio="fail")


@pytest.mark.parametrize("on_bad_audio", ["skip", "fail"])
def test_missing_root_or_split_always_fails_naming_the_path(
    tmp_path: Path, tree: Tree, on_bad_audio: str
):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"corpus root does not exist: {missing}"):
        build_manifest(missing, ["test-clean"], on_bad_audio=on_bad_audio)
    tree.add("100-200-0000")
    with pytest.raises(ConfigError, match=str(tree.root / "test-other")):
        build_manifest(tree.root, ["test-clean", "test-other"], on_bad_audio=on_bad_audio)


def test_bad_options_are_config_errors(tree: Tree):
    tree.add("100-200-0000")
    for kwargs in (dict(on_bad_audio="ignore"), dict(limit=0), dict(limit=2.5)):
        with pytest.raises(ConfigError):
            build_manifest(tree.root, ["test-clean"], **kwargs)
    with pytest.raises(ConfigError, match="twice"):
        build_manifest(tree.root, ["test-clean", "test-clean"])


def test_limit_keeps_smallest_hashes_of_usable_utterances(tree: Tree):
    ids = [f"{spk}-7-{u:04d}" for spk in (10, 11, 12) for u in range(5)]
    for utt_id in ids:
        tree.add(utt_id)
    by_hash = sorted(ids, key=stable_hash)
    manifest, _ = build_manifest(tree.root, ["test-clean"], limit=4)
    assert sorted(manifest["utt_id"]) == sorted(by_hash[:4])

    # a bad file among the first four is replaced by the next usable one
    bad = by_hash[1]
    spk, chap, _ = bad.split("-")
    (tree.root / "test-clean" / spk / chap / f"{bad}.flac").write_bytes(b"")
    manifest, rejected = build_manifest(tree.root, ["test-clean"], limit=4)
    assert sorted(manifest["utt_id"]) == sorted(by_hash[:1] + by_hash[2:5])
    assert rejected.height == 1


def test_list_utterances_plans_without_reading_audio(tree: Tree):
    ids = [f"{spk}-7-{u:04d}" for spk in (10, 11) for u in range(4)]
    for utt_id in ids:
        tree.add(utt_id)
    tree.add("12-7-0000", text=None)  # no transcript: never listed
    tree.add("10-7-0000", split="test-other")  # duplicate: listed once
    splits = ["test-clean", "test-other"]
    assert list_utterances(tree.root, splits) == sorted(ids)
    manifest, _ = build_manifest(tree.root, splits, limit=3)
    assert list_utterances(tree.root, splits, limit=3) == manifest["utt_id"].to_list()
    (tree.root / "test-clean/11/7/11-7-0001.flac").write_bytes(b"")  # bad audio still listed
    assert list_utterances(tree.root, splits) == sorted(ids)
    assert (
        len(list_utterances("demo", ["test-clean"]))
        == build_manifest("demo", "test-clean")[0].height
    )


def test_nothing_usable_is_an_error(tree: Tree):
    tree.add("100-200-0000", wave=np.zeros(SR, np.float32))
    with pytest.raises(AudioError, match="no usable utterance"):
        build_manifest(tree.root, ["test-clean"])


def test_write_manifest_writes_both_contracts(tree: Tree, tmp_path: Path):
    tree.add("100-200-0000")
    tree.add("100-200-0001", raw=b"")
    out_m, out_r = tmp_path / "out/manifest.parquet", tmp_path / "out/rejected.parquet"
    write_manifest(tree.root, ["test-clean"], None, "skip", out_m, out_r)
    assert pq.read_schema(out_m).names == [c.name for c in schemas.contract("manifest").cols]
    assert pl.read_parquet(out_r).height == 1


def test_load_audio_downmixes_and_resamples(tmp_path: Path):
    left, right = speechy(1.0, 44100), speechy(1.0, 44100, seed=3)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size == SR
    assert inspect_audio(path).ok
    with pytest.raises(AudioError, match="nowhere.flac"):
        load_audio(tmp_path / "nowhere.flac")


def test_save_flac_round_trips_deterministically_and_refuses_to_clip(tmp_path: Path):
    wave = speechy(1.0)
    save_flac(tmp_path / "a.flac", wave)
    save_flac(tmp_path / "b.flac", wave)
    assert (tmp_path / "a.flac").read_bytes() == (tmp_path / "b.flac").read_bytes()
    back, sr = sf.read(tmp_path / "a.flac", dtype="float32")
    assert sr == SR and np.abs(back - wave).max() < 1e-4
    with pytest.raises(ValueError, match="exceeds full scale"):
        save_flac(tmp_path / "c.flac", wave * 4)
    assert not (tmp_path / "c.flac").exists()


def test_demo_corpus_is_complete_and_small():
    root = demo_root()
    assert root.parent.parent == Path(whisper_spi.__file__).parent  # inside the package
    manifest, rejected = build_manifest("demo", ["test-clean"])
    assert rejected.height == 0
    assert manifest.height >= 40
    assert manifest["speaker"].n_unique() >= 7
    assert manifest["duration_s"].min() >= 3.0 and manifest["duration_s"].max() <= 12.0
    assert set(manifest["sample_rate"]) == {SR} and set(manifest["note"]) == {""}
    assert manifest["text"].str.contains(r"^[A-Z' ]+$").all()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= 5 * 2**20
    assert build_manifest(None, ["test-clean"])[0].equals(manifest)
