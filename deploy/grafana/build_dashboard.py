"""Build the genserve Grafana dashboard as code: ``python deploy/grafana/build_dashboard.py``.

Writes dashboards/genserve.json next to this file (Grafana provisions it from there);
``--check`` only says whether the committed JSON is up to date. tests/deploy/test_deploy.py checks
that it is, and tests/service/test_monitoring.py runs every expr below against a real Prometheus.

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39, Grafana 10/11): every panel
is a timeseries, stat or table with a Prometheus target. ``$model`` is a multi-value template
variable ("All" is ``.*``) and ``$__rate_interval`` is Grafana's rate window.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "genserve.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
UID = "genserve-latency"

MODEL = 'model=~"$model"'
MODEL_OPS = f'{MODEL}, model!="", operation=~"sample|encode|reconstruct|interpolate"'
RATE = "$__rate_interval"


def _target(expr: str, legend: str, ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, **extra}


def _panel(
    kind: str, title: str, description: str, targets: list[dict[str, Any]], unit: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        **extra,
    }


def _timeseries(
    title: str, description: str, targets: list[dict[str, Any]], unit: str, stack: bool = False
) -> dict[str, Any]:
    panel = _panel("timeseries", title, description, targets, unit)
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "fillOpacity": 30 if stack else 0,
        "showPoints": "never",
    }
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    panel["fieldConfig"]["defaults"]["custom"] = custom
    panel["options"] = {
        "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def _latency(quantile: float) -> dict[str, Any]:
    name = f"p{round(quantile * 100)}"
    expr = (
        f"histogram_quantile({quantile}, sum by (le, model, operation) ("
        f"rate(genserve_request_duration_seconds_bucket{{{MODEL_OPS}}}[{RATE}])))"
    )
    return _timeseries(
        f"{name} latency by model and operation",
        f"{name} of the HTTP request time (genserve_request_duration_seconds, whole request: "
        "decoding, onnxruntime, PNG encoding), from the histogram's buckets, so it is only as "
        "fine as the bucket edges (0.5 ms .. 30 s, about x2.5 apart).",
        [_target(expr, "{{model}} {{operation}}")],
        "s",
    )


def panels() -> list[dict[str, Any]]:
    """Panels in reading order; ``dashboard()`` gives them ids and grid positions."""
    requests = f"genserve_request_duration_seconds_count{{{MODEL}}}"
    errors_5xx = f'genserve_request_duration_seconds_count{{{MODEL}, status=~"5.."}}'
    errors_4xx_5xx = f'genserve_request_duration_seconds_count{{{MODEL}, status=~"4..|5.."}}'
    onnx_sum = f"sum by (model) (rate(genserve_onnx_run_seconds_sum{{{MODEL}}}[{RATE}]))"
    durations = f'genserve_request_duration_seconds_sum{{{MODEL}, model!=""}}'
    request_sum = f"sum by (model) (rate({durations}[{RATE}]))"
    return [
        _timeseries(
            "Request rate by model and operation",
            "HTTP requests per second. An empty model is a request that resolved no model "
            "(health checks, /metrics, an unknown model name).",
            [
                _target(
                    f"sum by (model, operation) (rate({requests}[{RATE}]))",
                    "{{model}} {{operation}}",
                )
            ],
            "reqps",
        ),
        _timeseries(
            "Errors by model and status",
            "4xx (the client's fault: validation, limits, unknown model) and 5xx (503: a model "
            "that failed to load; 500: a bug) responses per second.",
            [
                _target(
                    f"sum by (model, status) (rate({errors_4xx_5xx}[{RATE}]))",
                    "{{model}} {{status}}",
                )
            ],
            "reqps",
        ),
        _timeseries(
            "5xx error ratio by model",
            "Share of requests answered with a 5xx. It is 0, not empty, while nothing fails; "
            "the GenserveHighErrorRate alert fires above 5% for 5 minutes.",
            [
                _target(
                    f"(sum by (model) (rate({errors_5xx}[{RATE}])) or sum by (model) "
                    f"(rate({requests}[{RATE}])) * 0) / sum by (model) (rate({requests}[{RATE}]))",
                    "{{model}}",
                )
            ],
            "percentunit",
        ),
        _latency(0.5),
        _latency(0.95),
        _latency(0.99),
        _timeseries(
            "Time in onnxruntime vs outside it, by model",
            "Seconds per second spent inside onnxruntime runs (genserve_onnx_run_seconds) and the "
            "rest of the request time (parsing, latent drawing, PNG encoding, the HTTP layer). "
            "Stacked, the two add up to the total request time per second: near 1 s/s means "
            "about one request always in progress.",
            [
                _target(onnx_sum, "{{model}} onnxruntime", "A"),
                _target(f"clamp_min({request_sum} - {onnx_sum}, 0)", "{{model}} outside", "B"),
            ],
            "s",
            stack=True,
        ),
        _timeseries(
            "Images produced per second",
            "Images returned by sample, reconstruct and interpolate (genserve_images_total).",
            [
                _target(
                    f"sum by (model, operation) (rate(genserve_images_total{{{MODEL}}}[{RATE}]))",
                    "{{model}} {{operation}}",
                )
            ],
            "short",
        ),
        _timeseries(
            "Requests in flight",
            "HTTP requests being served right now, per instance (the /metrics scrape counts "
            "itself, so an idle service shows 1).",
            [_target("sum by (instance) (genserve_requests_in_flight)", "{{instance}}")],
            "short",
        ),
        _panel(
            "table",
            "Execution provider in use",
            "The onnxruntime execution provider each graph really got (genserve_provider_info). "
            "CPUExecutionProvider on a GPU deployment means CUDA did not work.",
            [
                _target(
                    f"max by (model, graph, provider) (genserve_provider_info{{{MODEL}}})",
                    "",
                    instant=True,
                    range=False,
                    format="table",
                )
            ],
            "short",
            transformations=[
                {
                    "id": "organize",
                    "options": {"excludeByName": {"Time": True, "Value": True}},
                }
            ],
        ),
        _panel(
            "stat",
            "Models ready",
            "1 = loaded and serving, 0 = failed to load (GenserveModelNotReady fires after 2 "
            "minutes). GET /health/ready says why.",
            [
                _target(
                    f"min by (model, version) (genserve_model_ready{{{MODEL}}})",
                    "{{model}} v{{version}}",
                    instant=True,
                    range=False,
                )
            ],
            "short",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "failed", "color": "red"},
                        "1": {"text": "ready", "color": "green"},
                    },
                }
            ],
        ),
        _timeseries(
            "Batch size by graph",
            "Mean images (rows) per batched onnxruntime run. Near 1 under load means requests "
            "are not coalescing; at SERVICE_BATCH_MAX_SIZE the batcher is saturated.",
            [
                _target(
                    f"sum by (model, graph) (rate(genserve_batch_size_sum{{{MODEL}}}[{RATE}])) "
                    f"/ sum by (model, graph) (rate(genserve_batch_size_count{{{MODEL}}}[{RATE}]))",
                    "{{model}} {{graph}}",
                )
            ],
            "short",
        ),
        _timeseries(
            "Queue wait p99 and overload rejections",
            "Time requests wait in a graph's batch queue before their run starts (p99), and "
            "requests refused with 503 + Retry-After because the queue was full.",
            [
                _target(
                    "histogram_quantile(0.99, sum by (model, graph, le) "
                    f"(rate(genserve_queue_wait_seconds_bucket{{{MODEL}}}[{RATE}])))",
                    "wait p99 {{model}} {{graph}}",
                ),
                _target(
                    f"sum by (model, graph) (rate(genserve_rejected_requests_total{{{MODEL}}}"
                    f"[{RATE}]))",
                    "rejected/s {{model}} {{graph}}",
                    ref="B",
                ),
            ],
            "s",
        ),
        _timeseries(
            "Queue wait by request class",
            "p50 and p99 of the time requests wait in a graph's batch queue before their first "
            "rows run, by class (genserve_class_queue_wait_seconds): interactive requests go "
            "first at each batch boundary, bulk work runs in pieces (SERVICE_QUEUE_POLICY). "
            "Interactive far below bulk is the policy at work; the two alike under load means "
            "arrival order.",
            [
                _target(
                    f"histogram_quantile({q}, sum by (model, class, le) "
                    f"(rate(genserve_class_queue_wait_seconds_bucket{{{MODEL}}}[{RATE}])))",
                    f"p{round(q * 100)} {{{{model}}}} {{{{class}}}}",
                    ref=ref,
                )
                for q, ref in ((0.5, "A"), (0.99, "B"))
            ],
            "s",
        ),
        _timeseries(
            "Stopped work: deadlines and clients that left",
            "Requests whose work was stopped, by reason: deadline (their timeout_ms passed) or "
            "disconnect (the client left, or closed its event stream); the PixelCNN and PixelRNN "
            "rows drawn for nothing; and batch rows dropped from a queue before they ran.",
            [
                _target(
                    "sum by (model, operation, reason) "
                    f"(rate(genserve_cancelled_requests_total{{{MODEL}}}[{RATE}]))",
                    "stopped/s {{model}} {{operation}} {{reason}}",
                ),
                _target(
                    "sum by (model, operation) "
                    f"(rate(genserve_cancelled_work_rows_total{{{MODEL}}}[{RATE}]))",
                    "rows wasted/s {{model}} {{operation}}",
                    ref="B",
                ),
                _target(
                    "sum by (model, graph) "
                    f"(rate(genserve_discarded_batch_rows_total{{{MODEL}}}[{RATE}]))",
                    "batch rows dropped/s {{model}} {{graph}}",
                    ref="C",
                ),
            ],
            "short",
        ),
    ]


# Grid: 24 columns wide; (width, height) per panel, in panels() order, filled left to right.
SIZES = [
    (12, 8), (6, 8), (6, 8), (8, 8), (8, 8), (8, 8), (12, 8), (6, 8), (6, 8), (16, 6), (8, 6),
    (12, 8), (12, 8), (12, 8), (12, 8),
]  # fmt: skip


def dashboard() -> dict[str, Any]:
    laid_out, x, y, row_height = [], 0, 0, 0
    for panel_id, (panel, (w, h)) in enumerate(zip(panels(), SIZES, strict=True), start=1):
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        # the mappings of a stat panel live in its field defaults
        mappings = panel.pop("mappings", None)
        if mappings is not None:
            panel["fieldConfig"]["defaults"]["mappings"] = mappings
        laid_out.append({"id": panel_id, "gridPos": {"x": x, "y": y, "w": w, "h": h}, **panel})
        x, row_height = x + w, max(row_height, h)
    model_variable = {
        "name": "model",
        "label": "Model",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {
            "query": "label_values(genserve_request_duration_seconds_count, model)",
            "refId": "model",
        },
        "definition": "label_values(genserve_request_duration_seconds_count, model)",
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
    }
    return {
        "uid": UID,
        "title": "genserve: traffic and latency",
        "description": "Generated by deploy/grafana/build_dashboard.py; edit that, not this.",
        "tags": ["genserve"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {"list": [model_variable]},
        "annotations": {"list": []},
        "panels": laid_out,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: build_dashboard.py [--check]", file=sys.stderr)
        return 2
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
