"""Video files: every frame through an upscaler, and everything else of the file kept, in one pass.

:func:`upscale_video` decodes a video with PyAV (FFmpeg's libraries, in-process), hands its frames as RGB
arrays to a caller's function (``super_resolve.py`` gives the network's): 8 bits a sample, or 16 for a 10- or
12-bit video. It encodes the results with each frame's own timestamp and copies every other stream packet for
packet, decoding, upscaling and encoding at once in three threads (``pipeline.py``). What a codec needs is one
:class:`Codec` row of :data:`CODECS`, what a container holds and is written with one :class:`Container` row of
:data:`CONTAINERS`; whether a container holds a stream is asked of its muxer. Nothing here knows about the
network. docs/video.md says what is kept, what is converted and what is refused.
"""
import io
import os
import struct
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

import yuv
from pipeline import Sink, Stage
from utils import UserError, atomic_write

CRF = 16  # libx264's constant rate factor: about 18 and below is visually lossless; 0 is lossless in YUV
# libx264/libx265's speed against file size and fidelity: at 4K on a 2-core Xeon "veryfast" took 0.13
# CPU-seconds a frame, "medium" (FFmpeg's default) 0.23; where a GPU runs the network, the encoder is the
# slower stage (README: Speed).
PRESET = "veryfast"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# The encoder's threads (AVCodecContext.thread_type), as many as the host has cores: "slice" is PyAV's default,
# which libx264 takes as sliced threads (each frame cut into slices encoded at once); "frame" keeps several
# frames in flight, as FFmpeg's command line does. On a 2-core AMD EPYC, 24 1920x1080 frames encoded at 12.0 and
# 14.8 frames/s sliced, 15.8 and 15.4 by frames, the files within 2% of each other; on many cores, where a GPU
# leaves the encoder the slowest stage, benchmarks/video.py times both.
THREADS = ("slice", "frame")


@dataclass(frozen=True)
class Encoding:
    """How a video is encoded: ``codec`` (FFmpeg's encoder name; None: the container's default for the
    input's bit depth), ``crf`` (libx264, libx265 and VP9 quality), ``preset`` (libx264 and libx265 speed) and
    ``threads`` (one of :data:`THREADS`; as many threads as the host has cores either way)."""
    codec: str = None
    crf: int = CRF
    preset: str = PRESET
    threads: str = "slice"


@dataclass(frozen=True)
class Codec:
    """A video encoder: its FFmpeg ``name``, the ``pix_fmt`` it is given for 8-bit inputs and ``deep_pix_fmt``
    for 10- and 12-bit ones (None: it has no 10 bits here), 4:2:0 YUV or RGB (a lossless RGB codec takes no
    colour matrix and frames of any size); its ``options`` for an :class:`Encoding` and the input's HDR
    metadata (:func:`_hdr`), ``tags``: its codec tag in a muxer whose default players do not take, and
    ``unsafe_widths``: frame widths at which it corrupts memory here (the process aborts)."""
    name: str
    pix_fmt: str = "yuv420p"
    deep_pix_fmt: str = "yuv420p10le"
    options: object = lambda encoding, hdr: {}
    tags: dict = field(default_factory=dict)
    unsafe_widths: range = range(0)

    def pix_fmt_for(self, deep):
        return self.deep_pix_fmt if deep else self.pix_fmt

    @property
    def rgb(self):
        return not self.pix_fmt.startswith("yuv")


def _x26x(params, names, fixed=()):
    """The options of libx264 or libx265: crf and preset, and under ``params`` (their "x264-params" or
    "x265-params") the ``fixed`` parameters and the mastering display and content light level, by ``names``."""
    def options(encoding, hdr):
        given = [*fixed, *(f"{names[k]}={value}" for k, value in hdr.items())]
        return {"crf": str(encoding.crf), "preset": encoding.preset, **({params: ":".join(given)} if given else {})}
    return options


CODECS = {c.name: c for c in [
    # 8-bit 4:2:0 H.264, which every player opens; High 10 for 10-bit inputs where a container holds no HEVC
    Codec("libx264", options=_x26x("x264-params", {"master": "mastering-display", "light": "cll"})),
    # 10-bit inputs: HEVC Main 10, what HDR10 and HLG are delivered in and hardware decodes (docs/video.md). x265
    # prints its own "x265 [info]" lines on stderr, past FFmpeg's logging. Apple's players take HEVC as hvc1 only.
    # x265 4.2 (PyAV 18.1's) aborted on frames 34 to 48 pixels wide (glibc: "corrupted size vs. prev_size";
    # 16 to 32 and 50 to 256 ran): such tiny frames go to libx264.
    Codec("libx265", tags={"mp4": "hvc1", "mov": "hvc1"}, unsafe_widths=range(33, 49),
          options=_x26x("x265-params", {"master": "master-display", "light": "max-cll"}, ("log-level=error",))),
    Codec("libvpx-vp9", deep_pix_fmt=None, options=lambda e, hdr: {"crf": str(e.crf), "b": "0"}),  # 8 bits here
    Codec("ffv1", pix_fmt="bgr0", deep_pix_fmt="rgb48le"),  # lossless RGB: exactly the image engine's pixels
]}

