"""Video files: every frame through an upscaler, and everything else of the file kept, in one pass.

:func:`upscale_video` decodes a video with PyAV (FFmpeg's libraries, in-process), hands its frames as RGB
arrays to a caller's function (``super_resolve.py`` gives the network's), encodes the results with each
frame's own timestamp and copies the other streams packet for packet, decoding, upscaling and encoding at
once in three threads (``pipeline.py``). What a codec needs is one :class:`Codec` record of :data:`CODECS`,
what a container holds one entry of :data:`CONTAINERS`. Nothing here knows about the network.
"""
import fractions
import os
import struct
from dataclasses import dataclass, replace

from pipeline import Sink, Stage
from utils import UserError, atomic_write

CRF = 16  # libx264's constant rate factor: about 18 and below is visually lossless; 0 is lossless in YUV
# libx264/libx265's speed against file size and fidelity: at 4K on a 2-core Xeon "veryfast" took 0.13
# CPU-seconds a frame, "medium" (FFmpeg's default) 0.23; where a GPU runs the network, the encoder is the
# slower stage (README: Speed).
PRESET = "veryfast"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class Encoding:
    """How a video is encoded: ``codec`` (FFmpeg's encoder name; None: the container's default), ``crf``
    (libx264, libx265 and VP9 quality) and ``preset`` (libx264 and libx265 speed)."""
    codec: str = None
    crf: int = CRF
    preset: str = PRESET


@dataclass(frozen=True)
class Codec:
    """A video encoder: its FFmpeg ``name``, the ``pix_fmt`` it is given (4:2:0 YUV, or RGB for a lossless one,
    which then takes no colour matrix and frames of any size), its ``options`` for an :class:`Encoding`, and
    the ``containers`` (file extensions) that hold it; None: any."""
    name: str
    pix_fmt: str = "yuv420p"
    options: object = lambda encoding: {}
    containers: tuple = None

    @property
    def rgb(self):
        return not self.pix_fmt.startswith("yuv")


_X26X = dict(options=lambda e: {"crf": str(e.crf), "preset": e.preset}, containers=(".mp4", ".m4v", ".mkv", ".mov"))
CODECS = {c.name: c for c in [
    Codec("libx264", **_X26X),  # 8-bit 4:2:0 H.264: every player opens it
    Codec("libx265", **_X26X),
    Codec("libvpx-vp9", options=lambda e: {"crf": str(e.crf), "b": "0"}, containers=(".webm", ".mkv", ".mp4")),
    Codec("ffv1", pix_fmt="bgr0", containers=(".mkv",)),  # lossless RGB: exactly the image engine's pixels
]}
# Output containers by file extension: (FFmpeg's muxer, the encoder used when --video-codec gives none)
CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mkv": ("matroska", "libx264"),
              ".mov": ("mov", "libx264"), ".webm": ("webm", "libvpx-vp9")}  # WebM holds VP8, VP9 and AV1 only
VIDEO_EXTENSIONS = tuple(CONTAINERS)


def codec_named(name):
    """The :class:`Codec` record of the encoder ``name``; an encoder of no record takes FFmpeg's defaults."""
    return CODECS.get(name) or Codec(name)


def is_video(path):
    return path.lower().endswith(VIDEO_EXTENSIONS)


def output_codec(dst, encoding):
    """The :class:`Codec` a video ``dst`` is written with under ``encoding``; UserError where its container
    cannot hold it."""
    ext = os.path.splitext(dst)[1].lower()
    if ext not in CONTAINERS:
        raise UserError(f"cannot write video {dst}: use one of {', '.join(VIDEO_EXTENSIONS)}")
    codec = codec_named(encoding.codec or CONTAINERS[ext][1])
    if codec.containers is not None and ext not in codec.containers:
        raise UserError(f"cannot write {codec.name} into {dst}: {ext} does not hold it; use "
                        f"{' or '.join(codec.containers)}")
    return codec


def upscale_video(src, dst, upscaler, encoding=Encoding(), progress=None):
    """Upscale every frame of the video ``src`` with ``upscaler`` into ``dst``, written atomically; returns
    (frames, path). ``upscaler`` has a ``scale``, a ``batch`` (frames it takes at a time) and ``frames(list of
    (H, W, 3) uint8 RGB arrays)`` -> the list of their (sH, sW, 3) results.

    Frame-exact: each decoded frame is encoded with its own timestamp in the input's time base, so the
    frame count, the timestamps (variable frame rate included) and the frame rate stay the input's. Every
    other stream (audio, subtitles) is copied packet for packet, not re-encoded, with its tags (language);
    the container's tags and the rotation are kept, and the output is tagged with the colour matrix, range,
    primaries and transfer it was converted with (see :func:`_yuv_matrix`). Output: as ``encoding`` says
    (:class:`Encoding`) in 8-bit 4:2:0, which every player opens, or a lossless RGB codec (ffv1) exactly.

    Decoding, the upscaler and encoding run at once: decoding and encoding in threads of their own, the
    upscaler in the calling thread. ``progress(n, total)`` is called, from the encoding thread, after each
    frame written (total: the container's frame count, None if unknown)."""
    import av
    codec = output_codec(dst, encoding)
    try:
        inp = av.open(src)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise UserError(f"cannot read video {src}: {e}") from None
    try:
        if not inp.streams.video:
            raise UserError(f"{src} has no video stream")
        size = inp.streams.video[0].codec_context
        w, h = size.width * upscaler.scale, size.height * upscaler.scale
        if not codec.rgb and (w % 2 or h % 2):
            raise UserError(f"cannot upscale video {src}: its frames would be {w}x{h}, and 4:2:0 video needs even "
                            f"sides; --video-codec ffv1 (lossless RGB, in .mkv) takes any size")
        frames = [0]

        def write(tmp):
            with av.open(tmp, "w", format=CONTAINERS[os.path.splitext(dst)[1].lower()][0]) as out:
                frames[0] = _transcode(inp, out, upscaler, replace(encoding, codec=codec.name), progress)
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


