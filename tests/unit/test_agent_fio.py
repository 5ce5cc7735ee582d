"""--fio: pinned command line and parsing of fio's json+ output."""

from __future__ import annotations

import errno
import json

import pytest

from volprobe.agent import fio
from volprobe.contract.report import LATENCY_BUCKETS

# Trimmed from real fio 3.33 output (psync, direct=1, bs=1m, size=4m): only the keys we read
# plus neighbours, so a format change in those keys is caught.
SAMPLE = {
    "fio version": "fio-3.33",
    "jobs": [
        {
            "jobname": "volprobe-write",
            "error": 0,
            "read": {"io_bytes": 0, "bw_bytes": 0, "total_ios": 0, "clat_ns": {"N": 0}},
            "write": {
                "io_bytes": 4194304,
                "bw_bytes": 1048576000,
                "total_ios": 4,
                "clat_ns": {
                    "min": 602112,
                    "max": 962560,
                    "mean": 708608.0,
                    "stddev": 1.0,
                    "N": 4,
                    "percentile": {"50.000000": 626688, "99.000000": 962560},
                    "bins": {"602112": 1, "626688": 1, "643072": 1, "962560": 1},
                },
            },
        }
    ],
}


def test_command_is_pinned() -> None:
    args = fio.command("/v/.volprobe/fio.dat", "write", block=4096, size=1 << 20, offset=0, direct=True)
    assert args[0] == "fio"
    for pinned in ("--ioengine=psync", "--iodepth=1", "--numjobs=1", "--direct=1", "--output-format=json+"):
        assert pinned in args
    assert "--bs=4096" in args
    assert "--size=1048576" in args
    assert "--end_fsync=1" in args
    read = fio.command("/dev/sdb", "read", block=4096, size=8192, offset=16384, direct=False)
    assert "--offset=16384" in read
    assert "--direct=0" in read
    assert "--end_fsync=1" not in read


def test_colons_in_file_names_are_escaped() -> None:
    args = fio.command("/mnt/a:b/f", "read", block=4096, size=4096, offset=0, direct=True)
    assert "--filename=/mnt/a\\:b/f" in args


def test_parse_json_plus() -> None:
    text = "note: both iodepth >= 1 and synchronous I/O engine\n" + json.dumps(SAMPLE)
    result = fio.parse_output(text, "write")
    stats = result.stats
    assert result.version == "fio-3.33"
    assert result.bandwidth == 1048576000
    assert stats.count == 4
    assert stats.p50 == pytest.approx(626688e-9)
    assert stats.p99 == pytest.approx(962560e-9)
    assert stats.maximum == pytest.approx(962560e-9)
    assert stats.total == pytest.approx(708608e-9 * 4)
    assert len(stats.buckets) == len(LATENCY_BUCKETS)
    assert stats.buckets[LATENCY_BUCKETS.index(0.0005)] == 0
    assert stats.buckets[LATENCY_BUCKETS.index(0.001)] == 4
    assert stats.buckets[-1] == 4


def test_job_errors_become_os_errors() -> None:
    failed = json.loads(json.dumps(SAMPLE))
    failed["jobs"][0]["error"] = errno.ENOSPC
    with pytest.raises(OSError, match="ENOSPC") as caught:
        fio.parse_output(json.dumps(failed), "write")
    assert caught.value.errno == errno.ENOSPC


@pytest.mark.parametrize(
    "text", ["", "fio: no such option", "{}", '{"jobs": []}', '{"jobs": [{"error": 0}]}']
)
def test_unexpected_output(text: str) -> None:
    with pytest.raises(fio.FioFailed):
        fio.parse_output(text, "write")
