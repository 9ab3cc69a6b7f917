"""Training as a cluster job: SIGTERM and SIGUSR1 stop a run like Ctrl-C (one process or two under torchrun),
the same command resubmitted with --resume-from-last finishes the run once, bitwise as if never stopped, and
`resume` refuses what only makes sense at the start of a run."""
import signal
import subprocess
import sys

import pytest
import torch

import main
from conftest import ROOT
from test_faults import train_cmd, wait_for
from utils import load_checkpoint

RECIPE = ["--lr=0.002", "--schedule=cosine", "--augment", "--init=identity", "--warmup-epochs=1"]


def assert_same_weights(a, b):
    a, b = load_checkpoint(a), load_checkpoint(b)
    assert a["epoch"] == b["epoch"]
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def torchrun(*argv):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *argv]


def stop_after_first_epoch(cmd, out, how):
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "checkpoint.last", proc)
    proc.send_signal(how)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_scheduler_signal_saves_like_ctrl_c_and_the_run_resumes_bitwise(image_folder, tmp_path, how):
    code, _, err = stop_after_first_epoch(train_cmd(image_folder, tmp_path / "a", 40, *RECIPE), tmp_path / "a", how)
    path = tmp_path / "a" / "checkpoint.interrupted"
    assert code == 128 + how, err
    assert f"python main.py resume {path}" in err and "Traceback" not in err
    stopped = load_checkpoint(path)
    assert 1 <= stopped["epoch"] < 40 and stopped["batch"] >= 1
    r = subprocess.run([sys.executable, "main.py", "resume", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    straight = subprocess.run(train_cmd(image_folder, tmp_path / "b", 40, *RECIPE), cwd=ROOT, capture_output=True)
    assert straight.returncode == 0
    assert_same_weights(tmp_path / "a" / "checkpoint.last", tmp_path / "b" / "checkpoint.last")


def test_sigterm_under_torchrun_stops_every_rank_at_one_batch_with_one_checkpoint(image_folder, tmp_path):
    def cmd(out, *extra):
        return torchrun("main.py", *train_cmd(image_folder, out, 30, *RECIPE)[2:], *extra)
    code, _, err = stop_after_first_epoch(cmd(tmp_path / "a"), tmp_path / "a", signal.SIGTERM)
    assert code != 0
    stopped = load_checkpoint(tmp_path / "a" / "checkpoint.interrupted")
    assert stopped["world_size"] == 2 and stopped["batch"] >= 1 and err.count("interrupted in epoch") == 1
    # the same command, resubmitted, continues from that checkpoint on both processes
    r = subprocess.run(cmd(tmp_path / "a", "--resume-from-last"), cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "continuing the run" in r.stdout and "weights identical on all 2 processes" in r.stdout
    straight = subprocess.run(cmd(tmp_path / "b"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert_same_weights(tmp_path / "a" / "checkpoint.last", tmp_path / "b" / "checkpoint.last")


def test_the_restart_command_resubmitted_three_times_finishes_the_run_once(image_folder, tmp_path):
    cmd = train_cmd(image_folder, tmp_path / "a", 40, *RECIPE, "--save-freq=1", "--resume-from-last")
    for epoch in (3, 8):  # stopped twice by the scheduler, each time after a further epoch ...
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(tmp_path / "a" / f"checkpoint.{epoch}", proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, err
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # ... and the third time runs to the end
    assert done.returncode == 0, done.stderr
    assert "continuing the run" in done.stdout
    finished = load_checkpoint(tmp_path / "a" / "checkpoint.last")
    assert [h["epoch"] for h in finished["history"]] == list(range(1, 41))  # every epoch once
    straight = subprocess.run(train_cmd(image_folder, tmp_path / "b", 40, *RECIPE, "--save-freq=1"), cwd=ROOT,
                              capture_output=True)
    assert straight.returncode == 0
    assert_same_weights(tmp_path / "a" / "checkpoint.last", tmp_path / "b" / "checkpoint.last")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # a finished run is not run again
    assert again.returncode == 1 and "already completed 40 epochs" in again.stderr


def test_resume_from_last_starts_a_run_where_there_is_none_and_refuses_another_runs_folder(
        image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--train-data", image_folder, "--test-data", image_folder, "--batch-size=4",
              "--out-dir", str(out), "--resume-from-last"]
    main.main([*common, "--num-epoch=1"])
    assert load_checkpoint(out / "checkpoint.last")["epoch"] == 1
    main.main([*common, "--num-epoch=2"])
    assert load_checkpoint(out / "checkpoint.last")["epoch"] == 2
    with pytest.raises(SystemExit) as e:
        main.main([*common, "--num-epoch=3", "--seed=5"])
    assert "was started with --seed 0, this command says 5" in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        main.main(["train", "--resume-from-last", "--num-epoch=1"])
    assert "needs --out-dir" in str(e.value.code)


def test_resume_refuses_flags_that_set_how_a_run_starts(tiny_run, image_folder, capsys):
    run = tiny_run("train", "--num-epoch=1")
    before = (run / "config.json").read_text()
    for flag in ("--init-from=checkpoint.pth", "--init=identity", "--seed=3", "--train-data=data/T91"):
        with pytest.raises(SystemExit) as e:
            main.main(["resume", str(run / "checkpoint.last"), "--num-epoch=3", flag])
        assert "sets how a run starts" in str(e.value.code), flag
    assert (run / "config.json").read_text() == before  # nothing was started or rewritten
    main.main(["resume", str(run / "checkpoint.last"), "--num-epoch=2", f"--train-data={image_folder}"])  # same: fine
    with pytest.raises(SystemExit):
        main.main(["resume", "--help"])
    help_text = capsys.readouterr().out
    assert "--init-from" not in help_text and "--seed" not in help_text
    assert "T91_x{scale}" not in help_text and "the checkpoint's value" in help_text


def test_inspect_of_a_stopped_checkpoint_reads_sensibly(image_folder, tmp_path, capsys):
    code, _, _ = stop_after_first_epoch(train_cmd(image_folder, tmp_path, 40, *RECIPE), tmp_path, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    main.main(["inspect", str(tmp_path / "checkpoint.interrupted")])
    out = capsys.readouterr().out
    assert "-inf" not in out and "nan" not in out
    assert "saved when the run was stopped" in out and "after epoch" in out
