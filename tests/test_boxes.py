"""box_iou, nms and batched_nms on every ISA path against NumPy (tests/numpy_reference.py), and against a
plain PyTorch implementation (or torchvision.ops when installed).

NMS is compared index for index. To make that exact rather than lucky, the randomized boxes lie on a grid
of quarter units with small extents: every area, intersection and union is then exact in float32 and the
IoU is one correctly rounded division, the same in NumPy float32 and in the kernels. box_iou on arbitrary
float boxes is compared with tolerance |iou - ref| <= 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnfast
from cnnfast import _core

import numpy_reference as ref
from conftest import assert_close, examples


def random_boxes(rng, n, span=100.0, max_size=30.0):
    xy = rng.uniform(0, span, size=(n, 2))
    wh = rng.uniform(0, max_size, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def grid_boxes(rng, n, cells=24, max_size=12):
    """Boxes on a 0.25 grid, clustered so that suppression happens; some have zero width or height."""
    xy = rng.integers(0, cells, size=(n, 2))
    wh = rng.integers(0, max_size + 1, size=(n, 2))
    wh[rng.random(n) < 0.9] += 1  # mostly non-degenerate
    return (np.concatenate([xy, xy + wh], axis=1) / 4.0).astype(np.float32)


def check_keep(keep, expected, what=""):
    assert isinstance(keep, np.ndarray) and keep.dtype == np.int64 and keep.ndim == 1, (type(keep), keep.dtype)
    np.testing.assert_array_equal(keep, expected, err_msg=what)


# --- box_iou --------------------------------------------------------------------------------------


@pytest.mark.parametrize("na,nb", [(1, 1), (3, 7), (5, 8), (9, 9), (4, 15), (2, 16), (7, 17), (1, 33), (13, 64),
                                   (200, 101), (0, 5), (5, 0), (0, 0)])
def test_box_iou_matches_numpy(isa, na, nb, rng):
    a, b = random_boxes(rng, na), random_boxes(rng, nb)
    y = cnnfast.box_iou(a, b)
    assert y.shape == (na, nb) and y.dtype == np.float32
    assert_close(y, ref.box_iou(a, b), atol=1e-5, rtol=0, what="box_iou")
    assert_close(_core.reference.box_iou(a, b), ref.box_iou(a, b), atol=1e-5, rtol=0, what="reference.box_iou")
    if na and nb:
        assert ((y >= 0) & (y <= 1)).all()


@settings(max_examples=examples(40))
@given(na=st.integers(0, 40), nb=st.integers(0, 70), seed=st.integers(0, 2**31 - 1))
def test_box_iou_on_the_grid_is_exact(isa, na, nb, seed):
    rng = np.random.default_rng(seed)
    a, b = grid_boxes(rng, na), grid_boxes(rng, nb)
    expected = ref.box_iou(a, b, dtype=np.float32)
    np.testing.assert_array_equal(cnnfast.box_iou(a, b), expected)
    np.testing.assert_array_equal(_core.reference.box_iou(a, b), expected)
    np.testing.assert_array_equal(cnnfast.box_iou(b, a), expected.T)


def test_box_iou_known_values(isa):
    a = np.array([[0, 0, 2, 2], [0, 0, 2, 1], [10, 10, 11, 11]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 1], [0, 0, 2, 2]], np.float32)
    # a[1] and b[0] touch only along y = 1: intersection 0; a[1] lies inside b[2]: 2 / 4
    expected = [[1 / 7, 1 / 4, 1], [0, 0.5, 0.5], [0, 0, 0]]
    np.testing.assert_allclose(cnnfast.box_iou(a, b), expected, rtol=1e-6)


def test_box_iou_zero_area_is_zero_not_nan(isa):
    pts = np.array([[1, 1, 1, 1], [2, 2, 2, 5], [0, 3, 4, 3]], np.float32)  # a point and two segments
    full = np.array([[0, 0, 4, 4]], np.float32)
    for a, b in [(pts, pts), (pts, full), (full, pts)]:
        y = cnnfast.box_iou(a, b)
        assert not np.isnan(y).any()
        np.testing.assert_array_equal(y, np.zeros_like(y))
        np.testing.assert_array_equal(_core.reference.box_iou(a, b), np.zeros_like(y))


def test_box_iou_converts_float64_and_non_contiguous(isa, rng):
    a, b = random_boxes(rng, 6), random_boxes(rng, 9)
    expected = cnnfast.box_iou(a, b)
    np.testing.assert_array_equal(cnnfast.box_iou(a.astype(np.float64), b.astype(np.float64)), expected)
    np.testing.assert_array_equal(cnnfast.box_iou(np.asfortranarray(a), b.T.copy().T), expected)
    np.testing.assert_array_equal(cnnfast.box_iou(a.tolist(), b), expected)


def test_box_iou_thread_counts_agree(isa, rng, threads_restored):
    a, b = random_boxes(rng, 300), random_boxes(rng, 200)  # 60,000 pairs: the threaded path
    with cnnfast.num_threads(1):
        one = cnnfast.box_iou(a, b)
    with cnnfast.num_threads(2):
        np.testing.assert_array_equal(cnnfast.box_iou(a, b), one)


# --- nms ------------------------------------------------------------------------------------------


@st.composite
def nms_cases(draw):
    n = draw(st.integers(0, 80))
    return dict(
        n=n,
        iou_threshold=draw(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0, -0.5])),
        score_threshold=draw(st.sampled_from([None, None, 0.0, 0.25, 0.5])),
        max_output=draw(st.sampled_from([None, None, 0, 1, 3, 10, 1000])),
        ties=draw(st.booleans()),
        nans=draw(st.booleans()),
        classes=draw(st.sampled_from([1, 2, 3, 7])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def nms_inputs(case):
    rng = np.random.default_rng(case["seed"])
    n = case["n"]
    boxes = grid_boxes(rng, n)
    if case["ties"]:
        scores = rng.choice(np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32), size=n)  # many equal scores
    else:
        scores = rng.random(n).astype(np.float32)
    if case["nans"] and n:
        scores[rng.random(n) < 0.2] = np.nan
    class_ids = rng.integers(-1, case["classes"] - 1, size=n).astype(np.int64)
    return boxes, scores, class_ids


def nms_kwargs(case):
    return dict(score_threshold=case["score_threshold"], max_output=case["max_output"])


@settings(max_examples=examples(150))
@given(case=nms_cases())
def test_nms_matches_numpy_greedy(isa, case):
    boxes, scores, _ = nms_inputs(case)
    expected = ref.nms(boxes, scores, case["iou_threshold"], iou_dtype=np.float32, **nms_kwargs(case))
    keep = cnnfast.nms(boxes, scores, case["iou_threshold"], **nms_kwargs(case))
    check_keep(keep, expected, f"nms {case}")
    check_keep(_core.reference.nms(boxes, scores, case["iou_threshold"], **nms_kwargs(case)), expected, "reference")
    # kept boxes come by descending score, ties by ascending index, and never a NaN score
    s = scores[keep]
    assert not np.isnan(s).any()
    assert all((s[i] > s[i + 1]) or (s[i] == s[i + 1] and keep[i] < keep[i + 1]) for i in range(len(keep) - 1))
    if case["score_threshold"] is not None:
        assert (s > np.float32(case["score_threshold"])).all()
    if case["max_output"] is not None:
        assert len(keep) <= case["max_output"]


@settings(max_examples=examples(120))
@given(case=nms_cases())
def test_batched_nms_is_per_class_nms_merged_by_score(isa, case):
    boxes, scores, class_ids = nms_inputs(case)
    thr = case["iou_threshold"]
    expected = ref.batched_nms(boxes, scores, class_ids, thr, iou_dtype=np.float32, **nms_kwargs(case))
    keep = cnnfast.batched_nms(boxes, scores, class_ids, thr, **nms_kwargs(case))
    check_keep(keep, expected, f"batched_nms {case}")
    check_keep(_core.reference.batched_nms(boxes, scores, class_ids, thr, **nms_kwargs(case)), expected, "reference")
    # the same as one class-aware pass of the NumPy greedy loop
    check_keep(keep, ref.nms(boxes, scores, thr, class_ids=class_ids, iou_dtype=np.float32, **nms_kwargs(case)))
    # and as cnnfast's own nms run class by class
    per_class = []
    for c in np.unique(class_ids):
        members = np.flatnonzero(class_ids == c)
        per_class.extend(members[cnnfast.nms(boxes[members], scores[members], thr,
                                             score_threshold=case["score_threshold"])].tolist())
    per_class = np.asarray(per_class, np.int64)
    if per_class.size:
        per_class = per_class[np.lexsort((per_class, -scores[per_class].astype(np.float64)))]
    if case["max_output"] is not None:
        per_class = per_class[: case["max_output"]]
    check_keep(keep, per_class, "per-class nms merged")


@pytest.mark.parametrize("n", [2, 3, 300, 5000])
def test_nms_orders_any_float_scores(isa, n, rng):
    # with a threshold nothing passes, every candidate is kept in the sort order: descending score (-0 and +0
    # equal, infinities at the ends), ties by ascending index, NaN dropped; scores of every sign and exponent
    pool = np.array([-np.inf, -3e38, -2.5, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1e-3, 0.5, 1.0, 7.0, 3e38, np.inf,
                     np.nan], np.float32)
    scores = np.where(rng.random(n) < 0.5, rng.choice(pool, size=n),
                      rng.standard_normal(n).astype(np.float32) * np.float32(10.0) ** rng.integers(-20, 20, n))
    scores = scores.astype(np.float32)
    boxes = grid_boxes(rng, n)
    keep = cnnfast.nms(boxes, scores, 1.0)
    finite = np.flatnonzero(~np.isnan(scores))
    expected = finite[np.lexsort((finite, -scores[finite].astype(np.float64)))]
    np.testing.assert_array_equal(keep, expected)
    above = cnnfast.nms(boxes, scores, 1.0, score_threshold=0.0)
    np.testing.assert_array_equal(above, expected[scores[expected] > 0])


@pytest.mark.parametrize("n", [1000, 5000])
def test_nms_large_inputs(isa, n, rng):
    boxes = grid_boxes(rng, n, cells=200, max_size=40)
    scores = rng.random(n).astype(np.float32)
    class_ids = rng.integers(0, 5, size=n)
    for thr in (0.3, 0.7):
        expected = ref.nms(boxes, scores, thr, iou_dtype=np.float32)
        check_keep(cnnfast.nms(boxes, scores, thr), expected)
        check_keep(cnnfast.batched_nms(boxes, scores, class_ids, thr),
                   ref.nms(boxes, scores, thr, class_ids=class_ids, iou_dtype=np.float32))


def test_nms_float_boxes(isa):
    # off the grid, float32 rounding may differ between implementations (FMA or not), which can only matter for
    # an IoU within a rounding of the threshold: pick boxes with no IoU within 1e-6 of any threshold used
    thresholds = (0.2, 0.5, 0.8)
    for seed in range(100):
        rng = np.random.default_rng(seed)
        boxes = random_boxes(rng, 500, span=60)
        iou = ref.box_iou(boxes, boxes)
        if all(np.abs(iou - t).min() > 1e-6 for t in thresholds):
            break
    else:
        pytest.fail("no seed gave boxes clear of the thresholds")
    scores = rng.random(500).astype(np.float32)
    for thr in thresholds:
        expected = ref.nms(boxes, scores, thr)
        check_keep(cnnfast.nms(boxes, scores, thr), expected)
        check_keep(_core.reference.nms(boxes, scores, thr), expected)


def test_nms_descending_scores_and_stable_ties(isa):
    boxes = np.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21], [30, 30, 31, 31], [40, 40, 41, 41]],
                     np.float32)
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1], np.float32)
    check_keep(cnnfast.nms(boxes, scores, 0.5), [1, 3, 0, 2, 4])
    # identical boxes with equal scores: the lowest index survives
    same = np.tile(np.array([[1, 2, 5, 7]], np.float32), (6, 1))
    check_keep(cnnfast.nms(same, np.full(6, 0.3, np.float32), 0.5), [0])
    check_keep(cnnfast.nms(same, np.array([0.1, 0.3, 0.3, 0.9, 0.9, 0.2], np.float32), 0.5), [3])
    check_keep(cnnfast.nms(same, np.full(6, 0.3, np.float32), 0.99), [0])
    # IoU of identical boxes is 1: only a threshold of 1 or more keeps them all (1 > 1 is false)
    check_keep(cnnfast.nms(same, np.full(6, 0.3, np.float32), 1.0), [0, 1, 2, 3, 4, 5])


def test_nms_threshold_is_strict(isa):
    # [0,0,2,1] and [0,0,1,1]: intersection 1, union 2, IoU exactly 0.5
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert cnnfast.box_iou(boxes[:1], boxes[1:])[0, 0] == 0.5
    check_keep(cnnfast.nms(boxes, scores, 0.5), [0, 1])  # equal to the threshold: kept
    check_keep(cnnfast.nms(boxes, scores, np.nextafter(np.float32(0.5), np.float32(0))), [0])
    check_keep(cnnfast.nms(boxes, scores, 0.49), [0])
    # IoU 1/3 against the threshold 1/3 (both rounded to the same float32)
    boxes = np.array([[0, 0, 3, 1], [0, 0, 1, 1]], np.float32)
    assert cnnfast.box_iou(boxes[:1], boxes[1:])[0, 0] == np.float32(1 / 3)
    check_keep(cnnfast.nms(boxes, scores, 1 / 3), [0, 1])
    check_keep(cnnfast.nms(boxes, scores, 0.33), [0])
    # batched: the same rule inside a class
    check_keep(cnnfast.batched_nms(boxes, scores, np.array([4, 4]), 1 / 3), [0, 1])
    check_keep(cnnfast.batched_nms(boxes, scores, np.array([4, 4]), 0.3), [0])
    check_keep(cnnfast.batched_nms(boxes, scores, np.array([4, 5]), 0.3), [0, 1])


def test_nms_score_threshold_is_strict(isa):
    boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], np.float32)
    scores = np.array([0.5, 0.6, 0.4], np.float32)
    check_keep(cnnfast.nms(boxes, scores, 0.5, score_threshold=0.5), [1])
    check_keep(cnnfast.nms(boxes, scores, 0.5, score_threshold=0.4), [1, 0])
    check_keep(cnnfast.nms(boxes, scores, 0.5, score_threshold=0.39), [1, 0, 2])
    check_keep(cnnfast.nms(boxes, scores, 0.5, score_threshold=0.6), [])
    check_keep(cnnfast.nms(boxes, scores, 0.5, score_threshold=-np.inf), [1, 0, 2])


def test_nms_nan_scores_are_never_kept(isa):
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 6, 6], [8, 8, 9, 9]], np.float32)
    scores = np.array([np.nan, 0.2, np.nan, 0.1], np.float32)
    # the NaN box neither survives nor suppresses its identical neighbour
    check_keep(cnnfast.nms(boxes, scores, 0.5), [1, 3])
    check_keep(cnnfast.nms(boxes, np.full(4, np.nan, np.float32), 0.5), [])
    check_keep(cnnfast.batched_nms(boxes, scores, np.array([0, 0, 1, 1]), 0.5), [1, 3])
    # infinite scores are ordinary scores
    check_keep(cnnfast.nms(boxes, np.array([np.inf, -np.inf, 0, np.nan], np.float32), 0.5), [0, 2])


def test_nms_max_output(isa, rng):
    boxes = grid_boxes(rng, 60, cells=400)
    scores = rng.random(60).astype(np.float32)
    full = cnnfast.nms(boxes, scores, 0.5)
    for m in (0, 1, 2, len(full) - 1, len(full), len(full) + 5, 10**9):
        check_keep(cnnfast.nms(boxes, scores, 0.5, max_output=m), full[:m])
        check_keep(_core.reference.nms(boxes, scores, 0.5, max_output=m), full[:m])
    cls = rng.integers(0, 3, size=60)
    full = cnnfast.batched_nms(boxes, scores, cls, 0.5)
    for m in (0, 1, 4, 1000):
        check_keep(cnnfast.batched_nms(boxes, scores, cls, 0.5, max_output=m), full[:m])


def test_nms_empty_input(isa):
    empty = np.zeros((0, 4), np.float32)
    for keep in (
        cnnfast.nms(empty, np.zeros(0, np.float32), 0.5),
        cnnfast.nms(empty, np.zeros(0, np.float32), 0.5, score_threshold=0.1, max_output=3),
        cnnfast.batched_nms(empty, np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5),
        _core.reference.nms(empty, np.zeros(0, np.float32), 0.5),
    ):
        check_keep(keep, np.zeros(0, np.int64))
        assert keep.shape == (0,)


def test_nms_zero_area_boxes(isa):
    boxes = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2], [1, 0, 1, 2]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # zero-area boxes overlap nothing, not even an identical zero-area box
    check_keep(cnnfast.nms(boxes, scores, 0.0), [0, 1, 2, 3])
    check_keep(cnnfast.nms(boxes, scores, 0.5), [0, 1, 2, 3])
    # a negative threshold suppresses everything after the first box (IoU 0 > -0.1)
    check_keep(cnnfast.nms(boxes, scores, -0.1), [0])


def test_nms_class_id_dtypes(isa, rng):
    boxes = grid_boxes(rng, 40)
    scores = rng.random(40).astype(np.float32)
    cls = rng.integers(0, 4, size=40)
    expected = cnnfast.batched_nms(boxes, scores, cls.astype(np.int64), 0.4)
    for dt in (np.int8, np.uint8, np.int16, np.int32, np.uint32, np.uint64):
        check_keep(cnnfast.batched_nms(boxes, scores, cls.astype(dt), 0.4), expected, str(dt))
    check_keep(cnnfast.batched_nms(boxes, scores, (cls * 10**12 - 7).astype(np.int64), 0.4), expected, "large ids")
    check_keep(cnnfast.batched_nms(boxes, scores, cls.tolist(), 0.4), expected, "list")
    check_keep(cnnfast.batched_nms(boxes, scores, cls[::-1].copy()[::-1], 0.4), expected, "strided")
    # one class: plain nms
    check_keep(cnnfast.batched_nms(boxes, scores, np.zeros(40, np.int32), 0.4), cnnfast.nms(boxes, scores, 0.4))


def test_nms_converts_float64_and_non_contiguous(isa, rng):
    boxes = grid_boxes(rng, 50)
    scores = rng.random(50).astype(np.float32)
    expected = cnnfast.nms(boxes, scores, 0.5)
    check_keep(cnnfast.nms(boxes.astype(np.float64), scores.astype(np.float64), 0.5), expected)
    check_keep(cnnfast.nms(np.asfortranarray(boxes), np.repeat(scores, 2)[::2], 0.5), expected)
    check_keep(cnnfast.nms(boxes, scores, np.float32(0.5)), expected)
    check_keep(cnnfast.nms(boxes, scores, 0.5, max_output=np.int64(1000)), expected)


# --- PyTorch (torchvision when present, else the same algorithm in plain torch) --------------------


def torch_box_iou(torch, a, b):
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def torch_nms(torch, boxes, scores, thr):
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = torch_box_iou(torch, boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > thr
    return torch.tensor(keep, dtype=torch.int64)


def torch_ops(torch):
    try:
        import torchvision

        return torchvision.ops.box_iou, torchvision.ops.nms, torchvision.ops.batched_nms
    except ImportError:

        def batched(boxes, scores, idxs, thr):
            # torchvision's trick: offset each class so boxes of different classes never overlap
            offsets = idxs.to(boxes) * (boxes.max() + 1)
            return torch_nms(torch, boxes + offsets[:, None], scores, thr)

        return (lambda a, b: torch_box_iou(torch, a, b)), (lambda b, s, t: torch_nms(torch, b, s, t)), batched


def test_boxes_match_pytorch(isa):
    torch = pytest.importorskip("torch")
    box_iou, nms, batched_nms = torch_ops(torch)
    rng = np.random.default_rng(5)
    a, b = random_boxes(rng, 50), random_boxes(rng, 70)
    a[:, 2:] += 0.01  # torchvision divides by the union without a guard: keep every area positive
    b[:, 2:] += 0.01
    assert_close(cnnfast.box_iou(a, b), box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy().astype(np.float64),
                 atol=1e-5, rtol=0)
    for n in (10, 300, 2000):
        boxes = grid_boxes(rng, n, cells=4 * int(np.sqrt(n)) + 8)
        boxes[:, 2:] += 0.25
        scores = rng.random(n).astype(np.float32)
        cls = rng.integers(0, 4, size=n)
        tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
        for thr in (0.3, 0.5, 0.7):
            check_keep(cnnfast.nms(boxes, scores, thr), nms(tb, ts, thr).numpy(), f"nms n={n} thr={thr}")
            check_keep(cnnfast.batched_nms(boxes, scores, cls, thr),
                       batched_nms(tb, ts, torch.from_numpy(cls), thr).numpy(), f"batched n={n} thr={thr}")


# --- large inputs: past 4096 candidates NMS indexes kept boxes in a spatial grid -------------------


def layout_boxes(rng, n, layout):
    """n boxes in one of several layouts that stress a spatial index."""
    xy = rng.uniform(0, 400, size=(n, 2))
    wh = rng.uniform(1, 40, size=(n, 2))
    if layout == "clustered":
        xy = rng.normal(200, 6, size=(n, 2))
    elif layout == "wide":  # some boxes span most of the image
        wh[rng.random(n) < 0.05] *= 20
    elif layout == "negative":
        xy -= 1000
    elif layout == "zero_area":
        wh[rng.random(n) < 0.3] = 0
    elif layout == "inverted":  # x2 < x1 or y2 < y1: IoU 0 with everything
        pass
    elif layout == "huge_range":
        xy *= 1e5
    elif layout == "tiny_range":
        xy *= 1e-5
        wh *= 1e-5
    elif layout == "identical":
        xy[:] = 10
        wh[:] = 5
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    if layout == "inverted":
        flip = rng.random(n) < 0.2
        boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
    return np.round(boxes * 4) / 4 if layout not in ("tiny_range",) else boxes


@pytest.mark.parametrize("layout", ["uniform", "clustered", "wide", "negative", "zero_area", "inverted", "huge_range",
                                    "tiny_range", "identical"])
def test_nms_grid_matches_reference(isa, layout, rng):
    n = 6000
    boxes = layout_boxes(rng, n, layout)
    scores = (np.round(rng.random(n) * 50) / 50).astype(np.float32)  # many ties
    cls = rng.integers(0, 4, size=n)
    for thr in (0.0, 0.5, 0.9):
        expected = _core.reference.nms(boxes, scores, thr)
        check_keep(cnnfast.nms(boxes, scores, thr), expected, f"{layout} thr={thr}")
        check_keep(cnnfast.batched_nms(boxes, scores, cls, thr), _core.reference.batched_nms(boxes, scores, cls, thr),
                   f"{layout} batched thr={thr}")
    check_keep(cnnfast.nms(boxes, scores, 0.5, max_output=100), _core.reference.nms(boxes, scores, 0.5)[:100])
    if layout == "uniform":
        check_keep(cnnfast.nms(boxes, scores, 0.5), ref.nms(boxes, scores, 0.5, iou_dtype=np.float32))


@pytest.mark.parametrize("candidates", [4095, 4096, 4097])
def test_nms_around_the_grid_threshold(isa, candidates, rng):
    # the switch counts candidates, after NaN scores and the score threshold are dropped
    n = 4200
    boxes = layout_boxes(rng, n, "uniform")
    scores = rng.uniform(0.5, 1, size=n).astype(np.float32)
    scores[rng.permutation(n)[: n - candidates]] = np.nan
    expected = ref.nms(boxes, scores, 0.4, iou_dtype=np.float32)
    check_keep(cnnfast.nms(boxes, scores, 0.4), expected)
    scores2 = np.where(np.isnan(scores), np.float32(0.25), scores)
    check_keep(cnnfast.nms(boxes, scores2, 0.4, score_threshold=0.25), expected)


def test_nms_large_input_falls_back_where_a_grid_cannot_be_used(isa, rng):
    n = 5000
    boxes = layout_boxes(rng, n, "uniform")
    scores = rng.random(n).astype(np.float32)
    # a negative threshold (everything overlapping "more" than it) and non-finite coordinates
    check_keep(cnnfast.nms(boxes, scores, -0.5), _core.reference.nms(boxes, scores, -0.5))
    assert len(cnnfast.nms(boxes, scores, -0.5)) == 1
    boxes[7] = [0, 0, np.inf, np.inf]
    boxes[9] = [np.nan, 0, 1, 1]
    for thr in (0.3, 0.7):
        check_keep(cnnfast.nms(boxes, scores, thr), _core.reference.nms(boxes, scores, thr))


@pytest.mark.parametrize("classes", [1, 3])
def test_nms_with_thousands_kept_takes_the_grid_path(classes):
    # Sparse boxes: most survive, so after 4096 kept the scan hands over to the spatial grid; the result
    # must still equal the plain reference's (C++, O(n^2)), index for index.
    rng = np.random.default_rng(7)
    n = 9000
    boxes = grid_boxes(rng, n, cells=2000, max_size=16)
    scores = rng.random(n).astype(np.float32)
    class_ids = rng.integers(0, classes, size=n)
    for thr in (0.0, 0.5):
        got = cnnfast.batched_nms(boxes, scores, class_ids, thr) if classes > 1 else cnnfast.nms(boxes, scores, thr)
        want = (_core.reference.batched_nms(boxes, scores, class_ids, thr) if classes > 1
                else _core.reference.nms(boxes, scores, thr))
        assert len(got) > 4096 or thr == 0.0
        check_keep(got, want)
