"""Reader for CTranslate2 ``model.bin`` checkpoints of Whisper, and conversion to transformers.

The format (little-endian; see the project's notes on it): a uint32 binary version, then
(version >= 2) the spec name and revision, a uint32 variable count and per variable its name,
rank, dims, (version >= 4) dtype and byte count, and the raw bytes; then (version >= 3)
aliases. A checkpoint may be split into parts that concatenate to one file.

The reader treats the file as untrusted: every length is checked against the bytes that
remain before anything is sliced or allocated, so a truncated, corrupt or hostile file
fails with :class:`CheckpointError` naming the file and the variable, never a half-loaded
model, an oversized allocation or a read past the buffer.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from whisper_spi.errors import CheckpointError

# dtype codes of CTranslate2 (version >= 4). bf16 has no numpy dtype: read as uint16 and widen.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_MAX_RANK = 8
_MAX_VARIABLES = 100_000
_MAX_ALIASES = 100_000
_SUPPORTED_VERSIONS = range(1, 7)


@dataclass
class Ct2Checkpoint:
    """The variables of a CTranslate2 checkpoint, as float32 (or integer) numpy arrays."""

    source: str
    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        try:
            return self.variables[name]
        except KeyError:
            raise CheckpointError(f"{self.source}: variable {name!r} is missing") from None

    def scalar(self, name: str) -> int:
        return int(np.asarray(self.get(name)).reshape(-1)[0])


class _Cursor:
    """Bounds-checked reads from a byte buffer; errors name the file and the current variable."""

    def __init__(self, buf: memoryview, source: str):
        self.buf = buf
        self.pos = 0
        self.source = source
        self.where = "header"

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(
            f"{self.source}: {what} while reading {self.where} at byte {self.pos} "
            f"(file has {len(self.buf)} bytes)"
        )

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(f"truncated (needs {n} more bytes, {len(self.buf) - self.pos} left)")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        n = self.u16()
        raw = bytes(self.take(n))
        if n == 0 or raw[-1] != 0:
            raise self.fail("string without its terminating NUL (corrupt file)")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("string that is not UTF-8 (corrupt file)") from None


def _to_array(raw: memoryview, dtype, dims: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":
        # bf16 is the upper half of a float32.
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(dims)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(dims).copy()


def parse_checkpoint(buf: bytes | memoryview, source: str = "<buffer>") -> Ct2Checkpoint:
    """Parse a whole (possibly concatenated) model.bin held in memory."""
    cur = _Cursor(memoryview(buf).cast("B"), source)
    version = cur.u32()
    if version not in _SUPPORTED_VERSIONS:
        raise cur.fail(f"unsupported binary version {version} (not a CTranslate2 model.bin?)")
    spec, revision = "", 1
    if version >= 2:
        spec = cur.string()
        revision = cur.u32()
    n_vars = cur.u32()
    if n_vars > _MAX_VARIABLES:
        raise cur.fail(f"implausible variable count {n_vars}")
    variables: dict[str, np.ndarray] = {}
    for index in range(n_vars):
        cur.where = f"variable #{index}"
        name = cur.string()
        cur.where = f"variable {name!r}"
        rank = cur.u8()
        if rank > _MAX_RANK:
            raise cur.fail(f"implausible rank {rank}")
        dims = tuple(cur.u32() for _ in range(rank))
        if version >= 4:
            code = cur.u8()
            if code not in _DTYPES:
                raise cur.fail(f"unknown dtype code {code}")
            dtype = _DTYPES[code]
            nbytes = cur.u32()
        else:
            dtype, nbytes = np.float32, None
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        count = math.prod(dims)  # Python ints: no overflow from hostile dims
        if nbytes is None:
            nbytes = count * itemsize
        if nbytes != count * itemsize:
            raise cur.fail(f"byte count {nbytes} does not match dims {dims} x {itemsize} bytes")
        if name in variables:
            raise cur.fail("duplicate variable name")
        variables[name] = _to_array(cur.take(nbytes), dtype, dims)
    aliases: dict[str, str] = {}
    if version >= 3:
        cur.where = "aliases"
        n_alias = cur.u32()
        if n_alias > _MAX_ALIASES:
            raise cur.fail(f"implausible alias count {n_alias}")
        for _ in range(n_alias):
            alias, target = cur.string(), cur.string()
            if target not in variables:
                raise cur.fail(f"alias {alias!r} points to unknown variable {target!r}")
            aliases[alias] = target
    if cur.pos != len(cur.buf):
        cur.where = "end of file"
        raise cur.fail(f"{len(cur.buf) - cur.pos} trailing bytes after the last record")
    return Ct2Checkpoint(source, version, spec, revision, variables, aliases)


def read_checkpoint(parts: list[Path]) -> Ct2Checkpoint:
    """Read model.bin, or its parts concatenated in order."""
    if not parts:
        raise CheckpointError("no model.bin given")
    chunks = []
    for part in parts:
        try:
            chunks.append(Path(part).read_bytes())
        except OSError as exc:
            raise CheckpointError(f"{part}: cannot read ({exc})") from None
    buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return parse_checkpoint(buf, "+".join(str(p) for p in parts))


def file_digest(parts: list[Path]) -> str:
    """sha256 of the concatenated parts, streamed (the cache key; no parsing)."""
    digest = hashlib.sha256()
    for part in parts:
        try:
            with open(part, "rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
        except OSError as exc:
            raise CheckpointError(f"{part}: cannot read ({exc})") from None
    return digest.hexdigest()


def _layer_count(ckpt: Ct2Checkpoint, stack: str) -> int:
    n = 0
    while f"{stack}/layer_{n}/ffn/linear_0/weight" in ckpt.variables:
        n += 1
    return n


def whisper_config_kwargs(ckpt: Ct2Checkpoint) -> dict:
    """WhisperConfig arguments derived from the checkpoint's shapes and scalars."""
    if ckpt.spec != "WhisperSpec":
        raise CheckpointError(f"{ckpt.source}: spec is {ckpt.spec!r}, expected 'WhisperSpec'")
    checks = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/activation": 3}
    for name, want in checks.items():
        if name in ckpt.variables and ckpt.scalar(name) != want:
            raise CheckpointError(
                f"{ckpt.source}: variable {name!r} is {ckpt.scalar(name)}, expected {want}; "
                "this is not a Whisper layout the converter knows"
            )
    conv1 = ckpt.get("encoder/conv1/weight")
    embed = ckpt.get("decoder/embeddings/weight")
    fc1 = ckpt.get("encoder/layer_0/ffn/linear_0/weight")
    d_model = embed.shape[1]
    return {
        "vocab_size": embed.shape[0],
        "num_mel_bins": conv1.shape[1],
        "d_model": d_model,
        "encoder_layers": _layer_count(ckpt, "encoder"),
        "decoder_layers": _layer_count(ckpt, "decoder"),
        "encoder_attention_heads": ckpt.scalar("encoder/num_heads"),
        "decoder_attention_heads": ckpt.scalar("decoder/num_heads"),
        "encoder_ffn_dim": fc1.shape[0],
        "decoder_ffn_dim": ckpt.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        "max_source_positions": ckpt.get("encoder/position_encodings/encodings").shape[0],
        "max_target_positions": ckpt.get("decoder/position_encodings/encodings").shape[0],
    }


