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


def test_inference_benchmark_reports_memory_and_both_speeds():
    r = subprocess.run([sys.executable, "benchmarks/inference.py", "--size", "40", "--compare-size", "30"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "40x40 -> 120x120: peak RSS" in r.stdout and "whole image" in r.stdout, r.stdout
