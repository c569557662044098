"""Errors the CLI turns into one-line messages. Kept free of TensorFlow so the CLI can catch them cheaply."""

from classify_client.formats import FormatError
from classify_train.data.dataset import DataError


class ExportError(Exception):
    """The exported graph does not honour the contract (wrong signature, or different predictions)."""


class DistributionError(Exception):
    """--strategy cannot run as asked: no cluster configured, a malformed TF_CONFIG, an uneven batch."""


USER_ERRORS = (DataError, FormatError, ExportError, DistributionError)
