"""Image files: reading the user's pictures and writing the upscaled ones back with everything they carry.

:func:`read_picture` turns an image file into a :class:`Picture`: its frames as RGB arrays (8 bits, or 16
where the file has 16), the transparency of each (alpha channel, palette transparency and tRNS colour keys
all become alpha), whether it is grey, and the metadata to keep (ICC profile, EXIF with the rotation
applied and its tag reset, DPI, PNG text chunks, frame durations and loop count). :func:`write_picture`
writes upscaled frames back with all of it, atomically, in one of the :data:`FORMATS`: one :class:`Format`
record each says what the format holds and how it is saved. Nothing here knows about the network.

Pillow reads and writes everything except 16-bit colour, which it reduces to 8 bits: 16-bit PNGs are
read and written with pypng, 16-bit TIFFs with tifffile.
"""
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageSequence, PngImagePlugin

from utils import UserError, atomic_write

# What the folder scan takes, and what may be named directly: the formats Pillow reads that hold photos
# and graphics (the same list for both, so that a file is never taken one way and skipped the other).
IMAGE_EXTENSIONS = (".png", ".apng", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
QUALITY = 95  # JPEG and WebP: high, as upscaling adds detail that a low quality would blur away again
EXIF_ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
TIFF_EXIF_TAGS = (0x010F, 0x0110, 0x0132, 0x013B, 0x8298)  # make, model, date and time, artist, copyright
TIFF_X_RESOLUTION, TIFF_RESOLUTION_UNIT = 0x011A, 0x0128  # unit 1: none, 2: inch (the default), 3: centimetre


@dataclass(frozen=True)
class Format:
    """An output format: its ``name`` (for --format), Pillow's name for it, its file ``extensions`` (the
    first is written, all are recognised, and their names without the dot are --format aliases), what it
    holds (several frames, alpha, EXIF, DPI, an ICC profile, PNG text), ``options``: the Pillow save options
    for a --quality, and ``write16``: the writer of 16-bit colour, for a format that holds it (Pillow does not
    write it)."""
    name: str
    pillow: str
    extensions: tuple
    frames: bool = False
    alpha: bool = True
    exif: bool = False
    dpi: bool = False
    icc: bool = True
    text: bool = False
    options: object = lambda quality: {}
    write16: object = None

    @property
    def sixteen_bit(self):
        return self.write16 is not None


FORMATS = {f.name: f for f in [
    # zlib level 1: 16% larger than Pillow's level 6 and 4.3x faster to write (README)
    Format("png", "PNG", (".png", ".apng"), frames=True, exif=True, dpi=True, text=True,
           options=lambda quality: {"compress_level": 1}, write16=lambda picture, path: _write_png16(picture, path)),
    # subsampling 0 is 4:4:4 (full-resolution colour), 2 is 4:2:0
    Format("jpeg", "JPEG", (".jpg", ".jpeg"), alpha=False, exif=True, dpi=True,
           options=lambda quality: {"quality": quality, "subsampling": 0 if quality >= 90 else 2}),
    Format("webp", "WEBP", (".webp",), frames=True, exif=True,
           options=lambda quality: {"quality": quality, "lossless": quality == 100, "method": 4}),
    Format("tiff", "TIFF", (".tiff", ".tif"), exif=True, dpi=True,
           write16=lambda picture, path: _write_tiff16(picture, path)),
    Format("gif", "GIF", (".gif",), frames=True),
    Format("bmp", "BMP", (".bmp",), alpha=False, dpi=True, icc=False),
]}
FORMAT_NAMES = {**{e[1:]: f.name for f in FORMATS.values() for e in f.extensions}, **{n: n for n in FORMATS}}


def format_named(name):
    """The :class:`Format` of a --format name or alias ("jpg", "tif"); UserError for another name."""
    if name not in FORMAT_NAMES:
        raise UserError(f"unknown image format {name!r}; choose from {', '.join(FORMAT_NAMES)}")
    return FORMATS[FORMAT_NAMES[name]]


@dataclass
class Picture:
    """A decoded image file. ``frames``: (H, W, 3) RGB arrays, uint8 or uint16 (``bits``); ``alphas``: an
    (H, W) array of the same type per frame, or None where the file has no transparency; ``gray``: the
    file had no colour; ``durations`` (ms per frame) and ``loop``: for animations; ``info``: the metadata
    to write back (keys ``icc_profile``, ``exif``, ``dpi``, ``text``)."""
    frames: list
    alphas: list
    gray: bool = False
    bits: int = 8
    durations: list = None
    loop: int = None
    info: dict = field(default_factory=dict)

    @property
    def animated(self):
        return len(self.frames) > 1

    def with_frames(self, frames, alphas):
        """This picture with other (upscaled) frames and alphas, the same metadata."""
        return replace(self, frames=frames, alphas=alphas)


def read_picture(path):
    """Decode the image file ``path`` whole; UserError with one line for anything that is not a readable
    image of a kind this tool handles (32-bit and float pixels are refused: their range is unknown)."""
    if not os.path.exists(path):
        raise UserError(f"input image not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"input is a folder, not an image: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's palette-transparency note
            with Image.open(path) as im:
                return _decode(im, path)
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def _metadata(im):
    """What to write back of ``im``'s metadata, the EXIF orientation reset (the caller applies it)."""
    info = {}
    if im.info.get("icc_profile"):  # a CMYK picture's pixels become sRGB (:func:`_cmyk_to_srgb`)
        info["icc_profile"] = _srgb_profile() if im.mode == "CMYK" else im.info["icc_profile"]
    exif = _exif(im)
    if len(exif) or exif.get_ifd(EXIF_IFD):
        exif.pop(EXIF_ORIENTATION, None)  # the rotation is applied to the pixels
        info["exif"] = exif
    if "dpi" in im.info and (im.format != "TIFF" or _tiff_has_dpi(im.getexif())):
        info["dpi"] = tuple(float(v) for v in im.info["dpi"])
    text = getattr(im, "text", None) if im.format == "PNG" else None
    if text:
        info["text"] = dict(text)
    return info


def _tiff_has_dpi(tags):
    """Whether a TIFF's tags give a resolution in dots per inch or centimetre: Pillow reports 1 dpi for a
    TIFF with no resolution, and a resolution whose unit is "none" is no dpi either."""
    return TIFF_X_RESOLUTION in tags and tags.get(TIFF_RESOLUTION_UNIT, 2) in (2, 3)


def _exif(im):
    """The EXIF of ``im``. A TIFF's own tags hold its layout (size, strips, compression), which Pillow gives
    as its EXIF: of those only who and when (make, model, date, artist, copyright) are kept, with the Exif
    and GPS sub-directories."""
    exif = im.getexif()
    if im.format != "TIFF":
        return exif
    kept = Image.Exif()
    for tag in TIFF_EXIF_TAGS:
        if tag in exif:
            kept[tag] = exif[tag]
    for ifd in (EXIF_IFD, GPS_IFD):
        if exif.get_ifd(ifd):
            kept.get_ifd(ifd).update(exif.get_ifd(ifd))
    return kept


def _decode(im, path):
    orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    info = _metadata(im)
    if im.format in ("PNG", "TIFF") and _sixteen_bit_colour(im, path):
        frame, alpha, gray = _read_16bit(path, im.format)
        frame, alpha = _orient(frame, orientation), None if alpha is None else _orient(alpha, orientation)
        return Picture([frame], [alpha], gray=gray, bits=16, info=info)
    if im.mode in ("I", "F", "I;32", "I;32B", "I;32L", "F;32", "F;32B"):
        raise UserError(f"cannot upscale {path}: its pixels are {'32-bit integers' if im.mode.startswith('I') else 'floats'} "
                        f"of unknown range; convert it to 8 or 16 bits first")
    frames, alphas, durations = [], [], []
    gray = im.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L") or (im.mode == "P" and _gray_palette(im))
    for frame in ImageSequence.Iterator(im):
        frame.load()  # WebP sets a frame's duration when it is decoded
        durations.append(int(frame.info.get("duration", 0) or 0))
        rgb, alpha = _frame_arrays(frame)
        frames.append(_orient(rgb, orientation))
        alphas.append(None if alpha is None else _orient(alpha, orientation))
    bits = 16 if frames[0].dtype == np.uint16 else 8
    if any(a is not None for a in alphas):  # frames of one animation all get alpha, opaque where they had none
        alphas = [np.full(f.shape[:2], 255, np.uint8) if a is None else a for f, a in zip(frames, alphas)]
    animated = len(frames) > 1
    return Picture(frames, alphas, gray=gray, bits=bits, durations=durations if animated else None,
                   loop=im.info.get("loop", 0) if animated else None, info=info)


def _orient(a, orientation):
    """Apply an EXIF orientation (1-8) to an (H, W[, C]) array, as ImageOps.exif_transpose does to images."""
    ops = {2: [np.fliplr], 3: [lambda x: np.rot90(x, 2)], 4: [np.flipud], 5: [lambda x: np.rot90(x, -1), np.fliplr],
           6: [lambda x: np.rot90(x, -1)], 7: [lambda x: np.rot90(x, 1), np.fliplr], 8: [lambda x: np.rot90(x, 1)]}
    for op in ops.get(orientation, []):
        a = op(a)
    return np.ascontiguousarray(a)


def _gray_palette(im):
    pal = np.array(im.getpalette() or [0, 0, 0]).reshape(-1, 3)
    return bool((pal == pal[:, :1]).all())


def _srgb_profile():
    from PIL import ImageCms
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _cmyk_to_srgb(im):
    """A CMYK picture in RGB: through its ICC profile into sRGB where it has one (the colours a viewer
    shows), else (no profile, or one that cannot be read) by Pillow's plain formula."""
    from PIL import ImageCms
    icc = im.info.get("icc_profile")
    if icc:
        try:
            return ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                             ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return im.convert("RGB")


def _frame_arrays(frame):
    """(RGB array, alpha array or None) of one Pillow frame; every form of transparency becomes alpha."""
    if frame.mode in ("I;16", "I;16B", "I;16L"):  # 16-bit grey, no alpha (Pillow has no 16-bit LA)
        grey = np.asarray(frame, dtype=np.uint16)
        return np.repeat(grey[..., None], 3, -1), None
    if frame.mode == "CMYK":
        frame = _cmyk_to_srgb(frame)
    if frame.mode == "P" or "transparency" in frame.info:
        frame = frame.convert("RGBA" if ("transparency" in frame.info or frame.mode in ("PA",)) else "RGB")
    if frame.mode in ("1", "L", "LA"):
        frame = frame.convert("LA" if frame.mode == "LA" else "L")
    alpha = np.asarray(frame.getchannel("A")) if frame.mode in ("LA", "RGBA", "PA") else None
    return np.asarray(frame.convert("RGB")), alpha


def _sixteen_bit_colour(im, path):
    """Whether ``im``, opened from ``path``, is a 16-bit PNG or TIFF that Pillow would reduce to 8 bits
    (16-bit colour, or grey with alpha); 16-bit grey without alpha Pillow reads whole (mode I;16)."""
    if im.format == "PNG":
        with open(path, "rb") as f:  # the IHDR's bit depth: after the signature, chunk header, width, height
            return im.mode in ("RGB", "RGBA", "LA") and f.read(25)[24:25] == b"\x10"
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return max(bits) == 16 and im.mode not in ("I;16", "I;16B", "I;16L")


def _read_16bit(path, fmt):
    """(RGB uint16 (H, W, 3), alpha uint16 or None, gray) of a 16-bit PNG (pypng) or TIFF (tifffile)."""
    if fmt == "PNG":
        import png
        width, height, rows, meta = png.Reader(filename=path).asDirect()
        a = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, meta["planes"])
        if meta["bitdepth"] != 16:
            a = (a.astype(np.uint32) * 65535 // (2 ** meta["bitdepth"] - 1)).astype(np.uint16)
    else:
        import tifffile
        a = tifffile.imread(path)
        if a.dtype != np.uint16:
            raise UserError(f"cannot upscale {path}: {a.dtype} TIFF pixels; convert it to 8 or 16 bits first")
        a = a[..., None] if a.ndim == 2 else a
        if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4):
            raise UserError(f"cannot upscale {path}: a TIFF of shape {a.shape} (several pages or samples)")
    gray = a.shape[-1] in (1, 2)
    rgb = np.repeat(a[..., :1], 3, -1) if gray else a[..., :3]
    alpha = a[..., -1] if a.shape[-1] in (2, 4) else None
    return np.ascontiguousarray(rgb), alpha, gray


# --------------------------------------------------------------------------- writing

def output_format(path, fmt=None):
    """The :class:`Format` an output ``path`` is written in: the one named ``fmt``, else by its extension."""
    if fmt:
        return format_named(fmt)
    ext = os.path.splitext(path)[1].lower()
    for f in FORMATS.values():
        if ext in f.extensions:
            return f
    raise UserError(f"cannot tell the image format of output {path} from its extension; "
                    f"use one of {', '.join(e for f in FORMATS.values() for e in f.extensions)}, or --format")


def check_writable(picture, fmt, path):
    """UserError when ``picture`` cannot be written in the :class:`Format` ``fmt`` without losing frames."""
    if picture.animated and not fmt.frames:
        raise UserError(f"{path}: {fmt.name} holds one frame and the input is animated ({len(picture.frames)} "
                        f"frames); write {', '.join(f.name for f in FORMATS.values() if f.frames)}")


def write_picture(picture, path, fmt, quality=QUALITY):
    """Write ``picture`` (upscaled frames and alphas, the input's metadata) to ``path`` in the :class:`Format`
    ``fmt``, atomically; returns ``path``. 16-bit pictures stay 16-bit in the formats that hold 16 bits and are
    rounded to 8 bits in the others."""
    check_writable(picture, fmt, path)
    try:
        if picture.bits == 16 and fmt.sixteen_bit and not _pillow_holds(picture):
            atomic_write(path, lambda tmp: fmt.write16(picture, tmp))
        else:
            images = [_pil_frame(picture, i, fmt) for i in range(len(picture.frames))]
            options = _save_options(picture, fmt, quality)
            if picture.animated:
                options.update(save_all=True, append_images=images[1:], duration=picture.durations,
                               loop=picture.loop or 0)
                if fmt.name == "gif" and picture.alphas[0] is not None:
                    options["disposal"] = 2  # each frame is whole: clear it away, else it shows through the next
            atomic_write(path, lambda tmp: images[0].save(tmp, format=fmt.pillow, **options))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot write {path}: {e}") from None
    return path


def _pillow_holds(picture):
    """16-bit grey without alpha: Pillow writes it whole (mode I;16)."""
    return picture.gray and picture.alphas[0] is None


def _pil_frame(picture, i, fmt):
    """Frame ``i`` of ``picture`` as the Pillow image written in the :class:`Format` ``fmt``."""
    rgb, alpha = picture.frames[i], picture.alphas[i]
    if picture.bits == 16 and not (fmt.sixteen_bit and _pillow_holds(picture)):
        rgb = _to_8bit(rgb)
        alpha = None if alpha is None else _to_8bit(alpha)
    if rgb.dtype == np.uint16:  # 16-bit grey without alpha, kept in 16 bits (PNG, TIFF)
        return Image.fromarray(_luma(rgb).astype(np.uint16))  # mode I;16
    im = Image.fromarray(rgb)
    if picture.gray:
        im = Image.fromarray(_luma(rgb).astype(np.uint8))  # mode L
    if alpha is not None and fmt.alpha:
        im.putalpha(Image.fromarray(alpha))
    return im


def _to_8bit(a):
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _luma(rgb):
    """ITU-R 601 luma as Pillow's RGB -> L conversion computes it, rounded, in the array's range."""
    return np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114])


