"""Summaries of the theory measurements: the theory table with speaker-grouped bootstrap
intervals and the verdict on each regime's hypotheses (figures: :mod:`.figure`).

Intervals (``<x>_lo``, ``<x>_hi``) are percentile intervals of a two-stage bootstrap within
each model x condition: resample the speakers (the speaker part of the utterance ids) with
replacement, then each drawn speaker's utterances with replacement, and recompute the whole
table (medians, path gain, purity) on the replicate. Utterances of one speaker are not
independent, so resampling utterances alone would give intervals that are too narrow
(tests/test_theory.py checks the coverage on synthetic speaker-clustered data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from whisper_spi.analysis.markdown import number
from whisper_spi.io import derive_seed
from whisper_spi.schemas import THEORY_QUANTITIES, conform
from whisper_spi.theory.figure import layers_figure, phase_figure
from whisper_spi.theory.simulate import phase_diagram

__all__ = [
    "QUANTITIES",
    "place_on_diagram",
    "regime_verdicts",
    "speaker_bootstrap",
    "summarize",
    "theory_table",
]

# Medians with intervals (j_norm = sigma_1 of J_L); the chance levels and the gaps that
# condition the alignments are reported beside them as plain medians.
QUANTITIES = THEORY_QUANTITIES
REFERENCES = ("rho_chance", "align_chance", "rho_gap", "align_gap")
POOLED = ("path_gain", "gamma_sup_max", "purity")


def _prepare(measurements: pl.DataFrame) -> pl.DataFrame:
    """Add speaker (from utt_id, LibriSpeech <speaker>-<chapter>-<utterance>) and j_norm."""
    out = measurements
    if "speaker" not in out.columns:
        out = out.with_columns(speaker=pl.col("utt_id").str.split("-").list.first())
    if "j_norm" not in out.columns:
        out = out.with_columns(j_norm=pl.col("j_sv").list.first())
    return out


def _point(m: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Medians per (by, layer) and pooled per by (layer null), path gain, sup gamma, purity."""
    by = list(by)
    cols = [*QUANTITIES, *REFERENCES]
    medians = [pl.col(c).median().alias(f"{c}_median") for c in cols]
    spread = [
        pl.col(c).quantile(q, "linear").alias(f"{c}_{name}")
        for c in ("gamma", "rho")
        for name, q in (("q25", 0.25), ("q75", 0.75))
    ]
    per_layer = m.group_by([*by, "layer"]).agg(*medians, *spread)
    path = (  # in layer order: a float product must not depend on group_by's row order
        per_layer.filter(pl.col("layer") >= 1)
        .sort([*by, "layer"])
        .group_by(by, maintain_order=True)
        .agg(
            pl.col("gamma_median").product().alias("path_gain"),
            pl.col("gamma_sup_median").max().alias("gamma_sup_max"),
        )
    )
    n_layers = m.group_by(by).agg(pl.col("layer").n_unique().cast(pl.Int32).alias("n_layers"))
    pooled = (
        m.group_by(by).agg(*medians, *spread).with_columns(pl.lit(None, pl.Int32).alias("layer"))
    )
    out = pl.concat(
        [per_layer.with_columns(pl.col("layer").cast(pl.Int32)), pooled], how="diagonal"
    )
    out = out.join(n_layers, on=by, how="left").join(path, on=by, how="left")
    return out.with_columns(purity=pl.col("n_layers") * pl.col("eps_median") / pl.col("rho_median"))


