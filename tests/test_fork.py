"""A child of fork() can call the kernels (GNU OpenMP's pool does not survive fork: children run on one
thread instead of hanging)."""

import multiprocessing as mp
import sys

import numpy as np
import pytest

import cnnfast

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork start method")


def _child(queue, x, w):
    y = cnnfast.conv2d(x, w, padding=1)
    queue.put((y, cnnfast.get_num_threads()))


def test_kernels_work_in_a_forked_child():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 32, 40, 40), dtype=np.float32)
    w = rng.standard_normal((32, 32, 3, 3), dtype=np.float32)
    with cnnfast.num_threads(2):
        expected = cnnfast.conv2d(x, w, padding=1)  # the parent's pool is running when it forks
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(queue, x, w))
        proc.start()
        try:
            y, threads = queue.get(timeout=60)
        finally:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    assert threads == 1
    np.testing.assert_array_equal(y, expected)