# What MPEG-TS holds that reads back: its muxer takes any stream and writes what it cannot hold as an unreadable
# data stream (subrip, ass, mov_text, fonts, h263 measured), so it is asked by this list instead.
MPEGTS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4", "aac", "ac3", "eac3", "mp2", "mp3", "opus",
                    "dvb_subtitle", "dvb_teletext"})


@dataclass(frozen=True)
class Container:
    """An output container: FFmpeg's ``muxer``, the encoder of 8-bit inputs (``codec``) and of 10- and 12-bit
    ones (``deep_codec``; None: none here, such an input goes to :data:`FALLBACK`), the muxer's ``options``,
    ``holds``: the codecs it holds where its muxer takes what it cannot hold (None: its muxer is asked), and
    ``reorders``: whether it stores presentation times, which B-frames need (AVI stores decoding order only)."""
    muxer: str
    codec: str = "libx264"
    deep_codec: str = "libx265"
    options: dict = field(default_factory=dict)
    holds: frozenset = None
    reorders: bool = True


# Output containers by file extension: a video is written into its own where that holds the result, else into
# FALLBACK, which holds every stream the others do and attachments besides (docs/video.md)
CONTAINERS = {
    ".mp4": Container("mp4"), ".m4v": Container("mp4"), ".mov": Container("mov"), ".mkv": Container("matroska"),
    ".webm": Container("webm", "libvpx-vp9", None),  # WebM holds VP8, VP9 and AV1 only
    ".avi": Container("avi", deep_codec="libx264", reorders=False),  # no HEVC in AVI, 3GP or (for readers
    ".3gp": Container("3gp", deep_codec="libx264"),                   # before FFmpeg 6) FLV: H.264 High 10
    ".flv": Container("flv", deep_codec="libx264"),
    ".ts": Container("mpegts", holds=MPEGTS), ".mts": Container("mpegts", holds=MPEGTS),
    # Blu-ray/AVCHD's 192-byte packets; FFmpeg chooses them by the file's name, which is a temporary one here
    ".m2ts": Container("mpegts", options={"mpegts_m2ts_mode": "1"}, holds=MPEGTS),
}
FALLBACK = ".mkv"
VIDEO_EXTENSIONS = tuple(CONTAINERS)
# Demuxers of still pictures: FFmpeg opens a JPEG or PNG as a one-frame video, which is the image path's work
IMAGE_DEMUXERS = ("image2", "image2pipe", "gif", "apng", "webp", "ico", "jpegxl_anim")
PTSLESS_DEMUXERS = ("avi",)  # frames come with decoding times only (B-frames' presentation times are guesses)
# Tags of the input's video stream that describe its encoded bytes, not the picture: the muxer writes its own
STALE_TAGS = ("encoder", "duration", "bps", "number_of_bytes", "_statistics_tags", "_statistics_writing_app",
              "_statistics_writing_date_utc")


def codec_named(name):
    """The :class:`Codec` record of the encoder ``name``; an encoder of no record takes FFmpeg's defaults."""
    return CODECS.get(name) or Codec(name)


def is_video(path):
    """Whether FFmpeg reads the file ``path`` as a video, by its content: it opens, holds a video stream and is
    no still picture (:data:`IMAGE_DEMUXERS`); any container FFmpeg reads (MP4, Matroska, AVI, MPEG-TS, ...)."""
    import av
    try:
        with av.open(path) as c:
            name = c.format.name
            return bool(c.streams.video) and name not in IMAGE_DEMUXERS and not name.endswith("_pipe")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return False


# --------------------------------------------------------------------------- what the output can hold

def _codec(s):
    """The codec of the input stream ``s`` by FFmpeg's name of its format (as ffprobe names it: "subrip", "mp3"),
    not of its decoder ("srt", "mp3float"); for a stream without one, its type (an attachment, data)."""
    return s.codec_context.codec.canonical_name if s.codec_context is not None else s.type


def _described(s):
    """A stream for a message: '#3 (subtitle subrip, fra, "Forced")'."""
    what = _codec(s) if s.codec_context is not None else getattr(s, "name", None)
    parts = [" ".join(filter(None, [s.type, what])), s.metadata.get("language"),
             f'"{s.metadata["title"]}"' if s.metadata.get("title") else None]
    return f"#{s.index} ({', '.join(filter(None, parts))})"


def _takes(container, add, codec):
    """Whether ``container`` takes the stream that ``add(output)`` adds, of the codec named ``codec``: its muxer
    writes a header, into memory, with that stream alone (or, for a muxer that takes anything, :attr:`holds`)."""
    import av
    if container.holds is not None:
        return codec in container.holds
    try:
        with av.open(io.BytesIO(), "w", format=container.muxer, container_options=container.options) as probe:
            add(probe)
            probe.start_encoding()
        return True
    except (ValueError, av.error.FFmpegError):  # ValueError: the muxer has a list of codecs, without this one
        return False


def _copied(inp, vin):
    """The streams of ``inp`` copied as they are: all but the upscaled video ``vin``, those the demuxer discards
    (an MP4's chapter text track: the chapters are copied as chapters) and timecode tracks (mov and mp4 write a
    new one from the video stream's timecode tag, which is kept; no muxer takes a copy)."""
    import av
    return [s for s in inp.streams if s is not vin and s.discard != av.stream.Discard.all
            and not (s.type == "data" and "timecode" in s.metadata)]


