"""The training CLI end to end on tiny synthetic images: train, resume, inspect, evaluate."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import checkpoints
import main
from conftest import ROOT, cli


def weights(path):
    return checkpoints.load(path)["state_dict"]


def test_train_writes_periodic_best_and_last_checkpoints(tiny_run):
    out = tiny_run("train", "--lr=0.001", "--num-epoch=4", "--save-freq=2")
    names = sorted(os.listdir(out))
    assert {"checkpoint.2", "checkpoint.4", "checkpoint.best", "checkpoint.last", "config.json"} <= set(names)
    assert not any(n.startswith("checkpoint.1") or n.startswith("checkpoint.3") for n in names)
    assert any(n.startswith("events.out.tfevents") for n in names)  # TensorBoard log
    ckpt = checkpoints.load(out / "checkpoint.4")
    assert ckpt["epoch"] == 4 and ckpt["batch"] == 0
    assert [h["epoch"] for h in ckpt["history"]] == [1, 2, 3, 4]
    assert ckpt["psnr"] == ckpt["history"][-1]["y_psnr"]
    assert ckpt["best_psnr"] == max(h["y_psnr"] for h in ckpt["history"])
    assert checkpoints.load(out / "checkpoint.best")["psnr"] == ckpt["best_psnr"]
    assert set(ckpt["optimizer"]) == {"state", "param_groups"}
    assert ckpt["args"]["lr"] == 0.001 and ckpt["args"]["save_freq"] == 2


def test_a_new_run_never_writes_over_an_earlier_one(tiny_run, image_folder, tmp_path):
    out = tiny_run("train", "--num-epoch=1")
    before = {n: (out / n).read_bytes() for n in os.listdir(out) if n.startswith("checkpoint")}
    r = cli("main.py", "train", "--train-data", image_folder, "--test-data", image_folder, "--out-dir", out,
            "--num-epoch=1", "--scale=2")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: {out} already holds a run (checkpoint.best, checkpoint.last, config.json): "
                                "continue it with --resume-from-last or `main.py resume`, or give another --out-dir")
    assert {n: (out / n).read_bytes() for n in before} == before


def test_savefreq_alias_and_flag_validation(tiny_run, capsys):
    out = tiny_run("train", "--num-epoch=2", "--savefreq=1")
    assert os.path.exists(out / "checkpoint.1")
    for bad in ["--lr=0", "--lr=-1", "--lr=abc", "--batch-size=0", "--batch-size=2.5", "--num-epoch=-3",
                "--save-freq=0", "--savefreq=x", "--lr=nan"]:
        with pytest.raises(SystemExit) as e:
            main.main(["train", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err, (bad, err)


def test_resume_continues_exactly_where_the_run_stopped(tiny_run):
    # a constant schedule: with cosine the schedule itself depends on --num-epoch
    straight = tiny_run("train", "--num-epoch=4", "--lr=0.003", "--augment", "--warmup-epochs=1", out="a")
    half = tiny_run("train", "--num-epoch=2", "--lr=0.003", "--augment", "--warmup-epochs=1", out="b")
    # the saved hyperparameters come back; --num-epoch given on the command line overrides the saved 2
    main.main(["resume", str(half / "checkpoint.last"), "--num-epoch=4"])
    a, b = checkpoints.load(straight / "checkpoint.last"), checkpoints.load(half / "checkpoint.last")
    assert b["epoch"] == 4 and b["args"]["lr"] == 0.003 and b["args"]["augment"] is True
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k  # bitwise identical
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_resume_flags_override_saved_ones(tiny_run):
    run = tiny_run("train", "--num-epoch=1", "--lr=0.002")
    main.main(["resume", str(run / "checkpoint.last"), "--num-epoch=2", "--lr=0.0005", "--batch-size=4"])
    args = checkpoints.load(run / "checkpoint.last")["args"]
    assert (args["lr"], args["batch_size"], args["num_epoch"], args["seed"]) == (0.0005, 4, 2, 0)


def test_resume_to_an_epoch_already_reached_is_refused(tiny_run, capsys):
    run = tiny_run("train", "--num-epoch=2")
    with pytest.raises(SystemExit) as e:
        main.main(["resume", str(run / "checkpoint.last")])
    assert "already completed 2 epochs" in str(e.value.code)


def test_inspect_reports_what_the_checkpoint_holds(tiny_run, capsys):
    run = tiny_run("train", "--num-epoch=3", "--save-freq=3", "--lr=0.002", "--name=Ada", "--email=a@b.c")
    capsys.readouterr()
    main.main(["inspect", str(run / "checkpoint.3")])
    text = capsys.readouterr().out
    ckpt = checkpoints.load(run / "checkpoint.3")
    assert "epoch:      3\n" in text
    assert f"test PSNR:  {ckpt['psnr']:.3f} dB" in text
    assert "  lr                 0.002\n" in text and "  batch_size         8\n" in text
    assert "  name               Ada\n" in text and "  email              a@b.c\n" in text


def test_evaluate_prints_srcnn_beside_bicubic_whole_image_and_self_ensemble(tiny_run, image_folder, capsys):
    run = tiny_run("train", "--num-epoch=1")
    capsys.readouterr()
    main.main(["evaluate", str(run / "checkpoint.last"), "--data", image_folder, "--self-ensemble"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("x3, 3 images")
    assert "bicubic Y-PSNR" in lines[1] and "SRCNN Y-PSNR" in lines[1] and "SRCNN+ Y-PSNR" in lines[1]
    assert [l.split()[0] for l in lines[2:6]] == ["img0", "img1", "img2", "mean"]
    single = [float(v) for v in lines[5].split("|")[2].split()]
    last = checkpoints.load(run / "checkpoint.last")["history"][-1]
    assert single[0] == pytest.approx(last["y_psnr"], abs=1e-3)  # border-shaved, as training scored it
    assert single[1] == pytest.approx(last["y_psnr_whole"], abs=1e-3)
    assert lines[6].startswith("network time on cpu: single pass") and "self-ensemble" in lines[6]


@pytest.mark.parametrize("scale", [2, 4])
def test_the_scale_travels_from_training_to_resume_inspect_evaluate_and_super_resolve(
        scale, tiny_run, image_folder, tmp_path, capsys):
    run = tiny_run("train", "--num-epoch=1", f"--scale={scale}")
    main.main(["resume", str(run / "checkpoint.last"), "--num-epoch=2"])
    ckpt = checkpoints.load(run / "checkpoint.last")
    assert ckpt["args"]["scale"] == scale and ckpt["epoch"] == 2
    capsys.readouterr()
    main.main(["inspect", str(run / "checkpoint.last")])
    text = capsys.readouterr().out
    assert f"scale:      x{scale}\n" in text and f"border {scale})" in text
    assert ckpt["info"]["name"] == f"srcnn-x{scale}"  # the Info record's default name says its scale
    main.main(["evaluate", str(run / "checkpoint.last"), "--data", image_folder])
    assert capsys.readouterr().out.startswith(f"x{scale}, 3 images")
    r = cli("super_resolve.py", "--checkpoint", run / "checkpoint.last", f"{image_folder}/img1.png",
            "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    from PIL import Image
    assert Image.open(tmp_path / "out" / f"img1_srcnn_x{scale}.png").size == (48 * scale, 48 * scale)


def test_checkpoints_without_a_recorded_scale_load_as_x3(tiny_run, tmp_path, capsys):
    run = tiny_run("train", "--num-epoch=1")
    ckpt = checkpoints.load(run / "checkpoint.last")
    del ckpt["args"]["scale"]
    checkpoints.save(ckpt, tmp_path / "old.pth")
    capsys.readouterr()
    main.main(["inspect", str(tmp_path / "old.pth")])
    assert "scale:      x3\n" in capsys.readouterr().out


def test_data_of_another_scale_is_refused(image_folder, tmp_path, capsys):
    from datasets import write_train_h5
    write_train_h5(image_folder, tmp_path / "x2.h5", scale=2)
    with pytest.raises(SystemExit) as e:
        main.main(["train", "--train-data", str(tmp_path / "x2.h5"), "--test-data", image_folder, "--num-epoch=1"])
    assert "holds x2 pairs, but x3 was asked for" in str(e.value.code)


def test_cuda_without_a_gpu_and_no_subcommand_fail_in_one_line():
    """The real entry points, each in a process of its own (elsewhere the tools run in-process: conftest.cli)."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the no-GPU message cannot be tested here")
    for argv in (["main.py", "train", "--cuda", "--num-epoch=1"], ["main.py", "resume", "x.pth", "--cuda"],
                 ["main.py"], ["super_resolve.py", "--checkpoint", "nope.pth", "x.png", "--cuda"]):
        r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (argv, r.stderr)


