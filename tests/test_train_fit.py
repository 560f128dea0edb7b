"""Training end to end: LeNet-5 on the digits, transfer learning, fit() and evaluate()."""

import copy
import time

import numpy as np
import pytest

import cnnfast
from cnnfast import data, losses, models, nn, optim, train


@pytest.fixture(scope="module")
def digits():
    """The held-out quarter split off, pixels standardized with the training statistics; and the value of
    a blank pixel, to fill what augmentation brings in."""
    pytest.importorskip("sklearn")
    x, y = data.load_digits()
    (xtr, ytr), (xte, yte) = data.split(x, y, test_fraction=0.25, rng=0)
    mean, std = xtr.mean(), xtr.std()
    return ((xtr - mean) / std, ytr), ((xte - mean) / std, yte), float(-mean / std)


@pytest.fixture(autouse=True)
def one_thread():
    # The layers trained here are too small to gain from threads, and a machine shared with other work makes
    # every parallel region wait for a core: one thread is the fast and steady choice.
    with cnnfast.num_threads(1):
        yield


def augmentation(background):
    return data.Compose([data.RandomCrop(padding=2, fill=background), data.RandomRotation(10, fill=background)])


def train_lenet_on_digits(train_set, test_set, background, seed):
    net = models.lenet5(rng=seed)
    augment = augmentation(background)
    batches = data.DataLoader(*train_set, batch_size=32, shuffle=True, rng=seed, transform=augment)
    opt = optim.Adam(net.parameters(), lr=2e-3)
    history = train.fit(net, batches, "cross_entropy", opt, epochs=15, val_data=test_set,
                        scheduler=optim.CosineAnnealingLR(opt, t_max=15), progress=False, seed=seed)
    return net, history


def test_lenet5_learns_the_digits_deterministically(digits):
    train_set, test_set, background = digits
    start = time.perf_counter()
    net, history = train_lenet_on_digits(train_set, test_set, background, seed=0)
    seconds = time.perf_counter() - start
    accuracy = train.evaluate(net, test_set)["accuracy"]
    print(f"LeNet-5 on the digits: {accuracy:.4f} held-out accuracy in {seconds:.1f} s")
    assert accuracy >= 0.97
    assert history.val_accuracy[-1] == accuracy and history.epochs == 15
    assert history.loss[-1] < history.loss[0] / 5 and history.lr[0] == pytest.approx(2e-3)
    assert not net.training  # fit() leaves the model in the mode it found it in
    net2, history2 = train_lenet_on_digits(train_set, test_set, background, seed=0)
    assert history2.val_accuracy == history.val_accuracy and history2.loss == history.loss
    for p, q in zip(net.parameters(), net2.parameters()):
        np.testing.assert_array_equal(p, q)
    assert seconds < 60


def few_shot_split(y, per_class, seed):
    rng = np.random.default_rng(seed)
    few = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    return few, np.setdiff1d(np.arange(len(y)), few)


def test_transfer_learning_beats_a_head_on_raw_pixels(digits):
    # Features learned on digits 0-4 reused for digits 5-9 from 5 examples of each: a new Linear head on
    # LeNet-5's frozen convolutional features against the same head on the raw pixels, both trained the same
    # way (same optimizer, epochs and augmentation of the few examples). Averaged over three draws of the
    # examples. Trained without augmentation the two are on par on these clean 8x8 digits, where a linear
    # classifier on pixels is strong; the features win by the shift and rotation tolerance they learned.
    (xtr, ytr), (xte, yte), background = digits
    x, y = np.concatenate([xtr, xte]), np.concatenate([ytr, yte])
    source, target = y < 5, y >= 5
    augment = augmentation(background)
    net = models.lenet5(num_classes=5, rng=0)
    batches = data.DataLoader(x[source], y[source], batch_size=32, shuffle=True, rng=0, transform=augment)
    train.fit(net, batches, "cross_entropy", optim.Adam(net.parameters(), 2e-3), epochs=10, progress=False, seed=0)
    xt, yt = x[target], y[target] - 5

    def fit_few(model, params, few, epochs):
        batches = data.DataLoader(xt[few], yt[few], batch_size=32, shuffle=True, rng=0, transform=augment)
        train.fit(model, batches, "cross_entropy", optim.Adam(params, 1e-2, weight_decay=1e-2), epochs=epochs,
                  progress=False, seed=0)

    transferred, raw, fine_tuned = [], [], []
    for draw in range(3):
        few, rest = few_shot_split(yt, 5, seed=draw)
        held_out = (xt[rest], yt[rest])
        model = train.new_classifier(copy.deepcopy(net), num_classes=5, rng=0)
        assert [k for k, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
        frozen = {k: p.copy() for k, p in model.features.named_parameters()}
        fit_few(model, model.head.parameters(), few, epochs=200)
        assert all(np.array_equal(p, frozen[k]) for k, p in model.features.named_parameters())
        transferred.append(train.evaluate(model, held_out)["accuracy"])

        pixels = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 5, init=nn.init.glorot_uniform, rng=0))
        fit_few(pixels, pixels.parameters(), few, epochs=200)
        raw.append(train.evaluate(pixels, held_out)["accuracy"])

        # Then every layer, the features ten times more gently than the head.
        groups = train.fine_tune_groups(model, lr=1e-3, feature_lr=1e-4)
        fit_few(model, groups, few, epochs=20)
        fine_tuned.append(train.evaluate(model, held_out)["accuracy"])
    print(f"digits 5-9 from 5 examples each: transferred features {transferred} (mean {np.mean(transferred):.3f}), "
          f"raw pixels {raw} (mean {np.mean(raw):.3f}), fine-tuned {fine_tuned} (mean {np.mean(fine_tuned):.3f})")
    transferred, raw, fine_tuned = np.mean(transferred), np.mean(raw), np.mean(fine_tuned)
    assert transferred >= 0.90
    assert transferred >= raw + 0.03
    assert fine_tuned >= raw + 0.03


