"""The data contracts: every Parquet and CSV file the workflow writes, its columns, types and
units, declared once (by stage in this package's modules).

Writers go through :func:`write_parquet` / :func:`write_csv`, which refuse a frame whose
columns differ from the contract; readers through :func:`scan_parquet` / :func:`read_csv`,
which name the file and the column that does not match. ``whisper-spi schemas`` prints them
as Markdown.
"""

from __future__ import annotations

from whisper_spi.schemas._core import (
    CONTRACTS,
    FILES,
    Col,
    Contract,
    check_parquet,
    conform,
    contract,
    frame_from_rows,
    read_csv,
    result_path,
    scan_parquet,
    to_markdown,
    write_csv,
    write_parquet,
    write_rows,
)

# Each module registers its contracts: imported in the pipeline's order.
# isort: off
from whisper_spi.schemas import (  # noqa: E402, F401
    decode,
    taxonomy,
    analysis,
    theory,
    detect,
    mitigation,
    findings,
)

# isort: on
from whisper_spi.schemas.theory import THEORY_QUANTITIES  # noqa: E402

__all__ = [
    "CONTRACTS",
    "FILES",
    "THEORY_QUANTITIES",
    "Col",
    "Contract",
    "check_parquet",
    "conform",
    "contract",
    "frame_from_rows",
    "read_csv",
    "result_path",
    "scan_parquet",
    "to_markdown",
    "write_csv",
    "write_parquet",
    "write_rows",
]
