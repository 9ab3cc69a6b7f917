"""Small video files for the tests, made with PyAV as cameras, phones, editors and the web write them: a -c copy
cut with edit lists, 10-bit HDR from a phone, a film in Matroska with its tracks, chapters and a font,
anamorphic and interlaced video, a screen recording, the older containers (AVI, MPEG-TS, 3GP, FLV), a file
with no frame. Frames are small (tens of pixels) and few, so each file takes milliseconds."""
import fractions

import av
import numpy as np

FONT = b"\x00\x01\x00\x00\x00\x0a" + bytes(range(256)) * 8  # a font's first bytes: what is kept is bytes


def picture(i, size, deep=False):
    """Frame ``i`` of a moving picture of ``size`` (width, height): RGB, uint8, or uint16 with 10-bit detail."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([(xx * 7 + i * 9) % 256, yy * 255 // max(h - 1, 1), (xx + yy + 40 * i) % 256], -1)
    rgb[:, (3 * i) % w] = 255
    if deep:
        return (rgb * 257 + (xx * 37 % 64)[..., None]).astype(np.uint16)
    return rgb.astype(np.uint8)


def encode_frames(out, v, n, pts=None, fmt=None, rgb_args=None):
    """Encode ``n`` frames of :func:`picture` into the stream ``v`` of ``out`` (frame i at ``pts[i]``, else
    i, in v's time base), converted into ``fmt`` (default: v's pixel format)."""
    deep = "10" in (fmt or v.pix_fmt) or "12" in (fmt or v.pix_fmt)
    for i in range(n):
        f = av.VideoFrame.from_ndarray(picture(i, (v.width, v.height), deep), format="rgb48le" if deep else "rgb24")
        f = f.reformat(format=fmt or v.pix_fmt, **(rgb_args or {}))
        f.pts = i
        if pts:  # in the time base the caller gave v
            f.pts, f.time_base = pts[i], v.time_base
        out.mux(v.encode(f))
    out.mux(v.encode())


def tone(out, a, seconds, start=0):
    """``seconds`` of a 440 Hz tone into the audio stream ``a`` of ``out``, its first sample at ``start``."""
    rate = a.codec_context.sample_rate
    t = np.arange(int(rate * seconds), dtype=np.float32) / rate
    for k in range(0, len(t), 1024):
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t[k:k + 1024]))[None], format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = rate, start + k
        out.mux(a.encode(frame))
    out.mux(a.encode())


def video_stream(out, codec="libx264", size=(32, 24), rate=25, pix_fmt="yuv420p"):
    v = out.add_stream(codec, rate=rate)
    v.width, v.height, v.pix_fmt = *size, pix_fmt
    return v


def audio_stream(out, codec="aac", rate=48000):
    a = out.add_stream(codec, rate=rate)
    a.layout = "mono"
    return a


def bframes_mp4(path, frames=30, size=(32, 24)):
    """One second of H.264 with B-frames (a keyframe every 10) and AAC, as a camera writes it."""
    with av.open(str(path), "w") as out:
        v = video_stream(out, size=size, rate=30)
        v.options = {"bf": "2", "g": "10"}
        a = audio_stream(out)
        encode_frames(out, v, frames)
        tone(out, a, frames / 30)
    return path


def trimmed(src, dst, start):
    """``src`` cut from ``start`` seconds on without decoding, as `ffmpeg -ss START -i SRC -c copy DST` cuts: the
    packets from the keyframe before the cut on, shifted so that the cut is at 0; the mp4 muxer then writes an
    edit list that hides the frames and samples before it (they are stored: B-frames need them)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        copies = {vin.index: out.add_stream_from_template(vin), ain.index: out.add_stream_from_template(ain)}
        key = max(p.pts for p in inp.demux(vin) if p.size and p.is_keyframe and p.pts * vin.time_base <= start)
        inp.seek(0)
        started = False  # video packets from the keyframe on, in decoding order
        for p in inp.demux():
            started = started or (p.stream is vin and p.pts == key)
            if not p.size or not started or (p.stream is ain and p.pts * ain.time_base < key * vin.time_base):
                continue
            shift = round(start / p.stream.time_base)
            p.pts, p.dts, p.stream = p.pts - shift, p.dts - shift, copies[p.stream.index]
            out.mux(p)
    return dst


def hdr_clip(path, transfer=18, frames=4, audio=True, codec="libx265", bits=10):
    """A 10-bit (or ``bits``) BT.2020 clip as phones record HDR: HEVC Main 10 (or H.264 High 10), HLG (transfer
    18) or PQ (16), with a mastering display and content light level (in the SEI) and a display rotation of 90
    degrees."""
    with av.open(str(path), "w") as out:
        v = video_stream(out, codec, pix_fmt=f"yuv420p{bits}le")
        cc = v.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 9, transfer, 9, 1
        master = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
        v.options = ({"x265-params": f"log-level=error:master-display={master}:max-cll=1000,400"} if codec == "libx265"
                     else {"x264-params": f"mastering-display={master}:cll=1000,400"})
        v.set_display_rotation(90)
        a = audio_stream(out) if audio else None
        encode_frames(out, v, frames, rgb_args={"dst_colorspace": "BT2020", "dst_color_range": 1})
        if a is not None:
            tone(out, a, frames / 25)
    return path


