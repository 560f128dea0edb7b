"""pytest-benchmark options for the layer suite: ``pytest benchmarks --benchmark-only``.

These cases are not part of ``pytest tests``. Options: ``--bench-threads N`` runs every implementation
on N threads (default: cnnfast's current count); ``-m "not peer"`` times cnnfast alone;
``--numpy-max-gflop`` skips the NumPy baseline on larger cases.
"""

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("cnnfast benchmarks")
    group.addoption("--bench-threads", type=int, default=None,
                    help="threads for cnnfast and the peers (default: cnnfast.get_num_threads())")
    group.addoption("--numpy-max-gflop", type=float, default=10.0,
                    help="skip the NumPy peer on cases above this many GFLOP per call")


def pytest_configure(config):
    config.addinivalue_line("markers", "peer: a peer library timed on the same case, for comparison")


@pytest.fixture(scope="session")
def bench_threads(request):
    import cnnfast

    n = request.config.getoption("--bench-threads") or cnnfast.get_num_threads()
    before = cnnfast.get_num_threads()
    cnnfast.set_num_threads(n)
    yield n
    cnnfast.set_num_threads(before)
