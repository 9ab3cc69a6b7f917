"""The benchmark scripts run end to end (their figures are for the README, not asserted here)."""
import subprocess
import sys

from conftest import ROOT


def test_train_speed_benchmark_runs_both_loops_and_reports_ratios(image_folder):
    r = subprocess.run([sys.executable, "benchmarks/train_speed.py", "--train-data", image_folder, "--batches", "2",
                        "--batch-size", "2", "--rounds", "1", "--amp"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[1].startswith("round 1: plain ")
    assert "project" in lines[1] and "amp" in lines[1] and "x)" in lines[1]
    assert lines[-1].startswith("median ratio to plain: project ")


def test_inference_benchmark_reports_processes_and_each_precision_whole_and_tiled():
    r = subprocess.run([sys.executable, "benchmarks/inference.py", "--size", "90x60", "--process", "40x30",
                        "--precision", "fp32", "bf16", "--repeat", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("device: ")
    assert lines[1].startswith("super_resolve.py fp32 40x30 -> 120x90: ") and "peak RSS" in lines[1]
    assert lines[2].startswith("super_resolve.py bf16 40x30 -> 120x90: ")
    assert lines[3].startswith("plain fp32 NCHW whole image, 30x20 -> 90x60:")
    assert [l.split()[:2] for l in lines[4:]] == [["fp32", "memory-bandwidth"], ["fp32", "whole"], ["fp32", "tile"],
                                                  ["bf16", "memory-bandwidth"], ["bf16", "whole"], ["bf16", "tile"]]
    assert "792 bytes of activations an output pixel" in lines[4]  # float32: 4 x (3+64 + 64+32 + 32+3)
    runs = [l for l in lines[4:] if "bandwidth bound:" not in l]
    assert all("30x20 -> 90x60" in l and "MP/s" in l and "frames/s" in l and "matrix-product rate" in l
               and "% of the bandwidth bound" in l for l in runs)
    assert runs[0].endswith("difference from fp32: 0")


def test_video_benchmark_times_each_stage_and_the_whole_job():
    r = subprocess.run([sys.executable, "benchmarks/video.py", "--size", "48x32", "--frames", "6",
                        "--network-frames", "2", "--precision", "fp32", "bf16", "--presets", "veryfast", "medium"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("device: ") and "6 frames of 48x32" in lines[0]
    ten_bit = ["10-bit whole job (High 10 in, Main 10 out, libx265 --preset veryfast)",
               "pipeline alone (8-bit, libx264)", "pipeline alone (10-bit, Main 10, libx265)",
               "pipeline alone (10-bit, High 10, libx264)"]
    assert [l.split(":")[0] for l in lines[1:]] == ["decode", "fp32 network", "encode", "encode", "encode",
                                                    "fp32 whole job (--preset veryfast)", "fp32 slowest stage",
                                                    *ten_bit, "bf16 network", "bf16 whole job (--preset veryfast)",
                                                    "bf16 slowest stage"]
    assert "48x32 -> 144x96" in lines[2] and "--preset medium" in lines[4]
    assert "frame threads" in lines[5]
    assert all("frames/s" in l for l in lines[1:]) and "% of the network's rate (6 frames in" in lines[6]
    assert lines[7].split(":")[1].split()[0] in ("decode", "network", "encode") and "% of its rate" in lines[7]


def test_epoch_probe_trains_and_reports_every_epoch(image_folder, tmp_path):
    r = subprocess.run([sys.executable, "benchmarks/epoch_probe.py", "--train-data", image_folder, "--test-data",
                        image_folder, "--batch-size", "4", "--num-epoch", "2", "--out-dir", str(tmp_path / "run")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    probes = [l for l in r.stdout.splitlines() if l.startswith("probe epoch")]
    assert [p.split(":")[0] for p in probes] == ["probe epoch 1", "probe epoch 2"]
    assert all("s wall" in p and "fixed pass" in p and "page faults" in p for p in probes)
    assert (tmp_path / "run" / "checkpoint.last").exists()
