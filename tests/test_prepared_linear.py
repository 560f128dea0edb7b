"""Prepared fully connected weights (_core.linear_prepare, linear(prepared=)) on every ISA path, and the
Linear layer that keeps them in eval mode: the same results as unprepared calls, checked arguments, and the
weight released when it may change."""

import numpy as np
import pytest

from cnnfast import _core, nn, optim

from conftest import rand


def exact(x, w, b, relu):
    y = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
    return np.maximum(y, 0) if relu else y


# batch: below 4 the prepared panels streamed a few at a time (a matrix-vector product per row of x); from 4
# the prepared panels, x in MR-row panels and, past one panel of x, in K blocks. out: around the panel width
# of every ISA (12, 24, 48 floats).
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 8, 9, 17, 40])
@pytest.mark.parametrize("in_f,out_f", [(1, 1), (5, 47), (300, 48), (64, 49), (257, 100), (600, 13)])
def test_prepared_matches_unprepared(isa, batch, in_f, out_f, rng):
    x, w, b = rand(rng, batch, in_f), rand(rng, out_f, in_f), rand(rng, out_f)
    prepared = _core.linear_prepare(w)
    assert prepared.isa == isa and prepared.nbytes >= w.nbytes
    for bias, act in [(b, None), (None, "relu")]:
        y = _core.linear(x, w, bias, act, prepared)
        assert y.shape == (batch, out_f) and y.dtype == np.float32
        expected = exact(x, w, bias, act == "relu")
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.sqrt(in_f))
        np.testing.assert_allclose(y, _core.linear(x, w, bias, act), rtol=1e-5, atol=1e-5 * np.sqrt(in_f))


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_prepared_few_rows_on_threads(isa, batch, rng, threads_restored):
    # large enough for several threads: each takes a run of panels, a few streams at a time, its last group
    # short (21 or 22 panels of 48 split in two, taken 6, 4 or 3 at a time with AVX-512)
    import cnnfast

    for in_f, out_f in [(1101, 1000), (1024, 1030)]:
        x, w, b = rand(rng, batch, in_f), rand(rng, out_f, in_f), rand(rng, out_f)
        prepared = _core.linear_prepare(w)
        for threads in (1, 2, 3):
            cnnfast.set_num_threads(threads)
            y = _core.linear(x, w, b, "relu", prepared)
            np.testing.assert_allclose(y, exact(x, w, b, True), rtol=1e-5, atol=1e-5 * np.sqrt(in_f))


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_prepared_long_rows_read_the_weight_itself(isa, batch, rng, threads_restored):
    # rows of 16K floats or more: up to 3 rows of x, passes over the weight itself instead of the panels where
    # the ISA's registers leave room for 6 row streams (AVX-512 at batch 1-3, AVX2 at batch 1), the panels
    # otherwise; either way the prepared call matches the unprepared one. A tail past the vector width.
    import cnnfast

    in_f, out_f = (1 << 14) + 5, 50
    x, w, b = rand(rng, batch, in_f), rand(rng, out_f, in_f), rand(rng, out_f)
    prepared = _core.linear_prepare(w)
    for threads in (1, 2):
        cnnfast.set_num_threads(threads)
        y = _core.linear(x, w, b, "relu", prepared)
        np.testing.assert_allclose(y, exact(x, w, b, True), rtol=1e-5, atol=1e-5 * np.sqrt(in_f))
        np.testing.assert_allclose(y, _core.linear(x, w, b, "relu"), rtol=1e-5, atol=1e-5 * np.sqrt(in_f))


def test_prepared_takes_leading_dimensions_and_threads(rng, threads_restored):
    import cnnfast

    x, w = rand(rng, 2, 3, 4, 70), rand(rng, 130, 70)
    prepared = _core.linear_prepare(w)
    for threads in (1, 2, 3):
        cnnfast.set_num_threads(threads)
        np.testing.assert_allclose(_core.linear(x, w, prepared=prepared), exact(x, w, None, False), rtol=1e-5,
                                   atol=1e-4)


def test_prepared_for_another_isa_is_ignored(rng):
    isas = _core._supported_isas()
    if len(isas) < 2:
        pytest.skip("one ISA only")
    before = _core._current_isa()
    x, w = rand(rng, 8, 40), rand(rng, 30, 40)
    try:
        _core._set_isa(isas[-1])
        prepared = _core.linear_prepare(w)
        _core._set_isa(isas[0])
        np.testing.assert_array_equal(_core.linear(x, w, prepared=prepared), _core.linear(x, w))
    finally:
        _core._set_isa(before)


def test_prepared_arguments_are_checked(rng):
    x, w = rand(rng, 8, 6), rand(rng, 4, 6)
    prepared = _core.linear_prepare(w)
    with pytest.raises(ValueError, match=r"prepared was made for a weight of shape \(4, 6\), not \(5, 6\)"):
        _core.linear(x, rand(rng, 5, 6), prepared=prepared)
    with pytest.raises(TypeError, match="prepared must be None or the result of linear_prepare"):
        _core.linear(x, w, prepared=np.zeros(3))
    with pytest.raises(ValueError, match=r"linear_prepare\(\): weight"):
        _core.linear_prepare(rand(rng, 4, 6, 1))
    assert repr(prepared).startswith("PreparedLinear(in_features=6, out_features=4")


def test_eval_layer_keeps_prepared_weight_and_releases_it(rng):
    fc = nn.Linear(70, 90, rng=0)
    x = rand(rng, 8, 70)
    y_eval = fc(x)  # eval mode, 8 rows: prepared, the weight read-only meanwhile
    assert not fc.weight.flags.writeable and not fc.bias.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        fc.weight[0, 0] = 1.0
    np.testing.assert_allclose(y_eval, exact(x, fc.weight, fc.bias, False), rtol=1e-5, atol=1e-5)
    fc.train()
    assert fc.weight.flags.writeable
    fc.weight[...] *= 2  # a change the next eval call must see
    fc.eval()
    np.testing.assert_allclose(fc(x) - fc.bias, 2 * (y_eval - fc.bias), rtol=1e-4, atol=1e-4)
    fc.weight = rand(rng, 90, 70)  # replacing the parameter drops what was prepared
    np.testing.assert_allclose(fc(x), exact(x, fc.weight, fc.bias, False), rtol=1e-5, atol=1e-5)


def test_eval_layer_small_batches_prepare_nothing(rng):
    fc = nn.Linear(10, 5, rng=0)
    fc(rand(rng, 3, 10))
    assert fc.weight.flags.writeable


def test_optimizer_on_prepared_weight_says_what_to_do(rng):
    fc = nn.Linear(4, 4, rng=0)
    fc(rand(rng, 4, 4))
    fc.weight.grad = np.ones_like(fc.weight)
    with pytest.raises(ValueError, match=r"read-only.*call model.train\(\)"):
        optim.SGD(fc.parameters(), lr=0.1).step()


def test_eval_layer_reports_bad_input_as_linear(rng):
    fc = nn.Linear(3, 8, rng=0)
    with pytest.raises(ValueError, match=r"^linear\(\): x has 5 features"):
        fc(rand(rng, 6, 5))
