"""Batches that fit the device.

``decode.batch_size: auto`` sizes a batch from the GPU memory left after the model is
loaded (:func:`auto_batch_size`; on CPU it is :data:`CPU_BATCH`), and a batch that still
runs out of GPU memory is split in halves and retried, the smaller size kept for the rest
of the job (:func:`in_batches`). Every decode here is per utterance (padding never reaches
another row), so a split changes the speed, not the transcripts or the spectra.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

AUTO = "auto"
CPU_BATCH = 8  # the CPU default: bigger batches gain nothing on 2 cores (bench/bench_decode.py)
# Beyond this a batch mostly waits on its longest decode (a loop runs to max_new_tokens while
# the others have ended), and a GPU is long since busy.
MAX_BATCH = 64
MEMORY_SHARE = 0.6  # of the free GPU memory: the allocator's fragmentation and the spectra's SVDs
ENCODER_POSITIONS = 1500  # Whisper's 30 s window: every utterance is padded to it
ENCODER_WIDTHS = 8  # transient encoder activations per position: q, k, v, out and the 4d FFN


def bytes_per_utterance(config: dict, max_new_tokens: int, element_size: int) -> int:
    """Device memory one utterance of a batch holds at its peak, from the model's config.json:
    the encoder's transient activations and its output, the cross-attention keys and values
    of every decoder layer, the self-attention cache and the captured rows (three components)
    of every decoder layer for ``max_new_tokens`` steps (attention scores are not held:
    transformers' SDPA kernels do not materialise them on CUDA)."""
    d, layers = config["d_model"], config["decoder_layers"]
    positions = config.get("max_source_positions", ENCODER_POSITIONS)
    encoder = positions * d * (1 + ENCODER_WIDTHS + 2 * layers)
    decoder = (max_new_tokens + 4) * d * (2 + 3) * layers
    return (encoder + decoder) * element_size


def auto_batch_size(config: dict, device, max_new_tokens: int, dtype) -> int:
    """The batch for ``decode.batch_size: auto``: on CUDA, as many utterances as fit in
    :data:`MEMORY_SHARE` of the free memory (1 to :data:`MAX_BATCH`); on CPU, :data:`CPU_BATCH`."""
    import torch

    if torch.device(device).type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    per = bytes_per_utterance(config, max_new_tokens, torch.empty((), dtype=dtype).element_size())
    return max(1, min(MAX_BATCH, int(MEMORY_SHARE * free // per)))


def resolve_batch_size(batch_size: int | str, bundle, max_new_tokens: int) -> int:
    """``batch_size`` as a number: ``auto`` sized for ``bundle``'s model on its device."""
    if batch_size != AUTO:
        return int(batch_size)
    size = auto_batch_size(
        bundle.model.config.to_dict(), bundle.device, max_new_tokens, bundle.dtype
    )
    print(f"decode.batch_size auto: {size} utterances on {bundle.device}", file=sys.stderr)
    return size


def in_batches(
    items: Sequence[T], batch_size: int, run: Callable[[list[T]], R]
) -> Iterator[tuple[list[T], R]]:
    """``(batch, run(batch))`` over ``items``, ``batch_size`` at a time, in order.

    A batch that runs out of CUDA memory is retried as its first half, and the halved size
    is kept for the batches after it; a single item that does not fit raises.
    """
    import torch

    start, size = 0, batch_size
    while start < len(items):
        batch = list(items[start : start + size])
        try:
            out = run(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            size = len(batch) // 2
            torch.cuda.empty_cache()
            print(
                f"out of GPU memory with a batch of {len(batch)}: batches of {size} from here",
                file=sys.stderr,
            )
            continue
        yield batch, out
        start += len(batch)
