"""Training and test data: LR/HR pairs built from image folders, stored as 8-bit HDF5 files.

The recipe is the classic one of Dong et al. (2016): the HR image is cropped to a multiple of the
scale (2, 3 or 4; 3 is the assignment's), the LR input is that image bicubic-downscaled by the scale
and bicubic-upscaled back (Pillow's bicubic), so input and target have the same size. Each file
records its scale, and readers refuse a file of another scale. Training pairs are 33x33 patches cut at stride 14
(21,884 of them from T91); ``--scales`` adds down-scaled copies of each training image first, as
FSRCNN (Dong et al., ECCV 2016) does, and ``--stride`` cuts patches closer together. Test images
are kept whole. Everything is stored as uint8 (H, W, 3):
exact, and a quarter of the size of float32.

Run on its own to build a file:
    python datasets.py FOLDER OUT.h5 --kind train|test [--scale 3] [--scales 1,0.9] [--stride 14]
"""
import sys

try:  # run as a command, a Ctrl-C while torch loads ends in one line, as at any other moment
    import argparse
    import os

    import h5py
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    from utils import HelpFormatter, Parser, UserError, atomic_write, positive_int
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

SCALE = 3  # the assignment's upscaling factor, the default everywhere
SCALES = (2, 3, 4)  # the factors Dong et al. (2016) report
PATCH_SIZE = 33
STRIDE = 14
SSIM_WINDOW = 11  # pixels a side of utils.ssim's Gaussian window: a test image must hold one after shaving
IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm")


def list_images(folder):
    """Sorted image files of ``folder``; UserError when there are none."""
    if not os.path.isdir(folder):
        raise UserError(f"image folder not found: {folder}")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
    return [os.path.join(folder, f) for f in files]


def load_rgb(path):
    """An image file as an RGB PIL image, EXIF rotation applied."""
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def bicubic_resize(img, size):
    """Resize a PIL image to ``size`` = (W, H) with Pillow's bicubic filter."""
    return img.resize(size, Image.BICUBIC)


