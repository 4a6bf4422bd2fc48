"""The benchmark's results, the ratios the issue asks for, and their markdown and JSON forms."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult, RawResult

SERVICE = "service"
"""The service's own family, and the variant that stands for it in the ratios."""
SERVICE_V2 = "service-v2"
RATIO_CONCURRENCY = 64
V2_IMAGES = 1


@dataclass
class LoadRow:
    server: str
    model: str
    n: int
    """Images per request."""
    concurrency: int
    result: LoadResult | None = None
    rss_mib: float | None = None
    pss_mib: float | None = None
    failure: str | None = None

    @property
    def images_per_s(self) -> float | None:
        r = self.result
        if r is None or r.requests == 0:
            return None
        return r.requests_per_s * self.n * r.ok / r.requests


@dataclass
class ServerStatus:
    name: str
    about: str
    family: str
    """The server this is a variant of."""
    state: str = "not run"
    ready_s: float | None = None
    max_pixel_diff: dict[str, int] = field(default_factory=dict)
    """Per model: largest |difference| in 8-bit pixels from in-process onnxruntime's images."""
    idle_rss_mib: float | None = None


@dataclass
class Report:
    machine: dict[str, Any]
    command: str
    settings: dict[str, Any]
    raw: dict[str, list[RawResult]] = field(default_factory=dict)
    rows: list[LoadRow] = field(default_factory=list)
    servers: list[ServerStatus] = field(default_factory=list)

    def raw_best(self, model: str) -> RawResult | None:
        plain = [r for r in self.raw.get(model, []) if not r.png]
        return max(plain, key=lambda r: r.images_per_s, default=None)

    def raw_batch1(self, model: str) -> RawResult | None:
        return next((r for r in self.raw.get(model, []) if r.batch == 1 and not r.png), None)

    def row(self, server: str, model: str, n: int, c: int) -> LoadRow | None:
        key = (server, model, n, c)
        return next((r for r in self.rows if (r.server, r.model, r.n, r.concurrency) == key), None)

    def families(self) -> dict[str, list[str]]:
        """Every family measured, with its variants, in the order they ran."""
        out: dict[str, list[str]] = {}
        for status in self.servers:
            out.setdefault(status.family, []).append(status.name)
        return out

    def best_variant(self, family: str, model: str, n: int, c: int) -> LoadRow | None:
        """The family's variant with the most images/s at this load."""
        return _fastest(self.row(name, model, n, c) for name in self.families().get(family, []))

    def loads(self) -> list[tuple[str, int, int]]:
        return sorted({(r.model, r.n, r.concurrency) for r in self.rows})

    def peer_families(self) -> list[str]:
        return [f for f in self.families() if f != SERVICE]

    def ratios(self) -> list[dict[str, Any]]:
        """At concurrency 64, per model and images per request: ``service`` / raw-best and
        ``service`` / best peer (the best variant of any peer family; images/s)."""
        out = []
        for model, n in sorted({(m, k) for m, k, _ in self.loads()}):
            ours = _speed(self.row(SERVICE, model, n, RATIO_CONCURRENCY))
            peer = _fastest(
                self.best_variant(f, model, n, RATIO_CONCURRENCY) for f in self.peer_families()
            )
            raw = self.raw_best(model)
            out.append(
                {
                    "model": model,
                    "n": n,
                    "service_images_per_s": ours,
                    "raw_best_images_per_s": _speed(raw),
                    "raw_best_batch": raw.batch if raw else None,
                    "service_over_raw_best": _ratio(ours, _speed(raw)),
                    "best_peer": peer.server if peer else None,
                    "best_peer_images_per_s": _speed(peer),
                    "service_over_best_peer": _ratio(ours, _speed(peer)),
                }
            )
        return out

    def family_ratios(self) -> list[dict[str, Any]]:
        """At each load: ``service`` against each peer family's best variant there."""
        out = []
        for model, n, c in self.loads():
            ours = _speed(self.row(SERVICE, model, n, c))
            families: dict[str, dict[str, Any]] = {}
            for family in self.peer_families():
                best = self.best_variant(family, model, n, c)
                families[family] = {
                    "best_variant": best.server if best else None,
                    "images_per_s": _speed(best),
                    "service_over_it": _ratio(ours, _speed(best)),
                }
            out.append(
                {
                    "model": model,
                    "n": n,
                    "concurrency": c,
                    "service_images_per_s": ours,
                    "families": families,
                }
            )
        return out

    def v2_over_sample(self) -> list[dict[str, Any]]:
        """Per model, at 1 image per request and concurrency 64: ``service-v2`` (the v2 binary
        path) images/s over ``service`` (POST /sample) images/s."""
        out = []
        for model in sorted({r.model for r in self.rows}):
            v2 = self.row(SERVICE_V2, model, V2_IMAGES, RATIO_CONCURRENCY)
            if v2 is None:  # not measured at this load
                continue
            ours = _speed(self.row(SERVICE, model, V2_IMAGES, RATIO_CONCURRENCY))
            out.append(
                {
                    "model": model,
                    "n": V2_IMAGES,
                    "concurrency": RATIO_CONCURRENCY,
                    "service_v2_images_per_s": v2.images_per_s,
                    "service_images_per_s": ours,
                    "v2_over_sample": _ratio(v2.images_per_s, ours),
                }
            )
        return out

    def latency_overheads(self) -> list[dict[str, Any]]:
        """p50 of the service at concurrency 1 and 1 image, minus raw p50 of one batch-1 run."""
        out = []
        for model in self.raw:
            row = self.row(SERVICE, model, 1, 1)
            raw = self.raw_batch1(model)
            service_p50 = row.result.p50_ms if row and row.result else None
            raw_p50 = raw.p50_ms if raw else None
            both = service_p50 is not None and raw_p50 is not None
            overhead = service_p50 - raw_p50 if both else None
            out.append(
                {
                    "model": model,
                    "service_p50_ms": service_p50,
                    "raw_p50_ms": raw_p50,
                    "overhead_ms": overhead,
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "command": self.command,
            "settings": self.settings,
            "raw_onnxruntime": {
                model: [dataclasses.asdict(r) for r in results]
                for model, results in self.raw.items()
            },
            "servers": [dataclasses.asdict(s) for s in self.servers],
            "loads": [
                {
                    **{k: v for k, v in dataclasses.asdict(row).items() if k != "result"},
                    "images_per_s": row.images_per_s,
                    "result": dataclasses.asdict(row.result) if row.result else None,
                }
                for row in self.rows
            ],
            "families": self.families(),
            "ratios_at_concurrency_64": self.ratios(),
            "service_against_best_variants": self.family_ratios(),
            "service_v2_over_service": self.v2_over_sample(),
            "latency_overhead": self.latency_overheads(),
        }

    def to_markdown(self) -> str:
        m = self.machine
        lines = [
            "# Throughput: this service, raw onnxruntime and peer model servers",
            "",
            f"- Machine: {m['cpu']}, {m['cores']} logical cores ({m['usable_cores']} usable), "
            f"{m['memory_gib']:.1f} GiB, {m['kernel']}",
            f"- Date: {m['date']}",
            f"- Command: `{self.command}`",
            f"- Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
            f"- Settings: {', '.join(f'{k}={v}' for k, v in self.settings.items())}",
        ]
        raw_rows = []
        for model, results in self.raw.items():
            best = self.raw_best(model)
            for r in results:
                label = f"{r.batch}{' + PNG' if r.png else ''}{' (best)' if r is best else ''}"
                raw_rows.append([model, label, f"{r.images_per_s:,.0f}", f"{r.p50_ms:.3f}", r.runs])
        lines += _table(
            "Raw onnxruntime, in process (the limit)",
            "model | batch | images/s | p50 of one run (ms) | runs",
            "lrrrr",
            raw_rows,
        )
        load_rows = []
        for row in self.rows:
            load = [row.server, row.model, row.n, row.concurrency]
            r = row.result
            if r is None:
                load_rows.append([*load, "-", "-", "-", "-", f"failed: {row.failure}", "-", "-"])
                continue
            requests = f"{r.requests}{'' if r.complete else ' (cut short)'}"
            speed, p50, p99 = _num(row.images_per_s), f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}"
            memory = [_num(row.rss_mib), _num(row.pss_mib)]
            load_rows.append([*load, requests, speed, p50, p99, r.errors, *memory])
        lines += _table(
            "Servers over HTTP on 127.0.0.1 (wrk, fixed request count)",
            "server | model | images/request | concurrency | requests | images/s | p50 ms | p99 ms "
            "| errors | RSS MiB | PSS MiB",
            "llrrrrrrrrr",
            load_rows,
        )
        lines += _table(
            f"Ratios at concurrency {RATIO_CONCURRENCY} (images/s)",
            "model | images/request | service | raw best (batch) | service / raw best | best peer "
            "| service / best peer",
            "lrrrrlr",
            [
                [
                    q["model"],
                    q["n"],
                    _num(q["service_images_per_s"]),
                    f"{_num(q['raw_best_images_per_s'])} ({q['raw_best_batch']})",
                    _x(q["service_over_raw_best"]),
                    f"{q['best_peer'] or '-'} {_num(q['best_peer_images_per_s'])}",
                    _x(q["service_over_best_peer"]),
                ]
                for q in self.ratios()
            ],
            note=f"`{SERVICE}` against raw onnxruntime and against the best peer there: the best "
            "variant of any peer family.",
        )
        families = self.peer_families()
        if families:
            lines += _table(
                "The service against each peer family, at each load (images/s)",
                " | ".join(["model", "images/request", "concurrency", "service", *families]),
                "lrrr" + "l" * len(families),
                [
                    [q["model"], q["n"], q["concurrency"], _num(q["service_images_per_s"])]
                    + [_against(q["families"][family]) for family in families]
                    for q in self.family_ratios()
                ],
                note=f"Each family by its best variant at that load (named), `{SERVICE}` / it in "
                "brackets.",
            )
        v2 = self.v2_over_sample()
        if v2:
            lines += _table(
                f"The v2 binary path against POST /sample ({V2_IMAGES} image per request, "
                f"concurrency {RATIO_CONCURRENCY})",
                f"model | {SERVICE_V2} images/s | {SERVICE} images/s | {SERVICE_V2} / {SERVICE}",
                "lrrr",
                [
                    [q["model"], _num(q["service_v2_images_per_s"])]
                    + [_num(q["service_images_per_s"]), _x(q["v2_over_sample"])]
                    for q in v2
                ],
            )
        lines += _table(
            "Latency of one request (concurrency 1, 1 image)",
            "model | service p50 ms | raw onnxruntime p50 ms (batch 1) | difference ms",
            "lrrr",
            [
                [q["model"], _num(q["service_p50_ms"], 2), _num(q["raw_p50_ms"], 3)]
                + [_num(q["overhead_ms"], 2)]
                for q in self.latency_overheads()
            ],
        )
        lines += _table(
            "Servers",
            "server | family | what | state | ready after s | idle RSS MiB | max pixel diff vs raw",
            "llllrrl",
            [
                [s.name, s.family, s.about, s.state, _num(s.ready_s, 1), _num(s.idle_rss_mib)]
                + [", ".join(f"{k}: {v}" for k, v in s.max_pixel_diff.items()) or "-"]
                for s in self.servers
            ],
        )
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> list[Path]:
        """Markdown to ``out`` (or beside it for a .json path) and JSON beside it."""
        md = out if out.suffix != ".json" else out.with_suffix(".md")
        js = out.with_suffix(".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(self.to_markdown())
        js.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return [md, js]


def _table(title: str, header: str, align: str, rows: list[list[Any]], note: str = "") -> list[str]:
    """A section's markdown: its heading, ``note`` (a paragraph, if any), then the table, its
    columns (``header``, split by ``|``) aligned left (``l``) or right (``r``)."""
    marks = ["---:" if a == "r" else "---" for a in align]
    table = [header.split(" | "), marks, *[[str(cell) for cell in row] for row in rows]]
    return ["", f"## {title}", "", *([note, ""] if note else [])] + [
        f"| {' | '.join(cells)} |" for cells in table
    ]


def _against(family: dict[str, Any]) -> str:
    """A peer family's best variant at a load, its images/s and the service / it."""
    if family["best_variant"] is None:
        return "-"
    speed, ratio = _num(family["images_per_s"]), _x(family["service_over_it"])
    return f"{family['best_variant']}: {speed} ({ratio})"


def _speed(row: LoadRow | RawResult | None) -> float | None:
    return row.images_per_s if row else None


def _fastest(rows: Iterable[LoadRow | None]) -> LoadRow | None:
    """The row with the most images/s, of those measured."""
    measured = [r for r in rows if r is not None and r.images_per_s is not None]
    return max(measured, key=lambda r: r.images_per_s or 0.0, default=None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
