"""Runtime: config(), thread count control (set_num_threads, the num_threads context manager, OMP_NUM_THREADS,
threadpoolctl), the CNNFAST_ISA override, fork safety, calls from several Python threads, and workspace
accounting. Anything that depends on the process's initial state runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnfast
from cnnfast import _core

from conftest import SUPPORTED_ISAS, rand


def run_python(code, env_extra=None, timeout=120):
    """Runs code in a fresh interpreter (outside the source tree) and returns its stdout; fails on error."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CNNFAST_ISA", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=os.path.dirname(os.path.abspath(__file__)) + "/..")
    return proc


def run_ok(code, env_extra=None, timeout=120):
    proc = run_python(code, env_extra, timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout.strip()


# --- config -----------------------------------------------------------------------------------------


def test_config_keys():
    cfg = cnnfast.config()
    for key in ("version", "isa", "supported_isas", "num_threads"):
        assert key in cfg, key
    assert cfg["version"] == cnnfast.__version__
    assert cfg["isa"] in cfg["supported_isas"]
    assert cfg["supported_isas"][0] == "generic"
    assert set(cfg["supported_isas"]) <= {"generic", "avx2", "avx512"}
    assert isinstance(cfg["num_threads"], int) and cfg["num_threads"] >= 1
    assert cfg["num_threads"] == cnnfast.get_num_threads()


def test_show_config_prints_the_config(capsys):
    cnnfast.show_config()
    out = capsys.readouterr().out
    cfg = cnnfast.config()
    for key in ("version", "isa", "supported_isas", "num_threads"):
        assert key in out
    assert cfg["isa"] in out and cfg["version"] in out


def test_config_follows_isa_switch(isa):
    assert cnnfast.config()["isa"] == isa == _core._current_isa()


def test_set_isa_rejects_unknown_names():
    before = _core._current_isa()
    with pytest.raises(ValueError, match="bogus"):
        _core._set_isa("bogus")
    assert _core._current_isa() == before


# --- threads ----------------------------------------------------------------------------------------


def test_set_and_get_num_threads(threads_restored):
    for n in (1, 2, 3, 7):
        cnnfast.set_num_threads(n)
        assert cnnfast.get_num_threads() == n
        assert cnnfast.config()["num_threads"] == n


def test_num_threads_context_manager_restores(threads_restored):
    cnnfast.set_num_threads(3)
    with cnnfast.num_threads(1):
        assert cnnfast.get_num_threads() == 1
        with cnnfast.num_threads(2):
            assert cnnfast.get_num_threads() == 2
        assert cnnfast.get_num_threads() == 1
    assert cnnfast.get_num_threads() == 3
    with pytest.raises(RuntimeError):
        with cnnfast.num_threads(2):
            raise RuntimeError("inside")
    assert cnnfast.get_num_threads() == 3


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (2.0, TypeError),
                                     ("2", TypeError), (None, TypeError), (True, TypeError)])
def test_set_num_threads_rejects(bad, exc, threads_restored):
    before = cnnfast.get_num_threads()
    with pytest.raises(exc, match=r"\bn\b"):
        cnnfast.set_num_threads(bad)
    with pytest.raises(exc, match=r"\bn\b"):
        with cnnfast.num_threads(bad):
            pass
    assert cnnfast.get_num_threads() == before


def test_omp_num_threads_is_respected():
    assert run_ok("import cnnfast; print(cnnfast.get_num_threads())", {"OMP_NUM_THREADS": "1"}) == "1"
    assert run_ok("import cnnfast; print(cnnfast.config()['num_threads'])", {"OMP_NUM_THREADS": "3"}) == "3"


