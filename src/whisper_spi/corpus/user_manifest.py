"""A corpus given as a manifest file: the user's own recordings, one row each.

``corpus.root`` may name a ``.csv`` file (a header line, then one row a line) or a ``.jsonl``
file (one JSON object a line) instead of a LibriSpeech tree. Columns:

* ``path`` (required): the audio file, any format the audio checks can read; a relative
  path resolves against the manifest's directory, so a manifest moves with its recordings.
* ``transcript`` (required): the reference text; runs of whitespace become one space.
* ``speaker`` (required): the speaker id.
* ``utt_id`` (optional, default the audio file's stem), ``split`` (optional, default the
  manifest's stem), ``chapter`` (optional, default empty). Other columns are ignored; an
  empty value (or JSON null) of an optional column means its default.

Splits: ``corpus.splits`` selects rows on ``split`` only when the manifest has a split
column; a listed split that no row has is then a ConfigError, like a missing split
directory. Without the column every row is used, whatever ``corpus.splits`` says: one set of
recordings needs no split, and the config's default (test-clean) must not hide it.

Ids: downstream code reads the speaker back out of an id, LibriSpeech's
``<speaker>-<chapter>-<utterance>`` (``utt_id.split("-")[0]`` in theory.summary), and writes
``<utt_id>.flac`` files (corpus.stress). So a speaker may hold only ASCII letters, digits,
``_`` and ``.`` (no ``-``), starting with a letter or digit; an id only those and ``-``. An
id that does not start with ``<speaker>-`` gets that prefix (LibriSpeech ids already do and
are kept as they are). An explicit utt_id that breaks the rule is rejected; a default one
(a file stem, which the user did not choose) has each run of other characters replaced by
``_``. Rows that end with one id: the first keeps it, the others are rejected as duplicates.

Rows go to :mod:`.manifest` as :class:`Candidate` s, so the stable-hash ``limit``, the
duplicate rule, the audio checks and the output schemas are those of the LibriSpeech reader.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from whisper_spi.corpus.candidates import Candidate
from whisper_spi.errors import ConfigError, DataError

SUFFIXES = (".csv", ".jsonl")  # config.py keeps a copy (importing this module pulls polars)
REQUIRED = ("path", "transcript", "speaker")
OPTIONAL = ("utt_id", "split", "chapter")
MAX_ID_CHARS = 200  # <utt_id>.flac must stay a legal file name (255 bytes)

_SPEAKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]*")
_UTT_ID = re.compile(r"[A-Za-z0-9_.-]+")
_NOT_ID = re.compile(r"[^A-Za-z0-9_.-]+")

Row = tuple[int, dict[str, object]]  # (line number in the file, column -> value)
_EXTRA = "\0extra"  # a CSV row's count of values past the header's columns


def _bad(manifest: Path, what: str) -> DataError:
    return DataError(f"corpus manifest {manifest}: {what}")


def _read_csv(manifest: Path) -> tuple[list[str], list[Row]]:
    """Header and rows; a row longer than the header counts its extra values."""
    rows: list[Row] = []
    with manifest.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets' BOM
        reader = csv.reader(f, strict=True)
        try:
            header = [h.strip() for h in next(reader, [])]
            line = reader.line_num  # the last line read: a quoted value may span lines
            for values in reader:
                start, line = line + 1, reader.line_num
                if not values:  # a blank line
                    continue
                row: dict[str, object] = dict(zip(header, values, strict=False))
                if len(values) > len(header):
                    row[_EXTRA] = len(values) - len(header)
                rows.append((start, row))
        except csv.Error as exc:
            raise _bad(manifest, f"not valid CSV at line {reader.line_num} ({exc})") from None
    if not header:
        raise _bad(manifest, f"empty: expected a header line naming {', '.join(REQUIRED)}")
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise _bad(manifest, f"column named twice in the header: {', '.join(twice)}")
    return header, rows


def _read_jsonl(manifest: Path) -> tuple[list[str], list[Row]]:
    """Columns (every key of any row, in order of appearance) and rows."""
    columns: dict[str, None] = {}
    rows: list[Row] = []
    with manifest.open(encoding="utf-8-sig") as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                what = f"line {line} is not valid JSON ({exc.msg} at column {exc.colno})"
                raise _bad(manifest, what) from None
            if not isinstance(row, dict):
                raise _bad(manifest, f"line {line} is a JSON {type(row).__name__}, not an object")
            columns.update(dict.fromkeys(row))
            rows.append((line, row))
    return list(columns), rows


def read_rows(manifest: Path) -> tuple[list[str], list[Row]]:
    """The columns and rows of a manifest; DataError naming the file if it cannot be read
    as one (not UTF-8, not valid CSV / JSONL, no rows, a required column missing)."""
    suffix = manifest.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"corpus root {manifest} is a file but not a manifest: its extension must be"
            f" {' or '.join(SUFFIXES)} (or give a LibriSpeech directory)"
        )
    try:
        columns, rows = (_read_csv if suffix == ".csv" else _read_jsonl)(manifest)
    except UnicodeDecodeError as exc:
        raise _bad(manifest, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise _bad(manifest, f"cannot be read ({exc.strerror or exc})") from None
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise _bad(
            manifest,
            f"no column {', '.join(missing)} (it has: {', '.join(map(str, columns)) or 'none'});"
            f" required: {', '.join(REQUIRED)}; optional: {', '.join(OPTIONAL)}",
        )
    if not rows:
        raise _bad(manifest, "holds no rows")
    return columns, rows


def _field(row: dict, key: str, problems: list[str], required: bool) -> str | None:
    """``row[key]`` stripped; None (and a problem if required) when missing or empty."""
    value = row.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if value is not None and not isinstance(value, str):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        problems.append(f"{key} must be a string, got {type(value).__name__} {shown}")
    elif required:
        problems.append(f"missing {key}" if value is None else f"empty {key}")
    return None


def _candidate(manifest: Path, line: int, row: dict, split: str) -> Candidate:
    """One row, with every problem found before the audio is read."""
    problems: list[str] = []
    if _EXTRA in row:
        problems.append(f"{row[_EXTRA]} value(s) more than the header's columns")
    raw_path = _field(row, "path", problems, required=True)
    text = _field(row, "transcript", problems, required=True)
    speaker = _field(row, "speaker", problems, required=True)
    given = _field(row, "utt_id", problems, required=False)
    chapter = _field(row, "chapter", problems, required=False) or ""

    audio = manifest  # the rejected table's path when the row names no audio file
    if raw_path is not None:
        audio = Path(raw_path).expanduser()
        audio = audio if audio.is_absolute() else manifest.parent / audio
        if not audio.exists():
            problems.append(f"audio file missing: {audio}")
        elif not audio.is_file():
            problems.append(f"audio path is not a file: {audio}")
    if speaker is not None and not (_SPEAKER.fullmatch(speaker) and len(speaker) <= 100):
        problems.append(
            f"speaker {speaker!r} is not an id: use ASCII letters, digits, '_' and '.',"
            " no '-' (the speaker is read back as the id's first '-' field), at most 100"
        )
        speaker = None
    if given is not None and not _UTT_ID.fullmatch(given):
        problems.append(f"utt_id {given!r} is not an id: use ASCII letters, digits, '_', '.', '-'")
    stem = _NOT_ID.sub("_", audio.stem) if raw_path is not None else f"line{line}"
    utt_id = given or stem
    if speaker is not None and not utt_id.startswith(f"{speaker}-"):
        utt_id = f"{speaker}-{utt_id}"
    if len(utt_id) > MAX_ID_CHARS:
        problems.append(f"utt_id {utt_id[:40]}... is longer than {MAX_ID_CHARS} characters")
    if text is not None:
        text = " ".join(text.split())
    return Candidate(
        utt_id=utt_id,
        split=split,
        speaker=speaker or "",
        chapter=chapter,
        path=audio,
        text=text,
        problem="; ".join(problems) or None,
        where=f"line {line}",
    )


def read_candidates(manifest: Path, splits: Sequence[str]) -> list[Candidate]:
    """The manifest's rows of ``splits`` (all rows when it has no split column), in file
    order. Bad rows come back with their problem; ConfigError for a listed split no row has.
    """
    columns, rows = read_rows(manifest)
    by_split = "split" in columns
    found: list[Candidate] = []
    present: set[str] = set()
    for line, row in rows:
        problems: list[str] = []
        split = _field(row, "split", problems, required=False) or manifest.stem
        present.add(split)
        if by_split and not problems and split not in splits:
            continue  # another split's row, not read (a bad split value is always reported)
        cand = _candidate(manifest, line, row, split)
        if problems:
            cand = replace(cand, problem="; ".join(p for p in [*problems, cand.problem] if p))
        found.append(cand)
    absent = [s for s in splits if s not in present] if by_split else []
    if absent:
        raise ConfigError(
            f"split {', '.join(map(repr, absent))} not found in corpus manifest {manifest}"
            f" (its splits: {', '.join(sorted(present))})"
        )
    return found
