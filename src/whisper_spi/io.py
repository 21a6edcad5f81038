"""Small I/O helpers shared by every stage: atomic writes and deterministic seeds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    A job killed mid-write leaves a ``.tmp`` file behind, never a truncated file under the
    final name that looks complete. The temp file lives in the same directory so that the
    rename is atomic on POSIX filesystems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file owner-only; give it the mode a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def derive_seed(global_seed: int, stage: str, item_id: str) -> int:
    """A 63-bit seed that depends only on (global seed, stage, item id).

    Never on job order, shard size or worker count, so every result is reproducible
    whatever the DAG's schedule.
    """
    digest = hashlib.blake2b(
        f"{int(global_seed)}\x1f{stage}\x1f{item_id}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") >> 1


def stable_hash(text: str) -> int:
    """A process-independent 64-bit hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
