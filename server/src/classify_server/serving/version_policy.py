"""Which versions of a model to serve: the newest N, all of them, or a named few (as TF Serving does)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LATEST, ALL, SPECIFIC = "latest", "all", "specific"
POLICY_FORMS = "'latest', 'latest:N', 'all' or 'specific:V1,V2,...'"


@dataclass(frozen=True)
class VersionPolicy:
    kind: str
    count: int = 1
    versions: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """Read a policy written as latest, latest:N, all or specific:V1,V2; ValueError says the forms."""
        kind, _, argument = text.strip().lower().partition(":")
        try:
            if kind == LATEST:
                count = int(argument) if argument else 1
                if count >= 1:
                    return cls(LATEST, count=count)
            elif kind == ALL and not argument:
                return cls(ALL)
            elif kind == SPECIFIC:
                versions = frozenset(int(v) for v in argument.split(",") if v.strip())
                if versions and min(versions) >= 1:
                    return cls(SPECIFIC, versions=versions)
        except ValueError:
            pass
        raise ValueError(f"version policy {text!r} is not one of {POLICY_FORMS}")

    def select(self, available: Iterable[int]) -> set[int]:
        """The versions to serve out of those present on disk."""
        present = sorted(set(available))
        if self.kind == ALL:
            return set(present)
        if self.kind == SPECIFIC:
            return self.versions & set(present)
        return set(present[-self.count :])

    def __str__(self) -> str:
        if self.kind == LATEST:
            return f"latest:{self.count}"
        if self.kind == SPECIFIC:
            return "specific:" + ",".join(str(v) for v in sorted(self.versions))
        return ALL
