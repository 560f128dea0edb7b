"""Module: registration, state dicts and their errors, modes, weights on disk."""

import numpy as np
import pytest

from cnnfast import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, rng=0)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 5 * 5, 2, rng=1))

    def forward(self, x):
        return self.head(nn.conv_bn(x, self.conv, self.bn, relu=True))


def test_named_parameters_and_buffers_are_apart():
    m = Tiny()
    assert [k for k, _ in m.named_parameters()] == [
        "conv.weight", "conv.bias", "bn.weight", "bn.bias", "head.1.weight", "head.1.bias"]
    assert [k for k, _ in m.named_buffers()] == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert m.num_parameters() == 4 * 3 * 9 + 4 + 4 + 4 + 100 * 2 + 2
    assert all(p.dtype == np.float32 for p in m.parameters())
    assert m.bn.num_batches_tracked.dtype == np.int64


def test_state_dict_order_follows_pytorch():
    keys = list(Tiny().state_dict())
    assert keys == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                    "bn.num_batches_tracked", "head.1.weight", "head.1.bias"]


def test_conv_without_bias_has_no_bias_key():
    conv = nn.Conv2d(2, 3, 1, bias=False)
    assert conv.bias is None
    assert list(conv.state_dict()) == ["weight"]


def test_load_state_dict_round_trip_copies():
    a, b = Tiny(), Tiny()
    sd = a.state_dict()
    sd["conv.weight"] = sd["conv.weight"] + 1
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(b.conv.weight, sd["conv.weight"])
    assert b.conv.weight is not sd["conv.weight"]


def test_load_state_dict_missing_key_is_named():
    sd = Tiny().state_dict()
    del sd["bn.running_var"]
    with pytest.raises(nn.StateDictError, match=r"missing keys \(1\): bn\.running_var"):
        Tiny().load_state_dict(sd)


def test_load_state_dict_unexpected_key_is_named():
    sd = dict(Tiny().state_dict())
    sd["head.2.weight"] = np.zeros(3, np.float32)
    with pytest.raises(nn.StateDictError, match=r"unexpected keys \(1\): head\.2\.weight"):
        Tiny().load_state_dict(sd)


def test_load_state_dict_wrong_shape_is_named_with_both_shapes():
    sd = dict(Tiny().state_dict())
    sd["head.1.weight"] = np.zeros((3, 100), np.float32)
    with pytest.raises(nn.StateDictError, match=r"head\.1\.weight: expected \(2, 100\), got \(3, 100\)"):
        Tiny().load_state_dict(sd)


def test_load_state_dict_lists_every_problem_at_once_and_loads_nothing():
    m = Tiny()
    before = m.conv.weight.copy()
    sd = dict(Tiny().state_dict())
    del sd["conv.bias"]
    sd["extra"] = np.zeros(1)
    sd["bn.weight"] = np.zeros(5)
    sd["conv.weight"] = sd["conv.weight"] + 1
    with pytest.raises(nn.StateDictError) as info:
        m.load_state_dict(sd)
    message = str(info.value)
    assert "conv.bias" in message and "extra" in message and "bn.weight: expected (4,), got (5,)" in message
    np.testing.assert_array_equal(m.conv.weight, before)


def test_load_state_dict_not_strict_tolerates_missing_and_extra_but_not_shapes():
    sd = dict(Tiny().state_dict())
    del sd["conv.bias"]
    sd["extra"] = np.zeros(1)
    result = Tiny().load_state_dict(sd, strict=False)
    assert result.missing_keys == ["conv.bias"] and result.unexpected_keys == ["extra"]
    sd["bn.weight"] = np.zeros(5)
    with pytest.raises(nn.StateDictError, match="bn.weight"):
        Tiny().load_state_dict(sd, strict=False)


def test_assigning_a_parameter_checks_shape_and_converts_to_float32():
    m = Tiny()
    m.bn.weight = np.arange(4)  # ints are accepted, stored as float32
    assert m.bn.weight.dtype == np.float32
    with pytest.raises(ValueError, match="parameter 'weight' has shape"):
        m.bn.weight = np.zeros(5)
    with pytest.raises(TypeError):
        m.bn.weight = np.array(["a"] * 4)


