"""The device path's colour conversion (yuv.py) against swscale's, which the CPU path uses: YUV to RGB for each
layout, matrix and range, RGB to 4:2:0 back, flat colours exactly, and a whole video upscaled with its colours
converted on a torch device (here the CPU) against the host path."""
import io

import numpy as np
import pytest
import torch

import video
import yuv

av = pytest.importorskip("av")

SWS_NAMES = {1: "ITU709", 5: "ITU601", 9: "BT2020"}
FULL, LIMITED = 2, 1


def scene(h, w, seed=0):
    """An (H, W, 3) uint8 picture with what conversions get wrong: smooth gradients, hard edges between
    saturated colours, fine stripes, and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(9 * xx), np.cos(7 * yy), np.sin(5 * (xx + yy))], -1) * 100 + 128
    img[h // 3:h // 2, :w // 2] = (230, 30, 40)  # a red block on a green one: chroma edges
    img[h // 3:h // 2, w // 2:] = (20, 200, 60)
    img[h // 2:, ::3] = 250  # stripes
    return (img + rng.normal(0, 6, img.shape)).clip(0, 255).astype(np.uint8)


def yuv_frame(rgb, fmt, space, rng):
    """``rgb`` converted by swscale (the project's flags) to a frame of ``fmt`` in ``space`` and range ``rng``."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    out = frame.reformat(format=fmt, dst_colorspace=SWS_NAMES[space], dst_color_range=rng,
                         interpolation=video.SWS_FLAGS)
    out.colorspace, out.color_range = space, rng
    return out


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le"])
@pytest.mark.parametrize("space", [1, 5, 9])
@pytest.mark.parametrize("rng", [LIMITED, FULL])
def test_yuv_to_rgb_matches_swscale_within_a_level(fmt, space, rng):
    bits, sub = video.PLANAR[fmt]
    frame = yuv_frame(scene(48, 64), fmt, space, rng)
    deep = bits > 8
    ref = frame.to_ndarray(format="rgb48le" if deep else "rgb24", src_colorspace=SWS_NAMES[space],
                           src_color_range=rng, interpolation=video.SWS_FLAGS).astype(int)
    siting = video._chroma_siting(frame) if sub != (0, 0) else yuv.CENTER
    planes = [torch.from_numpy(p.copy())[None] for p in video._planes(frame, np.int16 if deep else np.uint8)]
    ours = yuv.rgb_from_yuv(planes, space, rng == FULL, bits, sub, siting)[0].numpy().astype(int)
    diff = np.abs(ours - ref)
    if deep:  # 16-bit RGB, white 65280: a 10-bit level is 64 of these
        assert diff.max() <= 16, diff.max()
    else:  # within a level, and mostly swscale's very values
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.95, (diff.max(), np.mean(diff == 0))


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("space", [1, 5])
@pytest.mark.parametrize("rng", [LIMITED, FULL])
def test_rgb_to_yuv420_matches_swscale_within_a_level(bits, space, rng):
    rgb = scene(48, 64, seed=1)
    fmt = "yuv420p" if bits == 8 else "yuv420p10le"
    if bits == 8:
        frame, tensor = av.VideoFrame.from_ndarray(rgb, format="rgb24"), torch.from_numpy(rgb)
    else:
        rgb16 = rgb.astype(np.uint16) * 256  # how 10-bit video is carried: rgb48, white 65280
        frame, tensor = av.VideoFrame.from_ndarray(rgb16, format="rgb48le"), torch.from_numpy(rgb16.astype(np.int32))
    out = frame.reformat(format=fmt, dst_colorspace=SWS_NAMES[space], dst_color_range=rng,
                         interpolation=video.SWS_FLAGS)
    ref = np.concatenate([p.ravel() for p in video._planes(out, np.uint8 if bits == 8 else np.uint16)]).astype(int)
    ours = yuv.yuv420_from_rgb(tensor[None], space, rng == FULL, bits)[0].numpy().ravel().astype(int)
    diff = np.abs(ours - ref)
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.9, (diff.max(), np.mean(diff == 0))


def flat_colours():
    corners = [(r, g, b) for r in (0, 255) for g in (0, 255) for b in (0, 255)]
    return corners + [(v, v, v) for v in range(0, 256, 17)] + [(238, 238, 238), (200, 30, 90)]


@pytest.mark.parametrize("rng", [LIMITED, FULL])
def test_a_flat_colour_keeps_swscales_exact_values_both_ways(rng):
    """Each flat colour: its 4:2:0 planes are swscale's exactly, and so is the RGB read back from them."""
    for colour in flat_colours():
        rgb = np.full((16, 16, 3), colour, np.uint8)
        frame = yuv_frame(rgb, "yuv420p", 1, rng)
        ref_planes = np.concatenate([p.ravel() for p in video._planes(frame)])
        ours_planes = yuv.yuv420_from_rgb(torch.from_numpy(rgb)[None], 1, rng == FULL, 8)[0].numpy().ravel()
        np.testing.assert_array_equal(ours_planes, ref_planes, err_msg=str(colour))
        ref = frame.to_ndarray(format="rgb24", src_colorspace="ITU709", src_color_range=rng,
                               interpolation=video.SWS_FLAGS)
        planes = [torch.from_numpy(p.copy())[None] for p in video._planes(frame)]
        ours = yuv.rgb_from_yuv(planes, 1, rng == FULL, 8, (1, 1), video._chroma_siting(frame))[0].numpy()
        np.testing.assert_array_equal(ours, ref, err_msg=str(colour))


