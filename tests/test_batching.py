"""Batches that fit the device (whisper_spi.decode.batching): auto sizes, and a batch that runs
out of GPU memory split and retried with the same results."""

from __future__ import annotations

import argparse

import pytest
import torch

from whisper_spi.decode import batching
from whisper_spi.decode.batching import (
    CPU_BATCH,
    MAX_BATCH,
    auto_batch_size,
    bytes_per_utterance,
    in_batches,
)

TINY = {"d_model": 384, "decoder_layers": 4, "max_source_positions": 1500}
TURBO = {"d_model": 1280, "decoder_layers": 4, "max_source_positions": 1500}


def _oom_above(limit: int, calls: list[int]):
    """A batch runner that runs out of memory on batches larger than ``limit``."""

    def run(batch):
        calls.append(len(batch))
        if len(batch) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [x * 10 for x in batch]

    return run


def test_a_batch_out_of_memory_is_halved_and_the_smaller_size_kept():
    calls: list[int] = []
    items = list(range(11))
    got = list(in_batches(items, 8, _oom_above(2, calls)))
    assert [b for b, _ in got] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10]]
    assert [y for _, out in got for y in out] == [x * 10 for x in items]
    assert calls == [8, 4, 2, 2, 2, 2, 2, 1]  # the halving happens once, not per batch


def test_a_single_utterance_that_does_not_fit_raises():
    with pytest.raises(torch.OutOfMemoryError):
        list(in_batches([1, 2], 2, _oom_above(0, [])))


def test_other_errors_are_not_retried():
    def run(batch):
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):
        list(in_batches([1, 2, 3], 2, run))


def test_auto_batch_size_follows_free_memory_and_the_model(monkeypatch):
    assert auto_batch_size(TINY, torch.device("cpu"), 224, torch.float32) == CPU_BATCH
    free = {"bytes": 0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 80 * 2**30))
    cuda = torch.device("cuda")
    per_turbo = bytes_per_utterance(TURBO, 224, 4)
    free["bytes"] = 10 * per_turbo
    turbo = auto_batch_size(TURBO, cuda, 224, torch.float32)
    assert turbo == int(batching.MEMORY_SHARE * 10)  # 60 % of the free memory
    assert auto_batch_size(TURBO, cuda, 224, torch.bfloat16) == 2 * turbo  # half the bytes
    assert auto_batch_size(TINY, cuda, 224, torch.float32) > turbo  # a narrower model
    free["bytes"] = 0
    assert auto_batch_size(TURBO, cuda, 224, torch.float32) == 1  # never below one
    free["bytes"] = 80 * 2**30
    assert auto_batch_size(TINY, cuda, 224, torch.float32) == MAX_BATCH


def test_bytes_per_utterance_counts_the_decoder_cache_of_every_layer():
    one = bytes_per_utterance(dict(TINY, decoder_layers=1), 224, 4)
    two = bytes_per_utterance(dict(TINY, decoder_layers=2), 224, 4)
    # each decoder layer adds its cross-attention keys and values (2 x 1500 x d) and its
    # self-attention cache and three captured components (5 x (224 + 4) x d), in float32
    assert two - one == 4 * 384 * (2 * 1500 + 5 * 228)


def test_decode_shard_split_after_running_out_of_memory_gives_the_same_results(
    tiny_en, librivox, monkeypatch
):
    from whisper_spi.decode import capture
    from whisper_spi.decode.capture import DecodeOptions, decode_shard

    utts = [{"utt_id": u, "speaker": "lv", "text": t, "wave": w} for u, w, t in librivox[:4]]
    opts = DecodeOptions(max_new_tokens=32)
    want_t, want_s = decode_shard(tiny_en, utts, "tiny-en", "clean", opts, batch_size=4)
    real, sizes = capture.decode_batch, []

    def fake(bundle, waves, references, opts):
        sizes.append(len(waves))
        if len(waves) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(bundle, waves, references, opts)

    monkeypatch.setattr(capture, "decode_batch", fake)
    got_t, got_s = decode_shard(tiny_en, utts, "tiny-en", "clean", opts, batch_size=4)
    assert sizes == [4, 2, 2]
    assert [t["token_ids"] for t in got_t] == [t["token_ids"] for t in want_t]
    for layer in want_s:
        for a, b in zip(got_s[layer], want_s[layer], strict=True):
            assert (a["utt_id"], a["component"], a["prefix"]) == (
                b["utt_id"],
                b["component"],
                b["prefix"],
            )
            torch.testing.assert_close(
                torch.as_tensor(a["sv"]), torch.as_tensor(b["sv"]), rtol=1e-4, atol=1e-6
            )


def test_batch_size_option_and_config_accept_auto_only_as_a_word():
    from whisper_spi.cli.options import batch_size
    from whisper_spi.config import validate
    from whisper_spi.errors import ConfigError

    assert batch_size("auto") == "auto" and batch_size("16") == 16
    for bad in ("0", "-2", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer or auto"):
            batch_size(bad)
    assert validate({"decode": {"batch_size": "auto"}})["decode"]["batch_size"] == "auto"
    with pytest.raises(ConfigError, match="batch_size"):
        validate({"decode": {"batch_size": 0}})