def make_pair(hr, scale=SCALE):
    """(LR, HR) uint8 (H, W, 3) arrays from an RGB PIL image: HR cropped to a multiple of ``scale``,
    LR = HR bicubic-downscaled by ``scale`` then bicubic-upscaled to the HR size."""
    w, h = (hr.width // scale) * scale, (hr.height // scale) * scale
    if w == 0 or h == 0:
        raise UserError(f"image of {hr.width}x{hr.height} is smaller than the scale {scale}")
    hr = hr.crop((0, 0, w, h))
    lr = bicubic_resize(bicubic_resize(hr, (w // scale, h // scale)), (w, h))
    return np.array(lr), np.array(hr)


def extract_patches(img, size=PATCH_SIZE, stride=STRIDE):
    """All ``size`` x ``size`` patches of an (H, W, C) array at ``stride``, row by row: (N, size, size, C)."""
    h, w = img.shape[:2]
    return np.stack([img[y:y + size, x:x + size]
                     for y in range(0, h - size + 1, stride)
                     for x in range(0, w - size + 1, stride)]) if h >= size and w >= size \
        else np.empty((0, size, size, img.shape[2]), img.dtype)


def rescaled(img, factor):
    """``img`` bicubic-resized by ``factor`` (each side rounded, at least 1 pixel); itself at 1."""
    if factor == 1:
        return img
    return bicubic_resize(img, (max(1, round(img.width * factor)), max(1, round(img.height * factor))))


def build_train_arrays(folder, scale=SCALE, size=PATCH_SIZE, stride=STRIDE, scales=(1.0,)):
    """Patch pairs of every image in ``folder``, and of its copies resized by each factor of
    ``scales`` (1 = the image itself): (lr, hr), each uint8 (N, size, size, 3)."""
    lrs, hrs = [], []
    for path in list_images(folder):
        img = load_rgb(path)
        for factor in scales:
            lr, hr = make_pair(rescaled(img, factor), scale)
            lrs.append(extract_patches(lr, size, stride))
            hrs.append(extract_patches(hr, size, stride))
    lr, hr = np.concatenate(lrs), np.concatenate(hrs)
    if len(lr) == 0:
        raise UserError(f"the images in {folder} are all smaller than one {size}x{size} patch")
    return lr, hr


def build_test_images(folder, scale=SCALE):
    """Whole-image pairs of every image in ``folder``: list of (name, lr, hr), uint8 (H, W, 3). An image too
    small to score (SSIM's 11-pixel window must fit once ``scale`` border pixels are shaved) is left out,
    with a line on stderr saying so; a folder of such images only is a UserError."""
    images, side = [], SSIM_WINDOW + 2 * scale
    for path in list_images(folder):
        img = load_rgb(path)
        if min(img.width, img.height) // scale * scale < side:
            print(f"skipped {path}: {img.width}x{img.height} is too small to score at x{scale} (at least {side} "
                  f"pixels a side)", file=sys.stderr)
            continue
        images.append((os.path.splitext(os.path.basename(path))[0], *make_pair(img, scale)))
    if not images:
        raise UserError(f"no image in {folder} is large enough to score at x{scale} (at least {side} pixels a side)")
    return images


def _write_h5(path, fill):
    """Create the HDF5 file ``path`` atomically, ``fill(f)`` writing its contents."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            fill(f)
    atomic_write(path, write)


def write_train_h5(folder, path, scale=SCALE, size=PATCH_SIZE, stride=STRIDE, scales=(1.0,)):
    """Build the training patches of ``folder`` (see :func:`build_train_arrays`) into the HDF5 file
    ``path``; returns the patch count."""
    lr, hr = build_train_arrays(folder, scale, size, stride, scales)

    def fill(f):
        f.attrs.update(kind="train", scale=scale, patch_size=size, stride=stride, scales=list(scales))
        f.create_dataset("lr", data=lr)
        f.create_dataset("hr", data=hr)
    _write_h5(path, fill)
    return len(lr)


def write_test_h5(folder, path, scale=SCALE):
    """Build the whole-image test pairs of ``folder`` into the HDF5 file ``path``; returns the image count."""
    images = build_test_images(folder, scale)

    def fill(f):
        f.attrs.update(kind="test", scale=scale)
        for name, lr, hr in images:
            g = f.create_group(name)
            g.create_dataset("lr", data=lr)
            g.create_dataset("hr", data=hr)
    _write_h5(path, fill)
    return len(images)


def default_data(kind, scale):
    """(HDF5 file, image folder it is built from) of the default training or test set at ``scale``."""
    folder = "data/T91" if kind == "train" else "data/Set5"
    return f"{folder}_x{scale}_{kind}.h5", folder


def resolve_data(path, kind, scale):
    """The data path to read: ``path``, or when None the default file of ``kind`` ("train" or "test")
    at ``scale``; the default file is built from its image folder on first use (and again if removed)."""
    file, folder = default_data(kind, scale)
    if path is not None and path != file:
        return path
    if not os.path.exists(file):
        if not os.path.isdir(folder):
            raise UserError(f"no data: {file} does not exist and there is no {folder} to build it from; "
                            f"the repository ships {folder}: restore it with `git checkout -- {folder}`, "
                            f"or pass a folder or .h5 file")
        print(f"building {file} from {folder} ...", flush=True)
        (write_train_h5 if kind == "train" else write_test_h5)(folder, file, scale)
    return file


def _open_h5(path, kind, scale):
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"cannot read HDF5 file {path}: {e}") from None
    found = f.attrs.get("kind")
    if found != kind:
        f.close()
        raise UserError(f"{path} is not a {kind} set of this project (its kind is {found!r})")
    found = int(f.attrs.get("scale", SCALE))
    if found != scale:
        f.close()
        raise UserError(f"{path} holds x{found} pairs, but x{scale} was asked for; "
                        f"build an x{scale} file with: python datasets.py FOLDER OUT.h5 --kind {kind} --scale {scale}")
    return f


def _check_pair(path, what, lr, hr):
    if lr.shape != hr.shape or lr.dtype != np.uint8 or hr.dtype != np.uint8 or lr.ndim != what.count(",") + 1 \
            or lr.shape[-1] != 3 or lr.size == 0:
        raise UserError(f"{path}: expected uint8 lr/hr of equal shape {what} with C = 3, "
                        f"got {lr.dtype}{tuple(lr.shape)} and {hr.dtype}{tuple(hr.shape)}")


class TrainDataset(torch.utils.data.Dataset):
    """33x33 training patch pairs, held whole in memory as uint8 tensors (N, H, W, 3).

    T91 is 143 MB at 8 bits, so loading it once beats reading HDF5 per sample, and there is no
    file handle to share across worker processes. ``source`` is an HDF5 file written by
    :func:`write_train_h5` or an image folder (patches cut on the fly, nothing written).
    Items are (lr, hr) float32 tensors (3, H, W) in [0, 1]; the trainer indexes ``lr``/``hr`` directly.
    """

    def __init__(self, source, scale=SCALE):
        self.scale = scale
        if os.path.isdir(source):
            lr, hr = build_train_arrays(source, scale)
        elif os.path.isfile(source):
            with _open_h5(source, "train", scale) as f:
                try:
                    lr, hr = f["lr"][()], f["hr"][()]
                except (KeyError, OSError) as e:
                    raise UserError(f"{source}: broken training set ({e})") from None
            _check_pair(source, "(N, H, W, C)", lr, hr)
        else:
            raise UserError(f"training data not found: {source}")
        self.lr, self.hr = torch.from_numpy(lr), torch.from_numpy(hr)

    def __len__(self):
        return len(self.lr)

    def __getitem__(self, i):
        return (self.lr[i].permute(2, 0, 1).float().div(255),
                self.hr[i].permute(2, 0, 1).float().div(255))


class TestDataset(torch.utils.data.Dataset):
    """Whole test images, held in memory: items are (name, lr, hr) with uint8 (H, W, 3) arrays.

    ``source`` is an HDF5 file written by :func:`write_test_h5` or an image folder."""

    def __init__(self, source, scale=SCALE):
        self.scale = scale
        if os.path.isdir(source):
            self.images = build_test_images(source, scale)
        elif os.path.isfile(source):
            self.images = []
            with _open_h5(source, "test", scale) as f:
                for name in f:
                    try:
                        lr, hr = f[name]["lr"][()], f[name]["hr"][()]
                    except (KeyError, OSError, TypeError) as e:
                        raise UserError(f"{source}: broken test image {name!r} ({e})") from None
                    _check_pair(source, "(H, W, C)", lr, hr)
                    self.images.append((name, lr, hr))
            if not self.images:
                raise UserError(f"{source} holds no test images")
        else:
            raise UserError(f"test data not found: {source}")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def _factors(text):
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < v <= 1 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated factors in (0, 1], got {text!r}")
    return values


def build_parser():
    p = Parser(description="Build an HDF5 file of LR/HR pairs from an image folder.", formatter_class=HelpFormatter)
    p.add_argument("folder", help="folder of HR images")
    p.add_argument("output", help="HDF5 file to write")
    p.add_argument("--kind", choices=["train", "test"], required=True,
                   help="train: 33x33 patches; test: whole images")
    p.add_argument("--scale", type=int, choices=SCALES, default=SCALE, help="upscaling factor")
    p.add_argument("--stride", type=positive_int, default=STRIDE, help="train: pixels between patches")
    p.add_argument("--scales", type=_factors, default=(1.0,),
                   help="train: comma-separated resize factors in (0, 1] of each image to cut patches from, "
                        "e.g. 1,0.9,0.8,0.7,0.6 (FSRCNN's down-scaled copies)")
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.kind == "test" and (args.stride != STRIDE or args.scales != (1.0,)):
        p.error("--stride and --scales apply to --kind train only")
    try:
        if os.path.lexists(args.output) and not args.overwrite:
            raise UserError(f"{args.output} exists already; nothing was written. Pass --overwrite to replace it")
        if args.kind == "train":
            n = write_train_h5(args.folder, args.output, args.scale, stride=args.stride, scales=args.scales)
            print(f"wrote {n} patch pairs to {args.output}")
        else:
            n = write_test_h5(args.folder, args.output, args.scale)
            print(f"wrote {n} image pairs to {args.output}")
    except UserError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