def test_replace_head_freezes_the_rest_and_trains_only_the_head():
    net = models.ResNet(nn.BasicBlock, (1, 1, 1, 1), num_classes=10, rng=0)
    head = train.replace_head(net, num_classes=3, rng=0)
    assert net.fc is head and head.weight.shape == (3, 512)
    assert [k for k, p in net.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    before = {k: p.copy() for k, p in net.named_parameters()}
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 32, 32)).astype(np.float32), np.array([0, 1, 2, 0])
    train.fit(net, (x, y), "cross_entropy", optim.SGD(net.parameters(), 0.1), epochs=1, progress=False)
    changed = [k for k, p in net.named_parameters() if not np.array_equal(p, before[k])]
    assert changed == ["fc.weight", "fc.bias"]
    alex_parent, name, _ = train.find_head(models.alexnet(num_classes=4, rng=0))
    assert name == "6"
    with pytest.raises(TypeError, match="no feature layers known"):
        train.feature_extractor(nn.Sequential(nn.Linear(2, 2)))


def test_fit_history_evaluate_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(2, 8, activation="relu", rng=0), nn.Linear(8, 2, rng=1))
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    history = train.fit(model, (x, y), losses.softmax_cross_entropy, opt, epochs=8, val_data=(x, y),
                        scheduler=optim.StepLR(opt, 4, 0.1), batch_size=16, progress=False, seed=1)
    assert history.epochs == 8 and len(history.val_loss) == 8 and len(history.seconds) == 8
    assert history.lr == [0.5] * 4 + [pytest.approx(0.05)] * 4
    assert history.val_accuracy[-1] >= 0.95 and "8 epochs" in repr(history)
    result = train.evaluate(model, (x, y))
    assert result["accuracy"] == history.val_accuracy[-1] and result["loss"] == pytest.approx(history.val_loss[-1])
    assert all(p.grad is None for p in model.parameters())
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    history.plot(path)
    assert path.stat().st_size > 1000

    # Regression: no accuracy, any iterable of batches, a progress bar.
    target = x @ np.array([[1.0], [-2.0]], np.float32)
    reg = nn.Linear(2, 1, rng=0)
    batches = [(x[i:i + 16], target[i:i + 16]) for i in range(0, 64, 16)]
    h = train.fit(reg, batches, "mse", optim.Adam(reg.parameters(), 0.1), epochs=30, progress=True)
    assert h.accuracy == [None] * 30 and h.loss[-1] < 1e-2


def test_fit_errors_are_clear():
    model = nn.Linear(2, 2, rng=0)
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    with pytest.raises(TypeError, match="pass an optimizer"):
        train.fit(model, (x, y), "cross_entropy", None)
    with pytest.raises(TypeError, match="DataLoader"):
        train.fit(model, x, "cross_entropy", optim.SGD(model.parameters(), 0.1))
    with pytest.raises(FloatingPointError, match="lower the learning rate"), np.errstate(all="ignore"):
        train.fit(model, (x + 1e30, np.array([0, 1, 0, 1])), "cross_entropy", optim.SGD(model.parameters(), 1e30),
                  epochs=3, progress=False)


def test_plot_without_matplotlib_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        train.History().plot("x.png")


def test_triplet_loss_trains_an_embedding_through_one_batch():
    # The three inputs in one forward pass, their gradients concatenated for one backward pass.
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 6)).astype(np.float32) * 2
    net = nn.Sequential(nn.Linear(6, 16, activation="relu", rng=0), nn.Linear(16, 4, rng=1)).train()
    opt = optim.Adam(net.parameters(), 1e-2)
    first = None
    for step in range(150):
        cls = rng.integers(0, 4, 16)
        other = (cls + rng.integers(1, 4, 16)) % 4
        a, p = (centres[cls] + 0.3 * rng.standard_normal((16, 6)).astype(np.float32) for _ in range(2))
        n = centres[other] + 0.3 * rng.standard_normal((16, 6)).astype(np.float32)
        emb = net(np.concatenate([a, p, n]))
        loss, grads = losses.triplet(*np.split(emb, 3), margin=1.0)
        first = loss if first is None else first
        net.zero_grad()
        net.backward(np.concatenate(grads), input_grad=False)
        opt.step()
    assert loss < first / 5
