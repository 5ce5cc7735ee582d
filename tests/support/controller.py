"""Run the real controller as a separate process and read its metrics like Prometheus would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

VOLPROBE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "volprobe"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Samples:
    """One scrape: sample name -> list of (labels, value)."""

    series: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Samples:
        samples = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.series.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples

    def matching(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (lbl, v)
            for lbl, v in self.series.get(name, [])
            if all(lbl.get(k) == w for k, w in labels.items())
        ]

    def sum(self, name: str, **labels: str) -> float:
        return sum(value for _, value in self.matching(name, **labels))

    def has(self, name: str, **labels: str) -> bool:
        return bool(self.matching(name, **labels))


@dataclass
class ControllerProcess:
    kubeconfig: Path
    namespace: str
    image: str
    log: Path
    leader_elect: bool = False
    extra: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> ControllerProcess:
        args = [
            str(VOLPROBE),
            "controller",
            f"--kubeconfig={self.kubeconfig}",
            f"--namespace={self.namespace}",
            f"--probe-image={self.image}",
            f"--metrics-address=127.0.0.1:{self.port}",
            "--status-interval=2",
            "--leader-elect" if self.leader_elect else "--no-leader-elect",
            *self.extra,
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (urllib.error.URLError, OSError) as error:
            return 0, f"unreachable: {error}"  # not listening (yet, or any more)

    def scrape(self) -> Samples:
        status, text = self.get("/metrics")
        assert status == 200, text
        return Samples.parse(text)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), f"controller exited:\n{self.log_text()[-3000:]}"
            if self.get("/healthz")[0] == 200 and self.get("/readyz")[0] == 200:
                return
            time.sleep(0.3)
        raise AssertionError(f"controller not ready within {timeout}s:\n{self.log_text()[-3000:]}")