def _save_options(picture, fmt, quality):
    """Pillow's save options for ``picture`` in the :class:`Format` ``fmt``: its metadata that the format holds,
    and the format's own options at ``quality``."""
    info = picture.info
    options = fmt.options(quality)
    if "icc_profile" in info and fmt.icc:
        options["icc_profile"] = info["icc_profile"]
    if "exif" in info and fmt.exif:
        options["exif"] = _exif_for(info["exif"], picture.frames[0].shape)
    if "dpi" in info and fmt.dpi:
        options["dpi"] = info["dpi"]
    if "text" in info and fmt.text:
        pnginfo = PngImagePlugin.PngInfo()
        for k, v in info["text"].items():
            pnginfo.add_itxt(k, v) if not v.isascii() else pnginfo.add_text(k, v)
        options["pnginfo"] = pnginfo
    return options


def _exif_for(exif, shape):
    """The EXIF bytes to write for an output of ``shape``: the input's, with the Exif IFD's pixel size
    (if it has one) set to the output's."""
    ifd = exif.get_ifd(EXIF_IFD)
    if 0xA002 in ifd or 0xA003 in ifd:
        ifd[0xA002], ifd[0xA003] = shape[1], shape[0]
    return exif.tobytes()


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _samples(picture):
    """The first frame of a 16-bit ``picture`` as (H, W, C) uint16 samples: grey or RGB, then alpha if any."""
    rgb, alpha = picture.frames[0], picture.alphas[0]
    planes = [_luma(rgb)[..., None].astype(np.uint16)] if picture.gray else [rgb]
    if alpha is not None:
        planes.append(alpha[..., None])
    return np.concatenate(planes, -1)


