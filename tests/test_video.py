"""Videos: every frame upscaled by the image engine, the frames players show with their timestamps (edit lists,
variable frame rates, times off the frame rate's grid) and every other stream copied packet for packet with its
tags and dispositions, chapters and attachments too; the picture's aspect, rotation, colour tags, bit depth
(10 bits) and HDR metadata kept; any container FFmpeg reads taken by its content; the lossless choice equal to
the image path; bad or cut videos refused with one line and nothing left behind. Clips are made with PyAV
(tests/clips.py); where the system's ffprobe is installed, it reads the outputs back too."""
import fractions
import json
import shutil
import subprocess

import av
import numpy as np
import pytest
import torch
from PIL import Image

import clips
import video
from clips import Disposition
from conftest import cli, upscale_cli
from inference import Upscaler, upscale, upscale_tensor
from video import Encoding, read_video_frames, upscale_video

PTS = [0, 40, 80, 200, 240, 400, 440, 480]  # milliseconds: variable frame rate


def make_clip(path, tmp_path, frames=PTS, subtitles=True):
    """A small H.264 clip with variable frame rate, an AAC track (French) and, in .mkv, an SRT track (English)."""
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,100\nhello\n\n2\n00:00:00,150 --> 00:00:00,300\nagain\n")
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        out.metadata["title"] = "a test clip"
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        v.time_base = fractions.Fraction(1, 1000)
        a = out.add_stream("aac", rate=8000)
        a.metadata["language"] = "fra"
        sub_in = av.open(str(srt)) if subtitles else None
        s = out.add_stream_from_template(sub_in.streams[0]) if subtitles else None
        if s is not None:
            s.metadata["language"] = "eng"
        for i, pts in enumerate(frames):
            yy, xx = np.mgrid[0:24, 0:32]
            img = np.stack([xx * 7 + i * 9, yy * 9, (xx + yy) * 4], -1) + rng.integers(0, 20, (24, 32, 3))
            f = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            f.pts, f.time_base = pts, v.time_base
            out.mux(v.encode(f))
        out.mux(v.encode())
        t = np.arange(4000, dtype=np.float32) / 8000
        af = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t))[None], format="fltp", layout="mono")
        af.sample_rate, af.pts = 8000, 0
        out.mux(a.encode(af))
        out.mux(a.encode())
        if s is not None:
            for packet in sub_in.demux():
                if packet.dts is not None:
                    packet.stream = s
                    out.mux(packet)
            sub_in.close()
    return path


class FramesBy:
    """What :func:`video.upscale_video` takes: a ``scale``, a ``batch`` and ``frames``, a function of a list of
    frames; here a test's own function in place of the network's."""

    def __init__(self, frames, scale=3, batch=1):
        self.frames, self.scale, self.batch = frames, scale, batch


def packets(path, kind):
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(**{kind: 0}) if p.dts is not None]


def decoded(path):
    return list(read_video_frames(str(path)))


def test_frames_timestamps_audio_and_subtitles_come_through(checkpoint, tmp_path):
    src = make_clip(tmp_path / "clip.mkv", tmp_path)
    r = upscale_cli(checkpoint, src)
    out = tmp_path / "clip_srcnn_x3.mkv"
    assert r.returncode == 0, r.stderr
    assert f"wrote {out} (8 frames)" in r.stdout
    got, want = decoded(out), decoded(src)
    assert [p for p, _ in got] == [p for p, _ in want] == PTS
    assert all(f.shape == (72, 96, 3) for _, f in got)
    for kind in ("audio", "subtitles"):
        assert packets(out, kind) == packets(src, kind) and packets(src, kind), kind
    with av.open(str(out)) as c:
        langs = {s.type: s.metadata.get("language") for s in c.streams}
        assert langs["audio"] == "fra" and langs["subtitle"] == "eng"
        assert c.metadata.get("title") == "a test clip"
        assert c.streams.video[0].average_rate == 25
    # each frame is the image engine's result, within the codec's loss
    model = Upscaler.from_checkpoint(checkpoint).model
    for (_, o), (_, i) in zip(got, want):
        assert np.abs(o.astype(int) - upscale(model, i, 3)).mean() < 3


def test_the_lossless_codec_gives_the_image_paths_pixels_exactly(checkpoint, tmp_path):
    mkv = tmp_path / "clip.mkv"
    make_clip(mkv, tmp_path, subtitles=False)
    r = upscale_cli(checkpoint, mkv, "--output-dir", tmp_path / "out", "--video-codec", "ffv1")
    assert r.returncode == 0, r.stderr
    model = Upscaler.from_checkpoint(checkpoint).model
    for (_, o), (_, i) in zip(decoded(tmp_path / "out" / "clip_srcnn_x3.mkv"), decoded(mkv)):
        np.testing.assert_array_equal(o, upscale(model, i, 3))


