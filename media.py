"""Reading and writing the user's image files: pixels plus everything the file carries that must be
written back with them.

:func:`read_picture` turns an image file into a :class:`Picture`: its frames as RGB arrays (8 bits, or 16
where the file has 16), the transparency of each (alpha channel, palette transparency and tRNS colour keys
all become alpha), whether it is grey, and the metadata to keep (ICC profile, EXIF with the rotation
applied and its tag reset, DPI, PNG text chunks, frame durations and loop count). :func:`write_picture`
writes upscaled frames back with all of it, atomically. Nothing here knows about the network.

Pillow reads and writes everything except 16-bit colour, which it reduces to 8 bits: 16-bit PNGs are
read and written with pypng, 16-bit TIFFs with tifffile.
"""
import fractions
import io
import os
import queue
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageSequence, PngImagePlugin

from utils import UserError, atomic_write

# What the folder scan takes, and what may be named directly: the formats Pillow reads that hold photos
# and graphics (the same list for both, so that a file is never taken one way and skipped the other).
IMAGE_EXTENSIONS = (".png", ".apng", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
# Output formats by --format name: (Pillow format, file extension, holds 16 bits, holds several frames)
FORMATS = {"png": ("PNG", ".png", True, True), "jpeg": ("JPEG", ".jpg", False, False),
           "webp": ("WEBP", ".webp", False, True), "tiff": ("TIFF", ".tiff", True, False),
           "gif": ("GIF", ".gif", False, True), "bmp": ("BMP", ".bmp", False, False)}
QUALITY = 95  # JPEG and WebP: high, as upscaling adds detail that a low quality would blur away again
EXIF_ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
TIFF_EXIF_TAGS = (0x010F, 0x0110, 0x0132, 0x013B, 0x8298)  # make, model, date and time, artist, copyright
TIFF_X_RESOLUTION, TIFF_RESOLUTION_UNIT = 0x011A, 0x0128  # unit 1: none, 2: inch (the default), 3: centimetre


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
    """The --format name an output ``path`` is written in: ``fmt``, else by its extension."""
    if fmt:
        return fmt
    ext = os.path.splitext(path)[1].lower()
    for name, (_, extension, _, _) in FORMATS.items():
        if ext == extension or (ext, name) in ((".jpeg", "jpeg"), (".tif", "tiff"), (".apng", "png")):
            return name
    raise UserError(f"cannot tell the image format of output {path} from its extension; "
                    f"use one of {', '.join(sorted({e for _, e, _, _ in FORMATS.values()}))}, or --format")


def check_writable(picture, fmt, path):
    """UserError when ``picture`` cannot be written in ``fmt`` without losing frames."""
    if picture.animated and not FORMATS[fmt][3]:
        raise UserError(f"{path}: {fmt} holds one frame and the input is animated ({len(picture.frames)} frames); "
                        f"write png, webp or gif")


def write_picture(picture, path, fmt, quality=QUALITY):
    """Write ``picture`` (upscaled frames and alphas, the input's metadata) to ``path`` in ``fmt`` atomically;
    returns ``path``. 16-bit pictures stay 16-bit in PNG and TIFF and are rounded to 8 bits in the others."""
    check_writable(picture, fmt, path)
    pil_format, _, holds_16, _ = FORMATS[fmt]
    try:
        if picture.bits == 16 and holds_16 and not _pillow_holds(picture):
            writer = _write_png16 if fmt == "png" else _write_tiff16
            atomic_write(path, lambda tmp: writer(picture, tmp))
        else:
            images = [_pil_frame(picture, i, fmt) for i in range(len(picture.frames))]
            options = _save_options(picture, fmt, quality)
            if picture.animated:
                options.update(save_all=True, append_images=images[1:], duration=picture.durations,
                               loop=picture.loop or 0)
                if fmt == "gif" and picture.alphas[0] is not None:
                    options["disposal"] = 2  # each frame is whole: clear it away, else it shows through the next
            atomic_write(path, lambda tmp: images[0].save(tmp, format=pil_format, **options))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot write {path}: {e}") from None
    return path


def _pillow_holds(picture):
    """16-bit grey without alpha: Pillow writes it whole (mode I;16)."""
    return picture.gray and picture.alphas[0] is None


def _pil_frame(picture, i, fmt):
    rgb, alpha = picture.frames[i], picture.alphas[i]
    if picture.bits == 16 and not (fmt in ("png", "tiff") and _pillow_holds(picture)):
        rgb = _to_8bit(rgb)
        alpha = None if alpha is None else _to_8bit(alpha)
    if rgb.dtype == np.uint16:  # 16-bit grey without alpha, kept in 16 bits (PNG, TIFF)
        return Image.fromarray(_luma(rgb).astype(np.uint16))  # mode I;16
    im = Image.fromarray(rgb)
    if picture.gray:
        im = Image.fromarray(_luma(rgb).astype(np.uint8))  # mode L
    if alpha is not None and fmt not in ("jpeg", "bmp"):
        im.putalpha(Image.fromarray(alpha))
    return im


def _to_8bit(a):
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _luma(rgb):
    """ITU-R 601 luma as Pillow's RGB -> L conversion computes it, rounded, in the array's range."""
    return np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114])