_SPIN_PROBE = """
    import os, time, numpy as np, cnnfast
    print(os.environ.get("GOMP_SPINCOUNT"))
    cnnfast.set_num_threads(2)
    x = np.ones((1, 64, 56, 56), np.float32)
    w = np.ones((64, 64, 3, 3), np.float32)
    busy = []
    for _ in range(5):
        cnnfast.conv2d(x, w, padding=1)
        c0 = time.process_time()
        time.sleep(0.1)
        busy.append(time.process_time() - c0)
    print(sorted(busy)[2])
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_worker_threads_sleep_soon_after_a_call():
    # CPU time the process spends in the 100 ms after a two-thread call, its main thread asleep: the worker's
    # spin before it sleeps (about 4 ms; the OpenMP runtime's own default, 300,000 spins, about 10 ms). The
    # spin count is set only while the runtime loads: the environment is left as it was.
    printed, busy = run_ok(_SPIN_PROBE).split()
    assert printed == "None"
    # a spin count or wait policy of the user's own is left alone
    printed_default, busy_default = run_ok(_SPIN_PROBE, {"GOMP_SPINCOUNT": "300000"}).split()
    assert printed_default == "300000"
    assert float(busy) < 0.03, f"the worker thread spun {float(busy) * 1e3:.1f} ms after a call returned"
    assert float(busy) < 0.75 * float(busy_default), \
        f"the worker thread spun {float(busy) * 1e3:.1f} ms, {float(busy_default) * 1e3:.1f} ms at 300,000 spins"


def test_threadpoolctl_sees_and_limits_the_openmp_pool():
    pytest.importorskip("threadpoolctl")
    out = run_ok(
        """
        import cnnfast, numpy as np
        from threadpoolctl import threadpool_info, threadpool_limits
        apis = [i["user_api"] for i in threadpool_info()]
        assert "openmp" in apis, apis
        cnnfast.set_num_threads  # never called in this process: cnnfast follows OpenMP
        before = cnnfast.get_num_threads()
        with threadpool_limits(1):
            assert cnnfast.get_num_threads() == 1
            x = np.ones((1, 3, 9, 7), np.float32)
            assert cnnfast.conv2d(x, np.ones((2, 3, 3, 3), np.float32)).shape == (1, 2, 7, 5)
        with threadpool_limits(limits=1, user_api="openmp"):
            assert cnnfast.get_num_threads() == 1
        assert cnnfast.get_num_threads() == before, (cnnfast.get_num_threads(), before)
        print("ok")
        """,
        {"OMP_NUM_THREADS": "2"},
    )
    assert out == "ok"


def test_num_threads_context_restores_following_openmp():
    # after a num_threads() block in a process that never fixed the count, cnnfast follows OpenMP again
    pytest.importorskip("threadpoolctl")
    out = run_ok(
        """
        import cnnfast
        from threadpoolctl import threadpool_limits
        with cnnfast.num_threads(1):
            assert cnnfast.get_num_threads() == 1
        assert cnnfast.get_num_threads() == 2, cnnfast.get_num_threads()
        with threadpool_limits(1):
            assert cnnfast.get_num_threads() == 1, cnnfast.get_num_threads()
        assert cnnfast.get_num_threads() == 2
        print("ok")
        """,
        {"OMP_NUM_THREADS": "2"},
    )
    assert out == "ok"


def test_set_num_threads_wins_over_threadpoolctl():
    pytest.importorskip("threadpoolctl")
    out = run_ok(
        """
        import cnnfast
        from threadpoolctl import threadpool_limits
        cnnfast.set_num_threads(2)
        with threadpool_limits(1):
            print(cnnfast.get_num_threads())
        """
    )
    assert out == "2"


def test_min_work_per_thread_default():
    assert run_ok("from cnnfast import _core; print(_core._get_min_work_per_thread())") == str(1 << 19)


@pytest.fixture
def min_work_restored():
    before = _core._get_min_work_per_thread()
    yield
    _core._set_min_work_per_thread(before)


def test_min_work_per_thread_set_and_get(min_work_restored):
    _core._set_min_work_per_thread(1000)
    assert _core._get_min_work_per_thread() == 1000
    _core._set_min_work_per_thread(-5)
    assert _core._get_min_work_per_thread() == 0


# Layers from 4K to 4M multiply-adds (one thread to all of them under the default minimum) on every path:
# x shape, weight shape, padding (the 7x7 at stride 2).
SMALL_LAYERS = [((1, 16, 8, 8), (16, 16, 1, 1), 0), ((2, 8, 12, 12), (16, 8, 3, 3), 1),
                ((1, 32, 16, 16), (32, 32, 3, 3), 1), ((1, 64, 14, 14), (64, 64, 3, 3), 1),
                ((1, 1, 32, 32), (6, 1, 5, 5), 0), ((4, 6, 14, 14), (16, 6, 5, 5), 0),
                ((1, 16, 20, 20), (16, 1, 3, 3), 1), ((1, 3, 33, 33), (8, 3, 7, 7), 3)]


def _small_layer_args(x_shape, w_shape, pad):
    return dict(padding=pad, stride=2 if w_shape[2] == 7 else 1, groups=x_shape[1] // w_shape[1])


@pytest.mark.parametrize("threads", [2, 3])
def test_small_convolutions_on_fewer_threads_same_bits(isa, rng, threads, threads_restored, min_work_restored):
    cnnfast.set_num_threads(threads)
    for x_shape, w_shape, pad in SMALL_LAYERS:
        x, w, b = rand(rng, *x_shape), rand(rng, *w_shape), rand(rng, w_shape[0])
        outs = []
        for min_work in (0, 1 << 19, 1 << 40):
            _core._set_min_work_per_thread(min_work)
            outs.append(cnnfast.conv2d(x, w, b, **_small_layer_args(x_shape, w_shape, pad)))
        for y in outs[1:]:
            np.testing.assert_array_equal(y, outs[0], err_msg=f"{x_shape} {w_shape}")


@pytest.mark.parametrize("threads", [2, 3])
def test_small_backward_passes_on_fewer_threads_same_bits(isa, rng, threads, threads_restored, min_work_restored):
    cnnfast.set_num_threads(threads)
    for x_shape, w_shape, pad in SMALL_LAYERS:
        x, w = rand(rng, *x_shape), rand(rng, *w_shape)
        kw = _small_layer_args(x_shape, w_shape, pad)
        dy = rand(rng, *cnnfast.conv2d(x, w, **kw).shape)
        grads = []
        for min_work in (0, 1 << 19, 1 << 40):
            _core._set_min_work_per_thread(min_work)
            grads.append(cnnfast.conv2d_backward(dy, x, w, **kw))
        for got in grads[1:]:
            for name, g, want in zip(("grad_x", "grad_weight", "grad_bias"), got, grads[0]):
                np.testing.assert_array_equal(g, want, err_msg=f"{name}: {x_shape} {w_shape}")


def test_thread_count_applies_to_calls_from_other_threads(threads_restored):
    cnnfast.set_num_threads(1)
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(cnnfast.get_num_threads).result() == 1
    cnnfast.set_num_threads(2)
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(cnnfast.get_num_threads).result() == 2


# --- ISA override -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUPPORTED_ISAS)
def test_cnnfast_isa_env_selects_the_path(name):
    out = run_ok(
        """
        import cnnfast, numpy as np
        x = np.ones((1, 3, 9, 7), np.float32)
        y = cnnfast.conv2d(x, np.ones((4, 3, 3, 3), np.float32), padding=1)
        assert y[0, 0, 4, 3] == 27.0
        print(cnnfast.config()["isa"])
        """,
        {"CNNFAST_ISA": name},
    )
    assert out == name


def test_cnnfast_isa_unset_or_empty_selects_the_best():
    best = SUPPORTED_ISAS[-1]
    assert run_ok("import cnnfast; print(cnnfast.config()['isa'])") == best
    assert run_ok("import cnnfast; print(cnnfast.config()['isa'])", {"CNNFAST_ISA": ""}) == best


@pytest.mark.parametrize("value", ["bogus", "AVX2", "sse4"])
def test_cnnfast_isa_unknown_is_an_import_error(value):
    proc = run_python("import cnnfast", {"CNNFAST_ISA": value})
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and f"'{value}'" in proc.stderr, proc.stderr
    assert "Traceback" in proc.stderr and "Segmentation" not in proc.stderr


def test_cnnfast_isa_unsupported_is_an_import_error():
    missing = [i for i in ("avx2", "avx512") if i not in SUPPORTED_ISAS]
    if not missing:
        pytest.skip("this CPU runs every ISA")
    proc = run_python("import cnnfast", {"CNNFAST_ISA": missing[0]})
    assert proc.returncode != 0 and "ImportError" in proc.stderr and missing[0] in proc.stderr


# --- worker pinning ------------------------------------------------------------------------------

PINNING_PROBE = """
    import os, numpy as np, cnnfast
    from cnnfast import _core
    cpus = sorted(os.sched_getaffinity(0))
    _core._set_min_work_per_thread(0)  # the small layer below on every thread set
    def run(threads):
        cnnfast.set_num_threads(threads)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, 8, 20, 20), dtype=np.float32)
        w = rng.standard_normal((16, 8, 3, 3), dtype=np.float32)
        y = cnnfast.conv2d(x, w, padding=1)
        ref = _core.reference.conv2d(x, w, padding=1)
        assert np.allclose(y, ref, rtol=1e-4, atol=1e-4)
        single = []
        for t in os.listdir("/proc/self/task"):
            if int(t) == os.getpid():
                continue
            status = open(f"/proc/self/task/{t}/status").read().splitlines()
            allowed = [l for l in status if l.startswith("Cpus_allowed_list")][0].split(":")[1].strip()
            if allowed.isdigit():
                single.append(int(allowed))
        return cnnfast.config()["workers_pinned"], sorted(single)
    print(repr((len(cpus), run(len(cpus)), run(len(cpus) + 1))))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread affinity is Linux-only")
