"""No user file is lost or replaced unasked: output names are checked before anything is written, existing
outputs are refused, skipped or replaced only as asked, folders are walked with every skipped file reported,
and a batch killed mid-way leaves only whole outputs and finishes with --skip-existing."""
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, cli, upscale_cli


def image(path, value=100, size=(8, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_inputs_of_one_output_are_refused_before_anything_is_written(checkpoint, tmp_path):
    a, b, c = image(tmp_path / "c1" / "x.png"), image(tmp_path / "c2" / "x.tiff"), image(tmp_path / "c0" / "a.png")
    r = upscale_cli(checkpoint, c, a, b, "--output-dir", tmp_path / "out")
    assert r.returncode == 1 and str(a) in r.stderr and str(b) in r.stderr and "both" in r.stderr
    assert not (tmp_path / "out").exists()  # not even the first, unclashing input was written


def test_an_output_that_is_an_input_is_refused_and_the_input_is_intact(checkpoint, tmp_path):
    src = image(tmp_path / "self.png")
    before = digest(src)
    for extra in ([], ["--overwrite"]):
        r = upscale_cli(checkpoint, src, "--output", src, *extra)
        assert r.returncode == 1 and "would replace the input" in r.stderr
    assert digest(src) == before


def test_a_stop_that_breaks_something_on_its_way_out_still_reads_as_a_stop(checkpoint, tmp_path, monkeypatch):
    """A signal can land inside a lock tqdm takes; its release then fails while the interrupt unwinds, and the
    error that comes out is a RuntimeError, not the KeyboardInterrupt (seen under load)."""
    import super_resolve

    def stopped_in_a_lock(*args):
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("cannot release un-acquired lock")

    for i in range(3):
        image(tmp_path / "in" / f"img{i}.png", value=40 * i)
    monkeypatch.setattr(super_resolve, "super_resolve", stopped_in_a_lock)
    r = upscale_cli(checkpoint, tmp_path / "in", "--output-dir", tmp_path / "out")
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("interrupted:") and "Traceback" not in r.stderr
    assert _outputs(tmp_path) == []


def test_existing_outputs_are_refused_skipped_or_replaced_only_as_asked(checkpoint, tmp_path):
    src = image(tmp_path / "a.png")
    out = tmp_path / "a_srcnn_x3.png"
    assert upscale_cli(checkpoint, src).returncode == 0
    first = digest(out)
    image(src, value=200)
    r = upscale_cli(checkpoint, src)
    assert r.returncode == 1 and "exists already" in r.stderr and "--skip-existing" in r.stderr
    r = upscale_cli(checkpoint, src, "--skip-existing")
    assert r.returncode == 0 and "skipped" in r.stderr and digest(out) == first
    r = upscale_cli(checkpoint, src, "--overwrite")
    assert r.returncode == 0 and digest(out) != first
    out.chmod(0o444)
    kept = digest(out)
    r = upscale_cli(checkpoint, src, "--overwrite")
    assert r.returncode == 1 and "read-only" in r.stderr
    assert digest(out) == kept and (out.stat().st_mode & 0o777) == 0o444


def test_folder_scan_reports_every_file_it_skips_and_takes_a_users_own_srcnn_named_file(checkpoint, tmp_path):
    folder = tmp_path / "in"
    image(folder / "photo.png")
    image(folder / "photo_srcnn_x3.png")  # an earlier output, beside its input
    image(folder / "holiday_srcnn_x2.png")  # the user's own file: no holiday.* beside it
    (folder / "notes.txt").write_text("hello")
    r = upscale_cli(checkpoint, folder, "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["holiday_srcnn_x2_srcnn_x3.png", "photo_srcnn_x3.png"]
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 2 and any("notes.txt" in s for s in skipped) and any("photo_srcnn_x3" in s for s in skipped)


def test_recursive_keeps_the_folder_structure(checkpoint, tmp_path):
    for rel in ("a.png", "sub/b.png", "sub/deeper/c.jpg"):
        image(tmp_path / "in" / rel)
    r = upscale_cli(checkpoint, tmp_path / "in", "--output-dir", tmp_path / "out")
    assert r.returncode == 0 and sorted(os.listdir(tmp_path / "out")) == ["a_srcnn_x3.png"]
    assert f"skipped {tmp_path / 'in' / 'sub'}: a folder (--recursive takes sub-folders too)" in r.stderr
    (tmp_path / "in" / "a.png").unlink()
    r = upscale_cli(checkpoint, tmp_path / "in", "--output-dir", tmp_path / "out4")
    assert r.returncode == 1 and "(it has sub-folders: --recursive takes them)" in r.stderr
    r = upscale_cli(checkpoint, tmp_path / "in", "--output-dir", tmp_path / "out2", "--recursive")
    assert r.returncode == 0, r.stderr
    found = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out2") for d, _, fs in os.walk(tmp_path / "out2")
                   for f in fs)
    assert found == ["sub/b_srcnn_x3.png", "sub/deeper/c_srcnn_x3.png"]


def test_a_tile_below_the_minimum_is_refused(checkpoint, tmp_path):
    r = upscale_cli(checkpoint, image(tmp_path / "a.png"), "--tile", "1")
    assert r.returncode == 2 and "smallest tile" in r.stderr


def _batch(tmp_path, n=200):
    for i in range(n):
        image(tmp_path / "in" / f"d{i % 4}" / f"img{i:03d}.png", value=i, size=(24, 32))
    return n


def _outputs(tmp_path):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "out") for f in fs)


