"""The classic architectures: parameter counts, shapes, summaries, parity with PyTorch and torchvision."""

import numpy as np
import pytest

import cnnfast
from cnnfast import models, nn
from cnnfast.models.googlenet import INCEPTION_3A

import nn_reference as ref

PARAMETER_COUNTS = {
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "googlenet": 6_624_904,
}
NATIVE_INPUT = {name: (3, 224, 224) for name in PARAMETER_COUNTS}
NATIVE_INPUT["lenet5"] = (1, 32, 32)


@pytest.fixture(scope="module")
def built():
    """Each model built once for this file (VGG-16 alone draws 138M random numbers)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = getattr(models, name)(rng=0)
        return cache[name]

    return get


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


@pytest.mark.parametrize("name", list(PARAMETER_COUNTS))
def test_parameter_count(built, name):
    model = built(name)
    assert model.num_parameters() == PARAMETER_COUNTS[name]
    # running statistics are buffers, not parameters
    n_buffers = sum(b.size for _, b in model.named_buffers())
    assert sum(v.size for v in model.state_dict().values()) == PARAMETER_COUNTS[name] + n_buffers


@pytest.mark.parametrize("name", list(PARAMETER_COUNTS))
def test_shapes_at_native_size(built, name):
    model = built(name)
    c, h, w = NATIVE_INPUT[name]
    classes = 10 if name == "lenet5" else 1000
    assert model(np.zeros((0, c, h, w), np.float32)).shape == (0, classes)
    y = model(rand(1, c, h, w))
    assert y.shape == (1, classes) and y.dtype == np.float32 and np.isfinite(y).all()


@pytest.mark.parametrize("name, shape", [("lenet5", (5, 1, 32, 32)), ("alexnet", (2, 3, 224, 224)),
                                         ("resnet18", (3, 3, 64, 64)), ("resnet50", (2, 3, 64, 64)),
                                         ("googlenet", (2, 3, 96, 96))])
def test_batches_of_several_equal_one_at_a_time(built, name, shape):
    model = built(name)
    x = rand(*shape, seed=1)
    y = model(x)
    for i in range(shape[0]):
        ref.assert_close_to_scale(y[i:i + 1], model(x[i:i + 1]), 1e-5)


def test_num_classes_and_options():
    assert models.resnet18(num_classes=7, rng=0)(rand(1, 3, 32, 32)).shape == (1, 7)
    assert models.googlenet(num_classes=5, rng=0).fc.weight.shape == (5, 1024)
    assert models.lenet5(num_classes=3, activation="tanh", pooling="avg", rng=0)(rand(2, 1, 32, 32)).shape == (2, 3)
    paper = models.googlenet(branch3_kernel_size=5, rng=0)
    assert paper.inception3a.branch3[1].conv.weight.shape == (32, 16, 5, 5)
    lrn = models.alexnet(local_response_norm=True, num_classes=4, rng=0)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in lrn.modules()) == 2
    assert lrn(rand(1, 3, 224, 224)).shape == (1, 4)
    with pytest.raises(ValueError, match="activation"):
        models.lenet5(activation="sigmoid")


def test_initialization_follows_the_papers():
    r = models.resnet18(rng=0)  # He, fan out
    w = r.layer3[0].conv1.weight
    np.testing.assert_allclose(w.std(), np.sqrt(2 / (w.shape[0] * 9)), rtol=0.05)
    le = models.lenet5(rng=0)  # Glorot
    a = np.sqrt(6 / (16 * 25 + 120 * 25))
    assert np.abs(le.c5.weight).max() <= a and not le.c5.bias.any()


# -- summary ----------------------------------------------------------------------------------------------

def test_lenet5_summary_rows():
    s = models.lenet5(rng=0).summary((1, 32, 32), print_fn=None)
    rows = [(r.name, r.type, r.output_shape, r.parameters, r.macs) for r in s.rows]
    assert rows == [
        ("c1", "Conv2d", (6, 28, 28), 156, 28 * 28 * 6 * 25),
        ("s2", "MaxPool2d", (6, 14, 14), 0, 0),
        ("c3", "Conv2d", (16, 10, 10), 2_416, 10 * 10 * 16 * 25 * 6),
        ("s4", "MaxPool2d", (16, 5, 5), 0, 0),
        ("c5", "Conv2d", (120, 1, 1), 48_120, 120 * 400),
        ("flatten", "Flatten", (120,), 0, 0),
        ("f6", "Linear", (84,), 10_164, 84 * 120),
        ("output", "Linear", (10,), 850, 840),
    ]
    assert s.total_parameters == 61_706 and s.total_macs == 416_520
    text = str(s)
    assert "Total parameters: 61,706" in text and "48,120" in text and "(16, 10, 10)" in text


def test_lenet5_tanh_summary_shows_the_activations():
    s = models.lenet5(activation="tanh", rng=0).summary((1, 32, 32), print_fn=None)
    assert [r.type for r in s.rows].count("Tanh") == 4


def test_inception_3a_summary_macs():
    block = nn.Inception(*INCEPTION_3A, branch3_kernel_size=5, rng=0)
    s = block.summary((192, 28, 28), print_fn=None)
    assert s.row("branch3.0.conv").macs == 2_408_448
    assert s.row("branch3.1.conv").macs == 10_035_200
    assert s.row("branch3.0.conv").macs + s.row("branch3.1.conv").macs == 12_443_648
    assert s.row("branch3.1.conv").output_shape == (32, 28, 28)
    assert s.row("branch4.0").type == "MaxPool2d"
    # without the 1x1 bottleneck, the 5x5 convolution from 192 channels costs ten times as much
    direct = nn.Conv2d(192, 32, 5, padding=2).summary((192, 28, 28), print_fn=None)
    assert direct.rows[0].macs == 120_422_400


def test_summary_prints_and_restores_mode(capsys):
    model = models.resnet18(num_classes=10, rng=0).train()
    s = model.summary((3, 64, 64))
    out = capsys.readouterr().out
    assert "layer4.1.conv2" in out and "Total MACs" in out
    assert s.total_parameters == model.num_parameters()
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("name, gmacs", [("alexnet", 0.71), ("resnet18", 1.81), ("resnet50", 4.09),
                                         ("googlenet", 1.50), ("vgg16", 15.47)])
def test_total_macs_match_the_published_figures(built, name, gmacs):
    # torchvision's model tables list these (as "GFLOPS", counting multiply-accumulates).
    s = built(name).summary((3, 224, 224), print_fn=None)
    assert round(s.total_macs / 1e9, 2) == gmacs


# -- weights from PyTorch ---------------------------------------------------------------------------------

def test_model_for_state_dict_recognizes_architectures(built):
    for name in ["resnet18", "resnet34", "resnet50", "googlenet", "alexnet"]:
        model = models.model_for_state_dict(built(name).state_dict())
        assert type(model) is type(built(name)) and list(model.state_dict()) == list(built(name).state_dict())
    from cnnfast.models.torch_weights import _vgg_layers
    from cnnfast.models.vgg import VGG16_LAYERS

    shapes = {k: np.broadcast_to(np.float32(0), v.shape) for k, v in built("vgg16").state_dict().items()}
    assert _vgg_layers(shapes) == VGG16_LAYERS
    with pytest.raises(ValueError, match="pass it as model="):
        models.model_for_state_dict(models.lenet5().state_dict())


def test_from_torch_copies_a_state_dict_into_a_given_model():
    a, b = models.lenet5(rng=0), models.lenet5(rng=1)
    assert models.from_torch(a.state_dict(), model=b) is b
    x = rand(2, 1, 32, 32)
    np.testing.assert_array_equal(a(x), b(x))
    with pytest.raises(TypeError, match="torch module or a state dict"):
        models.from_torch(42)


def torch_lenet5(torch, activation, pooling):
    tnn = torch.nn

    class LeNet5(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c3, self.c5 = tnn.Conv2d(1, 6, 5), tnn.Conv2d(6, 16, 5), tnn.Conv2d(16, 120, 5)
            self.f6, self.output = tnn.Linear(120, 84), tnn.Linear(84, 10)
            self.act = tnn.ReLU() if activation == "relu" else tnn.Tanh()
            self.pool = tnn.MaxPool2d(2) if pooling == "max" else tnn.AvgPool2d(2)

        def forward(self, x):
            x = self.pool(self.act(self.c1(x)))
            x = self.pool(self.act(self.c3(x)))
            x = torch.flatten(self.act(self.c5(x)), 1)
            return self.output(self.act(self.f6(x)))

    return LeNet5().eval()


@pytest.mark.parametrize("activation, pooling", [("relu", "max"), ("tanh", "avg")])
def test_lenet5_matches_torch(activation, pooling):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tmodel = torch_lenet5(torch, activation, pooling)
    model = models.from_torch(tmodel, model=models.lenet5(activation=activation, pooling=pooling))
    x = rand(4, 1, 32, 32)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    ref.assert_close_to_scale(model(x), expected, 1e-4)


TORCHVISION_MODELS = ["alexnet", "vgg16", "resnet18", "resnet50", "googlenet"]


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_matches_torchvision(name):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    tmodel = getattr(torchvision.models, name)(weights=None, **kwargs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial batch norm statistics, so that folding them is tested
        for m in tmodel.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    tmodel.eval()
    model = models.from_torch(tmodel)
    assert model.num_parameters() == PARAMETER_COUNTS[name]
    x = rand(2, 3, 224, 224, seed=2)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    error = ref.assert_close_to_scale(model(x), expected, 1e-4)
    print(f"{name}: max abs difference / max abs logit = {error:.2e}")


def test_googlenet_from_torchvision_with_aux_classifiers_and_transform_input():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tmodel = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    tmodel.eval()
    model = models.from_torch(tmodel)  # aux1/aux2 dropped, transform_input carried over
    assert model.transform_input and model.num_parameters() == PARAMETER_COUNTS["googlenet"]
    x = rand(1, 3, 224, 224, seed=3)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    ref.assert_close_to_scale(model(x), expected, 1e-4)


# -- predict ----------------------------------------------------------------------------------------------

def test_predict_batches_arrays_and_images(capsys):
    model = models.lenet5(rng=0)
    x = rand(70, 1, 32, 32)
    y = model.predict(x, batch_size=32, progress=False)
    ref.assert_close_to_scale(y, model(x), 1e-6)
    images = (np.random.default_rng(0).random((5, 40, 36)) * 255).astype(np.uint8)  # grayscale HW images
    y = model.predict(list(images), batch_size=2, progress=True, mean=(0.5,), std=(0.5,))
    assert y.shape == (5, 10)
    assert "img" in capsys.readouterr().err  # tqdm's bar
    expected = model(cnnfast.preprocess.prepare(list(images), size=32, resize_to=37, mean=(0.5,), std=(0.5,)))
    ref.assert_close_to_scale(y, expected, 1e-6)
    assert model.predict(x[:0]).shape == (0, 10)


def test_predict_runs_in_eval_mode_and_restores_training():
    model = models.lenet5(rng=0).train()
    model.predict(rand(3, 1, 32, 32))
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(rand(3, 1, 32, 32), batch_size=0)
