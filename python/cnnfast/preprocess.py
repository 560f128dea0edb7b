"""Images in, model input out: HWC images (as Pillow, imageio or OpenCV give them) to normalized NCHW float32.

The default pipeline is the ImageNet one of torchvision's classification models: resize the shorter side to
256, crop the centre 224x224, scale to [0, 1], subtract the mean and divide by the standard deviation of
each channel. Resizing uses Pillow when it is installed and a NumPy implementation of the same
(antialiased bilinear) filter otherwise. OpenCV gives BGR images: reverse the channels (``img[..., ::-1]``)
first.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _size_pair(size, what: str) -> tuple[int, int]:
    pair = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def to_float(image) -> np.ndarray:
    """An HWC (or HW) image as float32 in [0, 1]: integers are divided by their type's maximum, floats are
    taken as already in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == np.bool_:
        return image.astype(np.float32)
    if image.dtype.kind in "ui":
        return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    if image.dtype.kind == "f":
        return image.astype(np.float32, copy=False)
    raise TypeError(f"an image must be an integer or floating-point array, got dtype {image.dtype}")


def _as_hwc(image, channels: int) -> np.ndarray:
    image = to_float(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"an image must be HW or HWC, got shape {image.shape}")
    c = image.shape[2]
    if c == 4 and channels == 3:
        image = image[:, :, :3]  # RGBA: drop alpha
    elif c == 1 and channels != 1:
        image = np.repeat(image, channels, axis=2)
    elif c != channels:
        raise ValueError(f"an image with {c} channels cannot be made into {channels} (shape {image.shape})")
    return image


def _filter_matrix(n_in: int, n_out: int) -> np.ndarray:
    # (n_out, n_in) weights of a triangle filter widened by the downscale factor (antialiasing), pixel
    # centres at i + 0.5, renormalized at the borders: Pillow's BILINEAR.
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    d = (np.arange(n_in)[None, :] + 0.5 - centres[:, None]) / support
    w = np.maximum(0.0, 1.0 - np.abs(d))
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _resize_numpy(image: np.ndarray, h: int, w: int) -> np.ndarray:
    ih, iw, c = image.shape
    rows = _filter_matrix(ih, h) @ image.reshape(ih, iw * c)  # (h, iw * c)
    rows = rows.reshape(h, iw, c).transpose(1, 0, 2).reshape(iw, h * c)
    out = _filter_matrix(iw, w) @ rows  # (w, h * c)
    return np.ascontiguousarray(out.reshape(w, h, c).transpose(1, 0, 2))


def _resize_pillow(image: np.ndarray, h: int, w: int, Image) -> np.ndarray:
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, i])).resize((w, h), Image.BILINEAR))
              for i in range(image.shape[2])]
    return np.stack(planes, axis=2)


def resize(image, size, backend: str | None = None) -> np.ndarray:
    """Resize an HWC float image. ``size``: an int resizes the shorter side to it, keeping the aspect ratio
    (as torchvision's Resize); a pair (height, width) gives the exact size. ``backend``: 'pillow', 'numpy'
    or None (Pillow when installed)."""
    image = np.asarray(image, dtype=np.float32)
    ih, iw = image.shape[:2]
    if isinstance(size, (tuple, list)):
        h, w = _size_pair(size, "resize()")
    else:
        s = _size_pair(size, "resize()")[0]
        h, w = (s, max(1, int(s * iw / ih))) if ih <= iw else (max(1, int(s * ih / iw)), s)
    if (h, w) == (ih, iw):
        return image
    if backend not in (None, "pillow", "numpy"):
        raise ValueError(f"resize(): backend must be 'pillow', 'numpy' or None, got {backend!r}")
    if backend != "numpy":
        try:
            from PIL import Image
        except ImportError:
            if backend == "pillow":
                raise ImportError("resize(backend='pillow') needs Pillow: pip install pillow") from None
        else:
            return _resize_pillow(image, h, w, Image)
    return _resize_numpy(image, h, w)


def center_crop(image, size) -> np.ndarray:
    """The central (height, width) region of an HWC image (``size`` an int for a square)."""
    h, w = _size_pair(size, "center_crop()")
    ih, iw = image.shape[:2]
    if h > ih or w > iw:
        raise ValueError(f"center_crop(): cannot crop {h}x{w} from an image of {ih}x{iw}; resize it first")
    top, left = int(round((ih - h) / 2.0)), int(round((iw - w) / 2.0))
    return image[top:top + h, left:left + w]


def prepare(images, size=224, resize_to=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
            backend: str | None = None) -> np.ndarray:
    """Images to a normalized float32 NCHW batch.

    ``images``: one HW or HWC image, an NHWC array, or a list of images (sizes may differ). Integer images
    are scaled to [0, 1] by their type's maximum; grayscale is repeated to the channels of ``mean``; an
    alpha channel is dropped. Each image is resized (``resize_to``: shorter side, or (h, w); None to skip),
    centre-cropped to ``size`` (None to skip) and normalized with ``mean`` / ``std`` (per channel).
    """
    mean = np.asarray(mean, np.float32).reshape(-1)
    std = np.asarray(std, np.float32).reshape(-1)
    if mean.shape != std.shape:
        raise ValueError(f"prepare(): mean and std must have the same length, got {mean.size} and {std.size}")
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]
    elif isinstance(images, np.ndarray) and images.ndim != 4:
        raise ValueError(f"prepare(): expected an HW or HWC image, an NHWC batch or a list, got shape {images.shape}")
    out = []
    for image in images:
        x = _as_hwc(image, mean.size)
        if resize_to is not None:
            x = resize(x, resize_to, backend)
        if size is not None:
            x = center_crop(x, size)
        out.append(((x - mean) / std).transpose(2, 0, 1))
    if not out:
        h, w = _size_pair(size, "prepare()") if size is not None else (0, 0)
        return np.zeros((0, mean.size, h, w), np.float32)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ValueError(f"prepare(): images end up with different sizes {sorted(shapes)}; give a crop size")
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)
