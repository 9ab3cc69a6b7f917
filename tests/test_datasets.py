"""Data: patches cut as the classic recipe cuts them (21,884 from T91), pairs degraded with Pillow's bicubic,
HDF5 files that round-trip, and broken or too-small data refused in words."""
import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import real_data
import datasets
from datasets import (TrainDataset, build_train_arrays, extract_patches, make_pair, write_test_h5,
                      write_train_h5)
from metrics import image_metrics, mean_metrics
from utils import UserError


def test_patches_follow_size_and_stride():
    img = np.arange(61 * 48 * 3).reshape(61, 48, 3)
    p = extract_patches(img, 33, 14)
    # rows start at 0, 14, 28 (28 + 33 = 61); columns at 0, 14 (14 + 33 = 47 <= 48)
    assert p.shape == (3 * 2, 33, 33, 3)
    np.testing.assert_array_equal(p[1], img[0:33, 14:47])
    np.testing.assert_array_equal(p[4], img[28:61, 0:33])
    assert extract_patches(img[:20], 33, 14).shape == (0, 33, 33, 3)


def test_pairs_crop_to_a_multiple_of_three_and_degrade_with_bicubic():
    rng = np.random.default_rng(0)
    hr = Image.fromarray(rng.integers(0, 256, (50, 41, 3), dtype=np.uint8))
    lr, hr_arr = make_pair(hr)
    assert lr.shape == hr_arr.shape == (48, 39, 3) and lr.dtype == np.uint8
    np.testing.assert_array_equal(hr_arr, np.asarray(hr)[:48, :39])
    expected = hr.crop((0, 0, 39, 48)).resize((13, 16), Image.BICUBIC).resize((39, 48), Image.BICUBIC)
    np.testing.assert_array_equal(lr, np.asarray(expected))


def test_h5_files_round_trip_as_uint8(image_folder, tmp_path):
    n = write_train_h5(image_folder, tmp_path / "train.h5")
    lr, hr = build_train_arrays(image_folder)
    assert n == len(lr) == 2 * 4 + 2 * 2 + 3 * 2  # 60x75, 48x48 and 69x51 (70x52 cropped) images
    ds = TrainDataset(str(tmp_path / "train.h5"))
    assert ds.lr.dtype == ds.hr.dtype and ds.lr.dtype.itemsize == 1
    np.testing.assert_array_equal(ds.lr.numpy(), lr)
    x, y = ds[0]
    assert x.shape == (3, 33, 33) and 0 <= float(x.min()) and float(y.max()) <= 1
    write_test_h5(image_folder, tmp_path / "test.h5")
    names = [name for name, _, _ in datasets.TestDataset(str(tmp_path / "test.h5"))]
    assert names == ["img0", "img1", "img2"]


def test_down_scaled_copies_and_stride_add_patches(image_folder, tmp_path):
    base, _ = build_train_arrays(image_folder)
    lr, hr = build_train_arrays(image_folder, scales=(1.0, 0.8))
    np.testing.assert_array_equal(lr[:8], base[:8])  # img0 itself first, then its 0.8 copy
    # the 0.8 copies are 48x60 -> 4, 38x38 -> 1 and 56x42 (54x42 cropped) -> 2 patches
    assert len(lr) == len(base) + 4 + 1 + 2
    small = Image.open(f"{image_folder}/img0.png").convert("RGB").resize((60, 48), Image.BICUBIC)
    np.testing.assert_array_equal(hr[8], np.asarray(small)[:33, :33])
    dense, _ = build_train_arrays(image_folder, stride=7)
    assert len(dense) > 3 * len(base)
    n = write_train_h5(image_folder, tmp_path / "t.h5", stride=7, scales=(1.0, 0.8))
    with h5py.File(tmp_path / "t.h5") as f:
        assert n == len(f["lr"]) and f.attrs["stride"] == 7 and list(f.attrs["scales"]) == [1.0, 0.8]
    datasets.main([image_folder, str(tmp_path / "u.h5"), "--kind", "train", "--scales", "1,0.8"])
    assert len(TrainDataset(str(tmp_path / "u.h5"))) == len(lr)  # the command line builds the same patches
    for bad in (["--scales", "1.5"], ["--scales", "0"], ["--scales", "1,1"], ["--scales", "a"], ["--stride", "0"]):
        with pytest.raises(SystemExit):
            datasets.main([image_folder, str(tmp_path / "v.h5"), "--kind", "train", *bad])
    assert not (tmp_path / "v.h5").exists()


def test_broken_data_files_are_refused_clearly(tmp_path, image_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no images"):
        TrainDataset(str(empty))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n" + bytes(200))
    with pytest.raises(UserError, match="cannot read HDF5"):
        TrainDataset(str(junk))
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f.attrs["kind"] = "train"
        f["lr"] = np.zeros((4, 33, 33), np.uint8)
        f["hr"] = np.zeros((4, 33, 33), np.uint8)
    with pytest.raises(UserError, match="expected uint8 lr/hr"):
        TrainDataset(str(wrong))
    write_test_h5(image_folder, tmp_path / "test.h5")
    with pytest.raises(UserError, match="not a train set"):
        TrainDataset(str(tmp_path / "test.h5"))


def test_t91_gives_the_classic_21884_patches():
    lr, hr = build_train_arrays(real_data("T91"))
    assert lr.shape == hr.shape == (21_884, 33, 33, 3)


def test_set5_bicubic_baseline_matches_the_published_pipeline():
    """Bicubic on this pipeline, as measured independently of this code (Pillow's bicubic, BT.601 Y, border 3):
    mean Y-PSNR 30.40 dB, SSIM 0.8689 and RGB-PSNR 28.62 on Set5 x3 (the paper's MATLAB bicubic: 30.39)."""
    test_set = datasets.TestDataset(real_data("Set5"))
    rows = {name: image_metrics(lr, hr) for name, lr, hr in test_set}
    assert rows["baby"]["y_psnr"] == pytest.approx(33.925, abs=5e-4)
    assert rows["butterfly"]["y_ssim"] == pytest.approx(0.8222, abs=5e-5)
    assert rows["head"]["rgb_psnr"] == pytest.approx(29.936, abs=5e-4)
    mean = mean_metrics(list(rows.values()))
    assert mean["y_psnr"] == pytest.approx(30.40, abs=5e-3)
    assert mean["y_ssim"] == pytest.approx(0.8689, abs=5e-5)
    assert mean["rgb_psnr"] == pytest.approx(28.62, abs=5e-3)


def test_a_test_image_too_small_to_score_is_left_out_saying_so(tmp_path, capsys):
    folder = tmp_path / "test"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / "ok.png")
    Image.new("RGB", (16, 60), "red").save(folder / "thin.png")  # 15 pixels after cropping to x3: SSIM needs 17
    data = datasets.TestDataset(str(folder), 3)
    assert [name for name, _, _ in data] == ["ok"]
    assert "skipped" in capsys.readouterr().err
    (folder / "ok.png").unlink()
    with pytest.raises(UserError, match="no image in .* is large enough to score at x3"):
        datasets.TestDataset(str(folder), 3)
