"""Spectral interventions in the decoder: the causal test of the paper's two regimes.

Each intervention edits one component's output (what it adds to the residual stream) at
chosen decoder layers, through forward hooks on the existing transformers submodules, for
every decoder call of the ordinary KV-cached decode. ``strength`` runs from 0 (the plain
decode, exactly) to 1:

- ``project``: remove ``strength`` times the output's projection on an r-dimensional
  subspace (orthonormal rows ``basis``), fitted from captured row means;
- ``cross_gain``: scale the cross-attention output by ``1 + strength`` (more acoustic
  coupling: Regime I's prediction is fewer hallucinations);
- ``self_damp``: scale the self-attention output by ``1 - strength`` (a weaker attractor:
  Regime II's prediction).

Hooks are registered in ``__enter__`` and removed in ``__exit__``; a :class:`Capture`
entered inside the context records the edited outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from whisper_spi.decode.capture import DecoderHooks, component_module
from whisper_spi.errors import WhisperSpiError
from whisper_spi.io import atomic_path
from whisper_spi.registry import INTERVENTIONS

KINDS = {name: method.component for name, method in INTERVENTIONS.items()}


@dataclass(frozen=True)
class Intervention:
    kind: str
    strength: float
    layers: tuple[int, ...]
    component: str = ""  # project: which component; the others have theirs (KINDS)
    # project: layer -> (r, d) orthonormal rows spanning the removed subspace
    basis: Mapping[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise WhisperSpiError(f"unknown intervention {self.kind!r}; known: {sorted(KINDS)}")
        if not 0.0 <= self.strength <= 1.0:
            raise WhisperSpiError(f"intervention strength must be in [0, 1], got {self.strength}")
        if KINDS[self.kind]:
            object.__setattr__(self, "component", KINDS[self.kind])
        elif self.component not in ("cross_attn", "self_attn", "ffn"):
            raise WhisperSpiError(f"project needs a component, got {self.component!r}")
        missing = [i for i in self.layers if self.kind == "project" and i not in self.basis]
        if missing:
            raise WhisperSpiError(f"project: no subspace for layers {missing}")


class Intervene(DecoderHooks):
    """Apply one :class:`Intervention` to ``model`` (a WhisperForConditionalGeneration)."""

    def __init__(self, model, intervention: Intervention):
        super().__init__(model)
        self.spec = intervention
        unknown = [i for i in intervention.layers if not 0 <= i < len(self.layers)]
        if unknown:
            raise WhisperSpiError(
                f"intervention layers {unknown}: the decoder has {len(self.layers)}"
            )
        d = model.config.d_model
        wrong = {i: b.shape for i, b in intervention.basis.items() if b.shape[-1] != d}
        if wrong:
            raise WhisperSpiError(f"project subspaces of shape {wrong}: the model has d_model {d}")

    def targets(self):
        if self.spec.strength == 0.0:
            return  # the plain decode, bit for bit
        for index in self.spec.layers:
            yield index, component_module(self.layers[index], self.spec.component)

    def _edit(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        return EDITS[self.spec.kind](out, self.spec.strength, self.spec.basis.get(layer))

    def hook(self, layer, output):
        if isinstance(output, tuple):  # attention: (output, weights)
            return (self._edit(layer, output[0]), *output[1:])
        return self._edit(layer, output)


def _project(out: torch.Tensor, s: float, basis: np.ndarray | None) -> torch.Tensor:
    rows = torch.as_tensor(basis, dtype=out.dtype, device=out.device)
    return out - s * (out @ rows.T) @ rows


# registry name -> edit of the component's output (strength, the layer's subspace or None);
# one entry per whisper_spi.registry.INTERVENTIONS name (tests/test_registry.py checks)
EDITS: dict[str, Callable[[torch.Tensor, float, np.ndarray | None], torch.Tensor]] = {
    "project": _project,
    "cross_gain": lambda out, s, _: out * (1.0 + s),
    "self_damp": lambda out, s, _: out * (1.0 - s),
}


def fit_subspace(hallucinated: np.ndarray, clean: np.ndarray, rank: int) -> np.ndarray:
    """(rank, d) orthonormal rows: the top principal directions of the paired differences
    hallucinated - clean of per-utterance row means (not centred, so the mean shift counts)."""
    diff = np.asarray(hallucinated, np.float64) - np.asarray(clean, np.float64)
    if diff.ndim != 2 or diff.shape[0] < rank or rank < 1:
        raise WhisperSpiError(
            f"fit_subspace needs >= {max(rank, 1)} paired rows, got shape {diff.shape}"
        )
    return np.linalg.svd(diff, full_matrices=False)[2][:rank]


def save_intervention(spec: Intervention, path: str | Path, **provenance) -> None:
    """``path`` (JSON: kind, strength, layers, component, provenance) and, for project, its
    subspaces in ``path`` with suffix .safetensors (no pickle)."""
    from safetensors.numpy import save_file

    path = Path(path)
    meta = {k: v for k, v in asdict(spec).items() if k != "basis"} | {"provenance": provenance}
    if spec.basis:
        meta["basis_file"] = path.with_suffix(".safetensors").name
        with atomic_path(path.with_suffix(".safetensors")) as tmp:
            # contiguous: safetensors writes the raw buffer; a transposed view would scramble
            tensors = {
                f"layer-{k}": np.ascontiguousarray(v, np.float32) for k, v in spec.basis.items()
            }
            save_file(tensors, tmp)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1, sort_keys=True))


def load_intervention(path: str | Path, strength: float | None = None) -> Intervention:
    """The intervention saved at ``path``; ``strength`` overrides the saved one."""
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        meta = json.loads(path.read_text())
        basis = {}
        if meta.get("basis_file"):
            tensors = load_file(path.parent / meta["basis_file"])
            basis = {int(k.removeprefix("layer-")): v for k, v in tensors.items()}
        return Intervention(
            kind=meta["kind"],
            strength=meta["strength"] if strength is None else strength,
            layers=tuple(meta["layers"]),
            component=meta.get("component", ""),
            basis=basis,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WhisperSpiError(f"{path}: not a readable intervention file ({exc})") from None