def _holds_copy(container, s):
    return _takes(container, lambda probe: probe.add_stream_from_template(s), _codec(s))


def _holds_encoder(container, codec, pix_fmt):
    def add(probe):
        s = probe.add_stream(codec.name, rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, pix_fmt
        s.options = codec.options(Encoding(), {})
    import av
    return _takes(container, add, av.codec.Codec(codec.name, "w").canonical_name)


def _elsewhere(holds, what="it"):
    """The containers for which ``holds(container)``, :data:`FALLBACK` first and one extension a muxer, as words
    for a message: ".mkv, .mp4 or .mov hold it"."""
    found, muxers = [], set()
    for ext in (FALLBACK, *CONTAINERS):
        if CONTAINERS[ext].muxer not in muxers and holds(CONTAINERS[ext]):
            found.append(ext)
        muxers.add(CONTAINERS[ext].muxer)
    if not found:
        return f"no container written here holds {what}"
    shown = found[:3]
    names = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    return f"{names} {'holds' if len(shown) == 1 else 'hold'} {what}"


def _encoder(container, deep, encoding):
    """The :class:`Codec` a video of ``deep`` samples (10 bits or more) is written with into ``container``
    under ``encoding``; None where that container has none of its bit depth."""
    name = encoding.codec or (container.deep_codec if deep else container.codec)
    return codec_named(name) if name else None


def _refusal(inp, vin, ext, encoding):
    """Why the container of the extension ``ext`` cannot hold the upscaled video of ``inp`` (its stream ``vin``)
    and a copy of each of its other streams, in words; None where it holds them all."""
    container, deep = CONTAINERS[ext], _deep(vin)
    codec = _encoder(container, deep, encoding)
    if codec is None:
        return (f"its {_bits(vin)}-bit picture needs a 10-bit encoder, and {ext} has none here; "
                f"{_elsewhere(lambda c: c.deep_codec, 'one')}")
    if deep and codec.deep_pix_fmt is None:
        return (f"{codec.name} encodes 8 bits only here and the video is {_bits(vin)}-bit; use libx265 or libx264 "
                f"(10 bits) or ffv1 (lossless, 16 bits)")
    pix_fmt = codec.pix_fmt_for(deep)
    if not _holds_encoder(container, codec, pix_fmt):
        return f"{ext} does not hold {codec.name}; {_elsewhere(lambda c: _holds_encoder(c, codec, pix_fmt))}"
    for s in _copied(inp, vin):
        if not _holds_copy(container, s):
            return f"{ext} cannot hold its stream {_described(s)}; {_elsewhere(lambda c: _holds_copy(c, s))}"
    return None


def _open_video(src):
    """The input container ``src`` and its video stream (the first that is no cover picture); UserError
    where FFmpeg cannot read it or it has no video stream."""
    import av
    try:
        inp = av.open(src)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise UserError(f"cannot read video {src}: {e}") from None
    pictures = [s for s in inp.streams.video if av.stream.Disposition.attached_pic not in s.disposition]
    if not pictures:
        inp.close()
        raise UserError(f"{src} has no video stream")
    return inp, pictures[0]


def output_extension(src, encoding=Encoding()):
    """The extension of the output of the video ``src`` where none is asked for: its own where that container
    holds the upscaled video and every other stream of it, else :data:`FALLBACK`. A file that cannot be read
    keeps its own (or the fallback's), to be reported when it is upscaled."""
    ext = os.path.splitext(src)[1].lower()
    try:
        inp, vin = _open_video(src)
    except UserError:
        return ext if ext in CONTAINERS else FALLBACK
    with inp:
        return ext if ext in CONTAINERS and _refusal(inp, vin, ext, encoding) is None else FALLBACK


def upscale_video(src, dst, upscaler, encoding=Encoding(), progress=None, device=None):
    """Upscale every frame of the video ``src`` with ``upscaler`` into ``dst``, written atomically; returns
    (frames, path). ``upscaler`` has a ``scale``, a ``batch`` (frames it takes at a time) and ``frames(list of
    (H, W, 3) RGB arrays)`` -> the list of their (sH, sW, 3) results, uint8, or uint16 for a 10- or 12-bit input.

    Colours: swscale converts them on the host, to and from the arrays ``frames`` takes (:class:`_OnHost`); where
    ``device`` (a torch.device or its name: the upscaler's own, for a GPU) is given, the frames' YUV planes go
    there and are converted to RGB and back there, the upscaler taking and giving tensors (``tensors``:
    :class:`inference.Upscaler`'s; :class:`_OnDevice`), within 1 level of swscale's (tests/test_yuv.py). The
    command line does not use it yet: its speed on a GPU is still to be measured (docs/speed.md).

    Frame-exact: the frames players show (after an edit list) are decoded and each encoded with its own
    timestamp in the input's time base, so the frame count, the timestamps (variable frame rate included) and
    the frame rate stay the input's, and every other stream keeps its place against them. Every other stream
    (audio, subtitles, attachments, data) is copied packet for packet, with its tags and dispositions; the
    chapters and the container's tags are kept; the video stream keeps its tags, disposition, rotation, sample
    aspect ratio, field order, colour tags, bit depth (10 bits for 10 and 12) and HDR metadata (:class:`Look`).
    Refused before writing, in one line: a ``dst`` whose container cannot hold one of these (naming the stream
    and a container that holds it); after decoding (and nothing left): a file with no frame, or fewer than its
    container declares (:func:`_check_whole`).

    Decoding, the upscaler and encoding run at once: decoding and encoding in threads of their own, the
    upscaler in the calling thread. ``progress(n, total)`` is called, from the encoding thread, after each
    frame written (total: the frames the container declares, None if it does not say)."""
    import av
    ext = os.path.splitext(dst)[1].lower()
    if ext not in CONTAINERS:
        raise UserError(f"cannot write video {dst}: use one of {', '.join(VIDEO_EXTENSIONS)}")
    inp, vin = _open_video(src)
    try:
        refusal = _refusal(inp, vin, ext, encoding)
        if refusal:
            raise UserError(f"cannot write {src} into {dst}: {refusal}")
        container = CONTAINERS[ext]
        codec = _encoder(container, _deep(vin), encoding)
        w, h = vin.codec_context.width * upscaler.scale, vin.codec_context.height * upscaler.scale
        if w in codec.unsafe_widths:
            if encoding.codec:
                raise UserError(f"cannot write {dst} with {codec.name}: it fails on frames {w} pixels wide here; "
                                f"use --video-codec libx264")
            codec = codec_named(container.codec)
        if not codec.rgb and (w % 2 or h % 2):
            raise UserError(f"cannot upscale video {src}: its frames would be {w}x{h}, and 4:2:0 video needs even "
                            f"sides; --video-codec ffv1 (lossless RGB, in .mkv) takes any size")
        frames, pictures = [0], _pictures(upscaler, Look.of(vin), codec, device)

        def write(tmp):
            with av.open(tmp, "w", format=container.muxer, container_options=container.options) as out:
                frames[0] = _transcode(inp, vin, out, pictures, _Job(container, codec, encoding), progress)
        atomic_write(dst, write)
        return frames[0], dst
    except (av.error.FFmpegError, ValueError) as e:  # ValueError: e.g. an encoder's option it does not take
        raise UserError(f"cannot upscale video {src} into {dst}: {e}") from None
    finally:
        inp.close()


# --------------------------------------------------------------------------- the picture

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


def _bits(vin):
    """Bits a sample of the video stream ``vin`` (8 where the stream does not say)."""
    fmt = vin.codec_context.format
    return max((c.bits for c in fmt.components), default=8) if fmt is not None else 8


def _deep(vin):
    return _bits(vin) > 8


@dataclass(frozen=True)
class Look:
    """What players show of the input's picture besides its pixels, written again on the output's video stream:
    the colour ``matrix`` (:func:`_yuv_matrix`) its frames are converted with, the colour ``primaries`` and
    ``transfer`` tags (AVColorPrimaries, AVColorTransferCharacteristic: BT.2020 and HLG or PQ for HDR), the
    sample aspect ratio ``sar`` (None: square pixels), the ``field_order`` (AVFieldOrder: 0 unknown,
    1 progressive, 2-5 interlaced) and ``deep``: 10 or more bits a sample, carried at 16 (rgb48)."""
    matrix: tuple
    primaries: int = 2
    transfer: int = 2
    sar: Fraction = None
    field_order: int = 0
    deep: bool = False

    @classmethod
    def of(cls, vin):
        cc = vin.codec_context
        return cls(_yuv_matrix(cc), cc.color_primaries, cc.color_trc, cc.sample_aspect_ratio or None, cc.field_order,
                   _deep(vin))

    @property
    def rgb_format(self):
        return "rgb48le" if self.deep else "rgb24"


def _rgb(frame, look):
    """A decoded video frame as an (H, W, 3) RGB array, uint8 or (``look.deep``) uint16, converted with
    ``look``'s matrix."""
    return frame.to_ndarray(format=look.rgb_format, src_colorspace=look.matrix[1], src_color_range=look.matrix[2],
                            interpolation=SWS_FLAGS)


def _yuv_frame(rgb, vout, matrix):
    """An (H, W, 3) uint8 or uint16 RGB array as a frame for ``vout`` (:func:`_video_stream`): in its YUV by
    ``matrix``, or as RGB for an RGB codec."""
    import av
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if rgb.dtype.itemsize == 2 else "rgb24")
    if not vout.pix_fmt.startswith("yuv"):
        return frame if frame.format.name == vout.pix_fmt else frame.reformat(format=vout.pix_fmt)
    return frame.reformat(format=vout.pix_fmt, dst_colorspace=matrix[1], dst_color_range=matrix[2],
                          interpolation=SWS_FLAGS)


