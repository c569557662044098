"""The in-memory shape every loader returns, and the error for data that is not there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Split = Literal["train", "test", "unsup"]


class DataError(Exception):
    """Data the user asked for is missing or unusable; the message says what was looked for and where."""


@dataclass(frozen=True)
class Dataset:
    """One split of a data set: inputs, integer labels, and checksums of the files they came from.

    ``inputs`` is a uint8 array (N, 28, 28) for images or a list of N strings for texts; ``labels`` is an
    array of N ints (-1 for unlabelled rows). ``source_files`` maps a file name (relative to the data
    directory) to the sha256 of its bytes on disk, so model.json can say exactly what a model learnt from.
    """

    name: str
    split: str
    inputs: np.ndarray | list[str]
    labels: np.ndarray
    source_files: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)
