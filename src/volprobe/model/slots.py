"""When each probe target runs: fixed slots, spread over the interval, the same on every replica.

Each target (a probe's provision probe, or its mount probe on one node) runs once per
interval at a fixed offset inside it. The offset is a hash of the probe's UID and the target,
so runs are spread evenly over the interval instead of all firing at second 0 (which is what
pie's minute CronJobs do, and what pushed its users into API rate limits), and so a restarted
or newly elected controller keeps exactly the same rhythm without storing anything.
"""

from __future__ import annotations

import hashlib
import math

from volprobe.model.targets import Target


def offset(probe_uid: str, target: Target, interval: float) -> float:
    """A deterministic position in [0, interval) for this target, uniform over targets."""
    digest = hashlib.sha256(f"{probe_uid}\0{target.kind}\0{target.node}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction * interval


def next_slot(after: float, interval: float, slot_offset: float) -> float:
    """The first slot time strictly after `after` (slots are `k * interval + offset`)."""
    k = math.floor((after - slot_offset) / interval) + 1
    slot = k * interval + slot_offset
    return slot if slot > after else slot + interval  # floating-point rounding at a boundary


def slot_id(slot_time: float) -> str:
    """A short, sortable identifier of a slot, used in run ids and pod names."""
    return format(int(slot_time), "x")