def text_track(tmp_path, name, text):
    """An input container holding one subtitle stream read from ``text`` (SRT or ASS), to copy it from."""
    (tmp_path / name).write_text(text)
    return av.open(str(tmp_path / name))


SRT = "1\n00:00:00,000 --> 00:00:00,300\nhello\n\n2\n00:00:00,400 --> 00:00:00,700\nagain\n"
ASS = ("[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize\n"
       "Style: Default,Arial,20\n\n[Events]\nFormat: Layer, Start, End, Style, Text\n"
       "Dialogue: 0,0:00:00.00,0:00:00.50,Default,bonjour\n"
       "Dialogue: 0,0:00:00.50,0:00:00.90,Default,encore\n")
Disposition = av.stream.Disposition


def film_mkv(path, tmp_path, frames=24):
    """A film as Matroska holds one, at 24 frames/s (in Matroska's 1/1000 s): the video titled, two audio
    tracks (AAC English "Stereo", default; Opus French "Commentary", a comment), two subtitle tracks (SRT English;
    ASS French "Forced FR", forced), two chapters, a font attachment and the file's own tags."""
    srt, ass = text_track(tmp_path, "en.srt", SRT), text_track(tmp_path, "fr.ass", ASS)
    with av.open(str(path), "w") as out:
        out.metadata.update({"title": "Film Title", "ARTIST": "Some Director", "COMMENT": "container comment"})
        v = video_stream(out, rate=24)
        v.metadata["title"], v.disposition = "Main video", Disposition.default
        tracks = [(audio_stream(out), "eng", "Stereo", Disposition.default),
                  (audio_stream(out, "libopus"), "fra", "Commentary", Disposition.comment),
                  (out.add_stream_from_template(srt.streams[0]), "eng", None, Disposition(0)),
                  (out.add_stream_from_template(ass.streams[0]), "fra", "Forced FR", Disposition.forced)]
        for s, language, title, disposition in tracks:
            s.metadata.update({"language": language, **({"title": title} if title else {})})
            s.disposition = disposition
        out.add_attachment("font.ttf", "application/x-truetype-font", FONT)
        second = fractions.Fraction(1, 1000)
        out.set_chapters([{"id": 1, "start": 0, "end": 500, "time_base": second, "metadata": {"title": "Opening"}},
                          {"id": 2, "start": 500, "end": 1000, "time_base": second, "metadata": {"title": "Ending"}}])
        encode_frames(out, v, frames)
        tone(out, tracks[0][0], frames / 24)
        tone(out, tracks[1][0], frames / 24)
        for source, s in ((srt, tracks[2][0]), (ass, tracks[3][0])):
            for p in source.demux():
                if p.size:
                    p.stream = s
                    out.mux(p)
            source.close()
    return path


def flat_video(path, size=(32, 24), fmt="yuv420p", options=None, **tags):
    """Three H.264 frames of :func:`picture` in ``fmt``, with ``tags`` (colorspace, color_range,
    sample_aspect_ratio, field_order, ...) set on its stream's codec context."""
    with av.open(str(path), "w") as out:
        v = video_stream(out, size=size, pix_fmt=fmt)
        v.options = options or {}
        for k, value in tags.items():
            setattr(v.codec_context, k, value)
        matrix = "ITU709" if tags.get("colorspace") == 1 else "ITU601"
        encode_frames(out, v, 3, rgb_args={"dst_colorspace": matrix, "dst_color_range": tags.get("color_range", 1)})
    return path


def muxed(path, video="libx264", audio="aac", size=(32, 24), frames=6, audio_rate=48000):
    """``frames`` frames of ``video`` and a tone of ``audio`` in the container ``path``'s extension names: the
    older containers as cameras and the web wrote them (AVI with MPEG-4 and MP3, MPEG-TS, 3GP, FLV)."""
    with av.open(str(path), "w") as out:
        v = video_stream(out, video, size)
        a = audio_stream(out, audio, audio_rate)
        encode_frames(out, v, frames)
        tone(out, a, frames / 25)
    return path


def no_frames(path):
    """A Matroska file with a video track and no frame in it (and a little sound)."""
    with av.open(str(path), "w") as out:
        video_stream(out)
        tone(out, audio_stream(out, rate=8000), 0.2)
    return path


def timed(path, times, rate=25, size=(32, 24)):
    """H.264 frames at ``times`` (milliseconds), in a 1/1000 time base for the stream and its encoder (the
    encoder's default, 1/rate, would round them), with a tone beside them."""
    with av.open(str(path), "w") as out:
        v = video_stream(out, size=size, rate=rate)
        v.time_base = v.codec_context.time_base = fractions.Fraction(1, 1000)
        a = audio_stream(out)
        encode_frames(out, v, len(times), pts=times)
        tone(out, a, times[-1] / 1000)
    return path
