"""Scoring and its pictures: the PSNR plot of `inspect --plot` for every run length, and the comparison pictures."""
import numpy as np
import pytest

import main
from evaluation import comparison_picture


def test_inspect_plot_draws_the_history_of_any_test_set(tiny_run, tmp_path, capsys):
    run = tiny_run("train", "--num-epoch=3")
    main.main(["inspect", str(run / "checkpoint.last"), "--plot", str(tmp_path / "psnr.png")])
    assert capsys.readouterr().out.endswith(f"wrote {tmp_path / 'psnr.png'}\n")
    from PIL import Image
    assert Image.open(tmp_path / "psnr.png").size[0] > 300


@pytest.mark.parametrize("epochs", [1, 2, 40])
def test_the_psnr_plot_shows_every_run_length_with_the_legend_clear_of_the_curves(epochs):
    from evaluation import SET5_REFERENCE, history_figure
    history = [{"epoch": e, "y_psnr": 25 + 7 * e / epochs, "y_psnr_whole": 24.9 + 7 * e / epochs}
               for e in range(1, epochs + 1)]
    fig = history_figure(history, 3, None)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo < 1 and hi > epochs and hi - lo <= epochs + 1  # every epoch inside, no empty decimal axis
    assert all(t == int(t) for t in ax.get_xticks() if lo <= t <= hi)
    ymin, ymax = ax.get_ylim()
    assert all(ymin < v < ymax for v, _ in SET5_REFERENCE[3]) and ymin < 25 + 7 / epochs
    assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines()[:2]) or epochs > 30
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, so it covers no curve


def test_the_comparison_picture_labels_each_panel_with_its_score_and_zooms_where_srcnn_differs_most():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (60, 72, 3), dtype=np.uint8)
    lr = hr // 2 + 60
    sr = lr.copy()
    sr[30:40, 50:60] = hr[30:40, 50:60]  # the network changed this corner of bicubic's output only
    picture = comparison_picture(lr, sr, hr, scale=3, zoom=2, crop=16)
    assert picture.size == (4 * 72 + 5 * 4, 16 + 60 + 32 + 3 * 4)
    red = np.argwhere((np.asarray(picture) == [255, 0, 0]).all(-1))
    top, left = red.min(0)
    assert 16 + 24 <= top <= 16 + 34 and 4 + 44 <= left <= 4 + 54  # the red box lies over the changed corner
