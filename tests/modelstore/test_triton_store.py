"""The store is a Triton model repository (checked with Triton's own config schema), the service
still reads its cards, and the migration from the old layout keeps every byte and sha256."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from modelstore.check import check_store
from modelstore.check import main as check_main
from modelstore.checksums import verify_files
from modelstore.discovery import discover, old_layout_models, read_card
from modelstore.errors import MigrationError, StoreError
from modelstore.layout import write_atomically
from modelstore.migrate import migrate
from modelstore.triton import config_pbtxt, read_config
from modelstore.triton import parse_config as parse_triton
from service.registry.registry import ModelState
from tests.conftest import SHIPPED_STORE, load_registry, tiny_settings
from tests.support.triton_repository import check_repository, parse_config, parse_config_text


def _graph_models(store: Path) -> list[str]:
    """``<name>.<role>`` of every graph of every card in the store."""
    models = set()
    for card_path in store.glob("*.v*.json"):
        card = json.loads(card_path.read_text())
        models |= {f"{card['name']}.{role}" for role in card["graphs"]}
    return sorted(models)


@pytest.mark.parametrize("which", ["shipped", "tiny"])
def test_store_is_a_triton_repository_the_service_reads(which: str, tiny_store: Path) -> None:
    store = SHIPPED_STORE if which == "shipped" else tiny_store
    assert check_repository(store) == _graph_models(store)
    assert not old_layout_models(store)
    for entry in discover(store):
        card = read_card(entry)
        verify_files(entry.folder, card)
        for role, graph in card.graphs.items():
            assert graph.file == f"{card.name}.{role}/{card.version}/model.onnx"


def test_config_of_a_per_row_scalar_input_is_reshaped() -> None:
    """A conditional family's (B,) label: Triton wants dims [1], reshaped to [] per row."""
    graph = {
        "inputs": [
            {"name": "z", "dtype": "float32", "shape": [-1, 8]},
            {"name": "label", "dtype": "int64", "shape": [-1]},
        ],
        "outputs": [{"name": "image", "dtype": "float32", "shape": [-1, 1, 28, 28]}],
    }
    config = parse_config_text(config_pbtxt("cvae-tiny", "decoder", graph, "cvae-tiny.v1.json"))
    assert config.name == "cvae-tiny.decoder" and config.max_batch_size == 64
    label = config.input[1]
    assert list(label.dims) == [1] and label.HasField("reshape") and not label.reshape.shape
    assert model_config_pb2.DataType.Name(label.data_type) == "TYPE_INT64"


def test_config_of_a_graph_without_a_batch_axis_is_not_batched() -> None:
    graph = {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [4, 2]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [4, -1]}],
    }
    config = parse_config_text(config_pbtxt("fixed", "graph", graph, "fixed.v1.json"))
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [4, 2] and list(config.output[0].dims) == [4, -1]


def _write_old_layout(store: Path, old: Path) -> None:
    """The store as it was before the Triton layout: ``<name>/<version>/{model.json, *.onnx}``."""
    for card_path in store.glob("*.v*.json"):
        card = json.loads(card_path.read_text())
        folder = old / card["name"] / str(card["version"])
        folder.mkdir(parents=True)
        renames = {g["file"]: f"{role}.onnx" for role, g in card["graphs"].items()}
        for new, name in renames.items():
            shutil.copy(store / new, folder / name)
        card["schema_version"] = 1
        card["graphs"] = {r: {**g, "file": renames[g["file"]]} for r, g in card["graphs"].items()}
        card["files"] = {renames[f]: entry for f, entry in card["files"].items()}
        (folder / "model.json").write_text(json.dumps(card, indent=2))


def _snapshot(store: Path) -> dict[str, bytes]:
    return {
        p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()
    }