@pytest.mark.skipif(not 2 <= len(os.sched_getaffinity(0)) <= 16 if hasattr(os, "sched_getaffinity") else True,
                    reason="needs 2 to 16 CPUs")
def test_workers_kept_off_the_callers_cpu_when_the_team_fills_the_machine():
    n, (pinned, single), (pinned_over, single_over) = eval(run_ok(PINNING_PROBE))
    assert pinned is True
    # one worker per other CPU, each on its own, all within the allowed set
    allowed = sorted(os.sched_getaffinity(0))
    assert len(single) == n - 1 and len(set(single)) == n - 1 and set(single) <= set(allowed)
    # a team larger than the CPUs: nothing pinned, and the workers pinned before are free again
    assert pinned_over is False and single_over == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread affinity is Linux-only")
@pytest.mark.parametrize("env", [{"CNNFAST_PIN_THREADS": "0"}, {"OMP_PROC_BIND": "false"}, {"OMP_THREAD_LIMIT": "1"}])
def test_worker_pinning_off_by_environment(env):
    # off by request, where the user binds threads, and where OpenMP gives a smaller team than asked
    n, (pinned, single), _ = eval(run_ok(PINNING_PROBE, env))
    assert pinned is False and single == []


# --- fork -------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_kernels_work_in_a_forked_child():
    # the parent has run a parallel region (so the OpenMP pool exists) before forking
    out = run_ok(
        """
        import os, signal, numpy as np, cnnfast
        cnnfast.set_num_threads(2)
        x = np.random.default_rng(0).random((1, 16, 56, 56), dtype=np.float32)
        w = np.random.default_rng(1).random((16, 16, 3, 3), dtype=np.float32)
        y = cnnfast.conv2d(x, w, padding=1)
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a hung child ends itself instead of outliving the test
            ok = np.array_equal(cnnfast.conv2d(x, w, padding=1), y)
            ok = ok and cnnfast.get_num_threads() == 1  # documented: a forked child runs on one thread
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """,
        timeout=60,
    )
    assert out == "0"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_while_other_threads_allocate():
    # other threads run kernels (taking and giving back scratch and result blocks) while the main thread forks:
    # each child must still allocate, compute and exit
    out = run_ok(
        """
        import os, signal, threading, numpy as np, cnnfast
        cnnfast.set_num_threads(1)
        x = np.random.default_rng(0).random((2, 32, 28, 28), dtype=np.float32)
        w = np.random.default_rng(1).random((32, 32, 3, 3), dtype=np.float32)
        y = cnnfast.conv2d(x, w, padding=1)
        stop = threading.Event()
        def work():
            while not stop.is_set():
                cnnfast.conv2d(x, w, padding=1)
                cnnfast.add(x, x)
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        codes = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                signal.alarm(30)  # a hung child ends itself instead of outliving the test
                ok = np.array_equal(cnnfast.conv2d(x, w, padding=1), y)
                os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
        stop.set()
        for t in threads:
            t.join()
        print(sorted(set(codes)))
        """,
        timeout=120,
    )
    assert out == "[0]"


