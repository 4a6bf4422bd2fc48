"""The PixelRNN row-step sampler: exact by construction, and the same pixels as the naive one,
for sampling and for completing around given pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.generation import autoregressive  # noqa: E402
from service.generation.reference import generate_naive  # noqa: E402
from tests.conftest import load_registry, tiny_settings  # noqa: E402
from tests.support.sampler_parity import (  # noqa: E402
    assert_fast_sampler_equals_naive,
    small_trained_store,
)
from training.models.pixelrnn import PixelRNNConfig, PixelRNNNet, RowStep  # noqa: E402

SMALL = {"channels": 8, "layers": 2, "mixture_components": 3, "batch_size": 32, "epochs": 1}


def test_row_steps_equal_the_full_forward() -> None:
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


@pytest.fixture(scope="module")
def small_pixelrnn_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rnn-sampler")
    return small_trained_store(root, "pixelrnn", "pixelrnn-small", SMALL)


def test_row_step_sampler_gives_the_same_pixels_as_the_naive_one(
    small_pixelrnn_store: Path,
) -> None:
    model = load_registry(tiny_settings(small_pixelrnn_store)).get("pixelrnn-small")
    assert autoregressive.sampler_in_use(model) == "row_step"
    assert_fast_sampler_equals_naive(model)

    # Completion around given pixels: kept pixels in the middle and at the end of rows, whole
    # rows kept, and the last row kept, so every way a row's state is carried is exercised.
    keep = np.zeros((28, 28), dtype=bool)
    keep[:5] = True
    keep[9, 10:20] = True
    keep[12, 27] = True
    keep[20:] = np.random.default_rng(0).random((8, 28)) < 0.5
    keep[27] = True
    given = np.random.default_rng(1).integers(0, 256, (2, 1, 28, 28)).astype(np.float32) / 255
    noise = autoregressive.pixel_noise(5, 2, 28, 28)
    fast_completion = autoregressive.generate(model, given, keep, noise)
    naive_completion = generate_naive(model, given, keep, noise)
    np.testing.assert_array_equal(fast_completion, naive_completion)
    np.testing.assert_array_equal(fast_completion[:, :, keep], given[:, :, keep])