def test_bad_videos_are_refused_in_one_line_and_the_other_inputs_go_on(checkpoint, tmp_path):
    (tmp_path / "garbage.mp4").write_bytes(b"not a video at all" * 100)
    with av.open(str(tmp_path / "sound.mkv"), "w") as out:  # audio only
        a = out.add_stream("aac", rate=8000)
        af = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 8000, 0
        out.mux(a.encode(af))
        out.mux(a.encode())
    good = make_clip(tmp_path / "good.mkv", tmp_path)
    whole = (tmp_path / "good.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(whole[:len(whole) // 2])
    r = upscale_cli(checkpoint, tmp_path / "garbage.mp4", tmp_path / "sound.mkv", good, "--output-dir", tmp_path / "out")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(errors) == 3, r.stderr
    assert "cannot read video" in errors[0] and "no video stream" in errors[1] and "2 of 3 inputs failed" in errors[2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_srcnn_x3.mkv"]  # no partial file left
    r = upscale_cli(checkpoint, good, "--output", tmp_path / "x.webm")  # WebM takes no AAC: refused, nothing left
    assert r.returncode == 1 and not (tmp_path / "x.webm").exists()
    assert r.stderr.endswith(".webm cannot hold its stream #1 (audio aac, fra); .mkv, .mp4 or .mov hold it\n"), r.stderr
    for flags, why in [(["--video-codec", "nosuch"], "not a video encoder"), (["--video-codec", "aac"], "not a video"),
                       (["--crf", "99"], "past 51")]:  # usage errors, before any work
        r = upscale_cli(checkpoint, good, "--output", tmp_path / "y.mkv", *flags)
        assert r.returncode == 2 and why in r.stderr.splitlines()[-1] and not (tmp_path / "y.mkv").exists()
    with av.open(str(tmp_path / "odd.mkv"), "w") as out:  # 11x9 in 4:4:4: x3 is 33x27, odd for 4:2:0
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 11, 9, "yuv444p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((9, 11, 3), 60 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in v.encode(frame.reformat(format="yuv444p")):
                out.mux(packet)
        out.mux(v.encode())
    r = upscale_cli(checkpoint, tmp_path / "odd.mkv", "--output-dir", tmp_path / "odd")
    assert r.returncode == 1 and "would be 33x27, and 4:2:0 video needs even sides; --video-codec ffv1" in r.stderr
    assert r.stderr.count("\n") == 1 and not list((tmp_path / "odd").glob("*.mkv"))
    r = upscale_cli(checkpoint, tmp_path / "odd.mkv", "--output-dir", tmp_path / "odd", "--video-codec", "ffv1")
    assert r.returncode == 0 and decoded(tmp_path / "odd" / "odd_srcnn_x3.mkv")[0][1].shape == (27, 33, 3)
    r = upscale_cli(checkpoint, tmp_path / "cut.mkv", "--output-dir", tmp_path / "cut")  # Matroska: no frame count
    assert r.returncode == 1 and "(a truncated or damaged file)" in r.stderr and r.stderr.count("\n") == 1
    assert not list((tmp_path / "cut").glob("*.mkv"))


def flat_clip(path, colour, size=(32, 24), frames=3, **tags):
    """An H.264 clip of one flat colour, with ``tags`` (colorspace, color_range, ...) set on its stream and a
    display rotation of 90 degrees when ``rotate``."""
    rotate = tags.pop("rotate", False)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = *size, "yuv420p"
        v.options = {"crf": "0"}
        for k, value in tags.items():
            setattr(v.codec_context, k, value)
        if rotate:
            v.set_display_rotation(90)
        rgb = np.full((size[1], size[0], 3), colour, np.uint8)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU709" if tags.get("colorspace") == 1 else "ITU601",
                dst_color_range=tags.get("color_range", 1))
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode())
    return path


def stream_tags(path):
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        tags = {k: getattr(cc, k) for k in ("colorspace", "color_range", "color_primaries", "color_trc")}
        rotation = next(c.decode(video=0)).rotation
    return tags, rotation, decoded(path)[0][1].reshape(-1, 3).mean(0)