def _upscaled(decoded, upscale_frames, batch):
    """The decoder's items (a :class:`pipeline.Stage`) with each frame's RGB array replaced by its upscaled one,
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


def _video_stream(out, encoding, size, rate, time_base, matrix):
    """The video stream of ``out`` that frames are encoded into (:func:`_yuv_frame`): ``encoding``'s codec
    (:class:`Codec`) at ``size`` (width, height), tagged with ``matrix``'s colour matrix and range
    (:func:`_yuv_matrix`) unless it keeps RGB."""
    codec = codec_named(encoding.codec)
    vout = out.add_stream(codec.name, rate=rate)
    (vout.width, vout.height), vout.time_base, vout.pix_fmt = size, time_base, codec.pix_fmt
    if not codec.rgb:
        vout.codec_context.colorspace, vout.codec_context.color_range = matrix[0], matrix[2]
    vout.options = codec.options(encoding)
    return vout


def _yuv_frame(rgb, vout, matrix):
    """An (H, W, 3) uint8 RGB array as a frame for ``vout`` (:func:`_video_stream`): in its YUV by ``matrix``."""
    import av
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    if not vout.pix_fmt.startswith("yuv"):
        return frame
    return frame.reformat(format=vout.pix_fmt, dst_colorspace=matrix[1], dst_color_range=matrix[2],
                          interpolation=SWS_FLAGS)


def encode_video(frames, path, encoding=Encoding("libx264"), rate=25):
    """Write (H, W, 3) uint8 RGB ``frames`` as the video ``path``, encoded as :func:`upscale_video` encodes
    (BT.709 limited range); returns its frame count. For measuring the encoder alone."""
    import av
    matrix = (BT709, MATRICES[BT709], RANGE_MPEG)
    with av.open(path, "w") as out:
        count = 0
        for rgb in frames:
            if count == 0:
                vout = _video_stream(out, encoding, rgb.shape[1::-1], rate, fractions.Fraction(1, rate), matrix)
            frame = _yuv_frame(rgb, vout, matrix)
            frame.pts = count
            out.mux(vout.encode(frame))
            count += 1
        out.mux(vout.encode())
    return count


@dataclass
class _Output:
    """The file being written: its container ``out``, the encoded video stream ``vout`` and the colour
    ``matrix`` frames are converted with, and ``copies``: the output stream of each copied input stream."""
    out: object
    vout: object
    matrix: tuple
    copies: dict

    def encode(self, items, progress, total):
        """The encoding thread: encode and write the upscaled frames and copy the other packets, in their
        order; ``progress(frames written, total)`` after each frame."""
        count, early = 0, []  # packets before the first frame: the file's header waits for that frame's rotation
        for item in items:
            if not isinstance(item, tuple):
                item.stream = self.copies[item.stream.index]
                early.append(item) if early is not None else self.out.mux(item)
                continue
            frame, rgb = item
            if early is not None:
                if "DISPLAYMATRIX" in frame.side_data:  # the rotation a player applies
                    self.vout.set_display_matrix(struct.unpack("9i", bytes(frame.side_data["DISPLAYMATRIX"])))
                for packet in early:
                    self.out.mux(packet)
                early = None
            new = _yuv_frame(rgb, self.vout, self.matrix)
            new.pts, new.time_base = frame.pts, frame.time_base
            self.out.mux(self.vout.encode(new))
            count += 1
            if progress:
                progress(count, total)
        for packet in early or ():
            self.out.mux(packet)
        self.out.mux(self.vout.encode())


def _open_output(inp, out, scale, encoding):
    """The :class:`_Output` of ``out`` for the input container ``inp``: the video stream ``scale`` times the
    size of the input's, its tags, and a copy of each audio and subtitle stream."""
    vin = inp.streams.video[0]
    out.metadata.update(inp.metadata)
    matrix = _yuv_matrix(vin.codec_context)
    vout = _video_stream(out, encoding, (vin.codec_context.width * scale, vin.codec_context.height * scale),
                         vin.average_rate or vin.guessed_rate, vin.time_base, matrix)
    if not codec_named(encoding.codec).rgb:  # tags only: the pixels keep the input's primaries and transfer
        vout.codec_context.color_primaries = vin.codec_context.color_primaries
        vout.codec_context.color_trc = vin.codec_context.color_trc
    vout.metadata.update(vin.metadata)
    copies = {}
    for s in inp.streams:
        if s is not vin and s.type in ("audio", "subtitle"):
            copies[s.index] = out.add_stream_from_template(s)
            copies[s.index].metadata.update(s.metadata)
    return _Output(out, vout, matrix, copies)


def _transcode(inp, out, upscaler, encoding, progress):
    vin = inp.streams.video[0]
    output = _open_output(inp, out, upscaler.scale, encoding)
    # three threads: decoding, the upscaler (this one: torch computed the same frames at 1.19 frames/s here
    # against 0.96 from a second thread), encoding
    depth = 2 * upscaler.batch + 2
    decoded = Stage(_decode_video(inp, vin, output.copies, output.matrix), depth)
    encoder = Sink(lambda items: output.encode(items, progress, vin.frames or None), depth)
    times = []  # (start, end) of each frame, in seconds
    try:
        for item in _upscaled(decoded, upscaler.frames, upscaler.batch):
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
