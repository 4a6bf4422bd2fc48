"""The exact fast samplers (PixelCNN windows, PixelRNN row steps): exact by construction, and
the same pixels as the naive one, for sampling and for completing around given pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.generation import autoregressive  # noqa: E402
from service.generation.operations import Operations  # noqa: E402
from service.generation.reference import generate_naive, sample_naive  # noqa: E402
from service.generation.specs import Limits, SampleSpec  # noqa: E402
from service.registry.registry import LoadedModel  # noqa: E402
from tests.conftest import load_registry, tiny_settings  # noqa: E402
from training.models.pixelcnn import PixelCNNConfig, PixelCNNNet  # noqa: E402
from training.models.pixelrnn import PixelRNNConfig, PixelRNNNet, RowStep  # noqa: E402

TRAINING = {"channels": 8, "mixture_components": 3, "batch_size": 32, "epochs": 1}
SMALL = {"pixelcnn": {**TRAINING, "layers": 3}, "pixelrnn": {**TRAINING, "layers": 2}}
SAMPLER = {"pixelcnn": "windowed", "pixelrnn": "row_step"}


def test_pixelcnn_context_and_row_equal_the_full_forward_and_their_windows_are_tight() -> None:
    torch.manual_seed(0)
    net = PixelCNNNet(PixelCNNConfig(channels=8, layers=4, mixture_components=2)).eval()
    x = torch.randint(0, 256, (2, 1, 28, 28)).float() / 255
    rows, cols = net.context_rows, net.row_columns
    with torch.no_grad():
        full = net(x)
        for i in (0, 3, rows - 1, rows, 27):
            window = x[:, :, max(0, i - rows + 1) : i + 1].clone()
            window[:, :, -1] = 0.5  # row i itself must not matter
            links = net.context(window)
            for j in (0, cols - 1, cols, 27):
                left = max(0, j - cols + 1)
                params = net.row(x[:, :, i : i + 1, left : j + 1], links[..., left : j + 1])
                torch.testing.assert_close(params[:, :, 0, -1], full[:, :, i, j])
        # One row or column fewer than the receptive field is no longer exact.
        i = j = 27
        short = net.context(x[:, :, i - rows + 2 : i + 1])
        assert not torch.allclose(net.row(x[:, :, i : i + 1], short)[:, :, 0, j], full[:, :, i, j])
        links = net.context(x[:, :, i - rows + 1 : i + 1])
        narrow = net.row(x[:, :, i : i + 1, j - cols + 2 :], links[..., j - cols + 2 :])
        assert not torch.allclose(narrow[:, :, 0, -1], full[:, :, i, j])


def test_pixelrnn_row_steps_equal_the_full_forward() -> None:
    torch.manual_seed(0)
    net = PixelRNNNet(
        PixelRNNConfig(channels=8, layers=3, mixture_components=2), (1, 28, 28)
    ).eval()
    step, rows = RowStep(net), net.reach + 1
    x = torch.randint(0, 256, (2, 1, 28, 28)).float() / 255
    with torch.no_grad():
        full, state = net(x), step.initial(2)
        for i in range(28):
            window = x[:, :, max(0, i - rows + 1) : i + 1]
            params, next_state = step(window, state)
            torch.testing.assert_close(params[:, :, 0], full[:, :, i])
            for j in (0, 5, 27):  # row i's pixels from column j on must not matter to column j
                scrambled = window.clone()
                scrambled[:, :, -1, j:] = torch.rand_like(scrambled[:, :, -1, j:])
                torch.testing.assert_close(step(scrambled, state)[0][:, :, 0, j], full[:, :, i, j])
            state = next_state
        # The window is tight: one image row fewer changes the params of a row far from the top.
        short, _ = step(x[:, :, 27 - rows + 2 :], state)
        assert not torch.allclose(short[:, :, 0], full[:, :, 27])


def small_trained_store(
    root: Path, family: str, name: str, settings: dict[str, Any], dataset: Any = "synthetic"
) -> Path:
    """A store holding one small ``family`` model trained briefly on the synthetic set (or on
    ``dataset``)."""
    from training.export import export_checkpoint
    from training.trainer import train

    ckpt = train(family, dataset, root / "run", overrides=settings, limit=64, progress=False)
    export_checkpoint(ckpt, root / "store", name, metrics={"metrics": {}, "evaluation": {}})
    return root / "store"


def rgb_synthetic(root: Path, size: int = 28, n: int = 80) -> Any:
    """One's own colour images (an .npz): coloured bars on noise, so that the channels differ
    and depend on each other."""
    from training.own import OwnData

    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        row = int(rng.integers(2, size - 6))
        images[i, row : row + 4, 4 : size - 4] = rng.integers(100, 256, 3, dtype=np.uint8)
    path = root / "rgb.npz"
    np.savez(path, images=images)
    return OwnData(path)


def assert_fast_sampler_equals_naive(model: LoadedModel, n: int = 3) -> None:
    """The service's sampler returns the naive sampler's pixels, bit for bit, for two seeds and
    temperatures."""
    limits = Limits(max_n=n, max_autoregressive_n=n)
    for seed, temperature in ((3, 1.0), (11, 0.7)):

        async def fast(seed: int = seed, temperature: float = temperature) -> np.ndarray:
            images: np.ndarray = (
                await Operations(limits).sample(model, SampleSpec(n, seed, temperature))
            ).payload
            return images

        naive = sample_naive(model, n, seed, temperature)
        np.testing.assert_array_equal(anyio.run(fast), naive)
        assert len(np.unique(naive)) > 10  # a real image, not a constant


def assert_fast_completion_equals_naive(model: LoadedModel) -> None:
    """Completion around given pixels: kept pixels in the middle and at the end of rows, whole
    rows kept, and the last row kept, so every way a row's state is carried is exercised."""
    c, h, w = model.ready_card.image_shape
    keep = np.zeros((h, w), dtype=bool)
    keep[:5] = True
    keep[9, 10:20] = True
    keep[12, w - 1] = True
    keep[h - 8 :] = np.random.default_rng(0).random((8, w)) < 0.5
    keep[h - 1] = True
    given = np.random.default_rng(1).integers(0, 256, (2, c, h, w)).astype(np.float32) / 255
    noise = autoregressive.pixel_noise(5, 2, h, w, c)
    fast_completion = autoregressive.generate(model, given, keep, noise)
    naive_completion = generate_naive(model, given, keep, noise)
    np.testing.assert_array_equal(fast_completion, naive_completion)
    np.testing.assert_array_equal(fast_completion[:, :, keep], given[:, :, keep])