def _write_png16(picture, path):
    """A 16-bit PNG with pypng, then the input's ICC profile, EXIF, DPI and text as PNG chunks."""
    import png
    a = _samples(picture)
    h, w, c = a.shape
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=16, compression=1).write_array(buf, a.reshape(-1))
    info = picture.info
    extra = []
    if "icc_profile" in info:
        extra.append(_png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(info["icc_profile"])))
    if "dpi" in info:
        ppm = [round(d / 0.0254) for d in info["dpi"]]
        extra.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if "exif" in info:
        extra.append(_png_chunk(b"eXIf", _exif_for(info["exif"], a.shape)[6:]))  # no "Exif\0\0" header
    for k, v in info.get("text", {}).items():
        extra.append(_png_chunk(b"iTXt", k.encode("latin-1") + b"\0\0\0\0\0" + v.encode("utf-8")))
    data = buf.getvalue()
    first_after_ihdr = 8 + 25  # signature, then IHDR (4 length + 4 type + 13 data + 4 CRC)
    with open(path, "wb") as f:
        f.write(data[:first_after_ihdr] + b"".join(extra) + data[first_after_ihdr:])


def _write_tiff16(picture, path):
    """A 16-bit TIFF with tifffile, with the input's ICC profile and DPI."""
    import tifffile
    a = _samples(picture)
    a = a[..., 0] if a.shape[-1] == 1 else a
    kw = {"photometric": "minisblack" if picture.gray else "rgb"}
    if picture.alphas[0] is not None:
        kw["extrasamples"] = ["unassalpha"]
    if "icc_profile" in picture.info:
        kw["iccprofile"] = picture.info["icc_profile"]
    if "dpi" in picture.info:
        kw["resolution"], kw["resolutionunit"] = tuple(picture.info["dpi"]), "INCH"
    tifffile.imwrite(path, a, **kw)