def test_rotation_colour_matrix_and_range_are_kept_and_colours_stay(checkpoint, tmp_path):
    tagged = {"colorspace": 1, "color_range": 2, "color_primaries": 1, "color_trc": 1}  # BT.709, full range
    src = flat_clip(tmp_path / "hd.mp4", (0, 200, 220), rotate=True, **tagged)
    r = upscale_cli(checkpoint, src, "--crf", "0")
    assert r.returncode == 0, r.stderr
    (tags_in, rot_in, rgb_in), (tags_out, rot_out, rgb_out) = (stream_tags(p) for p in (src, tmp_path / "hd_srcnn_x3.mp4"))
    assert tags_in == tags_out == tagged and rot_in == rot_out == 90
    assert np.abs(rgb_in - rgb_out).max() < 1.5, (rgb_in, rgb_out)
    # untagged and small: decoded as players show it (BT.601, limited range) and the output says so
    src = flat_clip(tmp_path / "sd.mp4", (0, 200, 220))
    r = upscale_cli(checkpoint, src, "--crf", "0")
    assert r.returncode == 0, r.stderr
    (tags_in, rot_in, rgb_in), (tags_out, rot_out, rgb_out) = (stream_tags(p) for p in (src, tmp_path / "sd_srcnn_x3.mp4"))
    assert tags_in["colorspace"] == 2 and tags_out["colorspace"] == 6 and tags_out["color_range"] == 1
    assert rot_in == rot_out == 0
    assert np.abs(rgb_in - rgb_out).max() < 1.5, (rgb_in, rgb_out)


@pytest.mark.parametrize("batch, sizes", [(3, [3, 3, 2]), (4, [4, 4])])  # 4: the last batch is full
def test_frames_batched_through_the_network_come_out_as_one_at_a_time(checkpoint, tmp_path, batch, sizes):
    src = make_clip(tmp_path / "clip.mkv", tmp_path)  # 8 frames, audio and subtitles between them
    model = Upscaler.from_checkpoint(checkpoint).model
    got = []

    def batched(frames):  # the GPU's path (one tensor of N frames), here on the CPU
        got.append(len(frames))
        return list(upscale_tensor(model, torch.from_numpy(np.stack(frames)), 3, tile=40).numpy())
    n, _ = upscale_video(str(src), str(tmp_path / "b.mkv"), FramesBy(batched, 3, batch), Encoding("ffv1"))
    assert n == 8 and got == sizes  # never an empty batch (the GPU path failed on one)
    for (_, o), (_, i) in zip(decoded(tmp_path / "b.mkv"), decoded(src)):
        np.testing.assert_array_equal(o, upscale(model, i, 3))
    for kind in ("audio", "subtitles"):
        assert packets(tmp_path / "b.mkv", kind) == packets(src, kind)


def test_a_stop_mid_video_leaves_no_file_and_no_thread(checkpoint, tmp_path):
    import threading
    src = make_clip(tmp_path / "clip.mkv", tmp_path)
    model = Upscaler.from_checkpoint(checkpoint).model
    seen = []

    def stopped_at_the_fourth(frames):
        seen.extend(frames)
        if len(seen) == 4:
            raise KeyboardInterrupt
        return [upscale(model, f, 3) for f in frames]
    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        upscale_video(str(src), str(tmp_path / "out.mkv"), FramesBy(stopped_at_the_fourth))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv", "s.srt"]  # no output, no temporary
    assert threading.active_count() == before


# --------------------------------------------------------------------------- what players show, and every stream

FFPROBE = shutil.which("ffprobe")
NO_FFPROBE = "the system's ffprobe is not installed (apt-get install ffmpeg): the outputs are read back with PyAV only"


def ffprobe(path, *args):
    """The system ffprobe's JSON answer about ``path`` (an older FFmpeg than PyAV's: another reader)."""
    r = subprocess.run([FFPROBE, "-v", "error", "-of", "json", *args, str(path)], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout)


def stream_packets(path, index):
    """(pts, bytes) of each packet of stream ``index`` of ``path``."""
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(c.streams[index]) if p.size]


def sound(path):
    """(first audio frame's time, samples decoded, first video frame's time): the audio's place against the
    picture as a player plays it."""
    with av.open(str(path)) as c:
        audio = list(c.decode(audio=0))
    with av.open(str(path)) as c:
        first = next(c.decode(video=0))
    return float(audio[0].pts * audio[0].time_base), sum(a.samples for a in audio), float(first.pts * first.time_base)


def test_a_trimmed_clip_is_taken_with_its_shown_frames_and_its_sound_in_sync(checkpoint, tmp_path):
    """A -c copy cut of H.264 with B-frames and AAC: its edit lists hide 5 of the 20 frames stored (and the AAC
    samples before the cut); the output shows the 15 the input shows, at their times, with every audio packet
    and the audio's start against the first frame as in the input."""
    src = clips.trimmed(clips.bframes_mp4(tmp_path / "long.mp4"), tmp_path / "cut.mp4", fractions.Fraction(1, 2))
    with av.open(str(src)) as c:
        assert c.streams.video[0].frames == 20  # stored, not shown
    r = upscale_cli(checkpoint, src)
    out = tmp_path / "cut_srcnn_x3.mp4"
    assert r.returncode == 0 and "(15 frames)" in r.stdout, r.stderr
    assert [t for t, _ in decoded(out)] == [t for t, _ in decoded(src)] and len(decoded(src)) == 15
    assert stream_packets(out, 1) == stream_packets(src, 1)  # the audio, those the edit list hides too
    assert sound(out) == sound(src)
    _, samples, first = sound(src)
    assert first == 0 and samples == 24128  # 0.5 s at 48 kHz, less the encoder's padding the edit list hides


