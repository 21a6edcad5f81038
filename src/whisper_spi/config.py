"""Configuration: validated against the JSON schema (which also supplies every default).

Used by the Snakefile before any job runs and by the CLI; errors name the key.
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path

import jsonschema
import yaml

from whisper_spi.errors import ConfigError
from whisper_spi.registry import (
    COMPONENTS,
    CONDITIONS,
    DECODED_BASELINES,
    DEFAULT_FRONT_END,
    FRONT_ENDS,
    GRADED_PARAM,
    HARSHER,
    INTERVENTIONS,
    NONSPEECH,
    NONSPEECH_PARAMS,
    STRESS_PARAMS,
    graded_condition,
)

__all__ = [
    "CONDITIONS",
    "NONSPEECH",
    "graded_conditions",
    "intervene_models",
    "load",
    "schema",
    "validate",
]


def schema() -> dict:
    """The config schema: data/config.schema.yaml with the registries' names filled in (the
    stresses' and non-speech inputs' blocks, and the enums that list them)."""
    text = importlib.resources.files("whisper_spi").joinpath("data/config.schema.yaml").read_text()
    out = yaml.safe_load(text)
    props = out["properties"]
    props["stresses"]["properties"] = copy.deepcopy(dict(STRESS_PARAMS))
    nonspeech = props["nonspeech"]["properties"]
    nonspeech.update(copy.deepcopy(dict(NONSPEECH_PARAMS)))
    _enum(nonspeech["conditions"], NONSPEECH, default=True)
    _enum(props["decode"]["properties"]["components"], COMPONENTS, default=False)
    features = props["decode"]["properties"]["features"]
    features.update(enum=list(FRONT_ENDS), default=DEFAULT_FRONT_END)
    _enum(props["intervene"]["properties"]["methods"], tuple(INTERVENTIONS), default=True)
    _enum(props["intervene"]["properties"]["baselines"], tuple(DECODED_BASELINES), default=True)
    return out


def _enum(array: dict, names: tuple[str, ...], *, default: bool) -> None:
    """An array-of-names property takes its enum (and, if ``default``, its default: every
    name) from a registry."""
    array["items"]["enum"] = list(names)
    if default:
        array["default"] = list(names)


def _with_defaults(validator_class):
    """A validator that fills in ``default`` values while it validates (jsonschema FAQ idiom)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _message(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - known)
        keys = ", ".join(f"'{path + '.' if path else ''}{k}'" for k in unknown)
        return f"unknown config key {keys} (known here: {', '.join(sorted(known))})"
    return f"config key '{path or '<top level>'}': {error.message}"


def _canonical(value, sub: dict):
    """Order every object's keys as the schema lists them, so that the same settings always
    serialise the same way (Snakemake compares params as strings: key order must not rerun)."""
    if not isinstance(value, dict) or "properties" not in sub:
        return value
    props = sub["properties"]
    ordered = {k: _canonical(value[k], props[k]) for k in props if k in value}
    ordered.update({k: v for k, v in value.items() if k not in props})
    return ordered


def validate(config: dict) -> dict:
    """Return a validated copy of ``config`` with defaults filled in; raise ConfigError.

    Every problem is reported at once, one per line: a config with two typos needs one run
    to fix, not two. The cross-key checks run only on sections that passed the schema.
    """
    cfg = copy.deepcopy(config or {})
    spec = schema()
    errors = sorted(_Validator(spec).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    problems = [_message(e) for e in errors]
    bad = {e.absolute_path[0] for e in errors if e.absolute_path}  # sections with errors
    if isinstance(cfg, dict):
        cfg = _canonical(cfg, spec)
        if "metrics" not in bad:
            problems += _metrics_problems(cfg["metrics"])
        if "corpus" not in bad:
            problems += _corpus_problems(cfg["corpus"])
        if "stresses" not in bad:
            problems += _level_problems(cfg["stresses"])
        if not {"models", "intervene"} & bad:
            problems += _intervene_model_problems(cfg)
        if "nonspeech" not in bad:
            problems += _nonspeech_problems(cfg["nonspeech"])
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(
            f"{len(problems)} config errors:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return cfg


def _level_problems(stresses: dict) -> list[str]:
    """A graded level equal to the stress's own level would be the same condition twice."""
    return [
        f"config key 'stresses.{name}.levels': {level!r} is the level "
        f"stresses.{name}.{key} already decodes"
        for name, key in GRADED_PARAM.items()
        for level in stresses[name]["levels"]
        if level == stresses[name][key]
    ]


def _intervene_model_problems(cfg: dict) -> list[str]:
    chosen = cfg["intervene"]["models"] or []
    return [
        f"config key 'intervene.models': {name!r} is not a key of models "
        f"({', '.join(cfg['models'])})"
        for name in chosen
        if name not in cfg["models"]
    ]


def intervene_models(config: dict) -> list[str]:
    """The models of a validated config the interventions and baselines decode."""
    return list(config["intervene"]["models"] or config["models"])


def graded_conditions(config: dict) -> list[str]:
    """The graded stress's conditions of a validated config, stress by stress, each from
    its mildest level to its harshest (the paper's level is not one: it keeps its name)."""
    return [
        graded_condition(name, level)
        for name, key in GRADED_PARAM.items()
        for level in sorted(config["stresses"][name]["levels"], key=lambda v: HARSHER[name] * v)
    ]


def _nonspeech_problems(nonspeech: dict) -> list[str]:
    """Each level range in order; environmental's folder (when it is decoded) a directory
    holding audio files."""
    problems = [
        f"config key 'nonspeech.{name}.level_range_db': low {low!r} > high {high!r}"
        for name, block in nonspeech.items()
        if isinstance(block, dict) and "level_range_db" in block
        for low, high in [block["level_range_db"]]
        if low > high
    ]
    folder = nonspeech["environmental"]["folder"]
    if "environmental" in nonspeech["conditions"] and folder is not None:
        # the listing lives with the stress (polars and all): imported only for a folder
        from whisper_spi.corpus.nonspeech import folder_recordings

        try:
            folder_recordings(folder)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def _metrics_problems(metrics: dict) -> list[str]:
    from whisper_spi.analysis.options import MetricOptions

    try:
        MetricOptions.from_dict(metrics)  # cross-key rules (figure_k in k, ...)
    except ValueError as exc:
        return [f"config key {exc}"]
    return []


# whisper_spi.corpus.user_manifest.SUFFIXES, not imported here: that pulls in polars
_MANIFEST_SUFFIXES = (".csv", ".jsonl")


def _corpus_problems(corpus: dict) -> list[str]:
    root = corpus["root"]
    if root == "demo":
        return []
    path = Path(root).expanduser()
    manifest = path.suffix.lower() in _MANIFEST_SUFFIXES
    if path.is_file() and manifest:
        return []  # its columns, rows and splits are checked when the corpus is read
    if path.is_file():
        return [f"config key 'corpus.root': {root!r} is a file but not a .csv or .jsonl manifest"]
    if not path.is_dir():
        what = "manifest file" if manifest else "directory"
        return [f"config key 'corpus.root': {what} {root!r} does not exist"]
    return [
        f"config key 'corpus.splits': split {split!r} not found under {root!r}"
        for split in corpus["splits"]
        if not (path / split).is_dir()
    ]


def load(path: str | Path) -> dict:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    return validate(raw)
