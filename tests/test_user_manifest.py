"""A corpus given as a manifest file (.csv / .jsonl) over real audio: the demo corpus's FLACs.

The LibriSpeech reader on the demo root is the independent reference: the same recordings
named in a manifest must give the same manifest rows.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from whisper_spi import schemas
from whisper_spi.config import _MANIFEST_SUFFIXES, validate
from whisper_spi.corpus import user_manifest
from whisper_spi.corpus.manifest import build_manifest, demo_root, list_utterances, write_manifest
from whisper_spi.errors import AudioError, ConfigError, DataError

COLUMNS = ["path", "transcript", "speaker", "utt_id", "split", "chapter"]
FIRST_LINE = {".csv": 2, ".jsonl": 1}  # the CSV header is line 1


@pytest.fixture(scope="module")
def reference() -> pl.DataFrame:
    """The demo corpus as the LibriSpeech reader sees it."""
    manifest, rejected = build_manifest("demo", ["test-clean"])
    assert rejected.height == 0
    return manifest


def demo_file(utt_id: str) -> Path:
    speaker, chapter, _ = utt_id.split("-")
    return demo_root() / "test-clean" / speaker / chapter / f"{utt_id}.flac"


def write(path: Path, rows: list[dict], columns: list[str] = COLUMNS) -> Path:
    """A manifest: CSV (absent keys are empty cells) or JSONL (absent keys are left out)."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def good_row(ref: pl.DataFrame, utt_id: str, **kw) -> dict:
    r = ref.row(by_predicate=pl.col("utt_id") == utt_id, named=True)
    row = {"path": r["path"], "transcript": r["text"], "speaker": r["speaker"]}
    return {**row, "utt_id": utt_id, "split": r["split"], "chapter": r["chapter"], **kw}


def bad_rows(tmp: Path, ref: pl.DataFrame) -> list[tuple[dict, str, str | None]]:
    """(row, reason, rejected path: None = the manifest) of every kind of bad row."""
    silent, text_file = tmp / "silent.flac", tmp / "notes.flac"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    text_file.write_text("not audio at all\n")
    first = good_row(ref, "9002-1002-0000")
    return [
        ({**first, "path": "missing.flac"}, "audio file missing", str(tmp / "missing.flac")),
        ({**first, "utt_id": "", "transcript": " "}, "empty transcript", first["path"]),
        (first, "duplicate utterance id 9002-1002-0000 (also line ", first["path"]),
        ({**first, "utt_id": "x1", "path": str(text_file)}, "unreadable", str(text_file)),
        ({**first, "utt_id": "x2", "path": "silent.flac"}, "silent", str(silent)),
        ({**first, "utt_id": "x3", "speaker": ""}, "empty speaker", first["path"]),
        ({**first, "utt_id": "x4", "path": ""}, "empty path", None),
        ({**first, "utt_id": "x5", "speaker": "a-b"}, "speaker 'a-b' is not an id", first["path"]),
        ({**first, "utt_id": "x/../y"}, "utt_id 'x/../y' is not an id", first["path"]),
        ({**first, "utt_id": "x6", "path": "."}, "audio path is not a file", str(tmp)),
    ]


