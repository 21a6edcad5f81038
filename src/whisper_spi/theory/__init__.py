"""Section 2 of the paper (Theory): Theorem 1's context-Jacobian recurrence.

* :mod:`.simulate`: a numpy simulator of J_l = A_l J_{l-1} + B_l, the bounds of Lemma 1 /
  Theorem 1 as stated and as corrected, the (gamma, rho) phase diagram, and the chance levels
  of the alignments.
* :mod:`.decoder`: the same quantities on a transformers Whisper decoder (block Krylov,
  :mod:`.krylov`, on batched jvp / vjp); :mod:`.measure`: the theory_measure stage that
  measures them on the kept pairs' utterances.
* :mod:`.summary`: the theory table (speaker-grouped bootstrap intervals) and the verdict on
  each regime's hypotheses; :mod:`.figure`: its figures.
"""

from whisper_spi.theory.decoder import MEASURE_SCHEMA, measure_decoder
from whisper_spi.theory.figure import phase_figure
from whisper_spi.theory.krylov import top_singular, top_singular_batch
from whisper_spi.theory.measure import measure
from whisper_spi.theory.simulate import (
    INJECTIONS,
    NOISES,
    REGIMES,
    SimResult,
    expected_random_alignment,
    expected_subspace_alignment,
    lemma1_bound,
    phase_diagram,
    random_alignment,
    random_subspace_alignment,
    simulate,
    subspace_alignment,
    transfer_bound,
    transfer_rate,
)
from whisper_spi.theory.summary import (
    place_on_diagram,
    regime_verdicts,
    theory_table,
)

__all__ = [
    "INJECTIONS",
    "MEASURE_SCHEMA",
    "NOISES",
    "REGIMES",
    "SimResult",
    "expected_random_alignment",
    "expected_subspace_alignment",
    "lemma1_bound",
    "measure",
    "measure_decoder",
    "phase_diagram",
    "phase_figure",
    "place_on_diagram",
    "random_alignment",
    "random_subspace_alignment",
    "regime_verdicts",
    "simulate",
    "subspace_alignment",
    "theory_table",
    "top_singular",
    "top_singular_batch",
    "transfer_bound",
    "transfer_rate",
]
