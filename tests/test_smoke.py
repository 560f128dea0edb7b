import numpy as np

import cnnfast


def test_edge_detection_example():
    # The classic worked example: a 6x6 image, bright left half, with a vertical-edge filter.
    image = np.array([[10, 10, 10, 0, 0, 0]] * 6, dtype=np.float32)[None, None]
    vertical = np.array([[1, 0, -1]] * 3, dtype=np.float32)[None, None]
    y = cnnfast.conv2d(image, vertical)
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(y[0, 0], [[0, 30, 30, 0]] * 4)


def test_config_reports_isa():
    cfg = cnnfast.config()
    assert cfg["isa"] in cfg["supported_isas"]
    assert cfg["num_threads"] >= 1