GOOD = ["9002-1002-0003", "9004-1004-0001", "9006-1006-0002"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_good_rows_match_the_librispeech_reader_and_bad_rows_are_rejected(
    tmp_path: Path, reference: pl.DataFrame, suffix: str
):
    good = [good_row(reference, u) for u in GOOD]
    good[1]["path"] = os.path.relpath(good[1]["path"], tmp_path)  # relative to the manifest
    good[2] = {k: v for k, v in good[2].items() if k != "utt_id"}  # default: the stem
    bad = bad_rows(tmp_path, reference)
    # the first row claims 9002-1002-0000; its later copy is the duplicate
    rows = [good_row(reference, "9002-1002-0000"), *good, *(row for row, _, _ in bad)]
    manifest_path = write(tmp_path / f"mine{suffix}", rows)

    manifest, rejected = build_manifest(manifest_path, ["test-clean"])
    expected = reference.filter(pl.col("utt_id").is_in([*GOOD, "9002-1002-0000"]))
    assert manifest.equals(expected)  # same rows, columns, types and order
    schemas.conform(manifest, "manifest")

    schemas.conform(rejected, "rejected")
    line0 = FIRST_LINE[suffix] + 1 + len(good)
    want = [
        (path or str(manifest_path), f"line {line0 + i}: {reason}")
        for i, (_, reason, path) in enumerate(bad)
    ]
    got = sorted(rejected.iter_rows(), key=lambda r: int(r[1].split(":")[0].split()[1]))
    assert len(got) == len(want)
    for (path, reason), (want_path, want_reason) in zip(got, want, strict=True):
        assert path == want_path
        assert reason.startswith(want_reason), (reason, want_reason)

    every = list_utterances(manifest_path, ["test-clean"])  # no audio read: x1, x2 listed
    assert every == sorted([*expected["utt_id"], "9002-x1", "9002-x2"])


def test_format_specific_bad_rows(tmp_path: Path, reference: pl.DataFrame):
    first = good_row(reference, "9002-1002-0000")
    lines = [
        ",".join(COLUMNS[:3]),
        f"{first['path']},HELLO,9002",
        f"{demo_file('9002-1002-0001')},HELLO",  # a value short
        f"{demo_file('9002-1002-0002')},HELLO,9002,extra",
    ]
    path = tmp_path / "short.csv"
    path.write_text("\n".join(lines) + "\n")
    _, rejected = build_manifest(path, ["x"])
    assert sorted(rejected["reason"]) == [
        "line 3: missing speaker",
        "line 4: 1 value(s) more than the header's columns",
    ]

    rows = [
        {"path": first["path"], "transcript": "HI", "speaker": "9002"},
        {"path": str(demo_file("9002-1002-0001")), "transcript": "HI", "speaker": 9002},
        {"path": str(demo_file("9002-1002-0002")), "transcript": None, "speaker": "9002"},
        {"path": [1], "transcript": "HI", "speaker": "9002"},
        {"path": str(demo_file("9002-1002-0004")), "speaker": "9002", "utt_id": None},
    ]
    path = write(tmp_path / "types.jsonl", rows)
    _, rejected = build_manifest(path, ["x"])
    assert sorted(rejected["reason"]) == [
        "line 2: speaker must be a string, got int 9002",
        "line 3: missing transcript",
        "line 4: path must be a string, got list [1]",
        "line 5: missing transcript",
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_fail_mode_names_the_manifest_the_line_and_the_reason(
    tmp_path: Path, reference: pl.DataFrame, suffix: str
):
    good = good_row(reference, "9002-1002-0000")
    for row, reason, _ in bad_rows(tmp_path, reference):
        path = write(tmp_path / f"m{suffix}", [good, row])
        line = FIRST_LINE[suffix] + 1
        with pytest.raises(AudioError) as err:
            build_manifest(path, ["test-clean"], on_bad_audio="fail")
        message = str(err.value)
        assert message.startswith(f"bad row in corpus manifest {path}, line {line}: {reason}")


@pytest.mark.parametrize(
    ("name", "content", "error", "match"),
    [
        ("m.csv", 'path,transcript,speaker\n"a.flac,HI,9002\n', DataError, "not valid CSV"),
        ("m.csv", "", DataError, "empty: expected a header line"),
        ("m.csv", "path,transcript\na.flac,HI\n", DataError, r"no column speaker \(it has: path"),
        ("m.csv", "path,transcript,speaker,path\n", DataError, "column named twice.*path"),
        ("m.csv", b"fLaC\x00\x00\x00\x22\x12\x00\xff\xfe", DataError, "not UTF-8"),
        ("m.csv", "path,transcript,speaker\n", DataError, "holds no rows"),
        ("m.jsonl", '{"path": "a.flac"}\n{"path": \n', DataError, "line 2 is not valid JSON"),
        ("m.jsonl", '["a.flac", "HI", "9002"]\n', DataError, "line 1 is a JSON list"),
        ("m.jsonl", '{"path": "a.flac", "transcript": "HI"}\n', DataError, "no column speaker"),
        ("m.tsv", "path\ttranscript\tspeaker\n", ConfigError, r"must be \.csv or \.jsonl"),
    ],
)
def test_a_malformed_manifest_fails_at_once_naming_the_file(
    tmp_path: Path, name: str, content: str | bytes, error: type, match: str
):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for read in (
        lambda: build_manifest(path, ["test-clean"]),
        lambda: list_utterances(path, ["test-clean"]),
    ):
        with pytest.raises(error, match=match) as err:
            read()
        assert str(path) in str(err.value)


def test_the_cli_reports_a_bad_manifest_in_one_line(tmp_path: Path, capsys):
    from whisper_spi.cli import main

    path = tmp_path / "m.csv"
    path.write_text("path,transcript\n")
    out = [f"--manifest={tmp_path / 'm.parquet'}", f"--rejected={tmp_path / 'r.parquet'}"]
    assert main(["corpus", "--root", str(path), *out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("whisper-spi corpus: error: corpus manifest") and "\n" not in err


def demo_manifest(tmp_path: Path, reference: pl.DataFrame, name: str = "mine.csv") -> Path:
    """Every demo utterance by relative path, ids from the file stems, no split column."""
    rows = [
        {"path": os.path.relpath(p, tmp_path), "transcript": t, "speaker": s, "chapter": c}
        for p, t, s, c in reference.select("path", "text", "speaker", "chapter").iter_rows()
    ]
    return write(tmp_path / name, rows, ["path", "transcript", "speaker", "chapter"])


def test_limit_keeps_the_same_stable_hash_subset(tmp_path: Path, reference: pl.DataFrame):
    path = demo_manifest(tmp_path, reference)
    for limit in (1, 5, 12):
        manifest, _ = build_manifest(path, ["ignored"], limit=limit)
        librispeech, _ = build_manifest("demo", ["test-clean"], limit=limit)
        assert manifest.drop("split").equals(librispeech.drop("split"))
        assert set(manifest["split"]) == {"mine"}  # no split column: the manifest's stem
        assert list_utterances(path, ["ignored"], limit) == manifest["utt_id"].to_list()
    whole, _ = build_manifest(path, ["ignored"])
    assert whole.drop("split").equals(reference.drop("split"))
    assert list_utterances(path, ["ignored"]) == reference["utt_id"].to_list()


def test_write_manifest_from_a_manifest_file_writes_both_contracts(
    tmp_path: Path, reference: pl.DataFrame
):
    path = demo_manifest(tmp_path, reference, "mine.jsonl")
    out_m, out_r = tmp_path / "out/manifest.parquet", tmp_path / "out/rejected.parquet"
    manifest, _ = write_manifest(path, ["test-clean"], 3, "skip", out_m, out_r)
    assert manifest.height == 3
    schemas.conform(pl.read_parquet(out_m), "manifest")
    schemas.conform(pl.read_parquet(out_r), "rejected")


def test_splits_filter_only_a_manifest_with_a_split_column(tmp_path: Path, reference):
    rows = [good_row(reference, u, split=s) for u, s in zip(GOOD, ["a", "b", ""], strict=True)]
    path = write(tmp_path / "c.csv", rows)  # the empty split is the manifest's stem, "c"
    assert list_utterances(path, ["a"]) == [GOOD[0]]
    assert list_utterances(path, ["b", "c"]) == GOOD[1:]
    manifest, _ = build_manifest(path, ["c", "a"])
    assert manifest.select("utt_id", "split").rows() == [(GOOD[0], "a"), (GOOD[2], "c")]
    with pytest.raises(ConfigError, match=r"split 'test-clean' not found in corpus manifest"):
        build_manifest(path, ["a", "test-clean"])
    with pytest.raises(ConfigError, match="twice"):
        list_utterances(path, ["a", "a"])

    write(path, [{k: r[k] for k in COLUMNS[:4]} for r in rows], COLUMNS[:4])
    assert list_utterances(path, ["anything"]) == GOOD


def test_ids_carry_their_speaker_as_downstream_code_reads_it(tmp_path: Path, reference):
    """utt_id.split("-")[0] is the speaker (theory.summary); ids are safe file names."""
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(demo_file("9002-1002-0000"), audio / "take 1 (final).flac")
    shutil.copy(demo_file("9002-1002-0001"), audio / "b.wav.flac")
    rows = [
        {"path": "audio/take 1 (final).flac", "transcript": "HI", "speaker": "alice"},
        {"path": "audio/b.wav.flac", "transcript": "HI", "speaker": "bob.s", "utt_id": "u-7"},
        {"path": str(demo_file("9004-1004-0000")), "transcript": "HI", "speaker": "9004"},
        {"path": str(demo_file("9004-1004-0001")), "transcript": "HI", "speaker": "Carol_2"},
    ]
    path = write(tmp_path / "ids.jsonl", rows)
    manifest, rejected = build_manifest(path, ["x"])
    assert rejected.height == 0
    assert manifest.select("utt_id", "speaker").rows() == [
        ("9004-1004-0000", "9004"),  # a LibriSpeech id is kept as it is
        ("Carol_2-9004-1004-0001", "Carol_2"),
        ("alice-take_1_final_", "alice"),  # a stem made an id
        ("bob.s-u-7", "bob.s"),
    ]
    speakers = manifest["utt_id"].str.split("-").list.first()
    assert speakers.equals(manifest["speaker"], check_names=False)


def test_the_config_accepts_a_manifest_file(tmp_path: Path):
    assert _MANIFEST_SUFFIXES == user_manifest.SUFFIXES
    path = write(tmp_path / "mine.jsonl", [])
    assert validate({"corpus": {"root": str(path)}})["corpus"]["root"] == str(path)
    with pytest.raises(ConfigError, match="manifest file .* does not exist"):
        validate({"corpus": {"root": str(tmp_path / "nope.csv")}})
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ConfigError, match=r"is a file but not a \.csv or \.jsonl manifest"):
        validate({"corpus": {"root": str(tmp_path / "notes.txt")}})
