"""Training as a cluster job: SIGTERM and SIGUSR1 stop a run like Ctrl-C (one process or two under torchrun),
the same command resubmitted with --resume-from-last finishes the run once, bitwise as if never stopped, and
`resume` refuses what only makes sense at the start of a run. The training processes whose weights are compared
run on one thread each (conftest.one_thread_env): the bits of a run depend on its number of threads."""
import signal
import subprocess
import sys

import pytest
import torch

import main
import training
from conftest import ROOT, one_thread_env, train_cmd, wait_for
from datasets import TrainDataset
import checkpoints

RECIPE = ["--lr=0.002", "--schedule=cosine", "--augment", "--init=identity", "--warmup-epochs=1"]


def assert_same_weights(a, b, context=""):
    a, b = checkpoints.load(a), checkpoints.load(b)
    assert a["epoch"] == b["epoch"], context
    losses = [(h["epoch"], h["loss"]) for h in a["history"]], [(h["epoch"], h["loss"]) for h in b["history"]]
    first = next((x for x, y in zip(*losses) if x != y), None)
    assert first is None, (f"{context}the runs part at epoch {first[0]}: loss {first[1]} against "
                           f"{dict(losses[1])[first[0]]}")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), context + k


def run_cmd(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=one_thread_env(), **kw)


def start_cmd(cmd):
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=one_thread_env())


def torchrun(*argv):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *argv]


def stop_after_first_epoch(cmd, out, how):
    proc = start_cmd(cmd)
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
    stopped = checkpoints.load(path)
    assert 1 <= stopped["epoch"] < 40 and stopped["batch"] >= 1
    r = run_cmd([sys.executable, "main.py", "resume", str(path)])
    assert r.returncode == 0, r.stderr
    straight = run_cmd(train_cmd(image_folder, tmp_path / "b", 40, *RECIPE))
    assert straight.returncode == 0, straight.stderr
    assert_same_weights(tmp_path / "a" / "checkpoint.last", tmp_path / "b" / "checkpoint.last")