def test_frame_times_are_kept_exactly_off_the_frame_rates_grid(checkpoint, tmp_path):
    """Times a 1/rate time base would round: 24 frames/s in Matroska's milliseconds starting at 21 ms (as
    FFmpeg writes B-frame H.264 there), and a variable rate in MP4 (refused before: non-increasing times)."""
    film, vfr = [21 + round(1000 * i / 24) for i in range(12)], [0, 33, 50, 117, 150, 167, 300, 317]
    inputs = [clips.timed(tmp_path / "film.mkv", film, rate=24), clips.timed(tmp_path / "vfr.mp4", vfr)]
    r = upscale_cli(checkpoint, *inputs, "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    for src, times in zip(inputs, (film, vfr)):
        out = tmp_path / "out" / f"{src.stem}_srcnn_x3{src.suffix}"
        for path in (src, out):
            with av.open(str(path)) as c:
                tb = c.streams.video[0].time_base
            assert [round(t * tb * 1000) for t, _ in decoded(path)] == times, path


def cut(whole, dst, keep):
    """The first ``keep(data)`` bytes of the file ``whole``, as a copy stopped mid-way leaves them, at ``dst``."""
    data = whole.read_bytes()
    dst.write_bytes(data[:keep(data, dst.parent)])
    return dst


def one_frame(data, folder):
    """The length of the first cut of ``data`` from which one frame decodes (before: "wrote ... (1 frames)")."""
    return next(n for n in range(0, len(data), 20) if len(decoded_whatever(data[:n], folder)) == 1)


def inside_a_frame(data, folder):
    """The length of a cut of ``data`` (an MP4 with its index first) half-way into its 16th video packet."""
    (folder / "whole.mp4").write_bytes(data)
    with av.open(str(folder / "whole.mp4")) as c:
        packet = [p for p in c.demux(video=0) if p.size][15]
        return packet.pos + packet.size // 2


TWO_THIRDS = lambda data, folder: len(data) * 2 // 3  # noqa: E731
CUTS = {  # what is refused, and the line that says why
    "no frame": (lambda p: clips.no_frames(p / "zero.mkv"), "no frame of its video decodes"),
    "Matroska, 1 frame left": (lambda p: cut(clips.film_mkv(p / "w.mkv", p), p / "c.mkv", one_frame), "frames stop"),
    "Matroska, 2/3 left": (lambda p: cut(clips.film_mkv(p / "w.mkv", p), p / "c.mkv", TWO_THIRDS), "frames stop"),
    "MP4 index first, 2/3 left": (lambda p: cut(faststart(clips.bframes_mp4(p / "l.mp4"), p / "w.mp4"), p / "c.mp4",
                                                TWO_THIRDS), "frames stop"),
    "MP4 index first, cut inside a frame": (lambda p: cut(faststart(clips.bframes_mp4(p / "l.mp4"), p / "w.mp4"),
                                                          p / "c.mp4", inside_a_frame), "cannot be read past"),
    "MP4 index last, 2/3 left": (lambda p: cut(clips.bframes_mp4(p / "w.mp4"), p / "c.mp4", TWO_THIRDS),
                                 "cannot read video"),
}


@pytest.mark.parametrize("case", CUTS)
def test_a_video_cut_short_or_without_frames_is_refused_in_one_line_and_leaves_nothing(checkpoint, tmp_path, case):
    make, why = CUTS[case]
    src = make(tmp_path)
    r = upscale_cli(checkpoint, src, "--output-dir", tmp_path / "out")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert why in r.stderr and ("truncated or damaged" in r.stderr or why == "cannot read video"), r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def faststart(src, dst):
    """``src`` remuxed with its index (moov) first, as web and phone MP4s are."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", container_options={"movflags": "faststart"}) as out:
        copies = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for p in inp.demux():
            if p.size:
                p.stream = copies[p.stream.index]
                out.mux(p)
    return dst


def decoded_whatever(data, tmp_path):
    """The frames that decode from the bytes ``data`` of a video, errors and all."""
    (tmp_path / "probe.mkv").write_bytes(data)
    frames = []
    try:
        with av.open(str(tmp_path / "probe.mkv")) as c:
            frames.extend(c.decode(video=0))
    except av.error.FFmpegError:
        pass
    return frames


def y_plane(frame):
    return frame.to_ndarray()[:frame.height]  # yuv420p10le: the Y plane, then the chroma under it


@pytest.mark.parametrize("make, profile", [
    pytest.param(lambda p: clips.hdr_clip(p / "hlg.mp4", 18), "Main 10", id="HLG HEVC in MP4, as phones record"),
    pytest.param(lambda p: clips.hdr_clip(p / "pq.mkv", 16, audio=False), "Main 10", id="HDR10 (PQ) in Matroska"),
    pytest.param(lambda p: clips.hdr_clip(p / "pq12.mkv", 16, audio=False, bits=12), "Main 10", id="12-bit, at 10"),
    pytest.param(lambda p: clips.hdr_clip(p / "hlg.3gp", 18, codec="libx264"), "High 10", id="3GP: no HEVC")])
def test_ten_bit_hdr_stays_ten_bit_with_its_colours_metadata_and_rotation(checkpoint, tmp_path, make, profile):
    src = make(tmp_path)
    r = upscale_cli(checkpoint, src)
    out = tmp_path / f"{src.stem}_srcnn_x3{src.suffix}"
    assert r.returncode == 0 and r.stderr == "", r.stderr  # nothing of x265's own ("x265 [info]: ...")
    with av.open(str(src)) as a, av.open(str(out)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert vb.profile == profile and vb.codec_context.pix_fmt == "yuv420p10le"
        assert src.suffix != ".mp4" or vb.codec_context.codec_tag == "hvc1"  # HEVC as Apple's players take it
        tags = ("color_primaries", "color_trc", "colorspace", "color_range")
        assert [getattr(vb.codec_context, k) for k in tags] == [getattr(va.codec_context, k) for k in tags]
        fa, fb = next(a.decode(va)), next(b.decode(vb))
    sa, sb = video._side_data(fa), video._side_data(fb)
    for kind in ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"):
        assert sb[kind] == sa[kind], kind
    assert fa.rotation == fb.rotation == 90
    # 10 bits through: a grey ramp 64 10-bit levels wide keeps its levels (8 bits on the way: about 20)
    assert len(np.unique(y_plane(fb)[40])) > 40, np.unique(y_plane(fb)[40])


def test_ten_bit_frames_too_narrow_for_libx265_here_go_to_libx264_or_are_refused_when_it_is_asked_for(checkpoint,
                                                                                                      tmp_path):
    """Frames 42 wide (14 x 3): the bundled x265 corrupts its memory there and the process aborts."""
    with av.open(str(tmp_path / "tiny.mkv"), "w") as out:
        clips.encode_frames(out, clips.video_stream(out, size=(14, 12), pix_fmt="yuv420p10le"), 3)
    r = upscale_cli(checkpoint, tmp_path / "tiny.mkv")
    assert r.returncode == 0, r.stderr
    with av.open(str(tmp_path / "tiny_srcnn_x3.mkv")) as c:
        assert (c.streams.video[0].profile, c.streams.video[0].codec_context.pix_fmt) == ("High 10", "yuv420p10le")
    r = upscale_cli(checkpoint, tmp_path / "tiny.mkv", "--output", tmp_path / "x.mkv", "--video-codec", "libx265")
    assert r.returncode == 1 and "fails on frames 42 pixels wide here" in r.stderr and not (tmp_path / "x.mkv").exists()


def test_ten_bit_frames_reach_the_upscaler_at_16_bits_in_batches_and_come_back_in_order(checkpoint, tmp_path):
    src = clips.hdr_clip(tmp_path / "hlg.mkv", 18, frames=7)
    upscaler = Upscaler.from_checkpoint(checkpoint)
    given = []

    def frames(batch):  # the image engine's own call, as the GPU path makes it: a list of frames
        given.append([f.dtype for f in batch])
        return upscaler.frames(batch)
    n, _ = upscale_video(str(src), str(tmp_path / "b.mkv"), FramesBy(frames, 3, batch=3))
    assert n == 7 and given == [[np.dtype(np.uint16)] * k for k in (3, 3, 1)]
    ours = [rgb for _, rgb in read_video_frames(str(tmp_path / "b.mkv"))]
    engine = [upscaler(rgb) for _, rgb in read_video_frames(str(src))]
    assert all(o.dtype == np.uint16 and np.abs(o.astype(int) - e).mean() < 3 * 257 for o, e in zip(ours, engine))
    assert packets(tmp_path / "b.mkv", "audio") == packets(src, "audio")


def test_a_film_keeps_every_track_with_its_tags_and_dispositions_its_chapters_and_its_font(checkpoint, tmp_path):
    src = clips.film_mkv(tmp_path / "film.mkv", tmp_path)
    r = upscale_cli(checkpoint, src)
    out = tmp_path / "film_srcnn_x3.mkv"
    assert r.returncode == 0, r.stderr
    with av.open(str(src)) as a, av.open(str(out)) as b:
        def described(c):
            return [(s.type, s.codec_context.name if s.codec_context else s.name, s.disposition,
                     {k: v for k, v in s.metadata.items() if k not in ("DURATION", "ENCODER")}) for s in c.streams]
        assert described(b) == described(a)
        assert [d for _, _, d, _ in described(b)] == [Disposition.default, Disposition.default, Disposition.comment,
                                                       Disposition(0), Disposition.forced, Disposition(0)]
        assert b.streams[5].data == clips.FONT and b.streams[5].mimetype == "application/x-truetype-font"
        assert [(c["start"] * c["time_base"], c["metadata"]) for c in b.chapters()] == \
            [(0, {"title": "Opening"}), (fractions.Fraction(1, 2), {"title": "Ending"})]
        assert b.metadata == {**a.metadata, "ENCODER": b.metadata["ENCODER"]}
    for i in range(1, 5):
        assert stream_packets(out, i) == stream_packets(src, i), i


def test_the_picture_keeps_its_aspect_field_order_and_full_range_colour(checkpoint, tmp_path):
    wide = fractions.Fraction(32, 27)  # 720x480 (here 36x24) shown at 16:9
    anamorphic = clips.flat_video(tmp_path / "anam.mp4", size=(36, 24), sample_aspect_ratio=wide)
    anamorphic_mkv = clips.flat_video(tmp_path / "anam.mkv", size=(36, 24), sample_aspect_ratio=wide)
    interlaced = clips.flat_video(tmp_path / "inter.mkv", options={"flags": "+ildct+ilme", "x264-params": "tff=1"},
                                  field_order=2)
    screen = clips.flat_video(tmp_path / "screen.mp4", fmt="yuv444p", colorspace=1, color_range=2, color_primaries=1,
                              color_trc=1)  # a 4:4:4 screen recording, full range BT.709
    r = upscale_cli(checkpoint, anamorphic, anamorphic_mkv, interlaced, screen, "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr

    def look(path):
        with av.open(str(path)) as c:
            cc = c.streams.video[0].codec_context
            return cc.sample_aspect_ratio, cc.field_order, cc.color_range, cc.colorspace, cc.pix_fmt
    for name in ("anam.mp4", "anam.mkv"):
        assert look(tmp_path / "out" / name.replace(".", "_srcnn_x3."))[0] == fractions.Fraction(32, 27), name
    assert look(tmp_path / "out" / "inter_srcnn_x3.mkv")[1] == 2  # top field first
    assert look(tmp_path / "out" / "screen_srcnn_x3.mp4")[2:] == (2, 1, "yuvj420p")  # 4:2:0 by default: documented


def test_every_container_ffmpeg_reads_is_taken_by_its_content_named_or_in_a_folder(checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    made = [clips.muxed(folder / "cam.avi", "mpeg4", "libmp3lame"), clips.muxed(folder / "cam.ts"),
            clips.muxed(folder / "cam.m2ts", audio="ac3"), clips.muxed(folder / "cam.mts", audio="ac3"),
            clips.muxed(folder / "phone.3gp", "h263", size=(176, 144), frames=3, audio_rate=8000),
            clips.muxed(folder / "web.flv", audio_rate=44100), clips.muxed(folder / "h264.avi", audio="libmp3lame"),
            clips.muxed(folder / "noext.mkv").rename(folder / "noext")]  # no extension: written as .mkv
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # FFmpeg 8 gives a JPEG's EXIF as side data that PyAV 18.1 cannot name
    Image.fromarray(clips.picture(0, (16, 12))).save(folder / "fake.mp4", format="JPEG", exif=exif)
    (folder / "notes.txt").write_text("not a picture")
    r = upscale_cli(checkpoint, folder, "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"skipped {folder / 'notes.txt'}: not an image or video file (by its content)"]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([f"{p.stem}_srcnn_x3{p.suffix or '.mkv'}" for p in made] + ["fake_srcnn_x3.png"])
    for src in made:
        out = tmp_path / "out" / f"{src.stem}_srcnn_x3{src.suffix or '.mkv'}"
        with av.open(str(src)) as a, av.open(str(out)) as b:
            assert b.format.name == a.format.name or not src.suffix, (src, b.format.name)
            assert [s.type for s in b.streams] == [s.type for s in a.streams]
        assert stream_packets(out, 1) == stream_packets(src, 1), src
        got, want = shown_times(out), shown_times(src)
        if src.suffix == ".avi":  # no start time in AVI: its muxer starts at 0 (a decoder's delay is 2 frames here)
            want[0] = 0.0
        assert len(got) == len(want) and got == sorted(got) and all(w in (None, g) for g, w in zip(got, want)), src
    m2ts = (tmp_path / "out" / "cam_srcnn_x3.m2ts").read_bytes()
    assert len(m2ts) % 192 == 0 and m2ts[4] == m2ts[196] == 0x47  # Blu-ray's 192-byte packets, as the input's
    r = upscale_cli(checkpoint, folder / "fake.mp4", "--output", tmp_path / "fake.png")  # named directly
    assert r.returncode == 0 and Image.open(tmp_path / "fake.png").size == (48, 36), r.stderr


def shown_times(path):
    """The times of a video's frames in seconds, as players take them: AVI stores decoding times only (and
    none for the frames a decoder of B-frames gives at the end: None)."""
    with av.open(str(path)) as c:
        avi = c.format.name == "avi"
        times = [f.dts if avi else f.pts for f in c.decode(video=0)]
        return [None if t is None else float(t * c.streams.video[0].time_base) for t in times]


def test_a_stream_the_output_cannot_hold_is_refused_naming_it_and_a_container_that_does(checkpoint, tmp_path):
    film = clips.film_mkv(tmp_path / "film.mkv", tmp_path)
    r = upscale_cli(checkpoint, film, "--output", tmp_path / "film.mp4")
    assert r.returncode == 1 and not (tmp_path / "film.mp4").exists(), r.stderr
    assert r.stderr.endswith(".mp4 cannot hold its stream #3 (subtitle subrip, eng); .mkv holds it\n"), r.stderr
    # a 10-bit WebM (AV1): WebM has no 10-bit encoder here, so the default output is Matroska, at 10 bits
    with av.open(str(tmp_path / "deep.webm"), "w") as out:
        v = out.add_stream("libsvtav1", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p10le"
        clips.encode_frames(out, v, 3)
    r = upscale_cli(checkpoint, tmp_path / "deep.webm")
    assert r.returncode == 0 and "wrote" in r.stdout and (tmp_path / "deep_srcnn_x3.mkv").exists(), r.stderr
    with av.open(str(tmp_path / "deep_srcnn_x3.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    r = upscale_cli(checkpoint, tmp_path / "deep.webm", "--output", tmp_path / "d.webm")
    assert r.returncode == 1 and "10-bit picture needs a 10-bit encoder, and .webm has none here" in r.stderr
    r = upscale_cli(checkpoint, tmp_path / "deep.webm", "--output", tmp_path / "d.mkv", "--video-codec", "libvpx-vp9")
    assert r.returncode == 1 and "libvpx-vp9 encodes 8 bits only here" in r.stderr and not list(tmp_path.glob("d.*"))


def test_an_mp4s_timecode_track_chapters_and_cover_picture_are_kept(checkpoint, tmp_path):
    with av.open(str(tmp_path / "tc.mp4"), "w") as out:
        v = clips.video_stream(out)
        v.metadata["timecode"] = "01:02:03:04"  # the mp4 muxer writes a tmcd track of it
        cover = out.add_stream("mjpeg")  # a cover picture: a one-packet video stream, not the video
        cover.width, cover.height, cover.pix_fmt, cover.disposition = 16, 16, "yuvj420p", Disposition.attached_pic
        jpeg = av.VideoFrame.from_ndarray(clips.picture(0, (16, 16)), format="rgb24").reformat(format="yuvj420p")
        jpeg = cover.encode(jpeg) + cover.encode()
        clips.encode_frames(out, v, 3)
        for packet in jpeg:
            out.mux(packet)
    with av.open(str(tmp_path / "ch.mp4"), "w") as out:  # MP4's chapters: a text track, which FFmpeg discards
        out.set_chapters([{"id": 1, "start": 0, "end": 80, "time_base": fractions.Fraction(1, 1000),
                           "metadata": {"title": "All"}}])
        clips.encode_frames(out, clips.video_stream(out), 3)
    r = upscale_cli(checkpoint, tmp_path / "tc.mp4", tmp_path / "ch.mp4")
    assert r.returncode == 0 and "(3 frames)" in r.stdout, r.stderr
    with av.open(str(tmp_path / "ch.mp4")) as a, av.open(str(tmp_path / "ch_srcnn_x3.mp4")) as b:
        assert [c["metadata"] for c in b.chapters()] == [c["metadata"] for c in a.chapters()] == [{"title": "All"}]
        assert [(s.type, s.discard) for s in b.streams] == [(s.type, s.discard) for s in a.streams]
    with av.open(str(tmp_path / "tc.mp4")) as a, av.open(str(tmp_path / "tc_srcnn_x3.mp4")) as b:
        timecodes = [(s.type, s.metadata.get("timecode"), s.disposition) for s in b.streams]
        assert timecodes == [(s.type, s.metadata.get("timecode"), s.disposition) for s in a.streams]
        assert [(kind, t) for kind, t, _ in timecodes] == [("video", "01:02:03:04"), ("data", "01:02:03:04"),
                                                           ("video", None)]
    assert stream_packets(tmp_path / "tc_srcnn_x3.mp4", 2) == stream_packets(tmp_path / "tc.mp4", 2)  # the JPEG


def test_an_image_format_for_a_video_is_refused_or_said_in_one_line(checkpoint, tmp_path):
    clip = make_clip(tmp_path / "clip.mkv", tmp_path, subtitles=False)
    r = upscale_cli(checkpoint, clip, "--format", "png")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--format png is an image format" in r.stderr
    Image.fromarray(clips.picture(0, (8, 6))).save(tmp_path / "a.png")
    r = upscale_cli(checkpoint, clip, tmp_path / "a.png", "--format", "jpeg", "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "note: --format jpeg applies to the images; videos are written as videos\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_srcnn_x3.jpg", "clip_srcnn_x3.mkv"]


PROBED = ("codec_type", "pix_fmt", "color_range", "color_space", "color_transfer", "color_primaries",
          "sample_aspect_ratio", "display_aspect_ratio", "field_order", "start_time", "nb_read_frames", "disposition",
          "tags", "side_data_list")


def probed(path):
    """What the system's ffprobe reads of ``path``: per stream the fields of :data:`PROBED` (the codec, too, of
    a copied stream), the chapters, the file's tags and the HDR side data of the first frame."""
    info = ffprobe(path, "-count_frames", "-show_streams", "-show_chapters", "-show_format")
    copied = ("codec_name", "codec_tag_string")
    streams = [{k: s.get(k) for k in PROBED + (copied if s["codec_type"] != "video" else ())} for s in info["streams"]]
    for s in streams:
        s["tags"] = {k: v for k, v in (s["tags"] or {}).items() if k.upper() not in ("DURATION", "ENCODER")}
    first = ffprobe(path, "-select_streams", "v:0", "-show_frames")["frames"][0]
    hdr = [d for d in first.get("side_data_list", []) if "Unregistered" not in d["side_data_type"]]
    tags = {k: v for k, v in info["format"].get("tags", {}).items()  # the muxer's own: who wrote it, and its
            if k not in ("encoder", "major_brand", "minor_version", "compatible_brands")}  # brands by the codecs
    return streams, [(c["start_time"], c["end_time"], c["tags"]) for c in info["chapters"]], tags, hdr