def speaker_bootstrap(
    m: pl.DataFrame,
    stat: Callable[[pl.DataFrame, list[str]], pl.DataFrame],
    by: Sequence[str],
    columns: Sequence[str],
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    keys: Sequence[str] = ("layer",),
) -> pl.DataFrame:
    """Percentile intervals of ``stat``'s ``columns`` per (by, keys), resampling speakers, then
    utterances within each drawn speaker (both with replacement), within each ``by`` group.

    ``stat(frame, group_cols)`` computes its statistics per ``group_cols`` (which include the
    replicate column ``_rep``) plus ``keys``. The replicates of a group are drawn from
    derive_seed(seed, "theory_bootstrap", group values): independent of the other groups and
    of the row order. Returns by, keys, <c>_lo, <c>_hi for every c in ``columns``.
    """
    by = list(by)
    alpha = (1 - level) / 2
    reps = []
    for key, group in m.group_by(by, maintain_order=True):
        units = group.select("speaker", "utt_id").unique().sort("speaker", "utt_id")
        speakers = units.group_by("speaker", maintain_order=True).agg("utt_id").sort("speaker")
        utts = [np.array(u, dtype=object) for u in speakers["utt_id"].to_list()]
        name = "/".join(str(k) for k in key)
        rng = np.random.default_rng(derive_seed(seed, "theory_bootstrap", name))
        rep_ids, drawn = [], []
        for rep in range(n_boot):
            for s in rng.integers(0, len(utts), size=len(utts)):
                pick = utts[s][rng.integers(0, len(utts[s]), size=len(utts[s]))]
                drawn.extend(pick.tolist())
                rep_ids.extend([rep] * len(pick))
        draws = pl.DataFrame(
            {"_rep": rep_ids, "utt_id": drawn}, schema={"_rep": pl.Int32, "utt_id": pl.String}
        )
        reps.append(stat(draws.join(group, on="utt_id", how="inner"), [*by, "_rep"]))
    boot = pl.concat(reps, how="diagonal")
    bounds = []
    for c in columns:
        bounds.append(pl.col(c).quantile(alpha, "linear").alias(f"{c}_lo"))
        bounds.append(pl.col(c).quantile(1 - alpha, "linear").alias(f"{c}_hi"))
    return boot.group_by([*by, *keys], maintain_order=True).agg(*bounds)


