"""Contracts of the detector's CSV outputs (whisper_spi.detect)."""

from __future__ import annotations

from whisper_spi.schemas._core import BOOL, F64, I32, I64, STR, Col, Contract, add

_SETTING = "all (clean + stressed decodes) or stressed (stressed conditions only)"

add(
    Contract(
        "detect_results",
        "detect/{model}/results.csv",
        "AUROC and AUPRC of every method on out-of-fold scores (speaker-grouped CV), with "
        "stratified bootstrap CIs over utterances (the same replicates for every method).",
        (
            Col("model", STR, "model name"),
            Col("setting", STR, _SETTING),
            Col(
                "method",
                STR,
                "ours, ours_no_T, ours+heuristics, probe (the decoder-state probe: L2 LR on the "
                "row means of every layer and component), or a heuristic baseline",
            ),
            Col("auroc", F64, "area under the ROC curve (ties count 1/2)"),
            Col("auroc_lo", F64, "its bootstrap CI, lower"),
            Col("auroc_hi", F64, "its bootstrap CI, upper"),
            Col("auprc", F64, "average precision"),
            Col("auprc_lo", F64, "its bootstrap CI, lower"),
            Col("auprc_hi", F64, "its bootstrap CI, upper"),
            Col("n", I64, "utterances evaluated"),
            Col("n_pos", I64, "of which hallucinations"),
        ),
    )
)

add(
    Contract(
        "detect_comparison",
        "detect/{model}/comparison.csv",
        "Paired bootstrap differences, each ours-family method minus each heuristic baseline "
        "and minus the decoder-state probe (baseline probe).",
        (
            Col("model", STR, "model name"),
            Col("setting", STR, _SETTING),
            Col("method", STR, "ours-family method"),
            Col("baseline", STR, "heuristic baseline method, or probe"),
            Col("best_baseline", BOOL, "the heuristic baseline with the highest point AUROC"),
            Col("d_auroc", F64, "AUROC difference, method - baseline"),
            Col("d_auroc_lo", F64, "its bootstrap CI, lower"),
            Col("d_auroc_hi", F64, "its bootstrap CI, upper"),
            Col("d_auprc", F64, "AUPRC difference"),
            Col("d_auprc_lo", F64, "its bootstrap CI, lower"),
            Col("d_auprc_hi", F64, "its bootstrap CI, upper"),
            Col("p_boot", F64, "share of replicates with d_auroc <= 0"),
            Col("n", I64, "utterances evaluated"),
            Col("n_pos", I64, "of which hallucinations"),
        ),
    )
)

add(
    Contract(
        "detect_oof",
        "detect/{model}/oof_scores.csv",
        "Out-of-fold score of every method for every labelled utterance, per setting.",
        (
            Col("model", STR, "model name"),
            Col("setting", STR, _SETTING),
            Col("condition", STR, "condition"),
            Col("utt_id", STR, "utterance id"),
            Col("speaker", STR, "speaker id (folds never share one)"),
            Col(
                "hallucination",
                BOOL,
                "the label: hallucination.definition (without taxonomy labels: wer > threshold)",
            ),
            Col("fold", I32, "test fold of the utterance"),
            Col("method", STR, "method"),
            Col("score", F64, "higher = more likely a hallucination (log-odds for fitted ones)"),
        ),
    )
)

add(
    Contract(
        "detect_by_type",
        "detect/{model}/by_type.csv",
        "AUROC of the out-of-fold scores at telling one taxonomy type (positive) from another "
        "(negative): each error type vs correct decodes, and fabrication vs grounded_error; "
        "95% bootstrap CI over speakers (resampled whole, within each class).",
        (
            Col("model", STR, "model name"),
            Col("setting", STR, "all (clean + stressed decodes) or stressed"),
            Col("positive", STR, "taxonomy type scored as positive"),
            Col("negative", STR, "taxonomy type scored as negative"),
            Col("method", STR, "detector or heuristic (detect_results.method)"),
            Col("auroc", F64, "AUROC (NaN if a class is empty)"),
            Col("auroc_lo", F64, "CI lower end"),
            Col("auroc_hi", F64, "CI upper end"),
            Col("n_pos", I64, "decodes of the positive type"),
            Col("n_neg", I64, "decodes of the negative type"),
            Col("n_speakers", I64, "speakers among them"),
        ),
    )
)
