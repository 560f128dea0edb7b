"""The benchmark code itself: the suite's shapes and work, the NumPy baselines, the command's output."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

import cnnfast
from cnnfast.bench import check, main, numpy_ops, peers, report, runner, suite
from cnnfast.bench.timing import measure, measure_interleaved

# name: (input shape, weight shape, output shape, multiply-adds), from the networks' papers.
CONV_CASES = {
    "vgg16/conv3x3_3-64@224": ((1, 3, 224, 224), (64, 3, 3, 3), (1, 64, 224, 224), 86_704_128),
    "vgg16/conv3x3_64-64@224": ((1, 64, 224, 224), (64, 64, 3, 3), (1, 64, 224, 224), 1_849_688_064),
    "vgg16/conv3x3_64-128@112": ((1, 64, 112, 112), (128, 64, 3, 3), (1, 128, 112, 112), 924_844_032),
    "vgg16/conv3x3_128-128@112": ((1, 128, 112, 112), (128, 128, 3, 3), (1, 128, 112, 112), 1_849_688_064),
    "vgg16/conv3x3_128-256@56": ((1, 128, 56, 56), (256, 128, 3, 3), (1, 256, 56, 56), 924_844_032),
    "vgg16/conv3x3_256-256@56": ((1, 256, 56, 56), (256, 256, 3, 3), (1, 256, 56, 56), 1_849_688_064),
    "vgg16/conv3x3_256-512@28": ((1, 256, 28, 28), (512, 256, 3, 3), (1, 512, 28, 28), 924_844_032),
    "vgg16/conv3x3_512-512@28": ((1, 512, 28, 28), (512, 512, 3, 3), (1, 512, 28, 28), 1_849_688_064),
    "vgg16/conv3x3_512-512@14": ((1, 512, 14, 14), (512, 512, 3, 3), (1, 512, 14, 14), 462_422_016),
    "resnet50/conv7x7s2_3-64@224": ((1, 3, 224, 224), (64, 3, 7, 7), (1, 64, 112, 112), 118_013_952),
    "resnet50/conv1x1_64-256@56": ((1, 64, 56, 56), (256, 64, 1, 1), (1, 256, 56, 56), 51_380_224),
    "resnet50/conv3x3_64-64@56": ((1, 64, 56, 56), (64, 64, 3, 3), (1, 64, 56, 56), 115_605_504),
    "resnet50/conv3x3s2_128-128@56": ((1, 128, 56, 56), (128, 128, 3, 3), (1, 128, 28, 28), 115_605_504),
    "resnet50/conv1x1_256-64@56": ((1, 256, 56, 56), (64, 256, 1, 1), (1, 64, 56, 56), 51_380_224),
    "resnet50/conv3x3_128-128@28": ((1, 128, 28, 28), (128, 128, 3, 3), (1, 128, 28, 28), 115_605_504),
    "resnet50/conv1x1_1024-256@14": ((1, 1024, 14, 14), (256, 1024, 1, 1), (1, 256, 14, 14), 51_380_224),
    "resnet50/conv3x3_512-512@7": ((1, 512, 7, 7), (512, 512, 3, 3), (1, 512, 7, 7), 115_605_504),
    "inception3a/conv1x1_192-64@28": ((1, 192, 28, 28), (64, 192, 1, 1), (1, 64, 28, 28), 9_633_792),
    "inception3a/conv1x1_192-96@28": ((1, 192, 28, 28), (96, 192, 1, 1), (1, 96, 28, 28), 14_450_688),
    "inception3a/conv3x3_96-128@28": ((1, 96, 28, 28), (128, 96, 3, 3), (1, 128, 28, 28), 86_704_128),
    "inception3a/conv1x1_192-16@28": ((1, 192, 28, 28), (16, 192, 1, 1), (1, 16, 28, 28), 2_408_448),
    "inception3a/conv5x5_16-32@28": ((1, 16, 28, 28), (32, 16, 5, 5), (1, 32, 28, 28), 10_035_200),
    "inception3a/conv5x5_192-32@28": ((1, 192, 28, 28), (32, 192, 5, 5), (1, 32, 28, 28), 120_422_400),
    "alexnet/conv11x11s4_3-96@227": ((1, 3, 227, 227), (96, 3, 11, 11), (1, 96, 55, 55), 105_415_200),
    "lenet5/conv5x5_1-6@32xN64": ((64, 1, 32, 32), (6, 1, 5, 5), (64, 6, 28, 28), 7_526_400),
    "call/conv1x1_16-16@8": ((1, 16, 8, 8), (16, 16, 1, 1), (1, 16, 8, 8), 16_384),
}

OTHER_CASES = {
    "pool/max2x2s2_64x224x224": "max_pool2d",
    "pool/max3x3s2p1_64x112x112": "max_pool2d",
    "pool/global_avg_2048x7x7": "global_avg_pool2d",
    "eltwise/add_relu_256x56x56": "add_relu",
    "fc/vgg16_25088-4096": "linear",
    "fc/vgg16_4096-4096": "linear",
    "fc/resnet50_2048-1000": "linear",
    "fc/alexnet_9216-4096xN8": "linear",
    "nms/boxes1000": "nms",
    "nms/boxes5000": "nms",
    "nms/boxes20000": "nms",
}

# Whole networks: name -> (network, batch, multiply-adds per image, as published for torchvision's models)
NETWORK_CASES = {
    "net/lenet5xN64": ("lenet5", 64, None),
    "net/alexnetxN1": ("alexnet", 1, None),
    "net/alexnetxN8": ("alexnet", 8, None),
    "net/vgg16xN1": ("vgg16", 1, 15.47e9),
    "net/vgg16xN8": ("vgg16", 8, 15.47e9),
    "net/resnet50xN1": ("resnet50", 1, 4.09e9),
    "net/resnet50xN8": ("resnet50", 8, 4.09e9),
    "net/googlenetxN1": ("googlenet", 1, 1.50e9),
    "net/googlenetxN8": ("googlenet", 8, 1.50e9),
}


def test_suite_names_are_unique_and_complete():
    names = suite.case_names()
    assert len(names) == len(set(names))
    assert set(names) == set(CONV_CASES) | set(OTHER_CASES) | set(NETWORK_CASES)
    for name, op in OTHER_CASES.items():
        assert suite.get(name).op == op
    for name, (network, batch, _) in NETWORK_CASES.items():
        case = suite.get(name)
        assert (case.op, case.network, case.batch) == ("network", network, batch)


@pytest.mark.parametrize("name", [n for n, v in NETWORK_CASES.items() if v[2] and v[1] == 1])
def test_network_case_work_matches_the_published_counts(name):
    network, batch, macs = NETWORK_CASES[name]
    assert abs(suite.get(name).flops / 2 - macs * batch) <= 0.01 * macs * batch


def test_network_case_runs_lenet():
    case = suite.get("net/lenet5xN64")
    y = case.run(case.make_inputs())
    assert y.shape == (64, 10) and np.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_case_shapes_and_work(name):
    x_shape, w_shape, y_shape, macs = CONV_CASES[name]
    case = suite.get(name)
    assert case.op == "conv2d"
    assert (case.batch, case.cin, case.h, case.w) == x_shape
    assert (case.cout, case.cin // case.groups, case.kernel, case.kernel) == w_shape
    assert (case.batch, case.cout, *case.out_hw) == y_shape
    assert case.macs == macs and case.flops == 2 * macs
    assert case.metric == "GFLOP/s"


def test_memory_bound_cases_count_bytes():
    assert suite.get("pool/max2x2s2_64x224x224").bytes_moved == 4 * 64 * (224 * 224 + 112 * 112)
    assert suite.get("pool/max3x3s2p1_64x112x112").out_hw == (56, 56)
    assert suite.get("pool/global_avg_2048x7x7").bytes_moved == 4 * 2048 * 50
    assert suite.get("eltwise/add_relu_256x56x56").bytes_moved == 3 * 4 * 256 * 56 * 56
    assert suite.get("pool/global_avg_2048x7x7").metric == "GB/s"
    assert suite.get("fc/vgg16_25088-4096").flops == 2 * 25088 * 4096
    assert suite.get("nms/boxes5000").metric is None


def test_case_inputs_are_float32_and_seeded():
    case = suite.get("inception3a/conv5x5_16-32@28")
    a, b = case.make_inputs(), case.make_inputs()
    assert a["x"].dtype == np.float32 and a["x"].shape == (1, 16, 28, 28)
    np.testing.assert_array_equal(a["weight"], b["weight"])


def test_nms_boxes_are_clustered_and_valid():
    inp = suite.get("nms/boxes1000").make_inputs()
    boxes, scores = inp["boxes"], inp["scores"]
    assert boxes.shape == (1000, 4) and boxes.dtype == np.float32
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert np.all((scores > 0) & (scores <= 1))
    kept = numpy_ops.nms(boxes, scores, 0.5)
    assert 50 <= kept.size < 500  # clusters overlap, so most boxes are suppressed


def test_select_by_substring_and_regex():
    assert [c.name for c in suite.select("nms/boxes1000")] == ["nms/boxes1000"]
    assert {c.name for c in suite.select(r"^fc/")} == {n for n in OTHER_CASES if n.startswith("fc/")}
    assert suite.select("(") == []  # not a valid regex: taken as a substring
    with pytest.raises(KeyError, match="no benchmark case"):
        suite.get("nope")


SMALL = [
    suite.Conv2dCase("t/conv3x3", cin=5, cout=7, h=9, w=11, kernel=3, padding=1),
    suite.Conv2dCase("t/conv5x5s2", cin=3, cout=4, h=13, w=10, kernel=5, stride=2, padding=2, batch=2),
    suite.Conv2dCase("t/conv3x3g", cin=6, cout=4, h=7, w=7, kernel=3, groups=2),
    suite.MaxPool2dCase("t/max3s2p1", c=3, h=9, w=8, kernel=3, stride=2, padding=1),
    suite.MaxPool2dCase("t/max2s2", c=2, h=8, w=8, kernel=2, stride=2),
    suite.GlobalAvgPool2dCase("t/gap", c=5, h=3, w=4),
    suite.AddReluCase("t/add", c=3, h=5, w=6),
    suite.LinearCase("t/fc", in_features=37, out_features=11, batch=3),
    suite.LinearCase("t/fc5", in_features=70, out_features=50, batch=5),  # prepared weights
    suite.NmsCase("t/nms", boxes=300, clusters=20),
]


@pytest.mark.parametrize("case", SMALL, ids=lambda c: c.name)
def test_numpy_peer_agrees_with_cnnfast(case):
    inputs = case.make_inputs()
    bound = peers.NumpyPeer().bind(case, inputs, threads=1)
    agrees, err = check.agreement(case, case.run(inputs), bound.to_numpy(bound.call()))
    assert agrees, err


def test_agreement_flags_a_wrong_result():
    case = SMALL[0]
    y = case.run(case.make_inputs())
    assert check.agreement(case, y, y + 0.1 * np.abs(y).max())[0] is False
    assert check.agreement(case, y, y[..., :-1])[0] is False
    nms_case = SMALL[-1]
    assert check.agreement(nms_case, np.array([3, 1, 2]), np.array([3, 2, 1]))[0] is False


def test_numpy_peer_respects_its_budget():
    with pytest.raises(peers.Skip, match="budget"):
        peers.NumpyPeer(max_gflop=0.1).bind(suite.get("vgg16/conv3x3_64-64@224"), {}, threads=1)


def test_unknown_peer_is_an_error():
    with pytest.raises(ValueError, match="unknown peer"):
        peers.make_peers(["numpy", "tensorflowx"])


def test_measure_takes_at_least_repeat_samples():
    calls = []
    t = measure(lambda: calls.append(1), repeat=3, min_time=0, sample_time=1e-4)
    assert len(t.samples) >= 3 and t.inner >= 1 and t.median >= 0
    assert len(calls) == 2 + t.inner * len(t.samples)  # warm-up, calibration, samples


def test_measure_interleaved_takes_turns():
    order = []
    fns = [lambda: order.append("a"), lambda: order.append("b"), lambda: order.append("c")]
    timings = measure_interleaved(fns, rounds=3, repeat=6, min_time=0, sample_time=1e-4)
    assert len(timings) == 3 and all(len(t.samples) >= 6 for t in timings)
    # three rounds of a, b, c in that order: the calls switch from one to the next 3 * 3 - 1 times
    runs = [order[0]] + [y for x, y in zip(order, order[1:]) if x != y]
    assert runs == ["a", "b", "c"] * 3
    with pytest.raises(ValueError, match="rounds"):
        measure_interleaved(fns, rounds=0)


def test_measure_interleaved_pauses_between_turns():
    ends, starts = [], []
    fns = [lambda: starts.append(time.perf_counter()), lambda: ends.append(time.perf_counter())]
    measure_interleaved(fns, rounds=2, repeat=2, min_time=0, sample_time=1e-4, pause=0.02)
    # each turn of the second call starts at least `pause` after the first call's turn ended
    assert min(ends) - max(s for s in starts if s < min(ends)) >= 0.02
    with pytest.raises(ValueError, match="pause"):
        measure_interleaved(fns, pause=-1)


class _FakePeer(peers.Peer):
    """A peer that runs cnnfast's own call (agrees), or a wrong or a failing one."""

    module = "numpy"

    def __init__(self, name, mode, interleaved=True):
        self.name, self.mode, self.interleaved, self.calls = name, mode, interleaved, 0

    def bind(self, case, inputs, threads):
        def call():
            self.calls += 1
            if self.mode == "raise" and self.calls > 1:
                raise RuntimeError("lost its session")
            y = case.run(inputs)
            return y + 1.0 if self.mode == "wrong" else y

        return peers.Bound(call, lambda y: y)


