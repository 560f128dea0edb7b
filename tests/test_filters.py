"""Edge filters through conv2d, and the edge-detection example."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnfast import filters

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "edge_detection.py"


def step_image(h=8, w=9, col=4):
    image = np.zeros((h, w), np.uint8)
    image[:, :col] = 200  # bright left half
    return image


def correlate_valid(image, kernel):
    h, w = image.shape
    out = np.zeros((h - 2, w - 2))
    for i in range(h - 2):
        for j in range(w - 2):
            out[i, j] = (image[i:i + 3, j:j + 3] * kernel).sum()
    return out


def test_the_classic_vertical_edge_example():
    image = np.array([[10, 10, 10, 0, 0, 0]] * 6, np.float32)
    edges = filters.detect_edges(image, kind="simple", padding="valid")
    np.testing.assert_array_equal(edges.vertical, [[0, 30, 30, 0]] * 4)
    np.testing.assert_array_equal(edges.horizontal, np.zeros((4, 4)))
    np.testing.assert_array_equal(edges.magnitude, [[0, 30, 30, 0]] * 4)


@pytest.mark.parametrize("kind", ["simple", "sobel", "scharr"])
def test_filters_match_explicit_correlation(kind):
    rng = np.random.default_rng(0)
    image = rng.random((9, 11)).astype(np.float32)
    v, h = filters.FILTERS[kind]
    edges = filters.detect_edges(image, kind=kind, padding="valid")
    np.testing.assert_allclose(edges.vertical, correlate_valid(image, v), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(edges.horizontal, correlate_valid(image, h), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(edges.magnitude, np.hypot(edges.vertical, edges.horizontal), rtol=1e-6)


def test_filter_values_and_orientation():
    np.testing.assert_array_equal(filters.SOBEL_VERTICAL, [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    np.testing.assert_array_equal(filters.SCHARR_HORIZONTAL, [[3, 10, 3], [0, 0, 0], [-3, -10, -3]])
    assert filters.edge_filters("sobel").shape == (2, 1, 3, 3)
    for kind in filters.FILTERS:
        assert filters.edge_filters(kind).sum() == 0  # flat regions give no response
    with pytest.raises(ValueError, match="kind must be one of"):
        filters.edge_filters("canny")


@pytest.mark.parametrize("padding, size", [("reflect", (8, 9)), ("zero", (8, 9)), ("valid", (6, 7))])
def test_vertical_step_gives_vertical_edges_only(padding, size):
    edges = filters.detect_edges(step_image(), padding=padding)
    assert edges.vertical.shape == size and edges.vertical.dtype == np.float32
    cols = np.flatnonzero(np.abs(edges.vertical).max(axis=0) > 1e-6)
    offset = 1 if padding == "valid" else 0
    if padding == "reflect":
        assert set(cols) == {3 - offset, 4 - offset}
        assert not np.abs(edges.horizontal).max() > 1e-6
    assert (edges.vertical[2:-2, 3 - offset] > 0).all()  # brighter on the left: positive


def test_rgb_and_gray_inputs_agree():
    gray = step_image()
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    a, b = filters.detect_edges(gray), filters.detect_edges(rgb)
    np.testing.assert_allclose(a.magnitude, b.magnitude, rtol=1e-5, atol=1e-6)
    rgba = np.concatenate([rgb, np.full(gray.shape + (1,), 255, np.uint8)], axis=2)
    np.testing.assert_allclose(filters.detect_edges(rgba).magnitude, a.magnitude, rtol=1e-5, atol=1e-6)
    float_image = gray.astype(np.float32) / 255
    np.testing.assert_allclose(filters.detect_edges(float_image).vertical, a.vertical, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="HW or HWC"):
        filters.detect_edges(np.zeros((2, 4, 4, 3)))


def test_edge_detection_example_writes_a_png(tmp_path, monkeypatch, capsys):
    pytest.importorskip("skimage")
    if not EXAMPLE.exists():
        pytest.skip("examples/ is not beside these tests (tests copied out of the source tree)")
    out = tmp_path / "edges.png"
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--kind", "scharr", "--out", str(out)])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scharr" in capsys.readouterr().out
