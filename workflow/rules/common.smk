# Workflow-side helpers: config validation and the DAG's shape. Pure functions over config.
import json
import math

from snakemake.exceptions import WorkflowError

from whisper_spi import config as spi_config
from whisper_spi.corpus import list_utterances
from whisper_spi.errors import WhisperSpiError
from whisper_spi.models import decoder_layers

# Validate (and fill defaults) before any job is planned; errors name the key.
try:
    config.update(spi_config.validate(config))
except WhisperSpiError as exc:
    raise WorkflowError(str(exc)) from None

RESULTS = config["results_dir"]
CONDITIONS = spi_config.CONDITIONS
MODELS = config["models"]


def _plan():
    """Shards and per-model layer counts, known at parse time so `snakemake -n` sees all jobs."""
    try:
        ids = list_utterances(
            config["corpus"]["root"], config["corpus"]["splits"], config["corpus"]["limit"]
        )
        layers = {m: decoder_layers(spec, config["model_cache"]) for m, spec in MODELS.items()}
    except WhisperSpiError as exc:
        raise WorkflowError(str(exc)) from None
    n_shards = max(1, math.ceil(len(ids) / config["corpus"]["shard_size"]))
    return [f"{i:03d}" for i in range(n_shards)], layers


SHARDS, N_LAYERS = _plan()


wildcard_constraints:
    model="|".join(MODELS),
    condition="|".join(CONDITIONS),
    shard=r"\d{3}",
    layer=r"\d+",


def get_stress_params(condition):
    """The stress's parameters as JSON (clean has none)."""
    return json.dumps(config["stresses"].get(condition, {}), sort_keys=True)


def get_decode_flags():
    """The boolean decode options as CLI switches."""
    switches = {"--center": "center", "--include-prompt": "include_prompt"}
    return " ".join(flag for flag, key in switches.items() if config["decode"][key])


def get_spectra(model, condition, shard):
    return expand(
        f"{RESULTS}/decode/{model}/{condition}/shard-{shard}/layer-{{layer}}.parquet",
        layer=range(N_LAYERS[model]),
    )


def get_final_output():
    return [
        f"{RESULTS}/decode/{m}/{c}/shard-{s}/transcripts.parquet"
        for m in MODELS
        for c in CONDITIONS
        for s in SHARDS
    ] + [path for m in MODELS for c in CONDITIONS for s in SHARDS for path in get_spectra(m, c, s)]