@pytest.mark.skipif(FFPROBE is None, reason=NO_FFPROBE)
def test_the_systems_ffprobe_reads_back_what_was_kept(checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    made = [clips.film_mkv(folder / "film.mkv", tmp_path), clips.hdr_clip(folder / "hlg.mp4", 18),
            clips.hdr_clip(folder / "pq.mkv", 16, audio=False),
            clips.trimmed(clips.bframes_mp4(tmp_path / "long.mp4"), folder / "cut.mp4", fractions.Fraction(1, 2)),
            clips.flat_video(folder / "anam.mp4", size=(36, 24), sample_aspect_ratio=fractions.Fraction(32, 27)),
            clips.flat_video(folder / "screen.mp4", fmt="yuv444p", colorspace=1, color_range=2, color_primaries=1,
                             color_trc=1),
            clips.flat_video(folder / "inter.mkv", options={"flags": "+ildct+ilme", "x264-params": "tff=1"},
                             field_order=2),
            clips.muxed(folder / "cam.avi", "mpeg4", "libmp3lame"), clips.muxed(folder / "cam.m2ts", audio="ac3"),
            clips.muxed(folder / "phone.3gp", "h263", size=(176, 144), frames=3, audio_rate=8000),
            clips.muxed(folder / "web.flv", audio_rate=44100)]
    r = upscale_cli(checkpoint, folder, "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    for src in made:
        out = tmp_path / "out" / f"{src.stem}_srcnn_x3{src.suffix}"
        streams_in, chapters_in, tags_in, hdr_in = probed(src)
        streams_out, chapters_out, tags_out, hdr_out = probed(out)
        if src.stem in ("film", "cut", "anam", "inter", "cam", "phone", "web"):  # untagged: tagged as decoded
            streams_in[0].update(color_range="tv", color_space=streams_out[0]["color_space"])
        if src.stem in ("cam", "phone"):  # MPEG-4 Part 2 and H.263 say no field order; H.264 says progressive
            streams_in[0].update(field_order=streams_out[0]["field_order"])
        if src.stem == "screen":  # 4:4:4 -> 4:2:0, the default's documented conversion
            assert (streams_in[0]["pix_fmt"], streams_out[0]["pix_fmt"]) == ("yuvj444p", "yuvj420p")
            streams_in[0]["pix_fmt"] = "yuvj420p"
        assert streams_out == streams_in, src
        assert (chapters_out, tags_out, hdr_out) == (chapters_in, tags_in, hdr_in), src