def to_state_dict(ckpt: Ct2Checkpoint) -> dict[str, np.ndarray]:
    """Map CTranslate2 variable names to transformers' WhisperForConditionalGeneration."""
    cfg = whisper_config_kwargs(ckpt)
    d = cfg["d_model"]
    sd: dict[str, np.ndarray] = {}

    def f32(name: str) -> np.ndarray:
        return np.ascontiguousarray(ckpt.get(name), dtype=np.float32)

    def linear(src: str, dst: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = f32(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = f32(f"{src}/bias")

    def norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = f32(f"{src}/gamma")
        sd[f"{dst}.bias"] = f32(f"{src}/beta")

    def split_rows(src: str, dsts: list[str | None], biased: list[bool]) -> None:
        w, b = f32(f"{src}/weight"), f32(f"{src}/bias")
        if w.shape[0] != d * len(dsts):
            raise CheckpointError(
                f"{ckpt.source}: variable '{src}/weight' has {w.shape[0]} rows, "
                f"expected {d * len(dsts)}"
            )
        for i, (dst, has_bias) in enumerate(zip(dsts, biased, strict=True)):
            sd[f"{dst}.weight"] = np.ascontiguousarray(w[i * d : (i + 1) * d])
            if has_bias:
                sd[f"{dst}.bias"] = np.ascontiguousarray(b[i * d : (i + 1) * d])

    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    sd["model.encoder.embed_positions.weight"] = f32("encoder/position_encodings/encodings")
    sd["model.decoder.embed_positions.weight"] = f32("decoder/position_encodings/encodings")
    sd["model.decoder.embed_tokens.weight"] = f32("decoder/embeddings/weight")
    norm("encoder/layer_norm", "model.encoder.layer_norm")
    norm("decoder/layer_norm", "model.decoder.layer_norm")

    for stack in ("encoder", "decoder"):
        for i in range(cfg[f"{stack}_layers"]):
            src, dst = f"{stack}/layer_{i}", f"model.{stack}.layers.{i}"
            norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            split_rows(
                f"{src}/self_attention/linear_0",
                [f"{dst}.self_attn.{p}_proj" for p in "qkv"],
                [True, False, True],  # k_proj has no bias in Whisper
            )
            linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
            norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
            linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
            if stack == "decoder":
                norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
                split_rows(
                    f"{src}/attention/linear_1",
                    [f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"],
                    [False, True],
                )
                linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
    return sd
