"""Scoring a model on a test set: per-image metrics, the evaluation table that `main.py evaluate`
prints, comparison pictures and the per-epoch PSNR plot of `main.py inspect --plot`."""
import os
import time

import numpy as np

from datasets import SCALE
from inference import apply_network
from utils import UserError, image_metrics, mean_metrics


def evaluate_model(model, test_set, self_ensemble=False):
    """Run ``model`` on each image of ``test_set``; returns (metrics per image, 8-bit outputs), in order.
    Metrics as :func:`utils.image_metrics`: Y channel, border = the scale, on the quantised output."""
    model.eval()
    outputs = [apply_network(model, lr, self_ensemble=self_ensemble) for _, lr, _ in test_set]
    return [image_metrics(sr, hr, test_set.scale) for sr, (_, _, hr) in zip(outputs, test_set)], outputs


def network_seconds(model, test_set, self_ensemble):
    """Seconds the network takes over the test set's (already bicubic) inputs, scoring excluded. Call it
    after a scored pass: cuDNN and oneDNN prepare their kernels on the first pass over each image size."""
    started = time.perf_counter()
    for _, lr, _ in test_set:
        apply_network(model, lr, self_ensemble=self_ensemble)
    return time.perf_counter() - started


def evaluate_checkpoint(model, test_set, self_ensemble=False, save_images=None):
    """Print bicubic, the single pass and (``self_ensemble``) the 8-fold self-ensemble side by side for
    every image of ``test_set`` and their means, with the network's time; optionally write a
    comparison picture per image into the folder ``save_images``."""
    scale = test_set.scale
    bicubic = [image_metrics(lr, hr, scale) for _, lr, hr in test_set]
    columns = [("bicubic", bicubic)]
    rows, outputs = evaluate_model(model, test_set)
    columns.append(("SRCNN", rows))
    if self_ensemble:
        columns.append(("SRCNN+", evaluate_model(model, test_set, self_ensemble=True)[0]))
    print(f"x{scale}, {len(test_set)} images; Y-PSNR, Y-SSIM and RGB-PSNR with {scale} border pixels shaved, "
          f"'whole' = Y-PSNR of the whole image")
    print(f"{'image':12s}" + "".join(f" | {name + ' Y-PSNR':>14s} {'whole':>7s} {'Y-SSIM':>7s} {'RGB-PSNR':>8s}"
                                     for name, _ in columns))
    cell = " | {y_psnr:14.3f} {y_psnr_whole:7.3f} {y_ssim:7.4f} {rgb_psnr:8.3f}"
    for i, (name, _, _) in enumerate(test_set):
        print(f"{name:12s}" + "".join(cell.format(**col[i]) for _, col in columns))
    print(f"{'mean':12s}" + "".join(cell.format(**mean_metrics(col)) for _, col in columns))
    if self_ensemble:
        single, ensemble = network_seconds(model, test_set, False), network_seconds(model, test_set, True)
        print(f"network time on {model.patch_extraction.weight.device.type}: single pass {single:.2f} s, "
              f"self-ensemble {ensemble:.2f} s ({ensemble / single:.1f}x)")
    if save_images:
        os.makedirs(save_images, exist_ok=True)
        for (name, lr, hr), sr, r, b in zip(test_set, outputs, rows, bicubic):
            path = os.path.join(save_images, f"{name}_comparison.png")
            comparison_picture(lr, sr, hr, r, b, scale).save(path)
            print(f"wrote {path}")




def comparison_picture(lr, sr, hr, sr_metrics, bicubic_metrics, scale=SCALE, zoom=4, crop=48):
    """LR (nearest) | bicubic | SRCNN | HR side by side, labelled, over x``zoom`` crops of the
    ``crop`` x ``crop`` window where SRCNN's output differs most from bicubic's."""
    from PIL import Image, ImageDraw
    h, w = hr.shape[:2]
    small = Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC)
    panels = [np.asarray(small.resize((w, h), Image.NEAREST)), lr, sr, hr]
    labels = ["LR (nearest)", f"bicubic {bicubic_metrics['y_psnr']:.2f} dB",
              f"SRCNN {sr_metrics['y_psnr']:.2f} dB", "HR"]
    diff = np.abs(sr.astype(np.float32) - lr.astype(np.float32)).sum(-1)
    c = min(crop, h, w)
    sums = np.lib.stride_tricks.sliding_window_view(diff, (c, c))[::4, ::4].sum((-1, -2))
    y, x = (np.array(np.unravel_index(sums.argmax(), sums.shape)) * 4).tolist()
    zw = c * zoom
    pad, text = 4, 16
    cell_w = max(w, zw)
    canvas = Image.new("RGB", (4 * cell_w + 5 * pad, text + h + zw + 3 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, label) in enumerate(zip(panels, labels)):
        left = pad + i * (cell_w + pad)
        draw.text((left, 2), label, fill="black")
        canvas.paste(Image.fromarray(panel), (left, text))
        zoomed = Image.fromarray(panel[y:y + c, x:x + c]).resize((zw, zw), Image.NEAREST)
        canvas.paste(zoomed, (left, text + h + 2 * pad))
        draw.rectangle((left + x, text + y, left + x + c, text + y + c), outline="red")
    return canvas


# Set5, Y channel, border = scale: bicubic (x3 measured on this pipeline, x2 and x4 as tabled in the
# literature) and the SRCNN figures of Dong et al. (2016): 9-1-5 on 91 images (x3 only), 9-5-5 on ImageNet.
SET5_REFERENCE = {2: [(33.66, "bicubic 33.66"), (36.66, "paper 9-5-5, ImageNet 36.66")],
                  3: [(30.40, "bicubic 30.40"), (32.39, "paper 9-1-5, 91 images 32.39"),
                      (32.75, "paper 9-5-5, ImageNet 32.75")],
                  4: [(28.42, "bicubic 28.42"), (30.48, "paper 9-5-5, ImageNet 30.48")]}


def plot_history(history, path, scale, test_data):
    """Test Y-PSNR per epoch (border-shaved, and whole image where recorded); on the default Set5
    test set also the bicubic baseline and the paper's figures at the same scale."""
    if not history:
        raise UserError("the checkpoint has no per-epoch history to plot")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["y_psnr"] for h in history], label=f"this model, border {scale} shaved")
    if all("y_psnr_whole" in h for h in history):
        ax.plot(epochs, [h["y_psnr_whole"] for h in history], label="this model, whole image")
    if test_data is None or "Set5" in os.path.basename(str(test_data)):  # None: the default, Set5
        for (value, label), style in zip(SET5_REFERENCE[scale], (":", "--", "-.")):
            ax.axhline(value, color="gray", linestyle=style, label=label)
    ax.set(xlabel="epoch", ylabel="test PSNR-Y (dB)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


