"""Contract machinery: columns, the registry, and the writers and readers that check them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from whisper_spi.errors import DataError
from whisper_spi.io import atomic_path


@dataclass(frozen=True)
class Col:
    name: str
    dtype: pa.DataType
    doc: str
    unit: str = ""


@dataclass(frozen=True)
class Contract:
    name: str
    path: str  # where the workflow writes it, relative to results_dir
    doc: str
    cols: tuple[Col, ...]

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.dtype, nullable=True) for c in self.cols])

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cols]


F32 = pa.float32()
F64 = pa.float64()
I32 = pa.int32()
I64 = pa.int64()
STR = pa.string()
BOOL = pa.bool_()
_POLARS = {F32: pl.Float32, F64: pl.Float64, I32: pl.Int32, I64: pl.Int64, STR: pl.String}

CONTRACTS: dict[str, Contract] = {}


def add(contract: Contract) -> None:
    if contract.name in CONTRACTS or contract.name in FILES:
        raise ValueError(f"data contract {contract.name!r} declared twice")
    CONTRACTS[contract.name] = contract


# Files the workflow writes that have no columns to check (directories, figures, the report):
# their paths beside the contracts', so every result path has one template. (A table's
# Markdown lies beside its CSV, with the suffix .md.)
FILES: dict[str, str] = {
    "stress_audio": "stress/{condition}/shard-{shard}",
    "pooled_profile": "pooled/{model}/layer-{layer}-profile.parquet",
    "table1": "tables/table1_final_layer.csv",
    "table2": "tables/table2_layer_mean.csv",
    "pair_counts_table": "tables/pair_counts.csv",
    "figure_png": "figures/{name}.png",
    "figure_html": "figures/{name}.html",
    "detector": "detect/{model}/detector.json",
    "roc_png": "detect/{model}/roc.png",
    "roc_html": "detect/{model}/roc.html",
    "subspaces": "intervene/{model}/subspace",
    "baseline_transcripts": "intervene/{model}/{baseline}/{condition}/shard-{shard}.parquet",
    "model_mitigation": "mitigation/{model}/mitigation.csv",
    "dose_response_png": "mitigation/{model}/dose_response.png",
    "dose_response_html": "mitigation/{model}/dose_response.html",
    "tradeoff_png": "mitigation/tradeoff.png",
    "tradeoff_html": "mitigation/tradeoff.html",
    "report": "report.html",
}


class _Unfilled(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def result_path(results_dir: str | os.PathLike, name: str, /, **wildcards: object) -> str:
    """Where the workflow writes ``name`` (a contract or an entry of :data:`FILES`) under
    ``results_dir``: the given wildcards filled in, the others left as ``{wildcard}`` for
    Snakemake."""
    template = CONTRACTS[name].path if name in CONTRACTS else FILES[name]
    return f"{results_dir}/{template.format_map(_Unfilled(wildcards))}"


def contract(name: str) -> Contract:
    try:
        return CONTRACTS[name]
    except KeyError:
        raise KeyError(f"no data contract named {name!r}; known: {sorted(CONTRACTS)}") from None


def conform(df: pl.DataFrame | pa.Table, name: str) -> pa.Table:
    """``df`` as an Arrow table with exactly the contract's columns, order and types.

    Refuses missing or extra columns (a writer out of step with the contract is a bug), and
    casts only safely.
    """
    c = contract(name)
    table = df.to_arrow() if isinstance(df, pl.DataFrame) else df
    have = table.column_names
    if sorted(have) != sorted(c.names):
        missing = sorted(set(c.names) - set(have))
        extra = sorted(set(have) - set(c.names))
        raise ValueError(
            f"frame does not match contract {name!r}: missing {missing}, extra {extra}"
        )
    return table.select(c.names).cast(c.arrow, safe=True)


def write_parquet(df: pl.DataFrame | pa.Table, name: str, path: str | os.PathLike) -> None:
    """Write ``df`` under contract ``name`` atomically, zstd-compressed."""
    table = conform(df, name)
    with atomic_path(path, suffix=".parquet.tmp") as tmp:
        pq.write_table(table, tmp, compression="zstd")


def frame_from_rows(rows: list[dict], name: str) -> pl.DataFrame:
    """Row dicts as a frame of the contract's columns and types."""
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=contract(name).arrow))


