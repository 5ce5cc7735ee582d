"""kubectl for tests: the real binary against the real local cluster, JSON in and out.

Tests use the same tool an operator would; the controller's own client is tested separately.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class KubectlError(RuntimeError):
    pass


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> Any:
        """The object (or list), or None when it does not exist."""
        args = ["get", kind, *([name] if name else []), *(["-n", namespace] if namespace else [])]
        try:
            return self.json(*args)
        except KubectlError as error:
            if "NotFound" in str(error) or "not found" in str(error):
                return None
            raise

    def apply(self, *objects: dict[str, Any] | str, namespace: str | None = None) -> str:
        # JSON, not YAML: PyYAML leaves a string like "1e5123" unquoted and kubectl reads a number.
        text = "\n---\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects)
        return self.run("apply", *(["-n", namespace] if namespace else []), "-f", "-", stdin=text)

    def delete(self, kind: str, name: str, namespace: str | None = None, wait: bool = True) -> None:
        self.run(
            "delete",
            kind,
            name,
            *(["-n", namespace] if namespace else []),
            "--ignore-not-found",
            f"--wait={str(wait).lower()}",
        )

    def events(self, namespace: str, involved: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "events", "-n", namespace]
        if involved:
            args += ["--field-selector", f"involvedObject.name={involved}"]
        items: list[dict[str, Any]] = self.json(*args)["items"]
        return items


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.5) -> T:
    """Poll until `probe` returns something truthy; fail with `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")
