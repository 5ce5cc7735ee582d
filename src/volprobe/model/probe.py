"""What every probe object is to the planner, whatever its resource (StorageProbe, ObjectStoreProbe)."""

from __future__ import annotations

from typing import Protocol

ProbeKey = tuple[str, str]
"""(resource plural, object name): names are unique within a resource only."""


class Probe(Protocol):
    """The parts of a parsed probe object the planner uses."""

    @property
    def name(self) -> str: ...

    @property
    def uid(self) -> str: ...

    @property
    def generation(self) -> int: ...

    @property
    def interval(self) -> float: ...

    @property
    def storage_class(self) -> str:
        """The `storage_class` label of its series ("" when it probes no StorageClass)."""

    def enables(self, kind: str) -> bool: ...