def test_default_data_is_built_from_data_folders_on_first_use(image_folder, tmp_path, monkeypatch):
    import shutil
    work = tmp_path / "work"
    shutil.copytree(image_folder, work / "data" / "T91")
    shutil.copytree(image_folder, work / "data" / "Set5")
    monkeypatch.chdir(work)
    main.main(["train", "--num-epoch=1", "--batch-size=8", "--out-dir=run"])
    assert (work / "data" / "T91_x3_train.h5").exists() and (work / "data" / "Set5_x3_test.h5").exists()
    assert checkpoints.load(work / "run" / "checkpoint.last")["epoch"] == 1
    shutil.rmtree(work / "data" / "T91")  # the built file is used from now on
    main.main(["resume", "run/checkpoint.last", "--num-epoch=2"])
    assert checkpoints.load(work / "run" / "checkpoint.last")["epoch"] == 2


def test_loss_border_too_wide_for_the_patches_is_refused(tiny_run):
    with pytest.raises(SystemExit) as e:
        tiny_run("train", "--num-epoch=1", "--loss-border=17")
    assert "--loss-border 17 leaves nothing of the 33x33 patches" in str(e.value.code)


def test_a_checkpoint_older_than_a_flag_resumes_with_its_default(tiny_run, tmp_path):
    run = tiny_run("train", "--num-epoch=1")
    ckpt = checkpoints.load(run / "checkpoint.last")
    for k in ("loss", "chroma_weight", "loss_border"):  # as written before these flags existed
        del ckpt["args"][k]
    checkpoints.save(ckpt, run / "old")
    main.main(["resume", str(run / "old"), "--num-epoch=2"])
    resumed = checkpoints.load(run / "checkpoint.last")
    assert resumed["epoch"] == 2 and resumed["args"]["loss"] == "rgb" and resumed["args"]["loss_border"] == 0