def _side_data(frame):
    """{type name: bytes} of a frame's side data; {} where PyAV cannot list it (PyAV 18.1 raises ValueError for
    a type its enum lacks: FFmpeg 8 attaches a JPEG's EXIF as type 31)."""
    try:
        return {d.type.name: bytes(d) for d in frame.side_data}
    except ValueError:
        return {}


def _hdr(side):
    """The HDR static metadata of a frame's side data (:func:`_side_data`) as x264/x265 take it: "master", the
    mastering display, G(x,y)B(x,y)R(x,y)WP(x,y) in 1/50000 and L(max,min) in 1/10000 cd/m2; "light", the
    content light level, "max_content,max_average" in cd/m2."""
    hdr = {}
    if "MASTERING_DISPLAY_METADATA" in side:  # 10 AVRationals (R, G, B, white point x and y; min, max luminance)
        r = struct.unpack("22i", side["MASTERING_DISPLAY_METADATA"][:88])  # and has_primaries, has_luminance
        (rx, ry, gx, gy, bx, by, wx, wy, low, high) = (Fraction(r[i], r[i + 1] or 1) for i in range(0, 20, 2))
        if r[20] and r[21]:
            xy = (round(v * 50000) for v in (gx, gy, bx, by, rx, ry, wx, wy))
            luminance = f"L({round(high * 10000)},{round(low * 10000)})"
            hdr["master"] = "G({},{})B({},{})R({},{})WP({},{})".format(*xy) + luminance
    if "CONTENT_LIGHT_LEVEL" in side:
        hdr["light"] = "{},{}".format(*struct.unpack("2I", side["CONTENT_LIGHT_LEVEL"][:8]))
    return hdr


