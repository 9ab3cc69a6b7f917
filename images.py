"""Image files: reading the user's pictures and writing the upscaled ones back with everything they carry.

:func:`read_picture` turns an image file into a :class:`Picture`: its frames as RGB arrays (8 bits, or 16
where the file has 16), the transparency of each (alpha channel, palette transparency and tRNS colour keys
all become alpha), whether it is grey, frame durations and loop count, and its metadata as whole blocks by
kind (:data:`KINDS`: ICC profile, EXIF, XMP, IPTC, DPI, PNG text and colour chunks, comment), the rotation
EXIF or XMP asks for applied to the pixels and the tag reset. :func:`write_picture` writes upscaled frames
back, atomically, in one of the :data:`FORMATS`: one :class:`Format` record each says what the format holds
and how it is saved; the blocks it holds are written, the pixel size in EXIF and XMP set to the output's,
and the others named in a note. Transparency goes into a format without it flattened onto a background.
Nothing here knows about the network.

Pillow reads and writes the pixels, ICC profiles, DPI, PNG chunks and comments, except 16-bit colour, which
it reduces to 8 bits: 16-bit PNGs are read and written with pypng, 16-bit TIFFs with tifffile. EXIF, XMP and
IPTC are read and written with exiv2 (python-exiv2), which copies them between formats whole (maker notes
included) and writes them into the file the encoder made; Pillow writes IPTC into no format and XMP only
into JPEG and WebP.
"""
import io
import logging
import os
import threading
import warnings
import zlib
from dataclasses import dataclass, field, replace

import exiv2
import numpy as np
import png
from PIL import Image, ImageColor, ImageSequence, PngImagePlugin

from utils import UserError, atomic_write

exiv2.XmpParser.initialize()  # once, before threads read and write XMP: starting the XMP toolkit is not thread-safe
exiv2.LogMsg.setLevel(exiv2.LogMsg.Level.error)  # not its warnings about odd tags it reads past


class _Exiv2Said(logging.Handler):
    """What exiv2 says of an error it reads or writes past (a directory it skips...), which it logs to the
    "exiv2" logger instead of raising: kept by thread, for the note on the file, not printed."""

    def __init__(self):
        super().__init__()
        self.said = threading.local()

    def emit(self, record):
        self.said.__dict__.setdefault("lines", []).append(record.getMessage())

    def take(self):
        """What was said in this thread since the last take."""
        lines, self.said.lines = getattr(self.said, "lines", []), []
        return lines


EXIV2_SAID = _Exiv2Said()
logging.getLogger("exiv2").addHandler(EXIV2_SAID)
logging.getLogger("exiv2").propagate = False

