"""OpenAI's timestamp rules: the logit filter of Whisper's timestamp decoding mode.

``transcribe()`` decodes with timestamps by default: the prompt omits <|notimestamps|>,
the model writes ``<|t0|> text <|t1|><|t1|> text <|t2|>...`` and at every step OpenAI's
``ApplyTimestampRules`` masks the logits so that the sequence stays well formed:

1. <|notimestamps|> is never sampled;
2. timestamps come in pairs: after a lone timestamp (one that closes a segment) the next
   token is a timestamp or <|endoftext|>; after two in a row (or a timestamp first) it is
   text;
3. timestamps never decrease, and one that follows text or a pair is later than the last
   (a segment has a nonzero length, so the model cannot loop in place); only the timestamp
   after a lone one may repeat its time (the next segment starts where this one ended);
4. the first token is a timestamp no later than ``max_initial_timestamp`` (1.0 s, index 50
   at 0.02 s per step);
5. when the timestamps' total probability exceeds that of the likeliest text token, a
   timestamp is forced.

Timestamp tokens are the ids from ``timestamp_begin`` (<|notimestamps|> + 1, "<|0.00|>") up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

TIME_PRECISION = 0.02  # seconds per timestamp token
MAX_INITIAL_TIMESTAMP = 1.0  # seconds: transcribe()'s default


@dataclass(frozen=True)
class TimestampRules:
    """The token ids the rules need, from the model's tokenizer."""

    eot: int
    no_timestamps: int
    max_initial_index: int | None = round(MAX_INITIAL_TIMESTAMP / TIME_PRECISION)

    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    def apply(self, logits: torch.Tensor, generated: Sequence[Sequence[int]]) -> torch.Tensor:
        """Mask ``logits`` ([rows, vocab], float32, suppressions already applied) by the rules,
        given each row's tokens generated so far (the prompt excluded). Returns a new tensor."""
        ts = self.timestamp_begin
        out = logits.clone()
        neg = float("-inf")
        out[:, self.no_timestamps] = neg  # rule 1
        for k, seq in enumerate(generated):
            last_ts = len(seq) >= 1 and seq[-1] >= ts
            penultimate_ts = len(seq) < 2 or seq[-2] >= ts
            if last_ts:  # rule 2
                if penultimate_ts:
                    out[k, ts:] = neg
                else:
                    out[k, : self.eot] = neg
            stamps = [t for t in seq if t >= ts]
            if stamps:  # rule 3
                floor = stamps[-1] if last_ts and not penultimate_ts else stamps[-1] + 1
                out[k, ts:floor] = neg
            if not seq:  # rule 4
                out[k, :ts] = neg
                if self.max_initial_index is not None:
                    out[k, ts + self.max_initial_index + 1 :] = neg
        logprobs = out.float().log_softmax(-1)  # rule 5
        stamp_mass = logprobs[:, ts:].logsumexp(-1)
        best_text = logprobs[:, :ts].max(-1).values
        out[stamp_mass > best_text, :ts] = neg
        return out


def rules_for(bundle) -> TimestampRules:
    """The rules for a loaded model (:class:`whisper_spi.decode.models.WhisperBundle`)."""
    return TimestampRules(eot=bundle.eot_id, no_timestamps=bundle.prompt_ids[-1])


def text_tokens(ids: Sequence[int], eot: int) -> list[int]:
    """The text of a timestamped decode: its tokens below <|endoftext|> (timestamps dropped)."""
    return [t for t in ids if t < eot]


__all__ = ["MAX_INITIAL_TIMESTAMP", "TIME_PRECISION", "TimestampRules", "rules_for", "text_tokens"]