def write_rows(rows: list[dict], name: str, path: str | os.PathLike) -> None:
    """Write a list of row dicts under contract ``name`` (an empty list gives an empty file)."""
    write_parquet(pa.Table.from_pylist(rows, schema=contract(name).arrow), name, path)


def write_csv(df: pl.DataFrame, name: str, path: str | os.PathLike) -> None:
    """Write ``df`` under contract ``name`` as CSV, atomically."""
    frame = pl.from_arrow(conform(df, name))
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        frame.write_csv(tmp)


def _plain(t: pa.DataType) -> pa.DataType:
    """The type with large / view variants replaced by the plain ones (same values)."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_plain(t.value_type))
    return t


def check_parquet(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    name: str,
    columns: Sequence[str] | None = None,
) -> list[str]:
    """Check that each file has the contract's ``columns`` (default: all) with their types;
    a missing or mistyped column raises :class:`DataError` naming the file and the column.
    Returns the paths as strings."""
    c = contract(name)
    want = c.cols if columns is None else [col for col in c.cols if col.name in columns]
    unknown = sorted(set(columns or ()) - set(c.names))
    if unknown:
        raise KeyError(f"contract {name!r} has no column(s) {unknown}")
    out = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
    for path in out:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        for col in want:
            i = schema.get_field_index(col.name)
            if i < 0:
                raise DataError(f"{path}: column {col.name!r} (contract {name!r}) is missing")
            have = _plain(schema.field(i).type)
            if have != col.dtype:
                raise DataError(
                    f"{path}: column {col.name!r} is {have}, contract {name!r} says {col.dtype}"
                )
    return out


def scan_parquet(
    paths: Iterable[str | os.PathLike], name: str, columns: Sequence[str] | None = None
) -> pl.LazyFrame:
    """A lazy scan of the files, after :func:`check_parquet` on ``columns``."""
    return pl.scan_parquet(check_parquet(paths, name, columns))


def read_csv(path: str | os.PathLike, name: str | None = None) -> pl.DataFrame:
    """A CSV file written under contract ``name``, with the contract's types; a missing or
    unparsable column raises :class:`DataError` naming the file and the column. Without
    ``name``, the CSV contract whose columns are exactly the file's header."""
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if name is None:
        found = [
            c.name
            for c in CONTRACTS.values()
            if c.path.endswith(".csv") and list(c.names) == raw.columns
        ]
        if len(found) != 1:
            raise DataError(f"{path}: its columns match {len(found)} CSV contracts, not one")
        name = found[0]
    c = contract(name)
    cols = []
    for col in c.cols:
        if col.name not in raw.columns:
            raise DataError(f"{path}: column {col.name!r} (contract {name!r}) is missing")
        s = raw[col.name]
        try:
            if pa.types.is_boolean(col.dtype):
                bad = ~s.is_in(["true", "false"]) & s.is_not_null()
                if bad.any():
                    raise ValueError
                s = s == "true"
            else:
                s = s.cast(_POLARS[col.dtype])
        except (ValueError, pl.exceptions.PolarsError):
            raise DataError(
                f"{path}: column {col.name!r} is not {col.dtype} (contract {name!r})"
            ) from None
        cols.append(s.alias(col.name))
    return pl.DataFrame(cols)


def to_markdown() -> str:
    """The contracts as Markdown, one table per file."""
    out = ["# Data contracts", ""]
    for c in CONTRACTS.values():
        out += [
            f"## `{c.name}`: `results/{c.path}`",
            "",
            c.doc,
            "",
            "| column | type | unit | meaning |",
            "|---|---|---|---|",
        ]
        out += [f"| `{col.name}` | {col.dtype} | {col.unit} | {col.doc} |" for col in c.cols]
        out.append("")
    return "\n".join(out)
