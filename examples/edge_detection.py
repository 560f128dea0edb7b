"""Edge detection with convolution filters on a real photograph.

Runs the Sobel filters (or another kind) on scikit-image's "camera" picture with cnnfast.conv2d and writes
the picture, its vertical and horizontal edge maps and the gradient magnitude side by side to a PNG.

    pip install scikit-image matplotlib      # matplotlib optional: Pillow or imageio also work
    python examples/edge_detection.py --kind scharr --out edges.png
"""

from __future__ import annotations

import argparse

import numpy as np

import cnnfast


def to_uint8(a: np.ndarray, signed: bool) -> np.ndarray:
    """Scale a map to 0..255: signed maps put zero at mid-grey."""
    if signed:
        a = 0.5 + a / (2 * max(np.abs(a).max(), 1e-12))
    else:
        a = a / max(a.max(), 1e-12)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def save_png(path: str, panels: list, titles: list) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        strip = np.concatenate([np.pad(p, ((0, 0), (0, 8)), constant_values=255) for p in panels], axis=1)
        try:
            from PIL import Image

            Image.fromarray(strip).save(path)
        except ImportError:
            import imageio.v3 as iio  # scikit-image depends on imageio

            iio.imwrite(path, strip)
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4))
    for ax, panel, title in zip(axes, panels, titles):
        ax.imshow(panel, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(cnnfast.filters.FILTERS), default="sobel")
    parser.add_argument("--out", default="edges.png")
    args = parser.parse_args()
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("this example needs scikit-image: pip install scikit-image") from None

    image = data.camera()  # 512x512 uint8 grayscale photograph
    edges = cnnfast.filters.detect_edges(image, kind=args.kind)
    panels = [image, to_uint8(edges.vertical, True), to_uint8(edges.horizontal, True), to_uint8(edges.magnitude, False)]
    titles = ["camera", f"{args.kind}: vertical edges", f"{args.kind}: horizontal edges", "magnitude"]
    save_png(args.out, panels, titles)
    print(f"wrote {args.out} ({image.shape[0]}x{image.shape[1]}, {args.kind} filters)")


if __name__ == "__main__":
    main()
