"""Untrusted input: the checkpoint reader under fuzzing, and no pickle anywhere."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whisper_spi.decode.ct2 import parse_checkpoint
from whisper_spi.errors import CheckpointError

from .test_models import _model_bin

ROOT = Path(__file__).resolve().parents[1]
VALID = _model_bin()


def _parse_or_clear_error(data: bytes) -> None:
    try:
        parse_checkpoint(data, "fuzz.bin")
    except CheckpointError as exc:
        assert str(exc).startswith("fuzz.bin")


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8)
)
def test_byte_flips_give_only_clear_errors(flips):
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    _parse_or_clear_error(bytes(data))


@settings(max_examples=300, deadline=1000)
@given(st.integers(0, len(VALID)), st.binary(max_size=64))
def test_truncation_and_splices_give_only_clear_errors(cut, junk):
    _parse_or_clear_error(VALID[:cut] + junk)


@settings(max_examples=200, deadline=1000)
@given(st.binary(max_size=512))
def test_random_bytes_give_only_clear_errors(data):
    _parse_or_clear_error(data)


def test_hostile_sizes_are_refused_before_allocation():
    # One variable claiming 2^32 x 2^32 float32 values and a 4 GiB payload, in a 60-byte file.
    name = b"x\0"
    var = struct.pack("<H", len(name)) + name + struct.pack("<B", 2)
    var += struct.pack("<II", 2**32 - 1, 2**32 - 1) + struct.pack("<BI", 0, 2**32 - 1)
    data = struct.pack("<I", 6) + struct.pack("<H", 12) + b"WhisperSpec\0"
    data += struct.pack("<I", 3) + struct.pack("<I", 1) + var
    try:
        parse_checkpoint(data, "hostile.bin")
    except CheckpointError as exc:
        assert "byte count" in str(exc) or "truncated" in str(exc)
    else:
        raise AssertionError("hostile sizes accepted")


def test_no_pickle_and_no_unsafe_torch_load():
    pattern = re.compile(r"\bimport pickle\b|\bpickle\.|\bcloudpickle\b|\bjoblib\b")
    offenders = []
    for path in [
        *ROOT.glob("src/**/*.py"),
        *ROOT.glob("workflow/**/*.smk"),
        ROOT / "Snakefile",
        *ROOT.glob("bench/*.py"),
        *ROOT.glob("scripts/*.py"),
    ]:
        text = path.read_text()
        if pattern.search(text):
            offenders.append(f"{path}: pickle")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path}: {call}")
    assert offenders == []