def read_video_frames(path):
    """Yield (timestamp, RGB array) for each frame of the video ``path``, as :func:`upscale_video` reads them."""
    inp, vin = _open_video(path)
    with inp:
        look = Look.of(vin)
        for frame in inp.decode(vin):
            yield frame.pts, _rgb(frame, look)


# --------------------------------------------------------------------------- the three stages

def _decode_video(inp, vin, copies, picture):
    """The decoding thread: the packets of the copied streams and, in order with them, each video frame as
    (frame, ``picture(frame)``: its RGB array or YUV planes); UserError where the file cannot be read to its end.
    Where the container stores no presentation times (AVI), a frame is timed by its decoding time, as players
    do."""
    import av
    count, last, by_dts = 0, None, inp.format.name in PTSLESS_DEMUXERS
    try:
        for packet in inp.demux([vin, *(inp.streams[i] for i in copies if inp.streams[i].type != "attachment")]):
            if packet.stream.index in copies:
                if packet.size:  # 0: the demuxer's end-of-stream marker (Matroska has data packets without dts)
                    yield packet
                continue
            for frame in packet.decode():
                if by_dts or frame.pts is None:
                    frame.pts = _shown_at(frame, last)
                last, count = frame.pts, count + 1
                yield frame, picture(frame)
    except av.error.FFmpegError as e:
        raise UserError(f"{inp.name}: cannot be read past its frame {count} ({e}): a truncated or damaged file") \
            from None


def _shown_at(frame, last):
    """When a frame is shown, in its time base, where the container gives no presentation time (AVI stores
    decoding times only; B-frames' presentation times are then guesses, out of order): its decoding time, or one
    frame after the ``last`` frame's (None: the first) where it has none (the frames flushed at the end)."""
    if frame.dts is not None and (last is None or frame.dts > last):
        return frame.dts
    return 0 if last is None else last + max(frame.duration or 1, 1)


