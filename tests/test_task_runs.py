"""Parallel loops whose tasks a thread that has finished its own share takes from another's (TaskRuns): every
task runs once, on whichever thread, and the output has the bits of one thread.

Four threads on a machine of fewer CPUs are descheduled in turns in the middle of a loop, so the others take
their last tasks on most calls; with as many threads as CPUs it happens only now and then."""

import numpy as np
import pytest

import cnnfast

from conftest import rand

# (x shape, w shape, stride, padding, algorithm): the stem's row blocks (direct, many tasks), a 1x1 layer's N
# blocks, a strided layer's slabs (a task loop per slab of channels), and Winograd's tile blocks taken whole
# by each thread (200 tiles: past the 32 a thread that whole blocks need with either vector width)
CASES = [
    ((1, 3, 64, 64), (24, 3, 7, 7), 2, 3, "direct"),
    ((1, 64, 28, 28), (96, 64, 1, 1), 1, 0, "direct"),
    ((1, 64, 56, 56), (64, 64, 3, 3), 2, 1, "direct"),
    ((2, 32, 40, 40), (40, 32, 3, 3), 1, 1, "winograd"),
]


@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}s{c[2]}-{c[4]}")
def test_tasks_taken_by_any_thread_give_the_bits_of_one(isa, threads_restored, rng, threads, case):
    xs, ws, stride, padding, algorithm = case
    x, w, b = rand(rng, *xs), rand(rng, *ws), rand(rng, ws[0])
    with cnnfast.num_threads(1):
        one = cnnfast.conv2d(x, w, b, stride=stride, padding=padding, activation="relu", algorithm=algorithm)
    with cnnfast.num_threads(threads):
        for _ in range(12):
            many = cnnfast.conv2d(x, w, b, stride=stride, padding=padding, activation="relu", algorithm=algorithm)
            np.testing.assert_array_equal(many, one)
