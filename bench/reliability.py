"""Reliability figures, each against a real ``python -m service`` on 127.0.0.1.

    .venv/bin/python bench/reliability.py                 every figure (docs/reliability.md)
    .venv/bin/python bench/reliability.py --quick         a short run of each
    .venv/bin/python bench/reliability.py soak overload   some of them

schemathesis   generated cases against /openapi.json: server errors, responses off the schema
schemathesis-key  the same with API keys on, the key sent with every case
soak           requests at concurrency 64 over every ready model, every answer checked; RSS
               growth of the whole service (every worker), and its PSS at the end
overload       concurrency 512 against a small queue: rejection p99, accepted that failed, RSS
               growth after a warm-up, recovery once the load stops
reload         failed requests while a generator, an autoencoder and an autoregressive model are
               reloaded under load (new versions too); each version published serves
corrupt        start-up with one model broken each way: launch to ready, readiness says why, and
               every other model answers an operation of its family
shutdown       SIGTERM with requests in flight: they all finish, the service exits cleanly

Every check that fails adds a line to its figure's ``problems``; the command exits 1 if any
figure has one.

The store is the repository's model_store/ unless --store says otherwise; each figure works on
a copy when it changes files. The figures themselves are in harness/reliability.py, which
tests/service/test_reliability.py runs in small versions.
"""

# ruff: noqa: E402 (the repository goes on sys.path before its modules are imported)
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make service/ and harness/ importable
    sys.path.insert(0, str(REPO))

from harness import reliability as figures
from harness.live_service import serve
from harness.reliability import FIGURES, problems_of
from harness.store_faults import CORRUPTIONS

SHIPPED_STORE = REPO / "model_store"


# ---------------------------------------------------------------- the command


@dataclass(frozen=True)
class Scale:
    examples: int
    soak_requests: int
    soak_warm_up: int
    overload_requests: int
    reloads: int
    corruptions: list[str]
    in_flight: int

    memory_bounds: bool
    """Whether RSS growth is held to its bound: at quick counts the allocator's warm-up, not a
    leak, decides it, so quick runs report it without judging it."""


FULL = Scale(100, 20_000, 5_000, 4_096, 10, list(CORRUPTIONS), 8, memory_bounds=True)
QUICK = Scale(3, 1_000, 3_000, 1_024, 2, ["truncated graph"], 4, memory_bounds=False)
"""About a minute and a half on two busy cores, most of it five start-ups of the service."""
API_KEY = "reliability-bench-api-key"
"""``schemathesis-key`` serves with API keys on (this one key) and sends it with every case."""


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run the figures; every figure's dict, by name (one per corruption for ``corrupt``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", nargs="*", help=f"some of {', '.join(FIGURES)} (all)")
    parser.add_argument("--quick", action="store_true", help="a short run of each figure")
    parser.add_argument("--store", type=Path, default=SHIPPED_STORE)
    parser.add_argument("--concurrency", type=int, default=64, help="soak and reload")
    parser.add_argument("--overload-concurrency", type=int, default=512)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    scale = QUICK if args.quick else FULL
    store = args.store.resolve()
    results: dict[str, list[dict[str, Any]]] = {}

    def report(name: str, figure: Any) -> None:
        results.setdefault(name, []).append(asdict(figure))
        print(f"{name}: " + json.dumps(asdict(figure)), flush=True)

    names = args.figures or FIGURES
    done: set[str] = set()
    for name in names:
        if name in done:
            continue
        if name in ("schemathesis", "soak"):
            # --quick: both on one service, one start-up fewer (admin routes fuzzed without the
            # token are 401s, and the soak measures RSS after its own warm-up).
            together = [n for n in ("schemathesis", "soak") if n in names]
            with serve(store, SERVICE_ADMIN_TOKEN=figures.ADMIN_TOKEN) as service:
                for figure in together if args.quick else [name]:
                    done.add(figure)
                    if figure == "schemathesis":
                        report(figure, figures.schemathesis_figure(service, scale.examples))
                    else:
                        bound = figures.SOAK_RSS_GROWTH_PCT if scale.memory_bounds else None
                        soak = (scale.soak_requests, args.concurrency, scale.soak_warm_up, bound)
                        report(figure, figures.soak(service, *soak))
        elif name == "schemathesis-key":
            with serve(
                store, SERVICE_ADMIN_TOKEN=figures.ADMIN_TOKEN, SERVICE_API_KEYS=f"bench:{API_KEY}"
            ) as service:
                report(name, figures.schemathesis_figure(service, scale.examples, api_key=API_KEY))
        elif name == "overload":
            bound = figures.OVERLOAD_RSS_GROWTH_PCT if scale.memory_bounds else None
            requests, concurrency = scale.overload_requests, args.overload_concurrency
            report(name, figures.overload(store, requests, concurrency, 50, bound))
        elif name == "reload":
            report(name, figures.hot_reload(store, scale.reloads, args.concurrency))
        elif name == "corrupt":
            for corruption in scale.corruptions:
                report(name, figures.corrupt_startup(store, corruption))
        elif name == "shutdown":
            report(name, figures.graceful_shutdown(store, scale.in_flight))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    found = problems_of(main())
    print("\n".join(found) or "no problems", file=sys.stderr)
    sys.exit(1 if found else 0)