def _started(proc, tmp_path, at_least):
    deadline = time.time() + 300
    while len([f for f in _outputs(tmp_path) if not os.path.basename(f).startswith(".")]) < at_least:
        assert proc.poll() is None and time.time() < deadline, "the batch ended before it could be stopped"
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_batch_leaves_whole_outputs_and_skip_existing_does_only_the_rest(checkpoint, tmp_path, how):
    n = _batch(tmp_path)
    argv = [sys.executable, "super_resolve.py", "--checkpoint", checkpoint, tmp_path / "in", "--recursive",
            "--output-dir", tmp_path / "out"]
    proc = subprocess.Popen(list(map(str, argv)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started(proc, tmp_path, 20)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    done = [f for f in _outputs(tmp_path) if not os.path.basename(f).startswith(".")]
    assert 20 <= len(done) < n
    for f in done:  # every output there is whole
        with Image.open(f) as im:
            im.load()
            assert im.size == (96, 72)
    if how == signal.SIGTERM:  # stopped as Ctrl-C is: it says so, and leaves no temporary file
        assert "interrupted" in err and "Traceback" not in err
        assert len(done) == len(_outputs(tmp_path))
    r = upscale_cli(checkpoint, tmp_path / "in", "--recursive", "--output-dir", tmp_path / "out", "--skip-existing")
    assert r.returncode == 0, r.stderr
    assert len([line for line in r.stdout.splitlines() if line.startswith("wrote")]) == n - len(done)
    assert len([line for line in r.stderr.splitlines() if line.startswith("skipped")]) == len(done)
    final = [f for f in _outputs(tmp_path) if not os.path.basename(f).startswith(".")]
    assert len(final) == n == len(set(final))


def test_a_call_whose_outputs_all_fail_leaves_no_new_folder(checkpoint, tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    r = upscale_cli(checkpoint, tmp_path / "anim.gif", "--format", "jpeg", "--output-dir", tmp_path / "new" / "a" / "b")
    assert r.returncode == 1 and "holds one frame" in r.stderr and not (tmp_path / "new").exists()
    image(tmp_path / "still.png")
    (tmp_path / "kept").mkdir()  # a folder that was there before stays, empty or not
    r = upscale_cli(checkpoint, tmp_path / "anim.gif", tmp_path / "still.png", "--format", "jpeg",
                "--output-dir", tmp_path / "kept" / "new")
    assert r.returncode == 1 and os.listdir(tmp_path / "kept" / "new") == ["still_srcnn_x3.jpg"]


def test_output_that_contradicts_format_or_is_a_folder_is_refused(checkpoint, tmp_path):
    src = image(tmp_path / "in.png")
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "o.png", "--format", "jpeg")
    assert r.returncode == 1 and "names a png file and --format says jpeg" in r.stderr
    assert not (tmp_path / "o.png").exists()
    (tmp_path / "dir").mkdir()
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "dir")
    assert r.returncode == 1 and "is a folder; use --output-dir" in r.stderr and not os.listdir(tmp_path / "dir")
    assert upscale_cli(checkpoint, src, "--output", tmp_path / "o.jpeg", "--format", "jpeg").returncode == 0
    assert Image.open(tmp_path / "o.jpeg").format == "JPEG"


def test_a_mistyped_input_is_not_found_before_anything_about_its_output(checkpoint, tmp_path):
    """photo.jpeg does not exist, photo.jpg and its output photo_srcnn_x3.png do: the answer is "not found",
    never "photo_srcnn_x3.png exists", and --skip-existing does not turn it into success."""
    image(tmp_path / "photo.jpg")
    image(tmp_path / "photo_srcnn_x3.png")
    for extra in ([], ["--skip-existing"], ["--overwrite"]):
        r = upscale_cli(checkpoint, tmp_path / "photo.jpeg", *extra)
        assert r.returncode == 1 and r.stderr == f"error: input not found: {tmp_path / 'photo.jpeg'}\n", r.stderr
    r = upscale_cli(checkpoint, tmp_path / "photo.jpeg", tmp_path / "photo.jpg", "--skip-existing")
    assert r.returncode == 1 and f"error: input not found: {tmp_path / 'photo.jpeg'}" in r.stderr
    assert "skipped" in r.stderr  # the other input's existing output is skipped as asked


def test_jpg_and_tif_are_format_names_too(checkpoint, tmp_path):
    src = image(tmp_path / "a.png")
    for name, ext, pillow in (("jpg", ".jpg", "JPEG"), ("tif", ".tiff", "TIFF")):
        r = upscale_cli(checkpoint, src, "--format", name)
        assert r.returncode == 0, r.stderr
        assert Image.open(tmp_path / f"a_srcnn_x3{ext}").format == pillow