def _save_options(picture, fmt, quality):
    info = picture.info
    options = {}
    if "icc_profile" in info and fmt != "bmp":
        options["icc_profile"] = info["icc_profile"]
    if "exif" in info and fmt in ("png", "jpeg", "webp", "tiff"):
        options["exif"] = _exif_for(info["exif"], picture.frames[0].shape)
    if "dpi" in info and fmt in ("png", "jpeg", "tiff", "bmp"):
        options["dpi"] = info["dpi"]
    if fmt == "png":
        options["compress_level"] = 1  # 16% larger than Pillow's level 6 and 4.3x faster to write (README)
        if "text" in info:
            pnginfo = PngImagePlugin.PngInfo()
            for k, v in info["text"].items():
                pnginfo.add_itxt(k, v) if not v.isascii() else pnginfo.add_text(k, v)
            options["pnginfo"] = pnginfo
    elif fmt == "jpeg":
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)  # 0 is 4:4:4, 2 is 4:2:0
    elif fmt == "webp":
        options.update(quality=quality, lossless=quality == 100, method=4)
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


def with_frames(picture, frames, alphas):
    """``picture`` with other (upscaled) frames and alphas, the same metadata."""
    return replace(picture, frames=frames, alphas=alphas)


# --------------------------------------------------------------------------- video

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".m4v")
VIDEO_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}
VIDEO_CODEC = "libx264"
CRF = 16  # libx264's constant rate factor: about 18 and below is visually lossless; 0 is lossless in YUV
# libx264/libx265's speed against file size and fidelity: at 4K on a 2-core Xeon "veryfast" took 0.13
# CPU-seconds a frame, "medium" (FFmpeg's default) 0.23; where a GPU runs the network, the encoder is the
# slower stage (README: Speed).
PRESET = "veryfast"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class Encoding:
    """How a video is encoded: ``codec`` (FFmpeg's encoder name; WebM outputs get VP9 for libx264), ``crf``
    (libx264, libx265 and VP9 quality) and ``preset`` (libx264 and libx265 speed)."""
    codec: str = VIDEO_CODEC
    crf: int = CRF
    preset: str = PRESET


def is_video(path):
    return path.lower().endswith(VIDEO_EXTENSIONS)