def test_chroma_siting_is_read_from_the_decoded_frame(tmp_path):
    """H.264 chroma is co-sited left (its default); a frame made from an array states none (centred)."""
    from clips import encode_frames, video_stream
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        encode_frames(out, video_stream(out), 2)
    with av.open(str(path)) as f:
        frame = next(f.decode(video=0))
    assert video._chroma_siting(frame) == yuv.LEFT
    assert video._chroma_siting(yuv_frame(scene(16, 16), "yuv420p", 1, LIMITED)) == yuv.CENTER


class Doubler:
    """An upscaler (what video.upscale_video takes) that repeats pixels, on arrays and on tensors."""
    scale, batch = 2, 3

    def frames(self, frames):
        return [np.repeat(np.repeat(f, 2, 0), 2, 1) for f in frames]

    def tensors(self, frames):
        return frames.repeat_interleave(2, -3).repeat_interleave(2, -2)


def decoded_planes(path):
    with av.open(str(path)) as f:
        return [np.concatenate([p.ravel() for p in video._planes(fr, np.uint8 if fr.format.name == "yuv420p"
                                                                      else np.uint16)]).astype(int)
                for fr in f.decode(video=0)]


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv422p", "yuv444p", "yuvj420p", "yuv420p10le", "yuv422p10le"])
@pytest.mark.parametrize("space, rng", [(1, LIMITED), (5, LIMITED), (1, FULL), (9, LIMITED)])
def test_a_frame_through_the_device_path_is_the_host_paths_within_a_level(fmt, space, rng):
    """One decoded frame through each path's three steps (decoded, upscaled, encoded), the colours converted on
    a torch device (the CPU here) or by swscale: the frames handed to the encoder, plane by plane, within 1 level
    and mostly equal, in the same pixel format, range and matrix."""
    deep = "10" in fmt
    rgb = scene(48, 64)
    frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint16) * 256 if deep else rgb,
                                       format="rgb48le" if deep else "rgb24")
    frame = frame.reformat(format=fmt, dst_colorspace=SWS_NAMES[space], dst_color_range=rng,
                           interpolation=video.SWS_FLAGS)
    frame.colorspace, frame.color_range = space, rng
    look = video.Look((space, SWS_NAMES[space], rng), 1, 1, None, 1, deep)  # yuvj: full, whatever it says
    out_fmt = "yuv420p10le" if deep else "yuv420p"
    with av.open(io.BytesIO(), "w", format="matroska") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 128, 96, out_fmt
        done = []
        for path in (video._OnHost(Doubler(), look), video._OnDevice(Doubler(), look, out_fmt, torch.device("cpu"))):
            done.append(path.encoded(path.upscaled([path.decoded(frame)])[0], v))
    host, dev = done
    assert host.format.name == dev.format.name == out_fmt and host.color_range == dev.color_range
    a, b = (np.concatenate([p.ravel() for p in video._planes(f, np.uint16 if deep else np.uint8)]).astype(int)
            for f in done)
    assert np.abs(a - b).max() <= 1 and np.mean(a == b) > 0.95, (np.abs(a - b).max(), np.mean(a == b))


def test_a_video_with_its_colours_converted_on_a_device_is_the_host_paths_within_a_level(tmp_path):
    """The whole job, lossless (libx264 at crf 0), with the colours converted on a torch device (the CPU here)
    against the host path: the same frames, each plane's sample within 1 level. (At 10 bits libx264's crf 0 is
    not lossless, so a level's difference grows in the encoder: the test above checks 10 bits.)"""
    from clips import encode_frames, video_stream
    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        encode_frames(out, video_stream(out, "libx264", (48, 32)), 7)
    lossless = video.Encoding("libx264", crf=0)
    host, _ = video.upscale_video(str(src), str(tmp_path / "host.mkv"), Doubler(), lossless)
    dev, _ = video.upscale_video(str(src), str(tmp_path / "dev.mkv"), Doubler(), lossless, device="cpu")
    assert host == dev == 7
    a, b = decoded_planes(tmp_path / "host.mkv"), decoded_planes(tmp_path / "dev.mkv")
    assert len(a) == len(b) == 7
    for x, y in zip(a, b):
        assert np.abs(x - y).max() <= 1 and np.mean(x == y) > 0.9, (np.abs(x - y).max(), np.mean(x == y))
