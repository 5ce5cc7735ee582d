"""The kinds of probe volprobe runs, one module each, and the registries that list them.

A kind is the unit of extension: what a run of it creates, how the run is followed and judged,
and what it reports. Adding one to an existing resource is a new module here, a line in
`REGISTRY`, and its entry in the docs (docs/design.md, "Adding a probe kind", lists exactly which
files). A kind whose objects are of a new resource also brings that resource (its spec, status
and CRD), registered in `RESOURCES`. The planner, the status, the metrics and the one-shot check
work from the registries and never name a kind.
"""

from __future__ import annotations

from volprobe.kinds import mount, objectstore, provision, storageprobe
from volprobe.model.resource import ProbeResource
from volprobe.runtime.engine import RunnableKind

REGISTRY: tuple[RunnableKind, ...] = (provision.KIND, mount.KIND, objectstore.KIND)
"""Every kind, in the order status and docs list them."""

BY_NAME: dict[str, RunnableKind] = {kind.name: kind for kind in REGISTRY}

RESOURCES: dict[str, ProbeResource] = {
    resource.plural: resource for resource in (storageprobe.RESOURCE, objectstore.RESOURCE)
}
"""Every probe resource, by plural; the controller watches them in this order (the first, the
StorageProbe CRD, must be installed; the others may not be)."""

__all__ = ["BY_NAME", "REGISTRY", "RESOURCES"]
