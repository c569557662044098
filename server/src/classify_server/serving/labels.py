"""Version labels ("stable", "canary", any name) and the canary split of unversioned requests.

As TF Serving's ``version_labels``: a label names one version of a model, so callers (and their
configuration) say "stable" while operators decide which version that is. Labels come from the
settings (``--model-version-labels``) and change at run time through the SetVersionLabel RPC; a label
can only be pointed at a version that is loaded, so a move never sends traffic nowhere.

Requests naming neither a version nor a label go to the version labelled ``stable`` when it is ready,
else to the newest ready version; with a canary share (``--model-canary-split``) that share of them goes
to the version labelled ``canary`` instead. Which side a request lands on is a hash of its routing key
(the caller's ``x-classify-route-key``, else its ``x-request-id``), so a retried request or a caller
sending one key stays on the same version, and a share of 10% routes 10% of the keys.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Mapping

from classify_server.errors import FailedPreconditionError, InvalidInputError, ModelNotFoundError
from classify_server.request_ids import current_call, current_route_key

STABLE, CANARY, LATEST = "stable", "canary", "latest"
LABEL_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")
LABEL_FORM = "a letter or _ then letters, digits, '_', '.' or '-' (at most 63), not 'latest'"


def check_label(label: str) -> str:
    """A label name as it may be set; 'latest' and numbers already mean something to TF Serving callers."""
    if not LABEL_PATTERN.fullmatch(label) or label == LATEST:
        raise InvalidInputError(f"version label {label!r} is not valid; expected {LABEL_FORM}")
    return label


def parse_share(text: str | float) -> float:
    """A canary share written as "10%", "0.1" or 0.1; ValueError names the forms."""
    raw = str(text).strip()
    try:
        share = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"canary share {text!r} is not a percentage (0%-100%) or a fraction in [0, 1]")
    return share


def route_point(key: str) -> float:
    """Where a routing key falls in [0, 1): the same key always lands at the same point."""
    digest = hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _routing_key() -> str:
    key = current_route_key.get() or current_call.get()[0]
    return key or secrets.token_hex(8)  # a call outside the gRPC/HTTP guards: route it at random


class VersionLabels:
    """Every model's labels and canary share; read on each unversioned request, changed on the event loop."""

    def __init__(
        self,
        labels: Mapping[str, Mapping[str, int]] | None = None,
        canary_shares: Mapping[str, float] | None = None,
    ) -> None:
        self._labels: dict[str, dict[str, int]] = {
            model: {check_label(label): int(version) for label, version in named.items()}
            for model, named in (labels or {}).items()
        }
        self._shares = {model: share for model, share in (canary_shares or {}).items() if share > 0}

    def of(self, model: str) -> dict[str, int]:
        return dict(self._labels.get(model, {}))

    def all(self) -> dict[str, dict[str, int]]:
        return {model: dict(named) for model, named in self._labels.items() if named}

    def set(self, model: str, label: str, version: int, ready: Collection[int]) -> dict[str, int]:
        """Point ``label`` at a loaded ``version`` (0 removes it); the model's labels afterwards."""
        check_label(label)
        named = self._labels.setdefault(model, {})
        if version == 0:
            named.pop(label, None)
            return dict(named)
        if version not in ready:
            loaded = ", ".join(str(v) for v in sorted(ready)) or "none"
            raise FailedPreconditionError(
                f"cannot point label {label!r} of model {model!r} at version {version}: it is not loaded "
                f"(loaded versions: {loaded})"
            )
        named[label] = version  # one assignment: a request sees the old version or the new, never neither
        return dict(named)

    def version_of(self, model: str, label: str, ready: Collection[int]) -> int:
        """The loaded version ``label`` names; NOT_FOUND for an unknown label, UNAVAILABLE when not loaded."""
        named = self._labels.get(model, {})
        version = named.get(label)
        if version is None:
            known = ", ".join(f"{name}={v}" for name, v in sorted(named.items())) or "none"
            raise ModelNotFoundError(f"model {model!r} has no version label {label!r}; its labels: {known}")
        if version not in ready:
            loaded = ", ".join(str(v) for v in sorted(ready)) or "none"
            raise FailedPreconditionError(
                f"label {label!r} of model {model!r} points at version {version}, which is not loaded "
                f"(loaded versions: {loaded}); point it elsewhere with SetVersionLabel"
            )
        return version

    def route(self, model: str, ready: Collection[int]) -> int:
        """The version an unversioned, unlabelled request gets; ``ready`` must not be empty."""
        named = self._labels.get(model)
        if not named:  # the common case: no labels, the newest ready version
            return max(ready)
        stable, canary = named.get(STABLE), named.get(CANARY)
        # A version labelled canary gets only the canary share, even when it is the newest.
        others = [v for v in ready if v != canary]
        default = stable if stable in ready else max(others or ready)
        share = self._shares.get(model, 0.0)
        if share and canary in ready and canary != default and route_point(_routing_key()) < share:
            return canary
        return default
