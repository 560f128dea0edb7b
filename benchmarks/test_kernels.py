"""pytest-benchmark cases: every case of the suite registry, timed for cnnfast and for each installed peer.

Each case is its own benchmark group, so the table pytest-benchmark prints compares cnnfast with the
peers case by case. Peers are marked ``peer``; their output is checked against cnnfast's before timing.
"""

import pytest

from cnnfast.bench import check
from cnnfast.bench.peers import NumpyPeer, Skip, make_peers
from cnnfast.bench.suite import SUITE

PEERS = make_peers()


@pytest.fixture(scope="module")
def inputs_of():
    """Each case's inputs, made once per module (the large ones take a while to generate)."""
    cache = {}

    def get(case):
        if case.name not in cache:
            cache.clear()  # keep one case's arrays in memory at a time
            cache[case.name] = case.make_inputs()
        return cache[case.name]

    return get


@pytest.mark.parametrize("case", SUITE, ids=lambda c: c.name)
def test_cnnfast(benchmark, case, inputs_of, bench_threads):
    inputs = inputs_of(case)
    benchmark.group = case.name
    benchmark.extra_info.update(threads=bench_threads, flops=case.flops, bytes=case.bytes_moved)
    benchmark(case.run, inputs)


@pytest.mark.peer
@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
@pytest.mark.parametrize("case", SUITE, ids=lambda c: c.name)
def test_peer(benchmark, case, peer, inputs_of, bench_threads, request):
    if isinstance(peer, NumpyPeer):
        peer.max_gflop = request.config.getoption("--numpy-max-gflop")
    inputs = inputs_of(case)
    benchmark.group = case.name
    with peer.configured(bench_threads):
        try:
            bound = peer.bind(case, inputs, bench_threads)
        except Skip as exc:
            pytest.skip(str(exc))
        agrees, err = check.agreement(case, case.run(inputs), bound.to_numpy(bound.call()))
        assert agrees, f"{peer.name} disagrees with cnnfast on {case.name}: error {err:.3g}"
        benchmark.extra_info.update(threads=bench_threads)
        benchmark(bound.call)
