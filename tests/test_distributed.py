"""torchrun: two CPU processes (gloo) train in step, agree on the weights, and their checkpoint
continues in a single process."""
import subprocess
import sys

import numpy as np
import torch

from conftest import ROOT
import checkpoints


def test_two_processes_match_one_and_their_checkpoint_resumes_alone(image_folder, tmp_path):
    common = ["train", "--train-data", image_folder, "--test-data", image_folder, "--batch-size=4",
              "--num-epoch=2", "--lr=0.003", "--augment"]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "main.py", *common, "--out-dir", str(tmp_path / "ddp")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "weights identical on all 2 processes" in ddp.stdout
    assert ddp.stdout.count("epoch    2/2") == 1  # only rank 0 reports
    single = subprocess.run([sys.executable, "main.py", *common, "--out-dir", str(tmp_path / "one")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    a = checkpoints.load(tmp_path / "ddp" / "checkpoint.last")
    b = checkpoints.load(tmp_path / "one" / "checkpoint.last")
    assert a["world_size"] == 2 and b["world_size"] == 1
    # a global batch of 4 split 2 + 2 gives the gradient of the whole batch: same run, up to rounding
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=1e-4, atol=1e-5)
    r = subprocess.run([sys.executable, "main.py", "resume", str(tmp_path / "ddp" / "checkpoint.last"),
                        "--num-epoch=3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert checkpoints.load(tmp_path / "ddp" / "checkpoint.last")["epoch"] == 3


def test_torchrun_shares_the_inputs_of_super_resolve_each_done_once_and_one_summary(checkpoint, tmp_path):
    from PIL import Image
    from test_video import make_clip
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    make_clip(folder / "clip.mkv", tmp_path)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "super_resolve.py", "--checkpoint", checkpoint, str(folder), "--output-dir",
                        str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    wrote = [line for line in r.stdout.splitlines() if line.startswith("wrote ")]
    assert r.returncode == 1, r.stderr[-3000:]
    assert len(wrote) == len(set(wrote)) == 6, r.stdout  # 5 images and the video, each by one process
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"img{i}_srcnn_x3.png" for i in range(5)] + ["clip_srcnn_x3.mkv"])
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "broken.png" in errors[0], r.stderr[-3000:]
    assert errors[1] == "error: 1 of 7 inputs failed (2 processes)"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "super_resolve.py", "--checkpoint", checkpoint, str(folder / "img0.png"),
                        str(folder / "img1.png"), "--output-dir", str(tmp_path / "out")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.count("error:") == 1 and "exist already" in r.stderr, r.stderr[-3000:]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "super_resolve.py", "--checkpoint", checkpoint, str(folder / "img0.png"),
                        "--output-dir", str(tmp_path / "one")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "1 image upscaled by 2 processes", r.stdout


def test_each_line_is_one_write_so_the_processes_lines_cannot_run_together(monkeypatch):
    import io
    from distributed import whole_lines

    class Pipe(io.RawIOBase):  # what the processes share, recording each write torchrun's `python -u` makes
        def __init__(self):
            self.writes = []

        def writable(self):
            return True

        def write(self, b):
            self.writes.append(bytes(b))
            return len(b)

    pipes = Pipe(), Pipe()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(pipes[0], write_through=True))  # as `python -u` sets it
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(pipes[1], write_through=True))
    whole_lines()
    print("wrote a.png")
    print("error: b.png", file=sys.stderr)
    print("wrote c.png")
    assert pipes[0].writes == [b"wrote a.png\n", b"wrote c.png\n"] and pipes[1].writes == [b"error: b.png\n"]


def test_a_single_process_group_is_the_whole_job_and_costs_nothing():
    from distributed import Group
    group = Group.from_env() if "WORLD_SIZE" not in __import__("os").environ else Group()
    assert (group.rank, group.world, group.main) == (0, 1, True)
    assert group.join() is group and group.totals(2, True) == [2, 1]
    assert group.share(list("abcde")) == list("abcde") and Group(1, 2).share(list("abcde")) == ["b", "d"]
    assert group.same_everywhere(torch.ones(3)) and group.all_reduce(torch.ones(2)).tolist() == [1.0, 1.0]
    group.barrier()
    group.leave()
