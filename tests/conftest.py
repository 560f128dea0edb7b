"""Shared fixtures: a deterministic hypothesis profile, the ISA fixture that runs a test once per kernel path
this CPU can run, and small helpers for sentinel-filled outputs and magnitude-scaled comparisons."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import cnnfast
from cnnfast import _core

# Deterministic examples, so CI sees the same cases on every run; CNNFAST_HYPOTHESIS_PROFILE=thorough draws
# more (and random) examples when looking for bugs by hand.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROFILE = os.environ.get("CNNFAST_HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(n):
    """max_examples for a test that needs more (or fewer) than the profile's default: n under the CI profile,
    ten times n under the thorough one."""
    return n * 10 if PROFILE == "thorough" else n

SUPPORTED_ISAS = list(_core._supported_isas())

# Register tile of the packed GEMM per ISA: NR output pixels (columns) by MR output channels (rows).
GEMM_TILE = {"avx512": (48, 8), "avx2": (24, 4), "generic": (8, 4)}


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request):
    """Runs the test with the kernels of one ISA selected, and restores the previous one after."""
    before = _core._current_isa()
    _core._set_isa(request.param)
    try:
        yield request.param
    finally:
        _core._set_isa(before)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def sentinel(shape):
    """An output buffer filled with NaN: any element a kernel fails to write stays NaN."""
    return np.full(shape, np.nan, dtype=np.float32)


def rand(rng, *shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape).astype(np.float32)


def assert_close(actual, expected, atol, rtol=1e-5, what=""):
    """assert_allclose with the tolerance in the message; NaN must match NaN."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol, atol=atol, equal_nan=True,
                               err_msg=f"{what} (atol={atol:.3g}, rtol={rtol:.3g})")


def assert_float32_rounding_of(actual, expected64, atol=0.0, what=""):
    """actual (float32) is expected64 rounded to float32, give or take one unit in the last place plus atol (the
    double sums may be ordered differently; atol covers cancellation, e.g. 1e-12 * the sum of |terms|)."""
    actual = np.asarray(actual)
    assert actual.dtype == np.float32
    e32 = np.asarray(expected64).astype(np.float32)
    ulp = np.spacing(np.maximum(np.abs(e32), np.finfo(np.float32).tiny)).astype(np.float64)
    diff = np.abs(actual.astype(np.float64) - e32.astype(np.float64))
    nan_ok = np.isnan(actual) == np.isnan(e32)
    assert nan_ok.all(), f"{what}: NaN pattern differs"
    bad = ~np.isnan(e32) & (diff > ulp + atol)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} elements differ by more than 1 ulp, worst {float(diff[bad].max()):.3g} at "
        f"{np.unravel_index(int(np.argmax(np.where(bad, diff, 0))), diff.shape)}"
    )


@pytest.fixture(autouse=True)
def _no_workspace_leak():
    """Every test leaves no scratch memory in use."""
    yield
    assert _core._workspace_in_use() == 0, "a kernel left workspace memory allocated"


@pytest.fixture(autouse=True, scope="session")
def _every_call_on_the_threads_set():
    """The tests' layers are small: without a minimum of work per thread, a test at two or three threads runs
    the splits of that many (test_runtime.py tests the minimum itself)."""
    before = _core._get_min_work_per_thread()
    _core._set_min_work_per_thread(0)
    yield
    _core._set_min_work_per_thread(before)


@pytest.fixture
def threads_restored():
    """Restores cnnfast's thread count after a test that changes it."""
    before = cnnfast.get_num_threads()
    yield
    cnnfast.set_num_threads(before)


def run_with_memory_limit(code, limit_bytes=4 << 30, timeout=120):
    """Runs Python code in a fresh interpreter whose address space is capped, so a kernel that tries to allocate
    far too much fails there (or aborts there) instead of exhausting the machine. Returns the CompletedProcess."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
    env = {k: v for k, v in os.environ.items() if k != "CNNFAST_ISA"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=os.path.dirname(os.path.abspath(__file__)))
