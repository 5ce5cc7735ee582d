"""Latency samples of the IO the check performs, turned into the report's distributions.

Every timed call is one syscall (a pwritev/preadv of one block, one fsync), timed with the
monotonic high-resolution clock immediately around it, so a sample is what the storage made
the caller wait — hashing and payload generation are never inside a sample. Throughput is bytes
divided by the summed time of those syscalls: the device's rate at queue depth 1, comparable to
fio's psync numbers.
"""

from __future__ import annotations

from volprobe.contract.report import IO_OPS, OpStats


class Recorder:
    """Raw samples per operation. Appends are atomic under the GIL, so the watchdog can read."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {op: [] for op in IO_OPS}
        self.transferred: dict[str, int] = dict.fromkeys(IO_OPS, 0)

    def add(self, op: str, seconds: float, nbytes: int = 0) -> None:
        self.samples[op].append(seconds)
        self.transferred[op] += nbytes

    def stats(self) -> dict[str, OpStats]:
        """Distributions of the operations that ran at least once."""
        return {op: OpStats.from_samples(list(done)) for op, done in self.samples.items() if done}

    def throughput(self) -> dict[str, float]:
        """Bytes per second of syscall time, for the operations that moved data."""
        rates: dict[str, float] = {}
        for op, nbytes in self.transferred.items():
            busy = sum(self.samples[op])
            if nbytes and busy > 0:
                rates[op] = nbytes / busy
        return rates
