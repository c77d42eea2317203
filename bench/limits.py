"""How fast hostile documents are refused, next to a small ordinary query.

    .venv/bin/python bench/limits.py [--runs 30]

Starts payql (SQLite, in a temporary folder) in this process over real HTTP and
prints the median and worst time per request for each document, and its ratio to
`{ products { sku } }`. A refusal should cost about as much as that query, or
less, since nothing is executed. (Issue 7 brings the full benchmark suite.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servers import base_settings, running_server  # noqa: E402


def documents() -> dict[str, dict[str, object]]:
    deep = ['payment(id: "pay_x")'] + ["order", "payments"] * 50
    aliases = "{ " + " ".join(f"a{i}: products {{ sku }}" for i in range(10_000)) + " }"
    padding = ", ".join(['"x"'] * 10_000)
    return {
        "ordinary: { products { sku } }": {"query": "{ products { sku } }"},
        "depth 100": {"query": "{ " + " { ".join(deep[:100]) + " { id }" + " }" * 100},
        "10,000 aliases": {"query": aliases},
        "20,000 tokens": {"query": f"query ($i: [ID!] = [{padding}]) {{ products {{ sku }} }}"},
        "circular fragments": {
            "query": "{ products { ...A } } fragment A on Product { sku ...B } "
            "fragment B on Product { name ...A }"
        },
        "cost over the bound": {
            "query": "{ orders(first: 100) { items { payments { order { payments { order {"
            " payments { refunds { id } } } } } } } } }"
        },
        "fragment fan-out (2^30)": {
            "query": "{ ...F0 } "
            + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30))
            + " fragment F30 on Query { products { sku } }"
        },
        "batch of 2": {"batch": True},
        "first: 10000": {"query": "{ orders(first: 10000) { total } }"},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(base_settings(f"sqlite://{Path(tmp) / 'bench.sqlite3'}")) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        headers = {"Authorization": f"Bearer {server.token('cus_bench')}"}
        results: dict[str, list[float]] = {}
        for name, body in documents().items():
            payload: object = [{"query": "{ __typename }"}] * 2 if body.get("batch") else body
            times = []
            for _ in range(runs + 3):
                started = time.perf_counter()
                response = http.post("/graphql", json=payload, headers=headers)
                times.append(time.perf_counter() - started)
                refused = response.status_code != 200 or "errors" in response.json()
                assert refused == (not name.startswith("ordinary")), (name, response.text[:200])
            results[name] = times[3:]  # the first runs warm the caches
        base = statistics.median(results["ordinary: { products { sku } }"])
        print(f"{'document':34} {'median ms':>10} {'worst ms':>9} {'x ordinary':>10}")
        for name, times in results.items():
            median = statistics.median(times)
            print(f"{name:34} {median * 1000:10.2f} {max(times) * 1000:9.2f} {median / base:10.2f}")


if __name__ == "__main__":
    main()
