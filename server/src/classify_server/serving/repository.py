"""The model repository on disk: ``<root>/<name>/<version>/`` SavedModels, each with a ``model.json``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUPPORTED_KINDS = {"image": "uint8", "text": "string"}


class ModelSpecError(ValueError):
    """A version folder that cannot be served; the message says which file and what is wrong."""


@dataclass(frozen=True)
class InputSpec:
    kind: str  # "image" or "text"
    name: str  # the serving signature's input name
    dtype: str
    shape: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class ModelSpec:
    """What model.json promises about one exported version."""

    name: str
    version: int
    path: Path
    task: str
    labels: tuple[str, ...]
    signature: str
    input: InputSpec
    output_name: str
    metrics: dict[str, float] = field(default_factory=dict)
    quick: bool = False
    # Rows one execution of this model may merge; None: the server's --max-batch-size.
    max_batch_size: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def read_model_spec(version_dir: Path) -> ModelSpec:
    """Parse ``version_dir/model.json``; raise ModelSpecError naming the problem."""
    meta_path = version_dir / "model.json"
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelSpecError(f"{meta_path}: missing; every version needs a model.json") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSpecError(f"{meta_path}: unreadable: {exc}") from exc
    try:
        return _spec_from_json(raw, version_dir)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelSpecError(f"{meta_path}: {exc}") from exc


def _spec_from_json(raw: dict[str, Any], version_dir: Path) -> ModelSpec:
    spec_input = raw["input"]
    kind = spec_input["kind"]
    if kind not in SUPPORTED_KINDS:
        raise ValueError(f"input kind {kind!r} is not one of {sorted(SUPPORTED_KINDS)}")
    labels = tuple(str(label) for label in raw["labels"])
    if len(labels) < 2:
        raise ValueError("a classifier needs at least two labels")
    return ModelSpec(
        name=version_dir.parent.name,
        version=int(version_dir.name),
        path=version_dir,
        task=str(raw["task"]),
        labels=labels,
        signature=str(raw.get("signature", "serving_default")),
        input=InputSpec(
            kind=kind,
            name=str(spec_input["name"]),
            dtype=str(spec_input.get("dtype", SUPPORTED_KINDS[kind])),
            shape=tuple(int(d) for d in spec_input["shape"]),
            description=str(spec_input.get("description", "")),
        ),
        output_name=str(raw["output"]["name"]),
        metrics={str(k): float(v) for k, v in raw.get("metrics", {}).items()},
        quick=bool(raw.get("quick", False)),
        max_batch_size=_max_batch_size(raw.get("max_batch_size")),
        raw=raw,
    )


def _max_batch_size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"max_batch_size is {value!r}; expected a positive integer (rows one execution may merge), "
            "or no such key to use the server's --max-batch-size"
        )
    return value


def version_dirs(model_dir: Path) -> list[Path]:
    """Integer-named version folders, oldest first; hidden folders are exports still being written."""
    found = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0]
    return sorted(found, key=lambda p: int(p.name))


def scan_repository(root: Path) -> dict[str, dict[int, Path]]:
    """Every model folder under ``root`` that has at least one version: name -> version -> folder."""
    try:
        model_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise ModelSpecError(f"cannot read model repository {root}: {exc}") from exc
    found: dict[str, dict[int, Path]] = {}
    for model_dir in model_dirs:
        versions = {int(p.name): p for p in version_dirs(model_dir)}
        if versions:
            found[model_dir.name] = versions
    return found


def version_fingerprint(version_dir: Path) -> tuple[float, ...]:
    """Modification times of the files that decide whether a version loads; changes mean "try again"."""
    files = [version_dir / "model.json", version_dir / "saved_model.pb", version_dir / "variables"]
    return tuple(p.stat().st_mtime if p.exists() else -1.0 for p in files)
