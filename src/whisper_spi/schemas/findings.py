"""Contract of the report's Findings (whisper_spi.report.findings): one row per claim."""

from __future__ import annotations

from whisper_spi.schemas._core import F64, I64, STR, Col, Contract, add

add(
    Contract(
        "findings",
        "findings.csv",
        "One row per claim the run can speak to (the paper's, Theorem 1's hypotheses, the "
        "project's own): its verdict from the interval of the cell it rests on "
        "(whisper_spi.report.findings.verdict), and for an undecided claim the n that would "
        "decide it at the observed spread (power_n). Written by the report rule, with "
        "findings.md beside it.",
        (
            Col(
                "family",
                STR,
                "paper, length, theory, detector, mitigation or error_types (the claim's group)",
            ),
            Col("claim", STR, "the claim in words, with the inequality it tests"),
            Col("model", STR, "the model it applies to (a paper model for 'not run here')"),
            Col("condition", STR, "the condition or setting of the cell ('' if none)"),
            Col("source", STR, "the file and the cell (filters and column) the line rests on"),
            Col("direction", STR, "below (claim: value < threshold) or above (value > threshold)"),
            Col("threshold", F64, "what the interval is compared with (0, 0.5, 1, a chance level)"),
            Col("verdict", STR, "holds, does not hold, undecided at this n, or not run here"),
            Col("value", F64, "the cell's point estimate"),
            Col("lo", F64, "its interval, lower end"),
            Col("hi", F64, "its interval, upper end"),
            Col("n", I64, "what the interval rests on, in n_unit"),
            Col("n_unit", STR, "what n counts: pairs, utterances, speakers, decodes"),
            Col(
                "n_needed",
                I64,
                "undecided only: the n at which the interval, shrinking as 1/sqrt(n) about the "
                "same estimate, would just exclude the threshold (null: decided, or not "
                "estimable; the note says which)",
            ),
            Col("note", STR, "the paper's value, the verdicts of neighbouring cells, caveats"),
        ),
    )
)
