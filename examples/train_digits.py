"""Train LeNet-5 from scratch on scikit-learn's handwritten digits.

A quarter of the 1,797 images is held out; the rest is trained on for a few epochs with Adam, a cosine
learning-rate schedule and light augmentation (shifts and rotations). Prints the wall time and the held-out
accuracy, and saves the loss and accuracy curves to a PNG when matplotlib is installed.

    pip install scikit-learn matplotlib      # matplotlib optional
    python examples/train_digits.py --epochs 15 --out digits_curves.png
"""

from __future__ import annotations

import argparse
import time

import cnnfast
from cnnfast import data, models, optim, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="kernel threads (LeNet-5's layers are small)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--out", default="digits_curves.png", help="the curves' PNG (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()

    cnnfast.set_num_threads(args.threads)
    x, y = data.load_digits()
    (x_train, y_train), (x_test, y_test) = data.split(x, y, test_fraction=0.25, rng=args.seed)
    mean, std = x_train.mean(), x_train.std()
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    background = float(-mean / std)
    augment = None if args.no_augment else data.Compose(
        [data.RandomCrop(padding=2, fill=background), data.RandomRotation(10, fill=background)])
    batches = data.DataLoader(x_train, y_train, args.batch_size, shuffle=True, rng=args.seed, transform=augment)

    net = models.lenet5(num_classes=10, rng=args.seed)
    opt = optim.Adam(net.parameters(), lr=args.lr)
    schedule = optim.CosineAnnealingLR(opt, t_max=max(args.epochs, 1))
    print(f"LeNet-5, {net.num_parameters():,} parameters; {len(x_train)} training and {len(x_test)} held-out "
          f"digits; {cnnfast.get_num_threads()} thread(s), {cnnfast.config()['isa']}")
    start = time.perf_counter()
    history = train.fit(net, batches, "cross_entropy", opt, epochs=args.epochs, val_data=(x_test, y_test),
                        scheduler=schedule, progress=not args.quiet, seed=args.seed, verbose=args.quiet)
    seconds = time.perf_counter() - start
    result = train.evaluate(net, (x_test, y_test))
    print(f"trained {args.epochs} epochs in {seconds:.1f} s ({seconds / max(args.epochs, 1):.2f} s per epoch)")
    print(f"held-out accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
    try:
        history.plot(args.out, title=f"LeNet-5 on the digits: {result['accuracy']:.2%} held out")
    except ImportError:
        print("matplotlib is not installed: no curves saved")
    else:
        print(f"curves saved to {args.out}")


if __name__ == "__main__":
    main()