# --- several Python threads at once -----------------------------------------------------------------


def _thread_safety_tasks(rng):
    tasks = []
    for i in range(12):
        c, o = [(3, 8), (16, 16), (5, 17), (32, 1)][i % 4]
        x, w, b = rand(rng, 2, c, 25, 33), rand(rng, o, c, 3, 3), rand(rng, o)
        tasks.append((cnnfast.conv2d, (x, w, b), dict(padding=1, activation="relu")))
        tasks.append((cnnfast.conv2d, (x, rand(rng, c, 1, 3, 3)), dict(groups=c, stride=2)))
        n = 300 + 50 * i
        xy = rng.uniform(0, 100, size=(n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 30, size=(n, 2))], axis=1).astype(np.float32)
        scores = rng.random(n).astype(np.float32)
        tasks.append((cnnfast.nms, (boxes, scores, 0.5), {}))
        tasks.append((cnnfast.batched_nms, (boxes, scores, rng.integers(0, 3, n), 0.4), {}))
        tasks.append((cnnfast.max_pool2d, (x, 3, 2, 1), {}))
        tasks.append((cnnfast.linear, (rand(rng, 9, 40), rand(rng, 70, 40), rand(rng, 70)), {}))
        tasks.append((cnnfast.add, (x, x * 2), dict(relu=True)))
    # the Winograd path (3x3, >= 32 channels) and the grid NMS (>= 4096 candidates)
    for i in range(4):
        x, w = rand(rng, 1, 32 + i, 20, 24), rand(rng, 40, 32 + i, 3, 3)
        tasks.append((cnnfast.conv2d, (x, w), dict(padding=1)))
        tasks.append((cnnfast.avg_pool2d, (x, 3, 2, 1), dict(ceil_mode=True, count_include_pad=False)))
        n = 4500 + 100 * i
        xy = rng.uniform(0, 1000, size=(n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 40, size=(n, 2))], axis=1).astype(np.float32)
        tasks.append((cnnfast.nms, (boxes, rng.random(n).astype(np.float32), 0.5), {}))
        tasks.append((cnnfast.batched_nms, (boxes, rng.random(n).astype(np.float32), rng.integers(0, 5, n), 0.5), {}))
    return tasks


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_calls_equal_sequential(isa, rng, threads, threads_restored):
    # one thread: each call runs its regions without a team of its own (parallel.h)
    cnnfast.set_num_threads(threads)
    tasks = _thread_safety_tasks(rng)
    sequential = [fn(*args, **kw) for fn, args, kw in tasks]
    for _ in range(2):
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(fn, *args, **kw) for fn, args, kw in tasks]
            concurrent = [f.result() for f in futures]
        for (fn, _, _), a, b in zip(tasks, sequential, concurrent):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b, err_msg=fn.__name__)


