"""The registries against what is derived from them: every name has its implementation, and
the contracts, tables and figures follow the registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from whisper_spi import registry, schemas
from whisper_spi.analysis import observables as kernel
from whisper_spi.analysis.frames import summary_frame
from whisper_spi.analysis.layer_metrics import layer_metrics, write_layer_metrics
from whisper_spi.analysis.markdown import DIGITS, delta_headers
from whisper_spi.analysis.options import MetricOptions
from whisper_spi.analysis.spectra import ObservableOptions
from whisper_spi.registry import OBSERVABLE_SPECS, OBSERVABLES, PAPER_OBSERVABLES, Observable
from whisper_spi.schemas.analysis import observable_cols

# --------------------------------------------------------------------------- observables


def _spectra(rng: np.random.Generator, n: int = 9, width: int = 30) -> np.ndarray:
    S = np.sort(rng.exponential(size=(n, width)), axis=1)[:, ::-1].copy()
    S[::3, width // 2 :] = np.nan  # ragged: NaN padding
    return S


def test_the_registry_of_observables():
    assert all(name == o.name for name, o in OBSERVABLE_SPECS.items())
    assert all(o.title and o.symbol and o.doc and o.digits >= 0 for o in OBSERVABLE_SPECS.values())
    assert [o for o in OBSERVABLES if o in PAPER_OBSERVABLES] == list(PAPER_OBSERVABLES)
    with pytest.raises(ValueError, match="percent or difference"):
        dataclasses.replace(OBSERVABLE_SPECS["neff"], delta="ratio")


def test_every_observable_has_a_kernel_and_the_kernel_only_those():
    assert set(kernel.KERNELS) == set(OBSERVABLES)
    opts = ObservableOptions(k=(3, 10))
    S = _spectra(np.random.default_rng(0))
    for total in (None, np.nansum(S**2, axis=1)):
        out = kernel.observables(S, np.full(len(S), 40.0), opts, total)
        assert list(out) == [3, 10]
        for values in out.values():
            assert list(values) == list(OBSERVABLES)
            assert all(v.shape == (len(S),) and v.dtype == np.float64 for v in values.values())


def test_contracts_have_every_observable():
    metrics = schemas.contract("layer_metrics")
    assert set(OBSERVABLES) <= set(metrics.names)
    for o in OBSERVABLE_SPECS.values():
        col = metrics.cols[metrics.names.index(o.name)]
        assert (col.doc, col.unit) == (o.doc, o.unit)
    # layer_summary and pooled_cells are long: a row per observable, its delta kind beside it
    shape = (1, 1, 1, len(OBSERVABLES), 3)
    rows = summary_frame(
        scope="utterance", model="m", pair_set="all", condition="hell", prefix=0, layers=[0],
        comps=["ffn"], ks=[10], point=np.ones(shape), lo=np.ones(shape), hi=np.ones(shape),
        median=None, n=np.ones(shape[:4]), n_boot=0,
    )  # fmt: skip
    assert rows["observable"].to_list() == list(OBSERVABLES)
    assert rows["delta_kind"].to_list() == [OBSERVABLE_SPECS[o].delta for o in OBSERVABLES]
    for name in ("layer_summary", "pooled_cells"):
        doc = schemas.contract(name).cols[schemas.contract(name).names.index("observable")].doc
        assert all(o in doc for o in OBSERVABLES), name


def test_the_tables_have_every_paper_observable():
    names = schemas.contract("tables").names
    per_observable = [c for c in names if any(o in c for o in OBSERVABLES)]
    want = set()
    for o in PAPER_OBSERVABLES:
        d = OBSERVABLE_SPECS[o].column
        want |= {f"n_{o}", f"paper_{d}", f"sign_agrees_{o}"}
        want |= {f"{d}{end}" for end in ("", "_ci_low", "_ci_high", "_median", "_adj")}
        want |= {f"{d}_adj_ci_low", f"{d}_adj_ci_high"}
    assert set(per_observable) == want
    assert list(DIGITS) == [OBSERVABLE_SPECS[o].column for o in PAPER_OBSERVABLES]
    assert list(delta_headers(MetricOptions(), None)) == list(DIGITS)


def _spectra_file(path, rng: np.random.Generator) -> None:
    rows = [
        {"utt_id": f"u{i}", "model": "tiny", "condition": "clean", "layer": 0,
         "component": "ffn", "prefix": 0, "n_rows": 20, "centered": False,
         "sv": np.sort(rng.exponential(size=12))[::-1] + 0.1, "row_mean": np.zeros(4)}
        for i in range(5)
    ]  # fmt: skip
    schemas.write_rows(rows, "spectra", path)


def test_a_new_observable_is_a_registry_entry_and_a_kernel(tmp_path, monkeypatch):
    """Registered at runtime (as an entry in registry.py and one in KERNELS would), a new
    observable reaches the kernel's output and layer_metrics' contract and files."""
    norm = Observable(
        name="spectral_norm", title="spectral norm", symbol="s_1", delta="difference",
        digits=3, doc="top singular value s_1", unit="activation units",
    )  # fmt: skip
    specs = {**OBSERVABLE_SPECS, norm.name: norm}
    monkeypatch.setattr(kernel, "OBSERVABLES", tuple(specs))
    monkeypatch.setattr(kernel, "KERNELS", {**kernel.KERNELS, norm.name: lambda x: x.top[:, 0]})
    metrics = schemas.contract("layer_metrics")
    keys = tuple(c for c in metrics.cols if c.name not in OBSERVABLES)
    assert keys + observable_cols(OBSERVABLE_SPECS.values()) == metrics.cols
    extended = dataclasses.replace(metrics, cols=keys + observable_cols(specs.values()))
    monkeypatch.setitem(schemas.CONTRACTS, "layer_metrics", extended)

    _spectra_file(tmp_path / "spectra.parquet", np.random.default_rng(1))
    df = layer_metrics([tmp_path / "spectra.parquet"], ObservableOptions(k=(3, 5)))
    assert df.columns == [*metrics.names, norm.name]
    sv = schemas.scan_parquet([tmp_path / "spectra.parquet"], "spectra").collect()["sv"]
    want = [max(s) for s in sv.to_list()]
    for K in (3, 5):
        assert df.filter(df["k"] == K)["spectral_norm"].to_list() == pytest.approx(want)
    write_layer_metrics(df, tmp_path / "layer-0.parquet")


# --------------------------------------------------------------------------- conditions, methods


def test_the_config_schema_takes_every_condition_and_method_from_the_registry():
    from whisper_spi.config import schema

    props = schema()["properties"]
    assert list(props["stresses"]["properties"]) == list(registry.STRESSES)
    nonspeech = props["nonspeech"]["properties"]
    assert nonspeech["conditions"]["items"]["enum"] == list(registry.NONSPEECH)
    assert nonspeech["conditions"]["default"] == list(registry.NONSPEECH)
    assert all(name in nonspeech for name in registry.NONSPEECH)
    methods = props["intervene"]["properties"]["methods"]
    assert methods["items"]["enum"] == methods["default"] == list(registry.INTERVENTIONS)
    components = props["decode"]["properties"]["components"]["items"]["enum"]
    assert components == list(registry.COMPONENTS)


def test_every_condition_has_an_implementation_and_its_defaults_come_from_the_registry():
    from whisper_spi.config import validate
    from whisper_spi.corpus import nonspeech, stress

    assert set(stress.APPLY) == {*registry.CONDITIONS, *registry.NONSPEECH}
    config = validate({"models": {"m": "dir:/x"}, "corpus": {"root": "demo"}})
    for name in registry.STRESSES:
        assert stress.DEFAULT_PARAMS[name] == config["stresses"][name]
    for name in registry.NONSPEECH:
        assert stress.DEFAULT_PARAMS[name] == config["nonspeech"][name]
    packages = registry.NONSPEECH_PARAMS["environmental"]["properties"]["packages"]
    assert packages["items"]["enum"] == sorted(nonspeech.RECORDINGS)


def test_a_stress_registered_at_runtime_reaches_the_schema_and_the_stress_stage(monkeypatch):
    """What adding a stress takes: its registry block and its implementation, nothing else."""
    from types import MappingProxyType

    import numpy as np

    from whisper_spi import config
    from whisper_spi.corpus import stress, waves

    block = registry._block(
        "Halve the level.", gain=registry._param("number", 0.5, "Factor.", exclusiveMinimum=0)
    )
    params = MappingProxyType({**registry.STRESS_PARAMS, "quiet": block})
    monkeypatch.setattr(config, "STRESS_PARAMS", params)
    validated = config.validate({"models": {"m": "dir:/x"}, "corpus": {"root": "demo"}})
    assert validated["stresses"]["quiet"] == {"gain": 0.5}
    monkeypatch.setitem(stress.DEFAULT_PARAMS, "quiet", {"gain": 0.5})
    monkeypatch.setitem(
        stress.APPLY, "quiet", lambda item: waves.Stressed(item.wave * item.params["gain"], 1.0)
    )
    monkeypatch.setattr(stress, "CONDITIONS", (*stress.CONDITIONS, "quiet"))
    wave = np.full(1600, 0.5, np.float32)
    out, gain, applied = stress.apply_stress("quiet", wave, 16000, "u-1", 0, {"gain": 0.5})
    np.testing.assert_allclose(out, 0.25)
    assert (gain, applied) == (1.0, '{"gain": 0.5}')


def test_every_intervention_has_an_edit_and_the_contract_names_it():
    from whisper_spi import schemas
    from whisper_spi.mitigation import intervene

    assert set(intervene.EDITS) == set(registry.INTERVENTIONS)
    assert {n: m.component for n, m in registry.INTERVENTIONS.items()} == intervene.KINDS
    method = next(c for c in schemas.contract("mitigation_transcripts").cols if c.name == "method")
    assert all(name in method.doc for name in registry.INTERVENTIONS)