def test_sigterm_under_torchrun_stops_every_rank_at_one_batch_with_one_checkpoint(image_folder, tmp_path):
    def cmd(out, *extra):
        return torchrun("main.py", *train_cmd(image_folder, out, 30, *RECIPE)[2:], *extra)
    code, _, err = stop_after_first_epoch(cmd(tmp_path / "a"), tmp_path / "a", signal.SIGTERM)
    assert code != 0
    stopped = checkpoints.load(tmp_path / "a" / "checkpoint.interrupted")
    assert stopped["world_size"] == 2 and stopped["batch"] >= 1 and err.count("interrupted in epoch") == 1
    # the same command, resubmitted, continues from that checkpoint on both processes
    r = run_cmd(cmd(tmp_path / "a", "--resume-from-last"), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "continuing the run" in r.stdout and "weights identical on all 2 processes" in r.stdout
    straight = run_cmd(cmd(tmp_path / "b"), timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert_same_weights(tmp_path / "a" / "checkpoint.last", tmp_path / "b" / "checkpoint.last")


def test_the_restart_command_resubmitted_three_times_finishes_the_run_once(image_folder, tmp_path):
    cmd = train_cmd(image_folder, tmp_path / "a", 40, *RECIPE, "--save-freq=1", "--resume-from-last")
    for epoch in (3, 8):  # stopped twice by the scheduler, each time after a further epoch ...
        proc = start_cmd(cmd)
        wait_for(tmp_path / "a" / f"checkpoint.{epoch}", proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, err
    done = run_cmd(cmd)  # ... and the third time runs to the end
    assert done.returncode == 0, done.stderr
    assert "continuing the run" in done.stdout
    finished = checkpoints.load(tmp_path / "a" / "checkpoint.last")
    assert [h["epoch"] for h in finished["history"]] == list(range(1, 41))  # every epoch once
    straight = run_cmd(train_cmd(image_folder, tmp_path / "b", 40, *RECIPE, "--save-freq=1"))
    assert straight.returncode == 0, straight.stderr
    assert_same_weights(tmp_path / "a" / "checkpoint.last", tmp_path / "b" / "checkpoint.last")
    again = run_cmd(cmd)  # a finished run is not run again
    assert again.returncode == 1 and "already completed 40 epochs" in again.stderr


def test_a_stop_after_any_batch_continues_bitwise(image_folder, tmp_path, monkeypatch):
    """Where a signal falls decides where the run stops: after the first batch of an epoch (here the run's very
    first), in the middle of one, after its last batch (before its test and checkpoints). A 3-epoch run stopped
    at each and continued with --resume-from-last in this process continues as the uninterrupted run."""
    common = ["train", "--train-data", image_folder, "--test-data", image_folder, "--batch-size=4",
              "--num-epoch=3", *RECIPE]
    main.main([*common, "--out-dir", str(tmp_path / "straight")])
    per_epoch = len(TrainDataset(image_folder, 3)) // 4
    agree = training.agree
    for stop_after in (1, per_epoch + per_epoch // 2, 2 * per_epoch):  # first, middle, last batch of an epoch
        steps = iter(range(1, 3 * per_epoch + 1))

        def signalled_during(loss, requested, group, stop_after=stop_after, steps=steps):
            if next(steps) == stop_after:  # the signal arrives while this batch is computed
                signal.raise_signal(signal.SIGTERM)
                requested = True
            return agree(loss, requested, group)

        out = tmp_path / f"stopped-{stop_after}"
        monkeypatch.setattr(training, "agree", signalled_during)
        with pytest.raises(SystemExit) as e:
            main.main([*common, "--out-dir", str(out), "--resume-from-last"])
        assert e.value.code == 128 + signal.SIGTERM
        stopped = checkpoints.load(out / "checkpoint.interrupted")
        done_epochs, batch = divmod(stop_after - 1, per_epoch)
        assert (stopped["epoch"], stopped["batch"]) == (done_epochs, batch + 1)
        monkeypatch.setattr(training, "agree", agree)
        main.main([*common, "--out-dir", str(out), "--resume-from-last"])
        assert_same_weights(out / "checkpoint.last", tmp_path / "straight" / "checkpoint.last",
                            f"stopped after batch {batch + 1} of epoch {done_epochs + 1}: ")


def test_a_run_continued_on_another_count_of_threads_says_it_is_not_bitwise(tiny_run, tmp_path, capsys):
    run = tiny_run("train", "--num-epoch=1")
    threads = torch.get_num_threads()
    ckpt = checkpoints.load(run / "checkpoint.last")
    assert ckpt["threads"] == threads and ckpt["world_size"] == 1
    main.main(["resume", str(run / "checkpoint.last"), "--num-epoch=2"])
    assert "not bitwise" not in capsys.readouterr().err  # the same counts: nothing to say
    ckpt["threads"] = threads + 1  # as if saved on a machine with one more core, and copied here
    (tmp_path / "elsewhere").mkdir()
    checkpoints.save(ckpt, tmp_path / "elsewhere" / "checkpoint.last")
    main.main(["resume", str(tmp_path / "elsewhere" / "checkpoint.last"), "--num-epoch=2"])
    assert (f"note: the run was saved from 1 process(es) of {threads + 1} thread(s) and goes on with 1 of {threads}: "
            "it continues, but not bitwise") in capsys.readouterr().err


def test_resume_from_last_starts_a_run_where_there_is_none_and_refuses_another_runs_folder(
        image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", "--train-data", image_folder, "--test-data", image_folder, "--batch-size=4",
              "--out-dir", str(out), "--resume-from-last"]
    main.main([*common, "--num-epoch=1"])
    assert checkpoints.load(out / "checkpoint.last")["epoch"] == 1
    main.main([*common, "--num-epoch=2"])
    assert checkpoints.load(out / "checkpoint.last")["epoch"] == 2
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