def test_kernels_release_the_gil(threads_restored):
    cnnfast.set_num_threads(1)
    x, w = np.ones((1, 256, 112, 112), np.float32), np.ones((256, 256, 3, 3), np.float32)  # ~0.2 s on one core
    ticks = 0
    worker = threading.Thread(target=cnnfast.conv2d, args=(x, w), kwargs=dict(padding=1))
    worker.start()
    while worker.is_alive():
        ticks += 1
        time.sleep(0)
    worker.join()
    # with the GIL held through the call this loop would get a handful of turns; released, tens of thousands
    assert ticks > 200, ticks


# --- workspace --------------------------------------------------------------------------------------


def test_workspace_is_released_after_every_kernel(isa, rng):
    x = rand(rng, 1, 16, 25, 33)
    calls = [
        lambda: cnnfast.conv2d(x, rand(rng, 8, 16, 3, 3), padding=1),
        lambda: cnnfast.conv2d(x, rand(rng, 8, 16, 1, 1)),
        lambda: cnnfast.conv2d(x, rand(rng, 16, 1, 3, 3), groups=16),
        lambda: cnnfast.max_pool2d(x, 2),
        lambda: cnnfast.avg_pool2d(x, 3, 1, 1),
        lambda: cnnfast.global_avg_pool2d(x),
        lambda: cnnfast.add(x, x, relu=True),
        lambda: cnnfast.linear(rand(rng, 9, 30), rand(rng, 20, 30)),
        lambda: cnnfast.linear(rand(rng, 2, 30), rand(rng, 20, 30)),
        lambda: cnnfast.box_iou(rand(rng, 5, 4), rand(rng, 7, 4)),
        lambda: cnnfast.nms(rand(rng, 50, 4), rand(rng, 50), 0.5),
        lambda: cnnfast.batched_nms(rand(rng, 50, 4), rand(rng, 50), np.arange(50) % 3, 0.5),
    ]
    for call in calls:
        call()
        assert _core._workspace_in_use() == 0