def theory_table(
    measurements: pl.DataFrame,
    by: Sequence[str] = ("model", "condition"),
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """Summarise :func:`whisper_spi.theory.measure` rows (concatenated, with the ``by`` columns
    and utt_id) per group: the ``theory_table`` contract (schemas.py).

    One row per (group, layer) and one pooled row per group with layer null (medians over
    utterances and layers; rho, gamma and the alignments exist from layer 1 on). n_utts /
    n_speakers: distinct utterances / speakers. For each quantity x in :data:`QUANTITIES`:
    x_median with its speaker-grouped bootstrap interval x_lo, x_hi (``level``, ``n_boot``
    replicates); the chance levels rho_chance_median, align_chance_median and the gaps
    rho_gap_median, align_gap_median beside the alignments; gamma / rho quartiles over rows;
    path_gain (product over layers >= 1 of the per-layer median gamma), gamma_sup_max (max over
    layers >= 1 of the per-layer median s (rho + eps), Theorem 1's sup), purity
    (n_layers * eps_median / rho_median), each with an interval; regime1_hypothesis
    (gamma_sup_max < 1) and regime2_hypothesis (path_gain >= 1 and purity < 1) at the
    point estimates, and the interval verdicts of :func:`regime_verdicts`.
    """
    by = list(by)
    m = _prepare(measurements)
    counts = m.group_by(by).agg(
        pl.col("utt_id").n_unique().cast(pl.Int32).alias("n_utts"),
        pl.col("speaker").n_unique().cast(pl.Int32).alias("n_speakers"),
    )
    point = _point(m, by).join(counts, on=by, how="left")
    columns = [f"{c}_median" for c in QUANTITIES] + list(POOLED)
    bounds = speaker_bootstrap(m, _point, by, columns, n_boot=n_boot, level=level, seed=seed)
    bounds = bounds.rename(
        {f"{c}_median_{e}": f"{c}_{e}" for c in QUANTITIES for e in ("lo", "hi")}
    )
    out = point.join(bounds, on=[*by, "layer"], how="left", nulls_equal=True)
    out = out.with_columns(
        regime1_hypothesis=pl.col("gamma_sup_max") < 1,
        regime2_hypothesis=(pl.col("path_gain") >= 1) & (pl.col("purity") < 1),
    )
    out = out.join(regime_verdicts(out, by), on=by, how="left")
    order = [*by, "layer", "n_utts", "n_speakers", "n_layers"]
    for c in QUANTITIES:
        order += [f"{c}_median", f"{c}_lo", f"{c}_hi"]
        if c in ("rho", "align"):
            order += [f"{c}_chance_median", f"{c}_gap_median"]
    rest = [c for c in out.columns if c not in order]
    return out.select(*order, *rest).sort([*by, pl.col("layer").fill_null(-1)])


# Below this many speakers a bootstrap interval is too coarse to decide anything (with one
# speaker it is a point): the verdict is "undecided" whatever the interval says.
MIN_SPEAKERS = 5


def _verdict(holds: pl.Expr, fails: pl.Expr) -> pl.Expr:
    enough = pl.col("n_speakers") >= MIN_SPEAKERS
    return (
        pl.when(enough & holds)
        .then(pl.lit("holds"))
        .when(enough & fails)
        .then(pl.lit("fails"))
        .otherwise(pl.lit("undecided"))
    )


def regime_verdicts(table: pl.DataFrame, by: Sequence[str] = ("model", "condition")):
    """Per group, from the pooled rows' intervals: regime1 (Theorem 1 Regime I's hypothesis,
    sup_l s_l (rho_l + eps_l) < 1) "holds" if gamma_sup_max_hi < 1, "fails" if
    gamma_sup_max_lo >= 1, else "undecided"; regime2 (Regime II's: path gain >= 1,
    L eps / rho < 1, rho above chance) "holds" if path_gain_lo >= 1, purity_hi < 1 and
    rho_lo > rho_chance, "fails" if path_gain_hi < 1, purity_lo >= 1 or rho_hi <= rho_chance,
    else "undecided"; always "undecided" with fewer than :data:`MIN_SPEAKERS` speakers."""
    pooled = table.filter(pl.col("layer").is_null())
    chance = pl.col("rho_chance_median")
    return pooled.select(
        *by,
        _verdict(pl.col("gamma_sup_max_hi") < 1, pl.col("gamma_sup_max_lo") >= 1).alias("regime1"),
        _verdict(
            (pl.col("path_gain_lo") >= 1) & (pl.col("purity_hi") < 1) & (pl.col("rho_lo") > chance),
            (pl.col("path_gain_hi") < 1)
            | (pl.col("purity_lo") >= 1)
            | (pl.col("rho_hi") <= chance),
        ).alias("regime2"),
    )


_HYPOTHESES = {  # the text and whether it names one hypothesis or several (the verb agrees)
    "regime1": ("Regime I's hypothesis (sup_l s(rho + eps) < 1)", False),
    "regime2": ("Regime II's (path gain >= 1, L eps/rho < 1, rho above chance)", True),
}
_WORDS = {
    "holds": ("holds", "hold"),
    "fails": ("does not hold", "do not hold"),
    "undecided": ("cannot be decided at this n",) * 2,
}


def model_sentences(table: pl.DataFrame) -> dict[str, str]:
    """One sentence per model: in which conditions each regime's hypotheses hold, do not hold,
    or cannot be decided (95% speaker-grouped intervals), and the n it rests on."""
    pooled = table.filter(pl.col("layer").is_null()).sort("model", "condition")
    out = {}
    for (model,), rows in pooled.group_by("model", maintain_order=True):
        clauses = []
        for col, (text, plural) in _HYPOTHESES.items():
            parts = []
            for verdict, words in _WORDS.items():
                conds = rows.filter(pl.col(col) == verdict)["condition"].to_list()
                if conds:
                    parts.append(f"{words[plural]} in {', '.join(conds)}")
            clauses.append(f"{text} {'; '.join(parts)}")
        n = rows["n_utts"]
        out[model] = (
            f"{model}: {clauses[0]}, and {clauses[1]} "
            f"(n = {n.min()}-{n.max()} utterances per condition)."
        )
    return out


def place_on_diagram(table: pl.DataFrame, grid: pl.DataFrame) -> pl.DataFrame:
    """Attach to every row of :func:`theory_table` (with gamma_median and rho_median > 0) the
    nearest cell of a :func:`phase_diagram` grid in (log gamma, log rho): grid_gamma, grid_rho,
    regime, sim_sv_ratio, sim_norm_j, and in_grid (the point lies within the grid's range;
    outside it the nearest cell is an extrapolation). Rows without a finite positive
    gamma/rho get nulls."""
    g = np.log(grid["gamma"].to_numpy())
    r = np.log(grid["rho"].to_numpy())
    found = {k: [] for k in ("grid_gamma", "grid_rho", "regime", "sim_sv_ratio", "sim_norm_j")}
    inside = []
    for gamma, rho in zip(table["gamma_median"], table["rho_median"], strict=True):
        if gamma is None or rho is None or not (gamma > 0 and rho > 0):
            for col in found.values():
                col.append(None)
            inside.append(None)
            continue
        i = int(np.argmin((g - math.log(gamma)) ** 2 + (r - math.log(rho)) ** 2))
        cell = grid.row(i, named=True)
        found["grid_gamma"].append(cell["gamma"])
        found["grid_rho"].append(cell["rho"])
        found["regime"].append(cell["regime"])
        found["sim_sv_ratio"].append(cell["sv_ratio"])
        found["sim_norm_j"].append(cell["norm_j"])
        inside.append(
            bool(g.min() <= math.log(gamma) <= g.max() and r.min() <= math.log(rho) <= r.max())
        )
    return table.with_columns(
        pl.Series("grid_gamma", found["grid_gamma"], pl.Float64),
        pl.Series("grid_rho", found["grid_rho"], pl.Float64),
        pl.Series("regime", found["regime"], pl.String),
        pl.Series("sim_sv_ratio", found["sim_sv_ratio"], pl.Float64),
        pl.Series("sim_norm_j", found["sim_norm_j"], pl.Float64),
        pl.Series("in_grid", inside, pl.Boolean),
    )


def _markdown(df: pl.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = [
        "| " + " | ".join(number(v, ".4g") if isinstance(v, float) else str(v) for v in row) + " |"
        for row in df.iter_rows()
    ]
    return "\n".join([head, rule, *rows])


# The simulated grid the measured points are placed on: wide enough to hold them (rho of real
# decoders sits near the random-alignment level), at the measured relative noise and depth.
GRID_GAMMAS = np.logspace(-2, 1.5, 12)
GRID_RHOS = np.logspace(-3.5, 0, 10)
MARKDOWN_COLUMNS = (
    "model", "condition", "n_utts", "n_speakers",
    "gamma_median", "gamma_lo", "gamma_hi", "rho_median", "rho_lo", "rho_hi", "rho_chance_median",
    "align_median", "align_lo", "align_hi", "align_chance_median", "align_gap_median",
    "eps_median", "j_ratio_median", "path_gain", "gamma_sup_max", "purity",
    "regime1", "regime2", "regime",
)  # fmt: skip


def summarize(
    measured: pl.DataFrame,
    out_dir: str | Path,
    figure_stem: str | Path,
    seed: int = 0,
    n_boot: int = 200,
) -> pl.DataFrame:
    """The theory_summary stage: theory_table.csv (contract ``theory_table``; pooled rows
    first, the model's sentence of :func:`model_sentences` in ``verdict`` on its first pooled
    row), theory_table.md (the sentences and the pooled rows) and the figure (the phase
    diagram above the per-layer intervals) as ``figure_stem``.html / .png."""
    import altair as alt

    from whisper_spi.charts import save_chart
    from whisper_spi.io import atomic_path

    if measured.height == 0:
        return _write_empty(Path(out_dir), Path(figure_stem))
    table = theory_table(measured, n_boot=n_boot, seed=seed)
    eps = float(np.clip(measured["eps"].median(), 1e-3, 0.95))
    depth = int(measured["layer"].max()) + 1
    grid = phase_diagram(GRID_GAMMAS, GRID_RHOS, eps=eps, depth=max(depth, 2), seed=seed)
    placed = place_on_diagram(table, grid)
    sentences = model_sentences(placed)
    pooled_first = placed.sort(pl.col("layer").is_not_null(), "model", "condition", "layer")
    first_of_model = pl.col("layer").is_null() & pl.col("model").is_first_distinct()
    placed = pooled_first.with_columns(
        verdict=pl.when(first_of_model).then(
            pl.col("model").replace_strict(sentences, default=None)
        )
    )
    flat = pl.from_arrow(conform(placed, "theory_table"))
    out = Path(out_dir)
    with atomic_path(out / "theory_table.csv") as tmp:
        flat.write_csv(tmp)
    pooled = flat.filter(pl.col("layer").is_null())
    md = _markdown(pooled.select([c for c in MARKDOWN_COLUMNS if c in pooled.columns]))
    text = "\n".join(f"- {s}" for s in sentences.values())
    with atomic_path(out / "theory_table.md") as tmp:
        tmp.write_text(
            f"# Theorem 1, measured (simulated grid at eps = {eps:.3g})\n\n{text}\n\n{md}\n"
        )
    chart = alt.vconcat(phase_figure(grid, table), layers_figure(table))
    save_chart(chart, Path(figure_stem))
    return flat


def _write_empty(out: Path, figure_stem: Path) -> pl.DataFrame:
    """No kept pair in any model x condition: an empty table (header only), a markdown note
    and a figure saying so, never a half-written output."""
    import altair as alt

    from whisper_spi.charts import save_chart
    from whisper_spi.io import atomic_path
    from whisper_spi.schemas import contract

    flat = pl.from_arrow(contract("theory_table").arrow.empty_table())
    with atomic_path(out / "theory_table.csv") as tmp:
        flat.write_csv(tmp)
    with atomic_path(out / "theory_table.md") as tmp:
        tmp.write_text("# Theorem 1, measured\n\nNo kept pairs: nothing was measured.\n")
    note = pl.DataFrame({"text": ["no kept pairs: nothing measured"]})
    save_chart(alt.Chart(note).mark_text(size=14).encode(text="text"), figure_stem)
    return flat