@pytest.mark.parametrize("family", ["pixelcnn", "pixelrnn"])
def test_fast_sampler_gives_the_same_pixels_as_the_naive_one(
    family: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp(f"{family}-sampler")
    store = small_trained_store(root, family, f"{family}-small", SMALL[family])
    model = load_registry(tiny_settings(store)).get(f"{family}-small")
    assert autoregressive.sampler_in_use(model) == SAMPLER[family]
    assert_fast_sampler_equals_naive(model)
    assert_fast_completion_equals_naive(model)


@pytest.mark.parametrize("family", ["pixelcnn", "pixelrnn"])
def test_fast_sampler_gives_the_same_pixels_as_the_naive_one_in_colour(
    family: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """RGB: R, then G given R, then B given R and G, from one pass per pixel, the same in the
    naive sampler, the fast one and completion."""
    root = tmp_path_factory.mktemp(f"{family}-rgb-sampler")
    settings = {**SMALL[family], "mixture_components": 2}
    store = small_trained_store(root, family, f"{family}-rgb", settings, rgb_synthetic(root))
    model = load_registry(tiny_settings(store)).get(f"{family}-rgb")
    card = model.ready_card
    assert card.image_shape == (3, 28, 28)
    assert card.likelihood is not None and card.likelihood.channels == 3
    assert card.likelihood.coefficients
    assert autoregressive.sampler_in_use(model) == SAMPLER[family]
    assert_fast_sampler_equals_naive(model)
    assert_fast_completion_equals_naive(model)