def upscale_video(src, dst, upscale_frames, scale, encoding=Encoding(), progress=None, batch=1):
    """Upscale every frame of the video ``src`` with ``upscale_frames`` (a list of (H, W, 3) uint8 RGB frames
    -> the list of their (sH, sW, 3) results, up to ``batch`` at a time) into ``dst``, written atomically;
    returns (frames, path).

    Frame-exact: each decoded frame is encoded with its own timestamp in the input's time base, so the
    frame count, the timestamps (variable frame rate included) and the frame rate stay the input's. Every
    other stream (audio, subtitles) is copied packet for packet, not re-encoded, with its tags (language);
    the container's tags and the rotation are kept, and the output is tagged with the colour matrix, range,
    primaries and transfer it was converted with (see :func:`_yuv_matrix`). Output: as ``encoding`` says
    (:class:`Encoding`; ffv1 is lossless in RGB) in 8-bit 4:2:0, which every player opens, except ffv1,
    which keeps RGB exactly.

    Decoding, the network and encoding run at once: decoding and encoding in threads of their own, the
    network in the calling thread, joined by short queues (FFmpeg and torch let go of Python's lock while they work). ``progress(n,
    total)`` is called, from the encoding thread, after each frame written (total: the container's frame
    count, None if unknown)."""
    import av
    ext = os.path.splitext(dst)[1].lower()
    if ext not in VIDEO_CONTAINERS:
        raise UserError(f"cannot write video {dst}: use one of {', '.join(VIDEO_EXTENSIONS)}")
    if ext == ".webm" and encoding.codec == VIDEO_CODEC:
        encoding = replace(encoding, codec="libvpx-vp9")  # WebM holds VP8, VP9 and AV1 only
    try:
        inp = av.open(src)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise UserError(f"cannot read video {src}: {e}") from None
    try:
        if not inp.streams.video:
            raise UserError(f"{src} has no video stream")
        size = inp.streams.video[0].codec_context
        w, h = size.width * scale, size.height * scale
        if encoding.codec != "ffv1" and (w % 2 or h % 2):
            raise UserError(f"cannot upscale video {src}: its frames would be {w}x{h}, and 4:2:0 video needs even "
                            f"sides; --video-codec ffv1 (lossless RGB, in .mkv) takes any size")
        frames = [0]

        def write(tmp):
            with av.open(tmp, "w", format=VIDEO_CONTAINERS[ext]) as out:
                frames[0] = _transcode(inp, out, upscale_frames, scale, encoding, progress, batch)
        atomic_write(dst, write)
        return frames[0], dst
    except (av.error.FFmpegError, ValueError) as e:  # ValueError: a codec unknown or not allowed in the container
        raise UserError(f"cannot upscale video {src} into {dst}: {e}") from None
    finally:
        inp.close()


# AVColorSpace (the stream's tag) -> swscale's name of the same YUV <-> RGB matrix
MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
BT709, SMPTE170M, RANGE_MPEG = 1, 6, 1
# swscale's flags for YUV <-> RGB: bicubic chroma, full-resolution chroma in and out, accurate rounding. A
# flat colour then comes back from 8-bit YUV within 1.2 levels on average (exact arithmetic: 0.8), against
# 1.9 with the default flags (500 random colours, BT.709 full range).
SWS_FLAGS = 0x4 | 0x2000 | 0x4000 | 0x40000


def _yuv_matrix(codec_context):
    """(AVColorSpace tag, swscale name, AVColorRange) of a video stream's YUV <-> RGB conversion: its own
    where tagged; untagged, the matrix players assume for its size (BT.709 from 1280 wide or above 576
    lines, else BT.601) and limited range. Decoding and encoding with the same one, and tagging the output
    with it, keeps every colour where a player showed it in the input, at any output size."""
    cc = codec_context
    space = cc.colorspace if cc.colorspace in MATRICES else BT709 if cc.width >= 1280 or cc.height > 576 else SMPTE170M
    return space, MATRICES[space], cc.color_range or RANGE_MPEG


class _Stage:
    """Iterates ``items`` in a thread of its own, started at once, at most ``depth`` items ahead of whoever
    iterates the stage; what the thread raises is raised there. :meth:`close` (idempotent) stops the thread
    after the item at hand and closes ``items`` in it."""
    END = object()

    def __init__(self, items, depth):
        self.items = items
        self.queue, self.stopped = queue.Queue(depth), threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self):
        try:
            for item in self.items:
                if not _put(self.queue, (item, None), self.stopped):
                    return
            _put(self.queue, (self.END, None), self.stopped)
        except BaseException as e:  # handed to the iterating thread, which raises it
            _put(self.queue, (self.END, e), self.stopped)
        finally:
            getattr(self.items, "close", lambda: None)()

    def __iter__(self):
        while True:
            item, error = self.queue.get()
            if error is not None:
                raise error
            if item is self.END:
                return
            yield item

    def close(self):
        self.stopped.set()
        self.thread.join()