def _conv_peak(x, w, **kw):
    _core._workspace_reset_peak()
    cnnfast.conv2d(x, w, padding=1, **kw)
    assert _core._workspace_in_use() == 0
    return _core._workspace_peak()


def test_workspace_peak_is_bounded(isa, rng, threads_restored):
    # 256 -> 256 channels, 3x3: a full im2col matrix would take 256 * 9 * H * W floats (28.9 MB at 56x56)
    cnnfast.set_num_threads(2)
    w = rand(rng, 256, 256, 3, 3)
    peaks = {}
    for hw in (56, 112):
        x = rand(rng, 1, 256, hw, hw)
        im2col = 256 * 9 * hw * hw * 4
        peaks["direct", hw] = _conv_peak(x, w, algorithm="direct")
        peaks["winograd", hw] = _conv_peak(x, w, algorithm="winograd")
        assert 0 < peaks["direct", hw] < im2col // 4, peaks
        assert 0 < peaks["winograd", hw] < im2col, peaks
    # Winograd works tile by tile: its scratch barely grows with the image
    assert peaks["winograd", 112] < 1.25 * peaks["winograd", 56], peaks
    _core._workspace_reset_peak()
    assert _core._workspace_peak() == 0


@pytest.mark.parametrize("threads", [1, 2])
def test_small_layer_scratch_is_sized_to_it(isa, rng, threads, threads_restored):
    # a 1x1 16 -> 16 on 8x8 (4 KiB of output): its packed panels, panel tail and row table, per thread
    cnnfast.set_num_threads(threads)
    x, w = rand(rng, 1, 16, 8, 8), rand(rng, 16, 16, 1, 1)
    for prepared in (None, _core.conv2d_prepare(x, w, 1, 0, 1, 1, "auto")):
        _core._workspace_reset_peak()
        _core.conv2d(x, w, None, 1, 0, 1, 1, None, None, "auto", prepared)
        assert 0 < _core._workspace_peak() <= threads * (8 << 10), _core._workspace_peak()


@pytest.mark.parametrize("shape, out_channels, kernel, stride", [
    ((1, 512, 28, 28), 512, 3, 1),     # VGG-16's largest Winograd layer
    ((2, 64, 224, 224), 64, 3, 1),     # a batch of VGG-16's first 64-channel layer
    ((1, 1024, 14, 14), 1024, 3, 1),   # the most input channels 'auto' sends to Winograd
    ((1, 3, 227, 227), 96, 11, 4),     # AlexNet's first layer
])
def test_workspace_stays_under_16_mib_or_the_output(shape, out_channels, kernel, stride, rng, threads_restored):
    cnnfast.set_num_threads(2)
    x = rand(rng, *shape)
    w = rand(rng, out_channels, shape[1], kernel, kernel)
    for algorithm in ("auto", "direct"):
        _core._workspace_reset_peak()
        y = cnnfast.conv2d(x, w, stride=stride, padding=kernel // 2, algorithm=algorithm)
        bound = max(y.nbytes, 16 << 20)
        assert 0 < _core._workspace_peak() <= bound, (algorithm, _core._workspace_peak(), bound)


def test_fma_peak_is_measured(isa):
    peak = _core._measure_fma_peak()
    assert np.isfinite(peak) and 0.1 < peak < 10_000, peak
    both = _core._measure_fma_peak(2)  # two threads' total: more than one's unless a core is busy elsewhere
    assert np.isfinite(both) and 0.1 < both < 20_000, both
    with pytest.raises(ValueError, match="threads must be >= 1"):
        _core._measure_fma_peak(0)