def test_run_case_times_peers_in_turns_and_reports_each():
    case = SMALL[0]
    fakes = [_FakePeer("good", "ok"), _FakePeer("off", "wrong"), _FakePeer("alone", "ok", interleaved=False)]
    row = runner.run_case(case, fakes, threads=1, repeat=3, min_time=0, rounds=3)
    assert row["cnnfast"]["status"] == "ok" and len(row["cnnfast"]["samples_ms"]) >= 3
    assert row["peers"]["good"]["status"] == "ok" and row["peers"]["good"]["ratio"] > 0
    assert row["peers"]["off"]["status"] == "mismatch"
    assert row["peers"]["alone"]["status"] == "ok"
    assert list(row["peers"]) == ["good", "off", "alone"]  # table order


def test_run_case_reports_a_peer_that_fails_while_timed():
    case = SMALL[0]
    row = runner.run_case(case, [_FakePeer("flaky", "raise"), _FakePeer("good", "ok")], threads=1, repeat=2,
                          min_time=0, rounds=2)
    assert row["peers"]["flaky"]["status"] == "error" and "lost its session" in row["peers"]["flaky"]["reason"]
    assert row["peers"]["good"]["status"] == "ok" and row["cnnfast"]["status"] == "ok"


def test_command_writes_json_and_prints_table(tmp_path, capsys):
    path = tmp_path / "out.json"
    rc = main(["--filter", "global_avg", "--repeat", "1", "--min-time", "0", "--peers", "numpy",
               "--threads", "1", "--json", str(path), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Machine:" in text and "cnnfast" in text and "pool/global_avg_2048x7x7" in text
    result = json.loads(path.read_text())
    assert {"machine", "versions", "date", "options", "peers", "sections"} <= set(result)
    assert result["versions"]["cnnfast"] == cnnfast.__version__
    (section,) = result["sections"]
    assert section["threads"] == 1
    (row,) = section["cases"]
    assert row["name"] == "pool/global_avg_2048x7x7" and row["metric"] == "GB/s"
    assert row["cnnfast"]["status"] == "ok" and len(row["cnnfast"]["samples_ms"]) >= 1
    assert row["cnnfast"]["median_ms"] > 0 and row["cnnfast"]["rate"] > 0
    assert row["peers"]["numpy"]["status"] == "ok" and row["peers"]["numpy"]["ratio"] > 0

    assert main(["--render", str(path), "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "| case |" in md and "### Threads: 1" in md


def test_command_stops_quietly_when_its_reader_goes_away():
    # `python -m cnnfast.bench --list | head -1`: the pipe closes before the list is written
    proc = subprocess.Popen([sys.executable, "-m", "cnnfast.bench", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_command_rejects_an_empty_filter(capsys):
    assert main(["--filter", "no-such-case", "--no-progress"]) == 2


def test_table_warns_when_the_machine_was_busy():
    result = {"machine": {"cpu": "x", "cores": 2, "isa": "generic", "load_average_1min": 0.2,
                          "load_average_1min_end": 3.0},
              "versions": {"cnnfast": "0"}, "date": "d", "peers": [], "sections": []}
    assert "busy" in report.format_table(result)
    result["options"] = {"threads": [1, 2]}
    result["machine"]["load_average_1min_end"] = 2.5
    assert "busy" not in report.format_table(result)  # this run's own two threads
    result["machine"]["load_average_1min_end"] = 1.5
    assert "busy" not in report.format_table(result)
    result["machine"]["load_average_1min"] = 1.2
    assert "busy" in report.format_table(result)


def test_peak_is_the_faster_of_the_start_and_end_probes():
    """A probe taken while other work slows the core reads low; the shares of peak use the faster one."""
    case = {"name": "c", "metric": "GFLOP/s", "cnnfast": {"status": "ok", "median_ms": 1.0, "rate": 150.0}, "peers": {}}
    result = {"machine": {"cpu": "x", "cores": 2, "isa": "avx512", "fma_peak_gflops_per_core": 150.0,
                          "fma_peak_gflops_per_core_end": 200.0},
              "versions": {}, "date": "d", "peers": [], "options": {"threads": [1]},
              "sections": [{"threads": 1, "cases": [case]}]}
    table = report.format_table(result)
    assert "FP32 FMA peak 200.0 GFLOP/s per core (measured; 150.0 at start, 200.0 at end)" in table
    assert "(75%)" in table and "(100%)" not in table
    del result["machine"]["fma_peak_gflops_per_core_end"]  # results saved before the end probe existed
    table = report.format_table(result)
    assert "FP32 FMA peak 150.0 GFLOP/s per core (measured)" in table and "(100%)" in table


def test_table_warns_when_a_core_was_held():
    result = {"machine": {"cpu": "x", "cores": 2, "isa": "avx512", "load_average_1min": 0.2,
                          "load_average_1min_end": 2.0, "fma_peak_gflops_per_core": 100.0,
                          "fma_peak_parallel": {"threads": 2, "gflops": 199.0, "conv_speedup": 1.95}},
              "versions": {}, "date": "d", "peers": [], "sections": [], "options": {"threads": [1, 2]}}
    table = report.format_table(result)
    assert "2 threads together 199 (1.99x one), a 3x3 convolution 1.95x as fast as on one, at start" in table
    assert "held a core" not in table
    result["machine"]["fma_peak_parallel_end"] = {"threads": 2, "gflops": 198.0, "conv_speedup": 1.1}
    assert "a 3x3 convolution 1.10x one thread's speed: other work held a core" in report.format_table(result)
    result["machine"]["fma_peak_parallel_end"] = {"threads": 2, "gflops": 120.0, "conv_speedup": 1.9}
    assert "the FMA loop reached 1.20x" in report.format_table(result)