def _upscaled(decoded, upscale_frames, batch):
    """The decoder's items (a :class:`pipeline.Stage`) with each frame's picture replaced by its upscaled one,
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


def _video_stream(out, codec, size, rate, time_base, look):
    """The video stream of ``out`` that frames are encoded into (:func:`_yuv_frame`): ``codec``
    (:class:`Codec`) at ``size`` (width, height), frames timed in ``time_base``, at ``look``'s bit depth,
    aspect and field order, tagged with its colours unless it keeps RGB."""
    vout = out.add_stream(codec.name, rate=rate)
    (vout.width, vout.height), vout.pix_fmt = size, codec.pix_fmt_for(look.deep)
    # the encoder's own time base too: else it is 1/rate, and each timestamp is rounded onto it (in Matroska's
    # 1/1000 at 24 frames/s, 16 of 48 frames came out with their neighbour's time; variable rates were refused)
    vout.time_base = vout.codec_context.time_base = time_base
    cc = vout.codec_context
    if not codec.rgb:
        cc.colorspace, cc.color_range = look.matrix[0], look.matrix[2]
        cc.color_primaries, cc.color_trc = look.primaries, look.transfer  # tags: the pixels keep the input's
    if look.sar:
        cc.sample_aspect_ratio = look.sar
    if look.field_order > 1:  # the tag only: frames are upscaled and coded as whole pictures (docs/video.md)
        cc.field_order = look.field_order
    return vout


def _set_encoder(vout, codec, encoding, hdr):
    """The options of ``codec`` (:class:`Codec`) for ``encoding`` and the input's ``hdr`` metadata set on the
    encoder of ``vout`` before it opens, and its threads: ``encoding.threads``, as many as the host has cores."""
    vout.options = codec.options(encoding, hdr)
    vout.codec_context.thread_type = encoding.threads.upper()
    vout.codec_context.thread_count = 0


def encode_video(frames, path, encoding=Encoding("libx264"), rate=25):
    """Write (H, W, 3) RGB ``frames`` (uint8, or uint16: 10 bits) as the video ``path``, encoded as
    :func:`upscale_video` encodes (BT.709 limited range); returns its frame count. For measuring the encoder
    alone, and for making 10-bit clips."""
    import av
    codec, matrix = codec_named(encoding.codec), (BT709, MATRICES[BT709], RANGE_MPEG)
    with av.open(path, "w") as out:
        count = 0
        for rgb in frames:
            if count == 0:
                look = Look(matrix, BT709, BT709, deep=rgb.dtype.itemsize == 2)
                vout = _video_stream(out, codec, rgb.shape[1::-1], rate, Fraction(1, rate), look)
                _set_encoder(vout, codec, encoding, {})
            frame = _yuv_frame(rgb, vout, matrix)
            frame.pts = count
            out.mux(vout.encode(frame))
            count += 1
        out.mux(vout.encode())
    return count


@dataclass(frozen=True)
class _Job:
    """What a video is written with: its :class:`Container`, :class:`Codec` and :class:`Encoding`."""
    container: Container
    codec: Codec
    encoding: Encoding


@dataclass
class _Output:
    """The file being written: its container ``out``, the encoded video stream ``vout`` and the
    :class:`_Job`, the ``pictures`` (:class:`_OnHost` or :class:`_OnDevice`) that give its frames, and
    ``copies``: the output stream of each copied input stream."""
    out: object
    vout: object
    job: _Job
    pictures: object
    copies: dict

    def start(self, frame):
        """What the header needs of the first frame, set before it is written: the display matrix (rotation
        and flips) and the HDR metadata, which the encoder writes."""
        side = _side_data(frame)
        if "DISPLAYMATRIX" in side:
            self.vout.set_display_matrix(struct.unpack("9i", side["DISPLAYMATRIX"][:36]))
        elif frame.rotation:  # its side data unreadable (:func:`_side_data`): the rotation alone
            self.vout.set_display_rotation(frame.rotation)
        _set_encoder(self.vout, self.job.codec, self.job.encoding, _hdr(side))

    def encode(self, items, progress, total):
        """The encoding thread: encode and write the upscaled frames and copy the other packets, in their
        order; ``progress(frames written, total)`` after each frame. Nothing is written where no frame comes."""
        count, early = 0, []  # packets before the first frame: the header waits for what that frame says
        for item in items:
            if not isinstance(item, tuple):
                item.stream = self.copies[item.stream.index]
                early.append(item) if early is not None else self.out.mux(item)
                continue
            frame, picture = item
            if early is not None:
                self.start(frame)
                for packet in early:
                    self.out.mux(packet)
                early = None
            new = self.pictures.encoded(picture, self.vout)
            new.pts, new.time_base = frame.pts, frame.time_base
            self.out.mux(self.vout.encode(new))
            count += 1
            if progress:
                progress(count, total)
        if early is None:
            self.out.mux(self.vout.encode())


def _kept(tags, stale):
    """``tags`` without the keys (any case) of ``stale``."""
    return {k: v for k, v in tags.items() if k.lower() not in stale}


def _open_output(inp, vin, out, pictures, job):
    """The :class:`_Output` of ``out`` for the input container ``inp``: its tags and chapters, the video
    stream ``pictures.scale`` times the size of the input's ``vin``, with its tags and disposition, and a copy of
    each other stream (:func:`_copied`) with its tags and disposition."""
    out.metadata.update(_kept(inp.metadata, ("encoder",)))  # the muxer names itself
    cc, scale = vin.codec_context, pictures.scale
    vout = _video_stream(out, job.codec, (cc.width * scale, cc.height * scale), vin.average_rate or vin.guessed_rate,
                         vin.time_base, pictures.look)
    vout.metadata.update(_kept(vin.metadata, STALE_TAGS))
    vout.disposition = vin.disposition
    if job.container.muxer in job.codec.tags:
        vout.codec_context.codec_tag = job.codec.tags[job.container.muxer]
    if not job.container.reorders:
        vout.codec_context.max_b_frames = 0
    copies = {}
    for s in _copied(inp, vin):
        copies[s.index] = out.add_stream_from_template(s)
        copies[s.index].time_base = s.time_base  # the muxer may choose its own; else packets keep their times
        copies[s.index].disposition = s.disposition  # not copied with the stream (attachments' are)
        copies[s.index].metadata.update(_kept(s.metadata, ("duration",)))
    out.set_chapters(inp.chapters())
    return _Output(out, vout, job, pictures, copies)


def _transcode(inp, vin, out, pictures, job, progress):
    output = _open_output(inp, vin, out, pictures, job)
    # three threads: decoding, the upscaler (this one: torch computed the same frames at 1.19 frames/s here
    # against 0.96 from a second thread), encoding
    depth, total = 2 * pictures.batch + 2, _declared_frames(inp, vin)
    decoded = Stage(_decode_video(inp, vin, output.copies, pictures.decoded), depth)
    encoder = Sink(lambda items: output.encode(items, progress, total), depth)
    times = []  # (start, end) of each frame, in seconds
    try:
        for item in _upscaled(decoded, pictures.upscaled, pictures.batch):
            encoder.put(item)
            if isinstance(item, tuple):
                start, duration = item[0].pts, item[0].duration or 0
                times.append((float(start * vin.time_base), float((start + duration) * vin.time_base)))
        encoder.finish()
    finally:  # also on an error or Ctrl-C: both threads stop
        encoder.close()
        decoded.close()
    _check_whole(inp, vin, times)
    return len(times)


# --------------------------------------------------------------------------- where colours are converted

# Pixel formats whose planes the device path takes as they are: bits a sample, log2 of the chroma subsampling
# (x, y); "yuvj" ones are full range whatever the stream says, as swscale takes them. Any other format is
# converted to RGB by swscale on the host.
PLANAR = {"yuv420p": (8, (1, 1)), "yuvj420p": (8, (1, 1)), "yuv422p": (8, (1, 0)), "yuvj422p": (8, (1, 0)),
          "yuv444p": (8, (0, 0)), "yuvj444p": (8, (0, 0)),
          **{f"yuv{name}p{bits}le": (bits, sub) for bits in (10, 12)
             for name, sub in (("420", (1, 1)), ("422", (1, 0)), ("444", (0, 0)))}}
RANGE_JPEG = 2


def _planes(frame, dtype=np.uint8):
    """The planes of a video ``frame`` as (height, width) arrays of ``dtype``: views of its buffers, no copy."""
    size = np.dtype(dtype).itemsize
    return [np.frombuffer(p, dtype).reshape(p.height, p.line_size // size)[:, :p.width] for p in frame.planes]


def _fill(frame, arrays):
    """Write the (height, width) ``arrays`` into the planes of ``frame`` (a frame of our own)."""
    for plane, array in zip(frame.planes, arrays):
        rows = np.zeros((plane.height, plane.line_size // array.itemsize), array.dtype)
        rows[:, :plane.width] = array
        plane.update(rows.tobytes())


def _chroma_siting(frame):
    """Where swscale takes the chroma of the decoded ``frame`` to sit (AVChromaLocation: yuv.LEFT for H.264, HEVC,
    MPEG-2 and MPEG-4 Part 2 unless the stream says otherwise; yuv.CENTER for VP9, AV1, MPEG-1, FFV1, ...; as the
    stream says where it does), which PyAV 18.1 does not show, asked of swscale: a 16x16 4:2:0 frame made from
    ``frame`` by swscale keeps its properties, the siting among them; its chroma is replaced by one bright sample,
    upsampled by swscale, and the siting is that of :data:`yuv.SITINGS` whose upsampling comes nearest."""
    import torch
    probe = frame.reformat(width=16, height=16, format="yuv444p").reformat(format="yuv420p")  # never ``frame``
    flat, chroma = np.full((8, 8), 128, np.uint8), np.full((8, 8), 128, np.uint8)
    chroma[3, 3] = 228
    _fill(probe, [np.full((16, 16), 128, np.uint8), chroma, flat])
    full = _planes(probe.reformat(format="yuv444p16le", interpolation=SWS_FLAGS), np.uint16)[1] / 256
    plane = torch.from_numpy(chroma).float()[None]

    def error(siting):
        return np.abs(yuv.full_chroma([plane], (16, 16), (1, 1), siting)[0][0].numpy() - full).max()
    return min(yuv.SITINGS, key=error)


@dataclass
class _OnHost:
    """Colours converted on the host by swscale (the CPU job): each frame to an RGB array in the decoding thread,
    ``upscaler.frames`` on lists of them, the results back to YUV in the encoding thread."""
    upscaler: object
    look: Look

    @property
    def scale(self):
        return self.upscaler.scale

    @property
    def batch(self):
        return self.upscaler.batch

    def decoded(self, frame):
        return _rgb(frame, self.look)

    def upscaled(self, pictures):
        return self.upscaler.frames(pictures)

    def encoded(self, rgb, vout):
        return _yuv_frame(rgb, vout, self.look.matrix)


# The encoders' 4:2:0 formats the device path writes (bits a sample); for any other it gives the encoding
# thread RGB, as the host path does
YUV420 = {"yuv420p": 8, "yuv420p10le": 10}


@dataclass(frozen=True)
class _Planes:
    """A decoded frame's YUV ``planes`` (views of its buffers; int16 past 8 bits) as :data:`PLANAR` lays them
    out (``layout``: bits, subsampling), in ``full`` or limited range, their chroma sited at ``siting``."""
    planes: tuple
    layout: tuple
    full: bool
    siting: int

    def kind(self):
        return self.layout, self.full, self.siting, tuple(p.shape for p in self.planes)


class _OnDevice(_OnHost):
    """Colours converted on ``device``, where the network runs (docs/video.md, "The device pipeline"). Each
    frame's YUV planes (:data:`PLANAR`; a frame of another format is made RGB by swscale on the host) are taken
    as they are in the decoding thread; in this one they go to the device a batch at a time, are converted to RGB
    there with the input's matrix, range and chroma siting (:func:`yuv.rgb_from_yuv`), upscaled by
    ``upscaler.tensors`` and converted to the encoder's 4:2:0 ``pix_fmt`` (:func:`yuv.yuv420_from_rgb`), which is
    all that comes back, without waiting for it (:class:`yuv.Download`); the encoding thread hands those planes
    to the encoder as they are. For an RGB codec the upscaled RGB comes back instead."""

    def __init__(self, upscaler, look, pix_fmt, device):
        super().__init__(upscaler, look)
        self.pix_fmt, self.device = pix_fmt, device
        self.siting = None  # the frames' chroma siting, asked of swscale at the first frame (decoding thread)

    def decoded(self, frame):
        layout = PLANAR.get(frame.format.name)
        if layout is None:
            return super().decoded(frame)
        if self.siting is None:
            self.siting = _chroma_siting(frame) if layout[1] != (0, 0) else yuv.CENTER
        full = self.look.matrix[2] == RANGE_JPEG or frame.format.name.startswith("yuvj")
        return _Planes(tuple(_planes(frame, np.uint8 if layout[0] == 8 else np.int16)), layout, full, self.siting)

    def upscaled(self, pictures):
        kinds = {p.kind() if isinstance(p, _Planes) else (p.shape, p.dtype) for p in pictures}
        if len(kinds) > 1:  # the format or size changed within the batch: one frame at a time
            return [done for p in pictures for done in self.upscaled([p])]
        rgb = self.upscaler.tensors(self._rgb(pictures))
        space, full = self.look.matrix[0], self.look.matrix[2] == RANGE_JPEG
        ready = yuv.Download(yuv.yuv420_from_rgb(rgb, space, full, YUV420[self.pix_fmt])
                             if self.pix_fmt in YUV420 else rgb)
        return [(ready, i) for i in range(len(pictures))]

    def _rgb(self, pictures):
        """``pictures`` (:class:`_Planes` of one kind, or RGB arrays of one shape) as an (N, H, W, 3) RGB tensor on
        the device: uint8, or int32 holding 16 bits."""
        first = pictures[0]
        if not isinstance(first, _Planes):
            return yuv.to_device([p if p.dtype == np.uint8 else p.astype(np.int32) for p in pictures], self.device)
        planes = [yuv.to_device([p.planes[k] for p in pictures], self.device) for k in range(3)]
        bits, sub = first.layout
        return yuv.rgb_from_yuv(planes, self.look.matrix[0], first.full, bits, sub, first.siting)

    def encoded(self, picture, vout):
        import av
        ready, i = picture
        array = ready.array()[i]
        if self.pix_fmt not in YUV420:
            return super().encoded(array if array.dtype == np.uint8 else array.astype(np.uint16), vout)
        frame = av.VideoFrame.from_ndarray(array if array.dtype == np.uint8 else array.view(np.uint16), self.pix_fmt)
        frame.colorspace, frame.color_range = self.look.matrix[0], self.look.matrix[2]  # as swscale tags its own
        return frame


def _pictures(upscaler, look, codec, device):
    """Where the frames' colours are converted (:func:`upscale_video`): an :class:`_OnDevice` on ``device``; with
    none, an :class:`_OnHost`."""
    import torch
    if device is None:
        return _OnHost(upscaler, look)
    return _OnDevice(upscaler, look, codec.pix_fmt_for(look.deep), torch.device(device))


# --------------------------------------------------------------------------- whole or not

INDEXED_DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2",)  # a track's length comes from its index (after its edit list)


def _declared_end(inp, vin):
    """Where the container says the video's frames end, in seconds; None where it does not say: Matroska's
    DURATION tag (the last frame's end) or, in MP4/MOV/3GP, the track's start and length after its edit list.
    Not a stored frame count: an edit list hides frames (a -c copy cut kept 21 frames and showed 15)."""
    length = _seconds(vin.metadata.get("DURATION", ""))
    if length is not None:
        return length
    if inp.format.name in INDEXED_DEMUXERS and vin.duration:
        return float(((vin.start_time or 0) + vin.duration) * vin.time_base)
    return None


def _declared_frames(inp, vin):
    """The frames the container says it shows (for a progress bar), None where it does not say."""
    end, rate = _declared_end(inp, vin), vin.average_rate
    if end is None or not rate:
        return vin.frames or None
    return round((end - float((vin.start_time or 0) * vin.time_base)) * rate) or None


def _check_whole(inp, vin, times):
    """UserError where no frame decoded (their (start, end) ``times``), or where they stop short of where the
    container says the video ends (:func:`_declared_end`) by more than 1.5 times the longest gap between two
    frames' starts (or one frame's time at the stream's rate)."""
    if not times:
        raise UserError(f"{inp.name}: no frame of its video decodes (an empty, truncated or damaged file)")
    end = _declared_end(inp, vin)
    if end is None:
        return
    starts, last = sorted(t for t, _ in times), max(max(t) for t in times)
    rate = vin.average_rate or vin.guessed_rate
    gap = max([b - a for a, b in zip(starts, starts[1:])] + [float(1 / rate) if rate else 0])
    if end - last > 1.5 * gap:
        raise UserError(f"{inp.name}: its frames stop at {last:.3f} s of its {end:.3f} s (a truncated or damaged "
                        f"file)")


def _seconds(text):
    """'HH:MM:SS.fraction' in seconds; None for anything else."""
    try:
        h, m, sec = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None
