"""Export a checkpoint into the store (a Triton model repository, docs/model-store.md): one
verified ONNX graph per role at `<name>.<role>/<version>/model.onnx` with Triton's
`config.pbtxt`, and the card `<name>.v<version>.json`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelstore.checksums import sha256_of
from modelstore.layout import (
    CARD_FILE,
    MODEL_NAME,
    SCHEMA_VERSION,
    card_file,
    graph_file,
    graph_model,
)
from modelstore.triton import write_configs

from .checkpoints import METRICS, checkpoint_in, dataset_of, load_checkpoint
from .models import GenerativeModel, GraphSpec

OPSET = 17
IR_VERSION = 9  # onnxruntime 1.31 loads up to 13; the newest onnx writes 14
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An exported graph does not match its torch module."""


def export_graph(spec: GraphSpec, path: Path) -> None:
    import onnx

    torch.onnx.export(
        spec.module.eval(), spec.example_inputs, str(path), dynamo=False,
        input_names=spec.input_names, output_names=spec.output_names,
        dynamic_axes=spec.dynamic_axes, opset_version=OPSET, do_constant_folding=True,
    )  # fmt: skip
    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, IR_VERSION)
    # The exporter leaves every output axis symbolic; stamp the static ones from torch's output.
    with torch.no_grad():
        outs = spec.module.eval()(*spec.example_inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    for value, out in zip(model.graph.output, outs, strict=True):
        dynamic = spec.dynamic_axes.get(value.name, {})
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis not in dynamic:
                dim.Clear()
                dim.dim_value = out.shape[axis]
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _probe_inputs(
    spec: GraphSpec, batch: int, height: int | None, classes: int
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(batch)
    probes = []
    for example, name in zip(spec.example_inputs, spec.input_names, strict=True):
        shape = [batch, *example.shape[1:]]
        if height is not None and 2 in spec.dynamic_axes.get(name, {}):
            shape[2] = height
        if name == "image":  # real pixel values, k/255
            probes.append(torch.randint(0, 256, shape, generator=g).float() / 255)
        elif not example.is_floating_point():  # class labels
            probes.append(torch.randint(0, classes, shape, generator=g))
        else:
            probes.append(torch.randn(shape, generator=g))
    return probes


def verify_graph(spec: GraphSpec, path: Path, classes: int, tolerance: float = TOLERANCE) -> float:
    """Run the graph in onnxruntime against torch on random inputs; return the max |diff|."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    heights = [None, 13] if any(2 in axes for axes in spec.dynamic_axes.values()) else [None]
    worst = 0.0
    for batch in (1, 3, 17):
        for height in heights:
            inputs = _probe_inputs(spec, batch, height, classes)
            with torch.no_grad():
                expected = spec.module.eval()(*inputs)
            expected = expected if isinstance(expected, tuple) else (expected,)
            feeds = {n: t.numpy() for n, t in zip(spec.input_names, inputs, strict=True)}
            got = session.run(spec.output_names, feeds)
            for name, e, o in zip(spec.output_names, expected, got, strict=True):
                if o.shape != tuple(e.shape):
                    raise ExportError(
                        f"{path.name}:{name} has shape {o.shape}, torch {tuple(e.shape)}"
                    )
                worst = max(worst, float(np.abs(o - e.numpy()).max()))
    print(f"  {path.name}: max |onnxruntime - torch| = {worst:.2e} (tolerance {tolerance:.0e})")
    if not worst <= tolerance:
        raise ExportError(f"{path.name} differs from torch by {worst:.3g} > {tolerance:g}")
    return worst


def _tensor_specs(path: Path) -> dict[str, list[dict[str, Any]]]:
    import onnx

    graph = onnx.load(str(path)).graph
    dtypes = {1: "float32", 7: "int64", 2: "uint8"}

    def describe(values: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "dtype": dtypes[v.type.tensor_type.elem_type],
                "shape": [
                    d.dim_value if d.HasField("dim_value") else -1
                    for d in v.type.tensor_type.shape.dim
                ],
            }
            for v in values
        ]

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def train_command(model: GenerativeModel, ckpt: dict[str, Any]) -> str:
    """The command that reproduces the checkpoint: non-default settings spelled out. Epochs are
    the ones trained, which may be fewer than the config asked for (no setting depends on the
    planned count, so a run stopped after epoch e equals a run planned for e epochs)."""
    defaults = type(model.config)()
    model.resolve_config(defaults)
    parts = ["python -m training train", model.family]
    record = ckpt.get("data")
    if record:
        parts += ["--data", shlex.quote(record["path"])]
        for option in ("size", "channels"):
            if record[f"{option}_asked"] is not None:
                parts += [f"--{option}", str(record[f"{option}_asked"])]
    else:
        parts += ["--dataset", ckpt["dataset"]]
    parts += ["--seed", str(ckpt["seed"]), "--precision", ckpt["precision"]]
    for key, value in {**ckpt["config"], "epochs": ckpt["epoch"]}.items():
        if getattr(defaults, key) != value:
            parts += ["--set", f"{key}={value}"]
    if ckpt["limit"]:
        parts += ["--limit", str(ckpt["limit"])]
    return " ".join(parts)


def next_version(store: Path, name: str) -> int:
    """One more than the newest version of ``name``, counting its cards and graph folders."""
    cards = (CARD_FILE.fullmatch(p.name) for p in store.glob(f"{name}.v*.json"))
    found = [int(m["version"]) for m in cards if m and m["name"] == name]
    found += [int(p.name) for p in store.glob(f"{name}.*/*") if p.is_dir() and p.name.isdigit()]
    return max(found, default=0) + 1


def _taken(store: Path, name: str, version: int) -> list[Path]:
    versioned = [p for p in store.glob(f"{name}.*/{version}") if p.is_dir()]
    card = store / card_file(name, version)
    return [card, *versioned] if card.exists() else versioned


def export_checkpoint(
    checkpoint: Path,
    store: Path,
    name: str,
    version: int | None = None,
    metrics: dict[str, Any] | None = None,
    classifier: Path | None = None,
    fd_samples: int = 10_000,
    iwae_k: int = 100,
    eval_limit: int | None = None,
    temperatures: tuple[float, ...] = (),
) -> Path:
    if version is not None and version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r}: letters, digits, '-' and '_' only (no dots)")
    version = version or next_version(store, name)
    taken = _taken(store, name, version)
    if taken:  # checked before an evaluation that may take many minutes
        raise ValueError(f"{taken[0]} exists; versions are never overwritten")
    checkpoint = checkpoint_in(checkpoint)
    model, ckpt = load_checkpoint(checkpoint)
    print(f"exporting {checkpoint} (epoch {ckpt['epoch']})")
    curve = checkpoint.parent / METRICS
    if curve.is_file():  # the whole run's curve, which goes on past a best epoch
        ckpt["run_history"] = [json.loads(line) for line in curve.read_text().splitlines()]
    if metrics is None:
        from .evaluate import evaluate

        metrics = evaluate(
            model,
            dataset_of(ckpt),
            classifier,
            fd_samples=fd_samples,
            iwae_k=iwae_k,
            limit=eval_limit,
            temperatures=temperatures,
        )
    model.apply_evaluation(metrics.get("evaluation", {}))
    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=store, prefix=f".export-{name}.v{version}-"))
    try:
        card = _write_graphs_and_card(model, ckpt, name, version, metrics, staging)
        _publish(staging, store, card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"exported {name} v{version} to {store}: {json.dumps(card['metrics'])}")
    return store / card_file(name, version)


def _publish(staging: Path, store: Path, card: dict[str, Any]) -> None:
    """Move the staged version into the store, graphs and configs first and the card last:
    the service reads a model through its card, so it sees the version whole or not at all."""
    name, version = card["name"], card["version"]
    for role in card["graphs"]:
        (store / graph_model(name, role)).mkdir(exist_ok=True)
        folder = f"{graph_model(name, role)}/{version}"
        os.replace(staging / folder, store / folder)
    write_configs(store, card)
    os.replace(staging / card_file(name, version), store / card_file(name, version))


def _write_graphs_and_card(
    model: GenerativeModel,
    ckpt: dict[str, Any],
    name: str,
    version: int,
    metrics: dict[str, Any],
    folder: Path,
) -> dict[str, Any]:
    import onnx

    graphs, parity, files = {}, {}, {}
    for role, spec in model.onnx_graphs().items():
        file = graph_file(name, role, version)
        path = folder / file
        path.parent.mkdir(parents=True)
        export_graph(spec, path)
        worst = verify_graph(spec, path, model.data.num_classes)
        parity[role] = {"max_abs_diff": worst, "tolerance": TOLERANCE}
        graphs[role] = {"file": file, **_tensor_specs(path)}
        files[file] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
    card: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "family": model.family,
        "dataset": ckpt["dataset"],
        "image_shape": list(model.data.image_shape),
        "latent_dim": None,
        "class_names": list(model.data.class_names),
        **model.card_fields(),
        "graphs": graphs,
        "metrics": metrics["metrics"],
        "evaluation": metrics["evaluation"],
        "training": {
            "config": ckpt["config"],
            "epochs": ckpt["epoch"],
            "steps": ckpt["step"],
            "seconds": round(ckpt["seconds"], 3),
            "hardware": ckpt["hardware"],
            "precision": ckpt["precision"],
            "seed": ckpt["seed"],
            "train_images": ckpt["limit"] or "all of the train split",
            **({"data": ckpt["data"]} if ckpt.get("data") else {}),
            "command": train_command(model, ckpt),
            "history": ckpt.get("run_history", ckpt["history"]),
            "selected": ckpt.get("selection"),
            "stopped": ckpt.get("stopped"),
        },
        "export": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "opset": OPSET,
            "ir_version": IR_VERSION,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parity": parity,
        },
        "files": dict(sorted(files.items())),
    }
    (folder / card_file(name, version)).write_text(json.dumps(card, indent=2) + "\n")
    return card