# --------------------------------------------------------------------------- pictures in memory (torch.hub)

def picture_from_array(a):
    """A one-frame :class:`Picture` of an image array: (H, W) grey, (H, W, 2) grey and alpha, (H, W, 3) RGB or
    (H, W, 4) RGBA, uint8 or uint16 (16 bits); no metadata. UserError for another shape or type."""
    a = np.asarray(a)
    if a.dtype not in (np.uint8, np.uint16) or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise UserError(f"an image array is (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), uint8 or uint16, "
                        f"not {a.shape} {a.dtype}")
    a = a[..., None] if a.ndim == 2 else a
    gray = a.shape[2] <= 2
    rgb = np.repeat(a[..., :1], 3, -1) if gray else np.ascontiguousarray(a[..., :3])
    alpha = np.ascontiguousarray(a[..., -1]) if a.shape[2] in (2, 4) else None
    return Picture([rgb], [alpha], gray=gray, bits=16 if a.dtype == np.uint16 else 8)


def picture_to_array(picture):
    """The first frame of ``picture`` as the samples a PNG of it holds: (H, W, C) of the picture's type, C = 1
    (grey: the luma of its frame, as written), 2 (grey, alpha), 3 (RGB) or 4 (RGBA)."""
    return _samples(picture).astype(picture.frames[0].dtype)


