"""Videos: every frame upscaled by the image engine, frame count and timestamps (variable frame rate) kept,
audio and subtitle packets copied byte for byte with their language tags, the lossless choice equal to the
image path, and bad videos refused with one line and nothing left behind. Clips are made here with PyAV."""
import fractions

import av
import numpy as np
import pytest
import torch

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
    assert r.returncode == 1 and "does not support" in r.stderr and not (tmp_path / "x.webm").exists()
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