def test_help_shows_every_default_zero_included():
    text = " ".join(main.build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    for flag, default in [("--seed SEED", "0"), ("--warmup-epochs WARMUP_EPOCHS", "0.0"),
                          ("--loss-border LOSS_BORDER", "0"), ("--num-epoch NUM_EPOCH", "100")]:
        described = text.split(f"{flag} ")[-1].split("--")[0].rstrip()  # the flag's entry, not the usage line
        assert f"{flag} " in text and described.endswith(f"(default: {default})"), flag


def test_inspect_plot_and_evaluate_save_images_refuse_bad_paths_in_one_line(image_folder, tmp_path):
    ckpt = f"{ROOT}/checkpoint.pth"
    for plot, why in [(tmp_path / "nodir" / "p.png", "does not exist"), (tmp_path / "p.txt", "ending in .png")]:
        r = cli("main.py", "inspect", ckpt, "--plot", plot)
        assert r.returncode == 1 and r.stdout == "" and why in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = cli("main.py", "inspect", ckpt, "--plot", tmp_path / "p.svg")
    assert r.returncode == 0 and (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")
    (tmp_path / "taken").write_text("mine")
    r = cli("main.py", "evaluate", ckpt, "--data", image_folder, "--save-images", tmp_path / "taken")
    assert r.returncode == 1 and "is a file" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "taken").read_text() == "mine"


def test_resume_of_an_older_checkpoint_refuses_to_write_over_the_later_ones(tiny_run, tmp_path, capsys):
    run = tiny_run("train", "--num-epoch=2", "--save-freq=1")
    before = {n: (run / n).read_bytes() for n in os.listdir(run) if n.startswith("checkpoint.")}
    r = cli("main.py", "resume", run / "checkpoint.1", "--lr=0.05")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "further into the run than" in r.stderr and "checkpoint.2" in r.stderr and "--out-dir" in r.stderr
    assert f"main.py resume {run / 'checkpoint.last'}" in r.stderr
    assert {n: (run / n).read_bytes() for n in before} == before  # nothing written over
    branch = tmp_path / "branch"
    r = cli("main.py", "resume", run / "checkpoint.1", "--lr=0.05", "--out-dir", branch)
    assert r.returncode == 0, r.stderr
    assert "resuming after 1 epoch\n" in r.stdout  # not "1 epochs"
    assert checkpoints.load(branch / "checkpoint.last")["epoch"] == 2
    assert {n: (run / n).read_bytes() for n in before} == before
    r = cli("main.py", "resume", run / "checkpoint.1", "--out-dir", branch, "--num-epoch=3")  # a folder in use
    assert r.returncode == 1 and "already holds a run" in r.stderr


def test_train_ends_naming_its_best_epoch_and_config_json_holds_the_values_used(tiny_run, capsys):
    import json
    run = tiny_run("train", "--num-epoch=2")
    out = capsys.readouterr().out.splitlines()
    best = checkpoints.load(run / "checkpoint.best")
    assert out[-2] == (f"best: epoch {best['epoch']}, test PSNR-Y {best['psnr']:.3f} dB, saved as "
                       f"{run / 'checkpoint.best'}")
    assert out[-1] == f"upscale with it: python super_resolve.py --checkpoint {run / 'checkpoint.best'} IMAGE"
    config = json.loads((run / "config.json").read_text())
    assert config["name"] == "srcnn-x3" and config["out_dir"] == str(run)
    assert config["train_data"] and config["test_data"] and config["kernels"] == [9, 1, 5]
    assert config == {k: list(v) if isinstance(v, tuple) else v for k, v in best["args"].items()}


@pytest.mark.parametrize("tool", [["main.py", "train", "--num-epoch=1"], ["super_resolve.py", "x.png"],
                                  ["datasets.py", "data/T91", "x.h5", "--kind", "train"]],
                         ids=["main", "super_resolve", "datasets"])
def test_ctrl_c_while_torch_loads_ends_in_one_line_with_status_130(tool):
    """The signal is sent once the process has mapped torch's library into memory, so it lands in the middle of
    the imports, every time. The process starts with SIGINT at its default, as from a terminal: a suite run in
    the background of a shell without job control inherits SIGINT ignored, and Python then keeps ignoring it."""
    import signal
    import time
    proc = subprocess.Popen([sys.executable, *tool], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        with open(f"/proc/{proc.pid}/maps") as maps:
            if "libtorch" in maps.read():
                break
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "interrupted\n", (proc.returncode, err[-2000:])


def test_evaluate_and_inspect_keep_existing_pictures_unless_told_to_overwrite(tmp_path, image_folder):
    ckpt = f"{ROOT}/checkpoint.pth"
    folder = tmp_path / "compare"
    folder.mkdir()
    (folder / "img1_comparison.png").write_text("mine")
    r = cli("main.py", "evaluate", ckpt, "--data", image_folder, "--save-images", folder)
    assert r.returncode == 1 and r.stdout == "" and "img1_comparison.png exists already" in r.stderr
    assert (folder / "img1_comparison.png").read_text() == "mine" and len(os.listdir(folder)) == 1
    r = cli("main.py", "evaluate", ckpt, "--data", image_folder, "--save-images", folder, "--overwrite")
    assert r.returncode == 0 and len(os.listdir(folder)) == 4  # 3 images and the colour card
    from PIL import Image
    assert Image.open(folder / "img1_comparison.png").size[0] > 100
    (tmp_path / "p.png").write_text("mine")
    r = cli("main.py", "inspect", ckpt, "--plot", tmp_path / "p.png")
    assert r.returncode == 1 and r.stdout == "" and (tmp_path / "p.png").read_text() == "mine"
    assert cli("main.py", "inspect", ckpt, "--plot", tmp_path / "p.png", "--overwrite").returncode == 0


def test_evaluate_on_low_resolution_pictures_warns_that_it_needs_ground_truths():
    r = cli("main.py", "evaluate", f"{ROOT}/checkpoint.pth", "--data", f"{ROOT}/image_examples/lr")
    assert r.returncode == 0 and r.stderr.startswith("warning: every image in") and "ground truth" in r.stderr
    r = cli("main.py", "evaluate", f"{ROOT}/checkpoint.pth", "--data", f"{ROOT}/image_examples/hr")
    assert r.returncode == 0 and "warning" not in r.stderr


def test_fp16_on_a_cpu_warns_as_amp_does(image_folder, monkeypatch):
    r = cli("main.py", "evaluate", f"{ROOT}/checkpoint.pth", "--data", image_folder, "--precision", "fp16")
    assert r.returncode == 0 and "warning: --precision fp16 runs several times slower than fp32 on a CPU" in r.stderr
    import inference
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: False)
    assert "no bfloat16 instructions" in inference.precision_warning(torch.device("cpu"), "bf16")
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: True)
    assert inference.precision_warning(torch.device("cpu"), "bf16") is None
    assert inference.precision_warning(torch.device("cpu"), "fp32") is None
