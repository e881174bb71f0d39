"""Run every benchmark in bench/ and print one table of figures beside their raw limits.

Each benchmark script writes var/bench/<name>.json as {"rows": [{"name", "figure", "unit",
"raw", "ratio", ...}]}. Run through `make bench` so DATABASE_URL/REDIS_URL are resolved.
Pass benchmark names to run a subset: `make bench BENCH_ARGS="reserve sync_mixed"`.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "var" / "bench"
# name -> the script and its arguments; each writes var/bench/<name>.json.
BENCHMARKS = {
    "reserve": ["reserve.py"],
    "ingest": ["ingest.py"],
    "sync": ["sync.py"],
    # The same stream to the push protocol, Shopify, WooCommerce and Amazon (their fakes), kept short.
    "sync_mixed": ["sync.py", "--connectors", "mixed", "--duration", "30"],
    "availability": ["availability.py"],
    "catalog_import": ["catalog_import.py"],
    # Going live: discovering a platform's catalog and matching it through the link service (50,000 Shopify
    # variants, 10,000 WooCommerce and 10,000 Amazon), each beside its raw limit.
    "discover": ["discover.py", "--platform", "all"],
    # 1,000 open availability streams while orders flow at 100/s: commit to last subscriber, memory per
    # stream, the order path with and without the streams.
    "stream": ["stream.py"],
}


def machine() -> str:
    import os

    return (
        f"{platform.node() or 'host'}: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    wanted = argv or [name for name, (script, *_) in BENCHMARKS.items() if (HERE / script).exists()]
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in wanted:
        script, *args = BENCHMARKS[name]
        shown = " ".join([f"bench/{script}", *args])
        print(f"\n=== {shown}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(HERE / script), *args], cwd=HERE.parent)
        print(f"=== {shown} finished in {time.monotonic() - started:.0f} s (exit {result.returncode})")
        if result.returncode:
            failed.append(name)
    print("\n| benchmark | figure | unit | raw limit (same run) | ratio |\n|---|---|---|---|---|")
    for name in wanted:
        path = OUT / f"{name}.json"
        if not path.exists():
            continue
        for row in json.loads(path.read_text())["rows"]:
            print(
                f"| {row['name']} | {fmt(row.get('figure'))} | {row.get('unit', '')} | "
                f"{fmt(row.get('raw'))} | {fmt(row.get('ratio'))} |"
            )
    print(f"\nmachine: {machine()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