class _Sink:
    """Runs ``consume(items)`` in a thread of its own over the items given to :meth:`put`, at most ``depth``
    behind; :meth:`finish` ends the items and waits for it; what it raises is raised in :meth:`put` or
    :meth:`finish`. :meth:`close` (idempotent) stops it at the item at hand without finishing."""
    END = object()

    class Stopped(Exception):
        pass

    def __init__(self, consume, depth):
        self.queue, self.stopped, self.error = queue.Queue(depth), threading.Event(), None
        self.thread = threading.Thread(target=self._work, args=(consume,), daemon=True)
        self.thread.start()

    def _items(self):
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                item = None
            if self.stopped.is_set():
                raise self.Stopped
            if item is self.END:
                return
            if item is not None:
                yield item

    def _work(self, consume):
        try:
            consume(self._items())
        except self.Stopped:
            pass
        except BaseException as e:  # raised in the thread that puts
            self.error = e

    def put(self, item):
        if not _put(self.queue, item, self.stopped, self.thread) or self.error is not None:
            raise self.error or RuntimeError("the consuming thread stopped")

    def finish(self):
        self.put(self.END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def close(self):
        self.stopped.set()
        self.thread.join()


def _put(q, item, stopped, consumer=None):
    """Put ``item`` into the bounded queue ``q`` unless ``stopped`` is set (or the ``consumer`` thread has
    ended) first; whether it was put."""
    while not stopped.is_set() and (consumer is None or consumer.is_alive()):
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False


def _rgb(frame, matrix):
    """A decoded video frame as an (H, W, 3) uint8 RGB array, converted with ``matrix`` (:func:`_yuv_matrix`)."""
    return frame.to_ndarray(format="rgb24", src_colorspace=matrix[1], src_color_range=matrix[2],
                            interpolation=SWS_FLAGS)


def read_video_frames(path):
    """Yield (timestamp, RGB array) for each frame of the video ``path``, as :func:`upscale_video` reads them."""
    import av
    with av.open(path) as inp:
        matrix = _yuv_matrix(inp.streams.video[0].codec_context)
        for frame in inp.decode(video=0):
            yield frame.pts, _rgb(frame, matrix)


def _decode_video(inp, vin, copies, matrix):
    """The decoding thread: the packets of the copied streams and, in order with them, each video frame as
    (frame, RGB array)."""
    for packet in inp.demux([vin, *(inp.streams[i] for i in copies)]):
        if packet.stream.index in copies:
            if packet.dts is not None:  # None: the demuxer's end-of-stream marker
                yield packet
            continue
        for frame in packet.decode():
            yield frame, _rgb(frame, matrix)


def _network(decoded, upscale_frames, batch):
    """The decoder's items (a :class:`_Stage`) with each frame's RGB array replaced by its upscaled one,
    ``batch`` frames through ``upscale_frames`` at a time (the packets between them keep their place)."""
    waiting = []

    def flush():  # the frames waiting, if any (the last flush may find only packets, or nothing)
        frames = [item[1] for item in waiting if isinstance(item, tuple)]
        results = iter(upscale_frames(frames) if frames else [])
        done = [(item[0], next(results)) if isinstance(item, tuple) else item for item in waiting]
        waiting.clear()
        return done
    try:
        for item in decoded:
            waiting.append(item)
            if sum(isinstance(i, tuple) for i in waiting) == batch:
                yield from flush()
        yield from flush()
    finally:
        decoded.close()  # stops the decoding thread when this one stops early


def _video_stream(out, encoding, width, height, rate, time_base, matrix):
    """The video stream of ``out`` that frames are encoded into (:func:`_yuv_frame`): ``encoding``,
    tagged with ``matrix``'s colour matrix and range (:func:`_yuv_matrix`) unless it keeps RGB."""
    vout = out.add_stream(encoding.codec, rate=rate)
    vout.width, vout.height, vout.time_base = width, height, time_base
    if encoding.codec == "ffv1":
        vout.pix_fmt = "bgr0"
    else:
        vout.pix_fmt = "yuv420p"
        vout.codec_context.colorspace, vout.codec_context.color_range = matrix[0], matrix[2]
    if encoding.codec in ("libx264", "libx265", "libvpx-vp9"):
        vout.options = {"crf": str(encoding.crf), **({"b": "0"} if encoding.codec == "libvpx-vp9" else
                                                     {"preset": encoding.preset})}
    return vout


def _yuv_frame(rgb, vout, matrix):
    """An (H, W, 3) uint8 RGB array as a frame for ``vout`` (:func:`_video_stream`): in 4:2:0 by ``matrix``."""
    import av
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    if vout.pix_fmt != "yuv420p":
        return frame
    return frame.reformat(format="yuv420p", dst_colorspace=matrix[1], dst_color_range=matrix[2],
                          interpolation=SWS_FLAGS)


def encode_video(frames, path, encoding=Encoding(), rate=25):
    """Write (H, W, 3) uint8 RGB ``frames`` as the video ``path``, encoded as :func:`upscale_video` encodes
    (BT.709 limited range); returns its frame count. For measuring the encoder alone."""
    import av
    matrix = (BT709, MATRICES[BT709], RANGE_MPEG)
    with av.open(path, "w") as out:
        count = 0
        for rgb in frames:
            if count == 0:
                vout = _video_stream(out, encoding, rgb.shape[1], rgb.shape[0], rate, fractions.Fraction(1, rate),
                                     matrix)
            frame = _yuv_frame(rgb, vout, matrix)
            frame.pts = count
            out.mux(vout.encode(frame))
            count += 1
        out.mux(vout.encode())
    return count


def _encode(items, out, vout, copies, matrix, progress, total):
    """The encoding thread: encode and write the upscaled frames and copy the other packets, in their
    order; ``progress(frames written, total)`` after each frame."""
    count, early = 0, []  # packets before the first frame: the file's header waits for that frame's rotation
    for item in items:
        if not isinstance(item, tuple):
            item.stream = copies[item.stream.index]
            early.append(item) if early is not None else out.mux(item)
            continue
        frame, rgb = item
        if early is not None:
            if "DISPLAYMATRIX" in frame.side_data:  # the rotation a player applies
                vout.set_display_matrix(struct.unpack("9i", bytes(frame.side_data["DISPLAYMATRIX"])))
            for packet in early:
                out.mux(packet)
            early = None
        new = _yuv_frame(rgb, vout, matrix)
        new.pts, new.time_base = frame.pts, frame.time_base
        out.mux(vout.encode(new))
        count += 1
        if progress:
            progress(count, total)
    for packet in early or ():
        out.mux(packet)
    out.mux(vout.encode())


def _transcode(inp, out, upscale_frames, scale, encoding, progress, batch):
    vin = inp.streams.video[0]
    out.metadata.update(inp.metadata)
    matrix = _yuv_matrix(vin.codec_context)
    vout = _video_stream(out, encoding, vin.codec_context.width * scale, vin.codec_context.height * scale,
                         vin.average_rate or vin.guessed_rate, vin.time_base, matrix)
    if encoding.codec != "ffv1":  # tags only: the pixels keep the input's primaries and transfer
        vout.codec_context.color_primaries = vin.codec_context.color_primaries
        vout.codec_context.color_trc = vin.codec_context.color_trc
    vout.metadata.update(vin.metadata)
    copies = {}
    for s in inp.streams:
        if s is not vin and s.type in ("audio", "subtitle"):
            copies[s.index] = out.add_stream_from_template(s)
            copies[s.index].metadata.update(s.metadata)
    # three threads: decoding, the network (this one: torch computed the same frames at 1.19 frames/s here
    # against 0.96 from a second thread), encoding
    decoded = _Stage(_decode_video(inp, vin, copies, matrix), 2 * batch + 2)
    encoder = _Sink(lambda items: _encode(items, out, vout, copies, matrix, progress, vin.frames or None),
                    2 * batch + 2)
    times = []  # (start, end) of each frame, in seconds
    try:
        for item in _network(decoded, upscale_frames, batch):
            encoder.put(item)
            if isinstance(item, tuple):
                start, duration = item[0].pts or 0, getattr(item[0], "duration", 0) or 0
                times.append((float(start * vin.time_base), float((start + duration) * vin.time_base)))
        encoder.finish()
    finally:  # also on an error or Ctrl-C: both threads stop
        encoder.close()
        decoded.close()
    _check_whole(inp.name, vin, times)
    return len(times)


def _check_whole(name, vin, times):
    """UserError where the frames decoded (their (start, end) ``times``) fall short of what the container
    says: its frame count (MP4, MOV), or the length of its video track (Matroska's DURATION tag) where the
    last frame ends short of it by more than 1.5 times the longest gap between two frames' starts."""
    if vin.frames and len(times) != vin.frames:
        raise UserError(f"{name}: decoded {len(times)} of its {vin.frames} frames (a truncated or damaged file)")
    length = _seconds(vin.metadata.get("DURATION", ""))
    if length and len(times) > 1:
        starts, end = sorted(t for t, _ in times), max(max(times))
        gap = max(b - a for a, b in zip(starts, starts[1:]))
        if length - end > 1.5 * gap:
            raise UserError(f"{name}: its frames stop at {end:.3f} s of its {length:.3f} s (a truncated or damaged "
                            f"file)")


def _seconds(text):
    """'HH:MM:SS.fraction' in seconds; None for anything else."""
    try:
        h, m, sec = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None
