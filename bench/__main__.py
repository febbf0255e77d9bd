"""`python -m bench [NAME ...] [--quick]`: run the benchmarks (all of them by default)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.common import IMAGE, image_present, log

BENCHMARKS = {
    "deploy": "bench.deploy",
    "scale": "bench.scale",
    "api": "bench.api",
    "footprint": "bench.footprint",
    "dashboard": "bench.dashboard",
    "metrics": "bench.metrics",
    "logs": "bench.logs",
    "drains": "bench.drains",
    "logpage": "bench.logpage",
    "registry": "bench.registry",
    "swarm": "bench.swarm",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default all)")
    p.add_argument("--quick", action="store_true", help="fewer iterations and smaller sizes, for development")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if not image_present():
        log(f"image {IMAGE} is not on the engine: run ./scripts/build-images.sh first (nothing is pulled)")
        return 2
    failed: list[str] = []
    for name in args.names or list(BENCHMARKS):
        t0 = time.monotonic()
        try:
            importlib.import_module(BENCHMARKS[name]).run(quick=args.quick)
        except KeyboardInterrupt:
            log(f"{name}: interrupted")
            return 130
        except Exception:  # noqa: BLE001 — report, and go on with the next benchmark
            log(f"{name}: FAILED\n{traceback.format_exc()}")
            failed.append(name)
        log(f"-- {name} took {time.monotonic() - t0:.0f} s\n")
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