# What the folder scan takes, and what may be named directly: the formats Pillow reads that hold photos
# and graphics (the same list for both, so that a file is never taken one way and skipped the other).
IMAGE_EXTENSIONS = (".png", ".apng", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
QUALITY = 95  # JPEG and WebP: high, as upscaling adds detail that a low quality would blur away again
WHITE = (255, 255, 255)  # the background transparency is flattened onto by default, as image editors do
EXIF_ORIENTATION = 0x0112
TIFF_X_RESOLUTION, TIFF_RESOLUTION_UNIT = 0x011A, 0x0128  # unit 1: none, 2: inch (the default), 3: centimetre

# The metadata of a picture, by kind: its key in Picture.info, which is also the Format field saying whether
# a format holds it, and its name in notes. EXIF, XMP and IPTC are exiv2's containers, which exiv2 writes
# into the file the encoder made; the others are bytes and values the encoder writes.
KINDS = {"icc": "ICC profile", "exif": "EXIF", "xmp": "XMP", "iptc": "IPTC", "dpi": "DPI", "text": "PNG text",
         "colour": "PNG colour chunks", "comment": "comment"}
EXIV2_SETTERS = {"exif": "setExifData", "xmp": "setXmpData", "iptc": "setIptcData"}
PNG_COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB", b"cICP")  # the ones Pillow writes from a PngInfo
# PNG text chunks that hold other kinds (written by exiv2 as their own): not PNG text
PNG_TEXT_OF_OTHER_KINDS = ("XML:com.adobe.xmp", "Raw profile type exif", "Raw profile type APP1",
                           "Raw profile type iptc", "Raw profile type xmp")
# A TIFF file's own tags (size, strips, compression, other pages...) are part of its EXIF for exiv2: stale in
# an output, they are dropped from a TIFF's EXIF, by exiv2's section of the tag and by name for those that
# are other kinds (ICC profile, XMP, IPTC) or hold other images (sub-IFDs, Photoshop's resources).
TIFF_LAYOUT_SECTIONS = ("ImageStructure", "RecordingOffset")
TIFF_LAYOUT_TAGS = ("ColorMap", "YCbCrCoefficients", "ReferenceBlackWhite", "SubIFDs", "InterColorProfile",
                    "XMLPacket", "IPTCNAA", "ImageResources")
# Where the pixel size is told: set to the output's where the input has them
SIZE_TAGS = {"Exif.Photo.PixelXDimension": 1, "Exif.Photo.PixelYDimension": 0, "Exif.Image.ImageWidth": 1,
             "Exif.Image.ImageLength": 0, "Xmp.exif.PixelXDimension": 1, "Xmp.exif.PixelYDimension": 0,
             "Xmp.tiff.ImageWidth": 1, "Xmp.tiff.ImageLength": 0}
BAND = 256  # rows flattened at a time: bounds the temporary arrays of a large picture


@dataclass(frozen=True)
class Format:
    """An output format: its ``name`` (for --format), Pillow's name for it, its file ``extensions`` (the
    first is written, all are recognised, and their names without the dot are --format aliases), whether it
    holds several ``frames``, its ``transparency`` ("alpha": an alpha channel; "binary": each pixel shown or
    not, as GIF; "none"), the metadata :data:`KINDS` it holds (as written here, measured in docs/files.md),
    ``options``: the Pillow save options for a --quality, and ``write16``: the writer of 16-bit colour, for a
    format that holds it (Pillow does not write it)."""
    name: str
    pillow: str
    extensions: tuple
    frames: bool = False
    transparency: str = "alpha"
    icc: bool = False
    exif: bool = False
    xmp: bool = False
    iptc: bool = False
    dpi: bool = False
    text: bool = False
    colour: bool = False
    comment: bool = False
    options: object = lambda quality: {}
    write16: object = None

    @property
    def sixteen_bit(self):
        return self.write16 is not None


FORMATS = {f.name: f for f in [
    # zlib level 1: 16% larger than Pillow's level 6 and 4.3x faster to write (README). IPTC goes where exiv2
    # and exiftool put it, a "Raw profile type iptc" text chunk; the comment becomes a "Comment" text chunk.
    Format("png", "PNG", (".png", ".apng"), frames=True, icc=True, exif=True, xmp=True, iptc=True, dpi=True,
           text=True, colour=True, comment=True, options=lambda quality: {"compress_level": 1},
           write16=lambda picture, kept, path: _write_png16(picture, kept, path)),
    # subsampling 0 is 4:4:4 (full-resolution colour), 2 is 4:2:0
    Format("jpeg", "JPEG", (".jpg", ".jpeg"), transparency="none", icc=True, exif=True, xmp=True, iptc=True,
           dpi=True, comment=True,
           options=lambda quality: {"quality": quality, "subsampling": 0 if quality >= 90 else 2}),
    Format("webp", "WEBP", (".webp",), frames=True, icc=True, exif=True, xmp=True,
           options=lambda quality: {"quality": quality, "lossless": quality == 100, "method": 4}),
    Format("tiff", "TIFF", (".tiff", ".tif"), icc=True, exif=True, xmp=True, iptc=True, dpi=True,
           write16=lambda picture, kept, path: _write_tiff16(picture, kept, path)),
    Format("gif", "GIF", (".gif",), frames=True, transparency="binary", comment=True),
    Format("bmp", "BMP", (".bmp",), transparency="none", dpi=True),
]}
FORMAT_NAMES = {**{e[1:]: f.name for f in FORMATS.values() for e in f.extensions}, **{n: n for n in FORMATS}}


def parse_colour(text):
    """The (r, g, b) of a colour given as a name Pillow knows ("white", "black", "grey"...), "#rrggbb" or
    "r,g,b" (0-255 each); ValueError for anything else, or a colour with transparency."""
    parts = text.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() for p in parts):
        rgb = tuple(int(p) for p in parts)
        if max(rgb) > 255:
            raise ValueError(f"{text!r}: each of r,g,b goes from 0 to 255")
        return rgb
    try:
        rgb = ImageColor.getrgb(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a colour: give a name (white, black...), #rrggbb or r,g,b") from None
    if len(rgb) == 4:
        raise ValueError(f"{text!r}: a background is opaque; give #rrggbb or r,g,b")
    return rgb


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
    to write back, by kind (:data:`KINDS`): ``icc`` (bytes), ``exif``, ``xmp`` and ``iptc`` (exiv2's
    ExifData, XmpData and IptcData: the rotation reset, as it is applied to the frames), ``dpi`` ((x, y)),
    ``text`` ({keyword: text} of PNG text chunks), ``colour`` ({chunk type: bytes} of PNG colour chunks),
    ``comment`` (bytes); ``notes``: what reading it could not keep, one line each."""
    frames: list
    alphas: list
    gray: bool = False
    bits: int = 8
    durations: list = None
    loop: int = None
    info: dict = field(default_factory=dict)
    notes: tuple = ()

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


def _metadata(im, path):
    """(The metadata of ``im``, opened from ``path``, to write back, by kind; notes on what cannot be)."""
    info = {}
    if im.info.get("icc_profile"):  # a CMYK picture's pixels become sRGB (:func:`_cmyk_to_srgb`)
        info["icc"] = _srgb_profile() if im.mode == "CMYK" else im.info["icc_profile"]
    if "dpi" in im.info and _has_dpi(im):
        info["dpi"] = tuple(float(v) for v in im.info["dpi"])
    if im.format == "PNG":
        info["text"] = {k: v for k, v in im.text.items() if k not in PNG_TEXT_OF_OTHER_KINDS}
        info["colour"] = _png_colour(path)
    if isinstance(im.info.get("comment"), bytes):  # JPEG and GIF; exiv2 ends a JPEG's with a NUL
        info["comment"] = im.info["comment"].rstrip(b"\0")
    blocks, notes = _exiv2_blocks(path, im.format == "TIFF")
    info.update(blocks)
    return {k: v for k, v in info.items() if len(v)}, notes


def _has_dpi(im):
    """Whether the DPI Pillow reports for ``im`` is the file's: Pillow reports 1 dpi for a TIFF with no
    resolution, takes a resolution whose unit is "none" for dots per inch, and makes up 72 dpi for a JPEG
    whose EXIF has no resolution. A JFIF unit of 1 or 2 (inch, cm) is one, else the EXIF's or TIFF's unit."""
    if im.format not in ("TIFF", "JPEG", "MPO") or im.info.get("jfif_unit") in (1, 2):
        return True
    tags = im.getexif()
    return TIFF_X_RESOLUTION in tags and tags.get(TIFF_RESOLUTION_UNIT, 2) in (2, 3)


def _png_colour(path):
    """{chunk type: data} of the colour chunks (gAMA, cHRM, sRGB, cICP) of the PNG file ``path``, as they
    are (read with pypng; they come before the image data)."""
    reader = png.Reader(filename=path)
    found = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a checksum that does not match: Pillow read the file all the same
            while True:
                kind, data = reader.chunk(lenient=True)
                if kind in (b"IDAT", b"IEND"):
                    return found
                if kind in PNG_COLOUR_CHUNKS:
                    found[kind.decode()] = data
    except png.Error:
        return found
    finally:
        reader.file.close()


def _exiv2_blocks(path, tiff):
    """({"exif": ExifData, "xmp": XmpData, "iptc": IptcData} of the file ``path``, read by exiv2, with the
    rotation reset, the thumbnail dropped (a small copy of the input's pixels, not rotated), and for a
    ``tiff`` the file's own layout; a one-line note, in a tuple, where they cannot be read)."""
    EXIV2_SAID.take()
    try:
        image = exiv2.ImageFactory.open(path)
        image.readMetadata()
    except exiv2.Exiv2Error as e:
        if e.code == exiv2.ErrorCode.kerFileContainsUnknownImageType:  # PPM, PGM: they hold none
            return {}, ()
        return {}, (f"its EXIF, XMP and IPTC could not be read ({e.message}): not kept",)
    said = EXIV2_SAID.take()
    notes = (f"part of its EXIF, XMP or IPTC could not be read ({'; '.join(said)}): that part is not kept",) \
        if said else ()
    exif, xmp = image.exifData(), image.xmpData()
    exiv2.ExifThumb(exif).erase()
    if tiff:
        for key in [d.key() for d in exif if _tiff_own(d)]:
            del exif[key]
    if "Exif.Image.Orientation" in exif:
        exif["Exif.Image.Orientation"] = exiv2.UShortValue(1)
    if "Xmp.tiff.Orientation" in xmp:
        xmp["Xmp.tiff.Orientation"] = "1"
    return {"exif": exif, "xmp": xmp, "iptc": image.iptcData()}, notes


def _tiff_own(datum):
    """Whether the EXIF ``datum`` of a TIFF file tells of the file itself (its layout, other images in it,
    the blocks of other kinds), not of the picture."""
    group = datum.groupName()
    if group != "Image":
        return not (group in ("Photo", "GPSInfo", "Iop") or exiv2.ExifTags.isMakerGroup(group))
    section = exiv2.ExifTags.sectionName(exiv2.ExifKey(datum.key()))
    return section in TIFF_LAYOUT_SECTIONS or datum.tagName() in TIFF_LAYOUT_TAGS


def _decode(im, path):
    orientation = im.getexif().get(EXIF_ORIENTATION, 1)  # Pillow's reading takes XMP's tiff:Orientation too
    info, notes = _metadata(im, path)
    if im.format in ("PNG", "TIFF") and _sixteen_bit_colour(im, path):
        frame, alpha, gray = _read_16bit(path, im.format)
        frame, alpha = _orient(frame, orientation), None if alpha is None else _orient(alpha, orientation)
        return Picture([frame], [alpha], gray=gray, bits=16, info=info, notes=notes)
    if im.mode in ("I", "F", "I;32", "I;32B", "I;32L", "F;32", "F;32B"):
        raise UserError(f"cannot upscale {path}: its pixels are {'32-bit integers' if im.mode.startswith('I') else 'floats'} "
                        f"of unknown range; convert it to 8 or 16 bits first")
    if im.format == "TIFF":
        orientation = 1  # Pillow turns a TIFF's pixels itself as it loads them (16-bit ones, read above, it does not)
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
                   loop=im.info.get("loop", 0) if animated else None, info=info, notes=notes)


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


def write_picture(picture, path, fmt, quality=QUALITY, background=WHITE):
    """Write ``picture`` (upscaled frames and alphas, the input's metadata) to ``path`` in the :class:`Format`
    ``fmt``, atomically: the metadata the format holds, its transparency flattened onto ``background``
    ((r, g, b), 0-255) where the format has none. Returns notes, one line each, on what was not kept or was
    flattened. 16-bit pictures stay 16-bit in the formats that hold 16 bits and are rounded to 8 bits in the
    others."""
    check_writable(picture, fmt, path)
    kept, notes = _kept(picture, fmt)
    if picture.alphas[0] is not None and fmt.transparency != "alpha":
        picture, flattened = _flattened(picture, fmt, background)
        notes += flattened
    height, width = picture.frames[0].shape[:2]

    def write(tmp):
        if picture.bits == 16 and fmt.sixteen_bit and not _pillow_holds(picture):
            fmt.write16(picture, kept, tmp)
        else:
            _save(picture, fmt, quality, kept, tmp)
        _embed(tmp, kept, width, height)
    EXIV2_SAID.take()
    try:
        atomic_write(path, write)
    except (OSError, ValueError, exiv2.Exiv2Error) as e:
        raise UserError(f"cannot write {path}: {e}") from None
    said = EXIV2_SAID.take()
    if said:
        notes.append(f"writing its EXIF, XMP or IPTC, exiv2 said: {'; '.join(said)}")
    return list(picture.notes) + notes


def _kept(picture, fmt):
    """(The metadata of ``picture`` that the :class:`Format` ``fmt`` holds, by kind; a note, in a list, naming
    the kinds it cannot hold)."""
    kept = {k: v for k, v in picture.info.items() if getattr(fmt, k)}
    left = [_label(k, picture.info[k]) for k in KINDS if k in picture.info and k not in kept]
    return kept, [f"{fmt.name} cannot hold {', '.join(left)}: not kept"] if left else []


def _label(kind, value):
    """The name of the metadata ``value`` of ``kind`` in a note: PNG chunks with their types and keywords."""
    if kind in ("text", "colour"):
        return f"{KINDS[kind]} ({', '.join(value)})"
    return KINDS[kind]


def _flattened(picture, fmt, background):
    """(``picture`` with its transparency as the :class:`Format` ``fmt`` holds it, flattened onto ``background``;
    a note, in a list, saying so where any pixel changed). A format with none gets every pixel composited;
    GIF, which shows a pixel or not, gets the partly transparent ones composited and those under half opaque
    left out (a matte, as image editors export GIF)."""
    binary = fmt.transparency == "binary"
    top = np.iinfo(picture.alphas[0].dtype).max
    if binary:
        if not any(((a > 0) & (a < top)).any() for a in picture.alphas):
            return picture, []
        alphas = [np.where(a > top // 2, top, 0).astype(a.dtype) for a in picture.alphas]
    elif all(a.min() == top for a in picture.alphas):  # opaque: nothing to flatten
        return replace(picture, alphas=[None] * len(picture.frames)), []
    else:
        alphas = [None] * len(picture.frames)
    frames = [_flatten(f, a, background) for f, a in zip(picture.frames, picture.alphas)]
    colour = "#%02x%02x%02x" % tuple(background)
    note = (f"{fmt.name} shows a pixel or hides it: partly transparent pixels blended onto {colour} (--background), "
            f"those under half opaque hidden" if binary else
            f"{fmt.name} has no transparency: flattened onto {colour} (--background)")
    gray = picture.gray and len(set(background)) == 1
    return replace(picture, frames=frames, alphas=alphas, gray=gray), [note]


def _flatten(rgb, alpha, background):
    """``rgb`` composited over ``background`` by ``alpha``: a * rgb + (1 - a) * background per pixel, a = alpha
    / its maximum, rounded, in the bit depth of ``rgb`` (8 or 16); a band of rows at a time."""
    top = np.iinfo(rgb.dtype).max
    bg = np.array(background, np.int64) * (top // 255)  # the same colour in 16 bits: x 257
    out = np.empty_like(rgb)
    for y in range(0, len(rgb), BAND):
        a = alpha[y:y + BAND, :, None].astype(np.int64)
        out[y:y + BAND] = (rgb[y:y + BAND] * a + bg * (top - a) + top // 2) // top  # never exactly half: top is odd
    return out


def _pillow_holds(picture):
    """16-bit grey without alpha: Pillow writes it whole (mode I;16)."""
    return picture.gray and picture.alphas[0] is None


def _save(picture, fmt, quality, kept, path):
    """Write ``picture`` to ``path`` with Pillow in the :class:`Format` ``fmt`` at ``quality``, with the metadata of
    ``kept`` that the encoder writes."""
    images = [_pil_frame(picture, i, fmt) for i in range(len(picture.frames))]
    options = {**fmt.options(quality), **_encoder_options(fmt, kept)}
    if picture.animated:
        options.update(save_all=True, append_images=images[1:], duration=picture.durations, loop=picture.loop or 0)
        if fmt.name == "gif" and picture.alphas[0] is not None:
            options["disposal"] = 2  # each frame is whole: clear it away, else it shows through the next
    images[0].save(path, format=fmt.pillow, **options)


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
    if alpha is not None:
        im.putalpha(Image.fromarray(alpha))
    return im


def _to_8bit(a):
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _luma(rgb):
    """ITU-R 601 luma as Pillow's RGB -> L conversion computes it, rounded, in the array's range."""
    return np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114])


def _encoder_options(fmt, kept):
    """Pillow's save options for the metadata of ``kept`` that the encoder writes: the ICC profile, the DPI,
    and the comment; in PNG, text and colour chunks, and the comment as a "Comment" text chunk."""
    options = {}
    if "icc" in kept:
        options["icc_profile"] = kept["icc"]
    if "dpi" in kept:
        options["dpi"] = kept["dpi"]
    if fmt.text:
        chunks = _png_info(kept)
        if chunks.chunks:
            options["pnginfo"] = chunks
    elif "comment" in kept:
        options["comment"] = kept["comment"]
    return options


def _png_info(kept):
    """Pillow's PngInfo of the PNG text and colour chunks of ``kept``, and of its comment as "Comment" text."""
    info = PngImagePlugin.PngInfo()
    for kind, data in kept.get("colour", {}).items():
        info.add(kind.encode(), data)
    text = dict(kept.get("text", {}))
    if "comment" in kept and "Comment" not in text:
        try:
            text["Comment"] = kept["comment"].decode("utf-8")
        except UnicodeDecodeError:
            text["Comment"] = kept["comment"].decode("latin-1")
    for k, v in text.items():
        info.add_itxt(k, v) if not v.isascii() else info.add_text(k, v)  # tEXt is Latin-1; iTXt is UTF-8
    return info


def _embed(path, kept, width, height):
    """Write the EXIF, XMP and IPTC of ``kept`` into the image file ``path`` that the encoder wrote, with exiv2,
    keeping what the encoder wrote (ICC profile, JFIF, PNG chunks); the pixel size they tell, where they tell
    it, is set to ``width`` x ``height``."""
    blocks = {k: kept[k] for k in EXIV2_SETTERS if k in kept}
    if not blocks:
        return
    image = exiv2.ImageFactory.open(path)
    image.readMetadata()
    for kind, block in blocks.items():
        getattr(image, EXIV2_SETTERS[kind])(block)
    exif, xmp = image.exifData(), image.xmpData()
    for key, axis in SIZE_TAGS.items():
        size = (height, width)[axis]
        if key.startswith("Exif.") and key in exif:
            exif[key] = size
        elif key.startswith("Xmp.") and key in xmp:
            xmp[key] = str(size)
    image.writeMetadata()


def _samples(picture):
    """The first frame of a 16-bit ``picture`` as (H, W, C) uint16 samples: grey or RGB, then alpha if any."""
    rgb, alpha = picture.frames[0], picture.alphas[0]
    planes = [_luma(rgb)[..., None].astype(np.uint16)] if picture.gray else [rgb]
    if alpha is not None:
        planes.append(alpha[..., None])
    return np.concatenate(planes, -1)


class _PngWriter(png.Writer):
    """pypng's writer, with the ancillary ``chunks`` ((type, data) pairs) given written before the image data."""

    def __init__(self, width, height, chunks=(), **options):
        super().__init__(width, height, **options)
        self.chunks = chunks

    def write_preamble(self, outfile):  # pypng writes the signature and its header chunks here
        super().write_preamble(outfile)
        for kind, data in self.chunks:
            png.write_chunk(outfile, kind, data)


def _write_png16(picture, kept, path):
    """A 16-bit PNG with pypng, with the ICC profile, DPI, text and colour chunks of ``kept``."""
    a = _samples(picture)
    h, w, c = a.shape
    chunks = []
    if "icc" in kept:  # as Pillow writes it; exiv2 would give the profile no name, which PNG forbids
        chunks.append((b"iCCP", b"ICC Profile\0\0" + zlib.compress(kept["icc"])))
    chunks += [(kind, data) for kind, data, *_ in _png_info(kept).chunks]
    ppm = [round(d / 0.0254) for d in kept["dpi"]] if "dpi" in kept else (None, None)
    writer = _PngWriter(w, h, chunks, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=16, compression=1,
                        x_pixels_per_unit=ppm[0], y_pixels_per_unit=ppm[1], unit_is_meter=True)
    with open(path, "wb") as f:
        writer.write_array(f, a.reshape(-1))


def _write_tiff16(picture, kept, path):
    """A 16-bit TIFF with tifffile, with the ICC profile and DPI of ``kept``."""
    import tifffile
    a = _samples(picture)
    a = a[..., 0] if a.shape[-1] == 1 else a
    kw = {"photometric": "minisblack" if picture.gray else "rgb"}
    if picture.alphas[0] is not None:
        kw["extrasamples"] = ["unassalpha"]
    if "icc" in kept:
        kw["iccprofile"] = kept["icc"]
    if "dpi" in kept:
        kw["resolution"], kw["resolutionunit"] = tuple(kept["dpi"]), "INCH"
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
