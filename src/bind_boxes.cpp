// box_iou, nms, batched_nms.
#include <cmath>

#include "args.h"
#include "bindings.h"

namespace cnnfast::bindings {

using namespace py_args;

namespace {

FloatArray boxes_arg(py::handle obj, const char* fn, const char* arg) {
    FloatArray b = float_array(obj, fn, arg, 2, "(N, 4) as (x1, y1, x2, y2)");
    if (b.shape(1) != 4)
        value_error(std::string(fn) + "(): " + arg + " must have shape (N, 4) as (x1, y1, x2, y2), got shape " + shape_str(b));
    return b;
}

py::array iou_impl(bool reference, py::handle a_obj, py::handle b_obj) {
    const char* fn = "box_iou";
    FloatArray a = boxes_arg(a_obj, fn, "a"), b = boxes_arg(b_obj, fn, "b");
    const index_t na = a.shape(0), nb = b.shape(0);
    FloatArray y = output_array(py::none(), {na, nb}, fn, {});
    const float *ap = a.data(), *bp = b.data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (reference)
            box_iou_f32_reference(na, ap, nb, bp, yp);
        else
            box_iou_f32(na, ap, nb, bp, yp);
    }
    return std::move(y);
}

py::array nms_impl(bool reference, const char* fn, py::handle boxes_obj, py::handle scores_obj, py::handle classes_obj,
                   py::handle iou_obj, py::handle score_thr_obj, py::handle max_out_obj) {
    FloatArray boxes = boxes_arg(boxes_obj, fn, "boxes");
    FloatArray scores = float_array(scores_obj, fn, "scores", 1, "(N,)");
    const index_t n = boxes.shape(0);
    if (scores.shape(0) != n)
        value_error(std::string(fn) + "(): scores has shape " + shape_str(scores) + " but boxes has shape " + shape_str(boxes));
    Int64Array classes = no_array<Int64Array>();
    const bool batched = !classes_obj.is_none();
    if (batched) {
        classes = int_array(classes_obj, fn, "class_ids", 1);
        if (classes.shape(0) != n)
            value_error(std::string(fn) + "(): class_ids has shape " + shape_str(classes) + " but boxes has shape " +
                        shape_str(boxes));
    }
    NmsOptions opt{};
    const double thr = float_arg(iou_obj, fn, "iou_threshold");
    if (std::isnan(thr)) value_error(std::string(fn) + "(): iou_threshold must not be NaN");
    opt.iou_threshold = static_cast<float>(thr);
    opt.has_score_threshold = !score_thr_obj.is_none();
    if (opt.has_score_threshold) {
        const double st = float_arg(score_thr_obj, fn, "score_threshold");
        if (std::isnan(st)) value_error(std::string(fn) + "(): score_threshold must not be NaN");
        opt.score_threshold = static_cast<float>(st);
    }
    opt.max_output = max_out_obj.is_none() ? -1 : int_arg(max_out_obj, fn, "max_output", 0);
    py::array_t<std::int64_t> keep(n);
    const float *bp = boxes.data(), *sp = scores.data();
    const std::int64_t* cp = batched ? classes.data() : nullptr;
    std::int64_t* kp = keep.mutable_data();
    index_t kept;
    {
        py::gil_scoped_release nogil;
        kept = reference ? nms_f32_reference(n, bp, sp, cp, opt, kp) : nms_f32(n, bp, sp, cp, opt, kp);
    }
    keep.resize({kept}, false);
    return std::move(keep);
}

}  // namespace

void bind_boxes(py::module_& m, py::module_& ref) {
    for (bool reference : {false, true}) {
        py::module_& t = reference ? ref : m;
        t.def(
            "box_iou", [reference](py::handle a, py::handle b) { return iou_impl(reference, a, b); }, py::arg("a"),
            py::arg("b"),
            R"doc(box_iou(a, b)

Pairwise intersection over union of boxes a (N, 4) and b (M, 4), as (x1, y1, x2, y2): returns (N, M)
float32. Where the union is empty (two zero-area boxes) the IoU is 0, not NaN.)doc");
        t.def(
            "nms",
            [reference](py::handle boxes, py::handle scores, py::handle iou_threshold, py::handle score_threshold,
                        py::handle max_output) {
                return nms_impl(reference, "nms", boxes, scores, py::none(), iou_threshold, score_threshold, max_output);
            },
            py::arg("boxes"), py::arg("scores"), py::arg("iou_threshold"), py::arg("score_threshold") = py::none(),
            py::arg("max_output") = py::none(),
            R"doc(nms(boxes, scores, iou_threshold, score_threshold=None, max_output=None)

Greedy non-maximum suppression, as torchvision.ops.nms. Boxes (N, 4) as (x1, y1, x2, y2) are taken by
descending score, equal scores by ascending index; a box is dropped when its IoU with a box already kept
is strictly greater than iou_threshold. Boxes whose score is NaN, or not strictly greater than
score_threshold when given, are never kept. At most max_output indices are returned. Returns the kept
indices as an int64 array of shape (k,), highest score first. Zero-area boxes overlap nothing (IoU 0).)doc");
        t.def(
            "batched_nms",
            [reference](py::handle boxes, py::handle scores, py::handle class_ids, py::handle iou_threshold,
                        py::handle score_threshold, py::handle max_output) {
                if (class_ids.is_none()) type_error("batched_nms(): class_ids must be an integer array, got None");
                return nms_impl(reference, "batched_nms", boxes, scores, class_ids, iou_threshold, score_threshold, max_output);
            },
            py::arg("boxes"), py::arg("scores"), py::arg("class_ids"), py::arg("iou_threshold"),
            py::arg("score_threshold") = py::none(), py::arg("max_output") = py::none(),
            R"doc(batched_nms(boxes, scores, class_ids, iou_threshold, score_threshold=None, max_output=None)

Class-aware NMS, as torchvision.ops.batched_nms: boxes suppress only boxes of the same class_ids (int, (N,)).
Same ordering, thresholds and result as nms(); max_output counts all classes together.)doc");
    }
}

}  // namespace cnnfast::bindings