def test_migration_rebuilds_the_store_and_can_be_rerun(tmp_path: Path, tiny_store: Path) -> None:
    old = tmp_path / "old"
    _write_old_layout(tiny_store, old)
    registry = load_registry(tiny_settings(old, warmup=False))
    assert registry.models["vae-tiny"].state is ModelState.FAILED
    assert "old store layout; run `python -m modelstore.migrate" in (
        registry.models["vae-tiny"].reason or ""
    )

    assert migrate(old) == ["dcgan-tiny v1", "pixelcnn-tiny v1", "vae-tiny v1"]
    migrated = _snapshot(old)
    expected = _snapshot(tiny_store)
    assert set(migrated) == set(expected)
    for name, data in expected.items():
        if name.endswith(".json"):  # the same card, written with a trailing newline
            assert json.loads(migrated[name]) == json.loads(data), name
        else:
            assert migrated[name] == data, name
    assert migrate(old) == [] and _snapshot(old) == migrated

    # A new version lands in the old layout later: a re-run moves it alone.
    newer = tmp_path / "newer"
    _write_old_layout(tiny_store, newer)
    card_path = newer / "dcgan-tiny" / "1" / "model.json"
    card = json.loads(card_path.read_text())
    card["version"] = 2
    shutil.move(newer / "dcgan-tiny" / "1", old / "dcgan-tiny" / "2")
    (old / "dcgan-tiny" / "2" / "model.json").write_text(json.dumps(card))
    assert migrate(old) == ["dcgan-tiny v2"]
    assert "from dcgan-tiny.v2.json" in (old / "dcgan-tiny.generator/config.pbtxt").read_text()
    assert check_repository(old) == ["dcgan-tiny.generator", "pixelcnn-tiny.pixelcnn",
                                     "vae-tiny.decoder", "vae-tiny.encoder"]  # fmt: skip
    registry = load_registry(tiny_settings(old, warmup=False))
    assert registry.ready and registry.models["dcgan-tiny"].version == 2


def test_migration_refuses_a_graph_that_does_not_match_its_card(
    tmp_path: Path, tiny_store: Path
) -> None:
    _write_old_layout(tiny_store, tmp_path)
    (tmp_path / "vae-tiny" / "1" / "decoder.onnx").write_bytes(b"tampered")
    with pytest.raises(MigrationError, match="decoder.onnx does not match the sha256"):
        migrate(tmp_path)
    assert (tmp_path / "vae-tiny" / "1" / "model.json").is_file()  # left for a person to see


def test_triton_config_parses_with_tritons_schema(tiny_store: Path) -> None:
    config = parse_config(tiny_store / "vae-tiny.decoder" / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
    assert [t.name for t in config.output] == ["image", "log_scale"]
    assert list(config.output[0].dims) == [1, 28, 28]


@pytest.mark.parametrize("which", ["shipped", "tiny"])
def test_the_config_reader_reads_what_triton_reads(which: str, tiny_store: Path) -> None:
    store = SHIPPED_STORE if which == "shipped" else tiny_store
    for path in sorted(store.glob("*/config.pbtxt")):
        ours, theirs = read_config(path), parse_config(path)
        assert (ours.name, ours.platform, ours.max_batch_size) == (
            theirs.name, theirs.platform, theirs.max_batch_size,
        )  # fmt: skip
        for mine, triton in ((ours.inputs, theirs.input), (ours.outputs, theirs.output)):
            assert [(t.name, t.data_type, list(t.dims)) for t in mine] == [
                (t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in triton
            ]


def test_the_config_reader_keeps_a_tuned_config_and_refuses_a_broken_one(tmp_path: Path) -> None:
    tuned = 'name: "m.g"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
    tuned += "instance_group [ { count: 2, kind: KIND_CPU } ]\n"
    tuned += 'input [ { name: "z" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    config = parse_triton(tuned)
    assert config.max_batch_size == 8 and config.inputs[0].dims == (4,)
    (tmp_path / "config.pbtxt").write_text('name: "m.g"\ninput [ { name: ')
    with pytest.raises(StoreError, match="config.pbtxt"):
        read_config(tmp_path / "config.pbtxt")


def test_store_check_passes_the_shipped_store_and_names_what_is_wrong(
    tmp_path: Path, tiny_store: Path
) -> None:
    assert all(not problems for problems in check_store(SHIPPED_STORE).values())
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    config = store / "vae-tiny.decoder" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "z"', 'name: "latent"'))
    (store / "dcgan-tiny.generator" / "1" / "model.onnx").write_bytes(b"junk")
    report = check_store(store)
    assert "does not describe graph 'decoder' of vae-tiny v1" in report["vae-tiny"][0]
    assert "sha256 mismatch" in report["dcgan-tiny"][0]
    assert report["pixelcnn-tiny"] == []
    assert check_main([str(store)]) == 1 and check_main([str(SHIPPED_STORE)]) == 0


def test_a_store_file_written_atomically_is_readable_by_others(tmp_path: Path) -> None:
    fresh, kept = tmp_path / "config.pbtxt", tmp_path / "private.json"
    write_atomically(fresh, b"new")
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    write_atomically(kept, b"new")
    assert (fresh.stat().st_mode & 0o777, kept.stat().st_mode & 0o777) == (0o644, 0o640)
    assert fresh.read_bytes() == kept.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.pbtxt", "private.json"]
