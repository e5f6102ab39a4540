"""Latency of the catalog endpoints against jupyter_server's own /api/status, in one run.

    python benchmarks/api.py [--requests 300]

Starts one real ``jupyter lab`` (as the tests do), warms it up, then times sequential requests
over one keep-alive connection and prints p50/p95 per endpoint and the ratio to the anchor.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab_server import LabServer, running_lab

ANCHOR = "api/status"
ENDPOINTS = [
    ANCHOR,
    "mlinfra/api/v1/flavors",
    "mlinfra/api/v1/environments",
    "mlinfra/api/v1/capacity",
    "mlinfra/api/v1/whoami",
]


def timings(server: LabServer, path: str, count: int) -> list[float]:
    parts = urlsplit(server.url(path))
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        connection.request("GET", parts.path, headers=server.auth_header)
        response = connection.getresponse()
        response.read()
        samples.append(time.perf_counter() - start)
        assert response.status == 200, (path, response.status)
    connection.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_lab(Path(tmp)) as server:
        for path in ENDPOINTS:  # warm-up: imports, caches, first connection
            timings(server, path, 20)
        results = {path: timings(server, path, args.requests) for path in ENDPOINTS}
    anchor = statistics.median(results[ANCHOR])
    print(f"{'endpoint':32} {'p50 ms':>8} {'p95 ms':>8} {'p50 / anchor':>13}")
    for path, samples in results.items():
        p50 = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[18]
        label = f"{path} (anchor)" if path == ANCHOR else path
        print(f"{label:32} {p50 * 1e3:8.2f} {p95 * 1e3:8.2f} {p50 / anchor:13.2f}")


if __name__ == "__main__":
    main()
