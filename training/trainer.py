"""The single trainer: seeded, resumable, with checkpoints that describe themselves."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .data import load, spec
from .models import FAMILIES, GenerativeModel

CHECKPOINT = "checkpoint.pt"


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, no GPU"


def build_model(
    family: str, config: dict[str, Any], dataset: str = "fashion-mnist"
) -> GenerativeModel:
    """A new model of ``family`` for ``dataset`` (which sizes it), its defaults overridden by
    ``config``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    model_cls, config_cls = FAMILIES[family]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(config) - known
    if unknown:
        raise ValueError(
            f"{family} has no setting {', '.join(sorted(unknown))}; "
            f"it has {', '.join(sorted(known))}"
        )
    return model_cls(config_cls(**config), spec(dataset))


def load_checkpoint(path: Path) -> tuple[GenerativeModel, dict[str, Any]]:
    """A model rebuilt from the config its checkpoint carries, with its trained weights."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(ckpt["family"], ckpt["config"], ckpt["dataset"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    family: str,
    dataset: str,
    run_dir: Path,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    limit: int | None = None,
    precision: str = "fp32",
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Train (or resume training) and return the checkpoint path.

    The same family, dataset, config, seed and precision give the same weights, whether the run
    was interrupted and resumed at an epoch boundary or not.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / CHECKPOINT
    torch.manual_seed(seed)
    model = build_model(family, overrides or {}, dataset)
    cfg = model.config
    optimizers = model.configure_optimizers()
    state: dict[str, Any] = {
        "family": family, "dataset": dataset, "seed": seed, "precision": precision,
        "config": dataclasses.asdict(cfg), "epoch": 0, "step": 0, "seconds": 0.0,
        "history": [], "limit": limit, "hardware": hardware(),
        "torch": torch.__version__,
    }  # fmt: skip
    if resume and ckpt_path.exists():
        old = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        same = ("family", "dataset", "seed", "precision", "limit")
        if any(old[k] != state[k] for k in same) or _without_epochs(
            old["config"]
        ) != _without_epochs(state["config"]):
            raise ValueError(
                f"{ckpt_path} was trained with other settings; use another --run-dir or --no-resume"
            )
        model.load_state_dict(old["model"])
        for opt, opt_state in zip(optimizers, old["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        torch.set_rng_state(old["rng"])
        for k in ("epoch", "step", "seconds", "history"):
            state[k] = old[k]
        state["config"] = dataclasses.asdict(cfg)  # more epochs may have been asked for
        print(f"resuming {ckpt_path} after epoch {state['epoch']}", file=sys.stderr)

    train_set = load(dataset, "train")
    x_all, y_all = train_set.float_images(), train_set.labels
    if limit:
        x_all, y_all = x_all[:limit], y_all[:limit]
    held = load(dataset, "heldout")
    x_val, y_val = held.float_images()[:1000], held.labels[:1000]
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    batches = (len(x_all) + cfg.batch_size - 1) // cfg.batch_size

    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(
            len(x_all), generator=torch.Generator().manual_seed(seed * 1000 + epoch)
        )
        started = time.perf_counter()
        bar = tqdm(
            range(batches), desc=f"{family} epoch {epoch}/{cfg.epochs}", unit="batch",
            disable=not progress, dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip
        logs: dict[str, float] = {}
        for b in bar:
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = x_all[idx].contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logs = model.training_step(x, y_all[idx], optimizers)
            state["step"] += 1
            rate = (b + 1) * cfg.batch_size / (time.perf_counter() - started)
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()} | {"img/s": f"{rate:.0f}"})
        model.end_of_epoch()
        model.eval()
        val = model.validation_loss(x_val, y_val)
        state["seconds"] += time.perf_counter() - started
        state["history"].append({"epoch": epoch, "val": val, **logs})
        state.update(epoch=epoch, model=model.state_dict(), rng=torch.get_rng_state())
        state["optimizers"] = [opt.state_dict() for opt in optimizers]
        _save_atomic(state, ckpt_path)
        print(
            f"{family} epoch {epoch}: held-out {val:.4f}, {state['seconds']:.0f} s", file=sys.stderr
        )
    return ckpt_path


def _without_epochs(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "epochs"}
