"""What a compute job does to its process before heavy work: how OpenMP threads wait, how
glibc keeps freed memory, and how many threads torch uses.

The subcommands that load a model call :func:`tune_process`; the benches call the same
functions so that they measure what the jobs run. Importing this module imports nothing
heavy: :func:`wait_passively` must run before torch (and ctranslate2) are imported.
"""

from __future__ import annotations

import os


def wait_passively() -> None:
    """Let OpenMP threads sleep at a barrier instead of spinning.

    Spinning threads burn CPU that the other jobs on the node need, and the decode loop's
    per-step ops are small, one barrier each. libgomp reads the variable when it is loaded,
    so this must run before torch is imported; a value already set is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of returning it to the kernel at once.

    An encoder pass allocates and frees tensors of tens of MB per op. glibc maps those above
    its mmap threshold afresh and unmaps them on free, and trims a freed heap top, so each op
    would pay page faults and the kernel's zeroing of its output; kept in the heap, later ops
    mostly reuse the pages. A no-op where the C library is not glibc. It cannot be undone
    in-process.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    mallopt(m_mmap_max, 0)
    mallopt(m_trim_threshold, 2**31 - 1)


def quiet_transformers() -> None:
    """No weight-loading progress bars or warnings from transformers: they would drown a
    job's one-line-per-file log."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def tune_process(threads: int | None = None) -> None:
    """Tune the process for a compute job: :func:`wait_passively`, :func:`keep_freed_memory`,
    and torch on exactly ``threads`` threads (else $WHISPER_SPI_THREADS, else torch's
    default), so that the -j N jobs of a node do not oversubscribe its cores."""
    wait_passively()
    keep_freed_memory()
    import torch

    threads = threads or int(os.environ.get("WHISPER_SPI_THREADS", "0")) or None
    if threads:
        torch.set_num_threads(threads)


__all__ = ["keep_freed_memory", "quiet_transformers", "tune_process", "wait_passively"]
