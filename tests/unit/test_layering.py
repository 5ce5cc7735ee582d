"""`make lint` fails on a layering violation: the import-linter contracts in pyproject.toml hold.

The contracts are only worth something if they catch the mistakes they exist for, so each case
plants one in a copy of the package and expects `lint-imports` to refuse it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        cwd=source.parent,
        env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("model/planner.py", "import asyncio", "The pure model does no I/O"),
        ("model/planner.py", "from volprobe.runtime import caches", "Layers"),
        ("contract/report.py", "import httpx", "standard library"),
        ("agent/iocheck.py", "from volprobe.model import spec", "The agent needs only"),
        ("runtime/executor.py", "from volprobe import kinds", "Layers"),
    ],
)
def test_a_planted_violation_is_refused(tmp_path: Path, module: str, line: str, broken: str) -> None:
    copy = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "src" / "volprobe", copy / "volprobe", ignore=ignore)
    target = copy / "volprobe" / module
    target.write_text(f"{line}  # planted by the test\n{target.read_text()}")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert broken in result.stdout