def picture_from_pil(im):
    """A one-frame :class:`Picture` of a Pillow image in memory, its pixels decoded as :func:`read_picture`
    decodes a file's frame: every form of transparency as alpha, grey kept grey, CMYK into sRGB, 16-bit grey
    (mode I;16) in 16 bits. The pixels are taken as they are (no EXIF rotation) and no metadata is kept;
    UserError for 32-bit and float pixels and for an image of several frames."""
    if getattr(im, "n_frames", 1) > 1:
        raise UserError(f"the image has {im.n_frames} frames; upscale animations with super_resolve.py")
    if im.mode in ("I", "F", "I;32", "I;32B", "I;32L", "F;32", "F;32B"):
        raise UserError(f"cannot upscale a Pillow image of mode {im.mode}: its pixels are of unknown range")
    rgb, alpha = _frame_arrays(im)
    gray = im.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L") or (im.mode == "P" and _gray_palette(im))
    return Picture([rgb], [alpha], gray=gray, bits=16 if rgb.dtype == np.uint16 else 8)


def picture_to_pil(picture):
    """The first frame of ``picture`` as the Pillow image :func:`write_picture` writes as PNG: RGB, RGBA, L, LA
    or, for 16-bit grey, I;16 (Pillow holds no 16-bit colour: that is rounded to 8 bits, as PNG's writer
    through Pillow would; :func:`picture_to_array` keeps 16 bits)."""
    return _pil_frame(picture, 0, FORMATS["png"])
