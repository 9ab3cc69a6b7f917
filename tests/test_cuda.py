"""The --cuda paths on a real GPU: skipped, saying so, where there is none (CI has none)."""
import copy

import numpy as np
import pytest
import torch

from conftest import ROOT, cli
from model import SRCNN
from inference import apply_network_float, prepare, upscale, upscale_frames
import checkpoints

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_gpu_inference_matches_the_cpu():
    torch.manual_seed(0)
    model = SRCNN().eval()
    gpu = prepare(copy.deepcopy(model), torch.device("cuda"))
    img = np.random.default_rng(0).integers(0, 256, (97, 130, 3), dtype=np.uint8)
    cpu_out = apply_network_float(model, img, tile=40)
    gpu_out = apply_network_float(gpu, img, tile=40)
    assert (gpu_out - cpu_out).abs().max() < 1e-3  # cuDNN may use TF32; a quantisation step is 3.9e-3


def test_the_gpu_pipeline_matches_the_cpu_one_to_one_level():
    """bicubic on the GPU + network, 8 bits in and out, against Pillow's bicubic + network on the CPU."""
    torch.manual_seed(0)
    model = SRCNN().eval()
    gpu = prepare(copy.deepcopy(model), torch.device("cuda"))
    lr = np.random.default_rng(1).integers(0, 256, (41, 57, 3), dtype=np.uint8)
    for scale in (2, 3, 4):
        diff = np.abs(upscale(gpu, lr, scale).astype(int) - upscale(model, lr, scale).astype(int))
        assert diff.max() <= 1, scale  # the bicubic is exact; cuDNN's TF32 may move a rounding by one level


def test_video_frames_batched_on_the_gpu_match_the_cpu_one_at_a_time():
    torch.manual_seed(0)
    model = SRCNN().eval()
    gpu = prepare(copy.deepcopy(model), torch.device("cuda"))
    frames = list(np.random.default_rng(2).integers(0, 256, (5, 30, 44, 3), dtype=np.uint8))
    for got, frame in zip(upscale_frames(gpu, frames, 3, tile=64), frames):
        assert np.abs(got.astype(int) - upscale(model, frame, 3).astype(int)).max() <= 1


@pytest.mark.parametrize("amp", [False, True])
def test_train_on_gpu_then_resume_and_evaluate_on_cpu(tiny_run, tmp_path, amp):
    out = tiny_run("train", "--cuda", "--lr=0.001", "--num-epoch=2", *(["--amp"] if amp else []))
    ckpt = checkpoints.load(out / "checkpoint.last")
    assert ckpt["epoch"] == 2 and ckpt["args"]["cuda"] and all(t.device.type == "cpu" for t in
                                                               ckpt["state_dict"].values())
    import main
    main.main(["resume", str(out / "checkpoint.last"), "--num-epoch=3", "--no-cuda"])
    again = checkpoints.load(out / "checkpoint.last")
    assert again["epoch"] == 3 and np.isfinite(again["psnr"])


def test_super_resolve_cuda_images_and_a_video_match_the_cpu(tmp_path):
    """The command line with --cuda (its 1024-pixel tiles, 8 frames a batch, a last batch of packets only) on a
    picture and on a clip with sound and subtitles, against the same call on the CPU."""
    from PIL import Image
    from test_video import decoded, make_clip, packets
    src = make_clip(tmp_path / "clip.mkv", tmp_path)  # 8 frames: one full batch, then the trailing packets
    picture = tmp_path / "bird.png"
    Image.open(f"{ROOT}/image_examples/lr/bird.bmp").save(picture)
    for device in ("cpu", "cuda"):
        r = cli("super_resolve.py", src, picture, "--video-codec", "ffv1", "--output-dir", tmp_path / device,
                *(["--cuda"] if device == "cuda" else []))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    gpu, cpu = (np.asarray(Image.open(tmp_path / d / "bird_srcnn_x3.png")).astype(int) for d in ("cuda", "cpu"))
    assert np.abs(gpu - cpu).max() <= 1
    gpu, cpu = (decoded(tmp_path / d / "clip_srcnn_x3.mkv") for d in ("cuda", "cpu"))
    assert [t for t, _ in gpu] == [t for t, _ in cpu] and len(gpu) == 8
    assert max(np.abs(g.astype(int) - c.astype(int)).max() for (_, g), (_, c) in zip(gpu, cpu)) <= 1
    assert packets(tmp_path / "cuda" / "clip_srcnn_x3.mkv", "audio") == packets(src, "audio")


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p"])
def test_a_video_with_its_colours_converted_on_the_gpu_is_the_host_paths_within_a_few_levels(tmp_path, pix_fmt):
    """tests/test_yuv.py's whole-job check with the shipped network on the GPU: the host path (swscale's
    colours) and the device path (yuv.py's on the GPU, pinned copies, frames downloaded while the next batch
    runs), both lossless. The network sharpens, so the conversions' 1-level differences grow to up to 3 levels
    (measured with the network on the CPU: 1 to 3 levels, 97% to 99% of samples equal)."""
    import av
    import video
    from clips import encode_frames, video_stream
    from inference import Upscaler
    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        encode_frames(out, video_stream(out, "libx264", (64, 48), pix_fmt=pix_fmt), 11)
    upscaler = Upscaler.from_checkpoint(f"{ROOT}/checkpoint.pth", device="cuda", precision="fp16")
    lossless = video.Encoding("libx264", crf=0)
    video.upscale_video(str(src), str(tmp_path / "host.mkv"), upscaler, lossless)
    video.upscale_video(str(src), str(tmp_path / "dev.mkv"), upscaler, lossless, device=upscaler.device)
    frames = []
    for name in ("host.mkv", "dev.mkv"):
        with av.open(str(tmp_path / name)) as f:
            frames.append([np.concatenate([p.ravel() for p in video._planes(fr, np.uint8 if fr.format.name
                                                                            .endswith("p") else np.uint16)])
                           .astype(int) for fr in f.decode(video=0)])
    assert len(frames[0]) == len(frames[1]) == 11
    for a, b in zip(*frames):
        assert np.abs(a - b).max() <= 3 and np.mean(a == b) > 0.95
