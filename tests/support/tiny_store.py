"""Tiny ONNX models of every served family, built with onnx.helper (no torch), written as a
store that follows docs/model-store.md (a Triton model repository, config.pbtxt included).
``python tests/support/tiny_store.py OUT`` writes one."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelstore.layout import SCHEMA_VERSION, card_file, graph_file
from modelstore.triton import write_configs

H = W = 28
LATENT_DIM = 8
MIXTURE_K = 2
FASHION_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot"]  # fmt: skip


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any]) -> bytes:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _init(name: str, array: np.ndarray) -> Any:
    return numpy_helper.from_array(np.asarray(array), name)


def _io(name: str, shape: list[Any], dtype: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info(name, dtype, shape)


def vae_encoder(
    rng: np.random.Generator,
    dim: int = LATENT_DIM,
    out: str = "mean",
    shape: tuple[int, int, int] = (1, H, W),
) -> bytes:
    w = rng.normal(0, 0.05, (int(np.prod(shape)), dim)).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["image"], ["flat"], axis=1)]
    nodes.append(helper.make_node("Gemm", ["flat", "w_mean", "b"], [out]))
    inits = [_init("w_mean", w), _init("b", np.zeros(dim, np.float32))]
    outputs = [_io(out, ["batch", dim])]
    if out == "mean":
        nodes.append(helper.make_node("Gemm", ["flat", "w_lv", "b"], ["log_var"], alpha=0.1))
        inits.append(_init("w_lv", -np.abs(w)))
        outputs.append(_io("log_var", ["batch", dim]))
    return _model(nodes, [_io("image", ["batch", *shape])], outputs, inits)


def decoder(
    rng: np.random.Generator,
    dim: int = LATENT_DIM,
    log_scale: bool = True,
    shape: tuple[int, int, int] = (1, H, W),
) -> bytes:
    size = int(np.prod(shape))
    w = rng.normal(0, 1.0, (dim, size)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["z", "w", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape"], ["image"]),
    ]
    inits = [
        _init("w", w),
        _init("b", np.zeros(size, np.float32)),
        _init("shape", np.array([-1, *shape], np.int64)),
    ]
    outputs = [_io("image", ["batch", *shape])]
    if log_scale:
        nodes += [
            helper.make_node("Gemm", ["z", "w_s", "b_s"], ["s_flat"], alpha=0.01),
            helper.make_node("Reshape", ["s_flat", "shape"], ["log_scale"]),
        ]
        inits += [_init("w_s", w), _init("b_s", np.full(size, -3.0, np.float32))]
        outputs.append(_io("log_scale", ["batch", *shape]))
    return _model(nodes, [_io("z", ["batch", dim])], outputs, inits)


def _mixture_conv(
    rng: np.random.Generator,
    k: int,
    means: tuple[float, float],
    log_scale: float,
    height: Any,
    channels: int = 1,
    width: int = W,
) -> bytes:
    """A 1x1 conv from the image to the params of a k-logistic mixture at each pixel: 3k
    channels for grayscale, 10k for colour (the coefficients last, biased to 0.5)."""
    c = channels
    per = 1 + 2 * c + c * (c - 1) // 2
    w = rng.normal(0, 0.5, (per * k, c, 1, 1)).astype(np.float32)
    parts = [np.zeros(k), np.tile(np.linspace(*means, k), c), np.full(c * k, log_scale)]
    b = np.concatenate([*parts, np.full((per - 1 - 2 * c) * k, 0.5)])
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["params"])]
    inits = [_init("w", w), _init("b", b.astype(np.float32))]
    return _model(
        nodes,
        [_io("image", ["batch", c, height, width])],
        [_io("params", ["batch", per * k, height, width])],
        inits,
    )


def pixelcnn(rng: np.random.Generator, k: int = MIXTURE_K) -> bytes:
    """A 1x1 conv: not causal, which is fine for testing the sampling loop."""
    return _mixture_conv(rng, k, (0.2, 0.8), -3.0, "height")


def cvae_encoder(rng: np.random.Generator, dim: int = LATENT_DIM, classes: int = 10) -> bytes:
    """A VAE encoder whose mean is shifted by a per-class vector."""
    w = rng.normal(0, 0.05, (H * W, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w_mean", "b"], ["mean_x"]),
        helper.make_node("Gather", ["shift", "label"], ["mean_y"], axis=0),
        helper.make_node("Add", ["mean_x", "mean_y"], ["mean"]),
        helper.make_node("Gemm", ["flat", "w_lv", "b"], ["log_var"], alpha=0.1),
    ]
    inits = [
        _init("w_mean", w),
        _init("w_lv", -np.abs(w)),
        _init("b", np.zeros(dim, np.float32)),
        _init("shift", rng.normal(0, 1.0, (classes, dim)).astype(np.float32)),
    ]
    inputs = [_io("image", ["batch", 1, H, W]), _io("label", ["batch"], TensorProto.INT64)]
    outputs = [_io("mean", ["batch", dim]), _io("log_var", ["batch", dim])]
    return _model(nodes, inputs, outputs, inits)


def cvae_decoder(rng: np.random.Generator, dim: int = LATENT_DIM, classes: int = 10) -> bytes:
    """A VAE decoder whose logits are shifted by a per-class image."""
    w = rng.normal(0, 1.0, (dim, H * W)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["z", "w", "b"], ["logits_z"]),
        helper.make_node("Gather", ["shift", "label"], ["logits_y"], axis=0),
        helper.make_node("Add", ["logits_z", "logits_y"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape"], ["image"]),
        helper.make_node("Gemm", ["z", "w_s", "b_s"], ["s_flat"], alpha=0.01),
        helper.make_node("Reshape", ["s_flat", "shape"], ["log_scale"]),
    ]
    inits = [
        _init("w", w),
        _init("b", np.zeros(H * W, np.float32)),
        _init("shift", rng.normal(0, 2.0, (classes, H * W)).astype(np.float32)),
        _init("shape", np.array([-1, 1, H, W], np.int64)),
        _init("w_s", w),
        _init("b_s", np.full(H * W, -3.0, np.float32)),
    ]
    inputs = [_io("z", ["batch", dim]), _io("label", ["batch"], TensorProto.INT64)]
    outputs = [_io("image", ["batch", 1, H, W]), _io("log_scale", ["batch", 1, H, W])]
    return _model(nodes, inputs, outputs, inits)


def pixelrnn(rng: np.random.Generator, k: int = MIXTURE_K) -> bytes:
    """The tiny PixelCNN's 1x1 conv, as a graph of fixed height: the sampler must run it on
    whole images."""
    return _mixture_conv(rng, k, (0.3, 0.7), -2.5, H)


def _spec(name: str, shape: list[int], dtype: str = "float32") -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


IMAGE = [-1, 1, H, W]


def write_model(
    root: Path,
    name: str,
    family: str,
    graphs: dict[str, tuple[bytes, list[dict[str, Any]], list[dict[str, Any]]]],
    latent_dim: int | None,
    likelihood: dict[str, Any] | None = None,
    version: int = 1,
    class_names: list[str] | None = None,
    image_shape: tuple[int, int, int] = (1, H, W),
) -> Path:
    files, graph_specs = {}, {}
    for role, (data, inputs, outputs) in graphs.items():
        file = graph_file(name, role, version)
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_bytes(data)
        files[file] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        graph_specs[role] = {"file": file, "inputs": inputs, "outputs": outputs}
    card: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "family": family,
        "dataset": "tiny",
        "image_shape": list(image_shape),
        "latent_dim": latent_dim,
        "class_names": class_names or [str(i) for i in range(10)],
        "graphs": graph_specs,
        "metrics": {"fd": 1.5},
        "evaluation": {"split": "test"},
        "training": {"config": {}, "epochs": 0, "steps": 0, "seconds": 0.0, "hardware": "none",
                     "seed": 0, "command": "tests/support/tiny_store.py"},
        "export": {"torch": None, "onnx": onnx.__version__, "opset": 17, "ir_version": 9},
        "files": files,
    }  # fmt: skip
    if likelihood is not None:
        card["likelihood"] = likelihood
    write_configs(root, card)
    path = root / card_file(name, version)
    path.write_text(json.dumps(card, indent=2))
    return path


def write_tiny_store(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d = LATENT_DIM
    z_in, image_out = [_spec("z", [-1, d])], [_spec("image", IMAGE)]
    write_model(
        root,
        "vae-tiny",
        "vae",
        {
            "encoder": (
                vae_encoder(rng),
                [_spec("image", IMAGE)],
                [_spec("mean", [-1, d]), _spec("log_var", [-1, d])],
            ),
            "decoder": (decoder(rng), z_in, [*image_out, _spec("log_scale", IMAGE)]),
        },
        latent_dim=d,
        likelihood={"kind": "discretized_logistic", "components": 1},
    )
    write_model(
        root,
        "dcgan-tiny",
        "dcgan",
        {"generator": (decoder(rng, log_scale=False), z_in, image_out)},
        latent_dim=d,
    )
    write_model(
        root,
        "pixelcnn-tiny",
        "pixelcnn",
        {
            "pixelcnn": (
                pixelcnn(rng),
                [_spec("image", [-1, 1, -1, W])],
                [_spec("params", [-1, 3 * MIXTURE_K, -1, W])],
            )
        },
        latent_dim=None,
        likelihood={"kind": "discretized_logistic_mixture", "components": MIXTURE_K},
    )
    return root


def write_autoencoder(root: Path, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    d = LATENT_DIM
    return write_model(
        root,
        "ae-tiny",
        "autoencoder",
        {
            "encoder": (vae_encoder(rng, out="z"), [_spec("image", IMAGE)], [_spec("z", [-1, d])]),
            "decoder": (
                decoder(rng, log_scale=False),
                [_spec("z", [-1, d])],
                [_spec("image", IMAGE)],
            ),
        },
        latent_dim=d,
    )


def write_cvae(root: Path, seed: int = 2) -> Path:
    """cvae-tiny: encoder and decoder take a class ``label`` (int64, (B,)) as well."""
    rng = np.random.default_rng(seed)
    d, label = LATENT_DIM, _spec("label", [-1], "int64")
    return write_model(
        root,
        "cvae-tiny",
        "cvae",
        {
            "encoder": (
                cvae_encoder(rng),
                [_spec("image", IMAGE), label],
                [_spec("mean", [-1, d]), _spec("log_var", [-1, d])],
            ),
            "decoder": (
                cvae_decoder(rng),
                [_spec("z", [-1, d]), label],
                [_spec("image", IMAGE), _spec("log_scale", IMAGE)],
            ),
        },
        latent_dim=d,
        likelihood={"kind": "discretized_logistic", "components": 1},
        class_names=FASHION_CLASSES,
    )


def write_pixelrnn(root: Path, seed: int = 3) -> Path:
    """pixelrnn-tiny: the pixelcnn contract under the role ``pixelrnn``, at a fixed height."""
    rng = np.random.default_rng(seed)
    return write_model(
        root,
        "pixelrnn-tiny",
        "pixelrnn",
        {
            "pixelrnn": (
                pixelrnn(rng),
                [_spec("image", IMAGE)],
                [_spec("params", [-1, 3 * MIXTURE_K, H, W])],
            )
        },
        latent_dim=None,
        likelihood={"kind": "discretized_logistic_mixture", "components": MIXTURE_K},
    )


RGB_SHAPES = {"vae-rgb-tiny": (3, 32, 32), "dcgan-rgb-tiny": (3, 28, 28)}
"""The colour models ``write_rgb_store`` writes, and their image shapes (C, H, W)."""


def write_rgb_store(root: Path, seed: int = 4) -> Path:
    """vae-rgb-tiny (3, 32, 32) and dcgan-rgb-tiny (3, 28, 28): the contracts of vae-tiny and
    dcgan-tiny for colour images, at two sizes."""
    rng = np.random.default_rng(seed)
    d, z_in = LATENT_DIM, [_spec("z", [-1, LATENT_DIM])]
    shape = RGB_SHAPES["vae-rgb-tiny"]
    image = [_spec("image", [-1, *shape])]
    write_model(
        root,
        "vae-rgb-tiny",
        "vae",
        {
            "encoder": (
                vae_encoder(rng, shape=shape),
                image,
                [_spec("mean", [-1, d]), _spec("log_var", [-1, d])],
            ),
            "decoder": (
                decoder(rng, shape=shape),
                z_in,
                [*image, _spec("log_scale", [-1, *shape])],
            ),
        },
        latent_dim=d,
        likelihood={"kind": "discretized_logistic", "components": 1},
        image_shape=shape,
    )
    shape = RGB_SHAPES["dcgan-rgb-tiny"]
    write_model(
        root,
        "dcgan-rgb-tiny",
        "dcgan",
        {
            "generator": (
                decoder(rng, log_scale=False, shape=shape),
                z_in,
                [_spec("image", [-1, *shape])],
            )
        },
        latent_dim=d,
        image_shape=shape,
    )
    return root


RGB_PIXEL_SHAPE = (3, 32, 32)
"""The image shape of pixelcnn-rgb-tiny (``write_rgb_pixel_store``)."""


def write_rgb_pixel_store(root: Path, seed: int = 5) -> Path:
    """pixelcnn-rgb-tiny (3, 32, 32): the pixelcnn contract for colour, the PixelCNN++ mixture
    (10 K params channels, likelihood.channels 3 with coefficients)."""
    rng = np.random.default_rng(seed)
    c, h, w = RGB_PIXEL_SHAPE
    write_model(
        root,
        "pixelcnn-rgb-tiny",
        "pixelcnn",
        {
            "pixelcnn": (
                _mixture_conv(rng, MIXTURE_K, (0.2, 0.8), -3.0, "height", channels=c, width=w),
                [_spec("image", [-1, c, -1, w])],
                [_spec("params", [-1, 10 * MIXTURE_K, -1, w])],
            )
        },
        latent_dim=None,
        likelihood={
            "kind": "discretized_logistic_mixture",
            "components": MIXTURE_K,
            "channels": c,
            "coefficients": True,
        },  # fmt: skip
        image_shape=RGB_PIXEL_SHAPE,
    )
    return root


def copy_model(source: Path, name: str, target: Path, version: int | None = None) -> None:
    """Copy one model, its cards and graph folders, from one store into another; with
    ``version``, that version's card and graphs only."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob(f"{name}.*"):
        if path.is_dir():
            others = [p.name for p in path.iterdir() if p.is_dir() and p.name != str(version)]
            keep = None if version is None else shutil.ignore_patterns(*others)
            shutil.copytree(path, target / path.name, ignore=keep)
        elif version is None or path.name == f"{name}.v{version}.json":
            shutil.copy2(path, target / path.name)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    write_tiny_store(out)
    print(f"tiny store written to {out}")