def test_modules_start_in_eval_mode_and_train_eval_recurse():
    m = Tiny()
    assert not any(x.training for x in m.modules())
    assert m.train() is m and all(x.training for x in m.modules())
    m.eval()
    assert not any(x.training for x in m.modules())


def test_call_runs_forward_and_getattr_errors():
    m = Tiny()
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5), dtype=np.float32)
    assert m(x).shape == (2, 2)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        m.nope


def test_submodules_replaced_removed_and_copied_stay_one_object():
    import copy
    import pickle

    m = Tiny()
    other = nn.BatchNorm2d(4)
    m.bn = other
    assert m.bn is other and dict(m.named_children())["bn"] is other
    m.bn = None
    assert m.bn is None and dict(m.named_children()).get("bn") is None
    with pytest.raises(TypeError, match="submodule 'bn'"):
        m.bn = 3
    del m.head
    assert "head" not in dict(m.named_children())
    with pytest.raises(AttributeError, match="head"):
        m.head
    for twin in (copy.deepcopy(Tiny()), pickle.loads(pickle.dumps(Tiny()))):
        assert twin.conv is dict(twin.named_children())["conv"]
        twin.conv.weight[...] = 0
        assert not twin.conv.weight.any() and not dict(twin.named_parameters())["conv.weight"].any()


def test_folded_parameters_are_frozen_until_replaced_or_mode_changes():
    m = Tiny()
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5), dtype=np.float32)
    y0 = m(x)
    with pytest.raises(ValueError, match="read-only"):
        m.conv.weight[0, 0, 0, 0] = 1.0  # an in-place edit cannot make the folded cache stale unnoticed
    m.bn.running_mean = np.full(4, 0.5, np.float32)  # a new array: the fold is recomputed
    y1 = m(x)
    assert not np.allclose(y0, y1)
    m.train()
    m.conv.weight[0, 0, 0, 0] = 1.0  # writable again outside eval caching
    m.eval()
    assert not np.allclose(m(x), y1)


def test_load_state_dict_refreshes_the_fold():
    a, b = Tiny(), Tiny()
    b.conv.weight = b.conv.weight * 2
    b.bn.running_var = np.full(4, 3.0, np.float32)
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5), dtype=np.float32)
    a(x)
    a.load_state_dict(b.state_dict())
    np.testing.assert_array_equal(a(x), b(x))


def test_repr_names_children():
    text = repr(Tiny())
    assert "(conv): Conv2d(3, 4, kernel_size=(3, 3)" in text and "(1): Linear(in_features=100" in text


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_and_load_round_trip(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    a, b = Tiny(), Tiny()
    a.bn.running_var = np.full(4, 2.0, np.float32)
    a.bn.num_batches_tracked = np.array(7)
    path = tmp_path / f"tiny{suffix}"
    a.save(path)
    b.load(path)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and va.dtype == vb.dtype
        np.testing.assert_array_equal(va, vb)


def test_load_checks_names_from_file(tmp_path):
    path = tmp_path / "other.npz"
    nn.Linear(3, 2).save(path)
    with pytest.raises(nn.StateDictError, match="missing keys"):
        Tiny().load(path)


def test_save_needs_a_known_format(tmp_path):
    with pytest.raises(ValueError, match=".npz or .safetensors"):
        Tiny().save(tmp_path / "weights.bin")
    Tiny().save(tmp_path / "weights.bin", format="npz")
    Tiny().load(tmp_path / "weights.bin", format="npz")


def test_safetensors_missing_gives_a_clear_import_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ImportError, match="pip install safetensors"):
        Tiny().save(tmp_path / "w.safetensors")


def test_threads_share_one_model():
    from concurrent.futures import ThreadPoolExecutor

    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, rng=0), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.BasicBlock(8, 8, rng=1))
    xs = [np.random.default_rng(i).standard_normal((1, 3, 12, 12), dtype=np.float32) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        ys = list(pool.map(m, xs))
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(m(x), y)
    m.train()
    assert all(p.flags.writeable for p in m.parameters())


def test_package_exports():
    import cnnfast

    for name in ["nn", "models", "filters", "preprocess", "conv_output_shape"]:
        assert name in cnnfast.__all__ and hasattr(cnnfast, name)


def test_cnnfast_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, cnnfast; cnnfast.models.resnet18(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
