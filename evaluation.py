"""Scoring a model on a test set: per-image metrics, the evaluation table that `main.py evaluate`
prints, comparison pictures and the per-epoch PSNR plot of `main.py inspect --plot`."""
import os
import time

import numpy as np

from datasets import SCALE
from inference import apply_network, upscale
from metrics import image_metrics, mean_metrics, psnr
from utils import UserError, atomic_write


SMALLEST_GROUND_TRUTH = 228  # pixels: the shorter side of Set5's smallest image (woman, 228x344)


def ground_truth_warning(test_set, data):
    """What to tell a user who scores the images of the folder ``data`` when every one of them is smaller than
    Set5's smallest ground truth: likely low-resolution inputs, which evaluate would take for ground truths
    (it downscales each by the scale and scores the network against it). None otherwise."""
    if data is None or not os.path.isdir(data):
        return None
    if all(max(hr.shape[:2]) < SMALLEST_GROUND_TRUTH for _, _, hr in test_set):
        return (f"every image in {data} is smaller than {SMALLEST_GROUND_TRUTH} pixels a side; evaluate takes each "
                f"for the ground truth, downscales it x{test_set.scale} and scores the network against it: give the "
                f"high-resolution originals (such as image_examples/hr), not low-resolution inputs")
    return None


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


def comparison_paths(folder, names, overwrite=False):
    """The comparison pictures' paths in ``folder``, one per name; UserError, before anything is written, where
    ``folder`` is a file or (unless ``overwrite``) a picture exists already: the policy of super_resolve.py."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"--save-images {folder} is a file; give a folder for the comparison pictures")
    paths = [os.path.join(folder, f"{name}_comparison.png") for name in names]
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}{more} {'exist' if more else 'exists'} already; nothing was written. Pass "
                        f"--overwrite to replace them, or another --save-images folder")
    return paths


def evaluate_checkpoint(model, test_set, self_ensemble=False, save_images=None, overwrite=False):
    """Print bicubic, the single pass and (``self_ensemble``) the 8-fold self-ensemble side by side for
    every image of ``test_set`` and their means, with the network's time; optionally write a
    comparison picture per image into the folder ``save_images`` (existing ones only if ``overwrite``)."""
    if save_images:
        paths = comparison_paths(save_images, [name for name, _, _ in test_set] + ["colour_card"], overwrite)
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
        print(f"network time on {model.device.type}: single pass {single:.2f} s, "
              f"self-ensemble {ensemble:.2f} s ({ensemble / single:.1f}x)")
    change, colour, got = flat_colour_error(model, scale)
    card, (card_lr, card_sr, card_hr) = card_scores(model, scale)
    print(f"colours: flat colours (the RGB cube's 8 corners, 16 greys) change by at most {change} levels"
          + (f" ({colour} -> {got})" if change > 1 else "") + "; bicubic 0. Colour test card RGB-PSNR: "
          f"bicubic {card['bicubic']['rgb_psnr']:.3f} dB, SRCNN {card['SRCNN']['rgb_psnr']:.3f} dB")
    if save_images:
        os.makedirs(save_images, exist_ok=True)
        pictures = [(lr, sr, hr) for (_, lr, hr), sr in zip(test_set, outputs)] + [(card_lr, card_sr, card_hr)]
        for path, (lr, sr, hr) in zip(paths, pictures):
            picture = comparison_picture(lr, sr, hr, scale)
            atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
            print(f"wrote {path}")


def comparison_picture(lr, sr, hr, scale=SCALE, zoom=4, crop=48):
    """LR (nearest) | bicubic | SRCNN | HR side by side, labelled with their Y-PSNR (border = ``scale``), over
    x``zoom`` crops of the ``crop`` x ``crop`` window where SRCNN's output (``sr``) differs most from bicubic's
    (``lr``, the bicubic-upscaled input)."""
    from PIL import Image, ImageDraw
    h, w = hr.shape[:2]
    small = Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC)
    panels = [np.asarray(small.resize((w, h), Image.NEAREST)), lr, sr, hr]
    labels = ["LR (nearest)", f"bicubic {image_metrics(lr, hr, scale)['y_psnr']:.2f} dB",
              f"SRCNN {image_metrics(sr, hr, scale)['y_psnr']:.2f} dB", "HR"]
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


# Set5, Y channel, border = scale: bicubic as `main.py evaluate` measures it on this pipeline (33.673,
# 30.403, 28.429) and the SRCNN figures of Dong et al. (2016): 9-1-5 on 91 images (x3 only), 9-5-5 on ImageNet.
SET5_REFERENCE = {2: [(33.67, "bicubic 33.67"), (36.66, "paper 9-5-5, ImageNet 36.66")],
                  3: [(30.40, "bicubic 30.40"), (32.39, "paper 9-1-5, 91 images 32.39"),
                      (32.75, "paper 9-5-5, ImageNet 32.75")],
                  4: [(28.43, "bicubic 28.43"), (30.48, "paper 9-5-5, ImageNet 30.48")]}


PLOT_FORMATS = ("png", "pdf", "svg")


def check_plot_path(path, overwrite=False):
    """UserError unless ``path`` names a .png, .pdf or .svg file in a folder that exists, and (unless
    ``overwrite``) no such file exists yet."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise UserError(f"--plot {path}: give a file name ending in .{', .'.join(PLOT_FORMATS)}")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise UserError(f"--plot {path}: the folder {folder} does not exist")
    if os.path.lexists(path) and not overwrite:
        raise UserError(f"{path} exists already; nothing was written. Pass --overwrite to replace it")


def plot_history(history, path, scale, test_data):
    """Draw :func:`history_figure` into ``path`` (checked by :func:`check_plot_path` first), all at once."""
    import matplotlib.pyplot as plt
    fig = history_figure(history, scale, test_data)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=os.path.splitext(path)[1].lower().lstrip(".")))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def history_figure(history, scale, test_data):
    """A matplotlib figure of the test Y-PSNR per epoch (border-shaved, and whole image where recorded);
    on the default Set5 test set also the bicubic baseline and the paper's figures at the same scale."""
    if not history:
        raise UserError("the checkpoint has no per-epoch history to plot (it was stopped before its first epoch "
                        "ended)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    epochs = [h["epoch"] for h in history]
    marker = "o" if len(history) <= 30 else None  # a short run's few points, a single one included, stay visible
    ax.plot(epochs, [h["y_psnr"] for h in history], marker=marker, markersize=4, label=f"this model, border {scale} shaved")
    if all("y_psnr_whole" in h for h in history):
        ax.plot(epochs, [h["y_psnr_whole"] for h in history], marker=marker, markersize=4,
                label="this model, whole image")
    shown = [v for h in history for v in (h["y_psnr"], h.get("y_psnr_whole", h["y_psnr"]))]
    if test_data is None or "Set5" in os.path.basename(str(test_data)):  # None: the default, Set5
        for (value, label), style in zip(SET5_REFERENCE[scale], (":", "--", "-.")):
            ax.axhline(value, color="gray", linestyle=style, label=label)
            shown.append(value)
    margin = max(0.1, 0.05 * (max(shown) - min(shown)))
    ax.set(xlabel="epoch", ylabel="test PSNR-Y (dB)", xlim=(min(epochs) - 0.5, max(epochs) + 0.5),
           ylim=(min(shown) - margin, max(shown) + margin))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")  # beside the axes, never over a curve
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- colours

# Flat colours every model must give back unchanged: the 8 corners of the RGB cube and 16 greys.
FLAT_COLOURS = [(r, g, b) for r in (0, 255) for g in (0, 255) for b in (0, 255)] + [(v, v, v) for v in range(0, 256, 17)]
SATURATED = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0)]
CARD_PANEL = 144  # pixels per side of each panel: a multiple of 2, 3 and 4


def colour_card():
    """A graphics test card, (144, 432, 3) uint8, and its panels {name: (x0, x1)} along the width:
    saturated shapes on black, the same shapes on white, and black text on white. Hard edges of pure
    colours are what photographs (and T91) rarely have and graphics, slides and screenshots always do."""
    from PIL import Image, ImageDraw, ImageFont
    n = CARD_PANEL
    card = Image.new("RGB", (3 * n, n), "white")
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, 0, n - 1, n - 1), fill="black")
    for panel in range(2):
        x0 = panel * n
        for i, colour in enumerate(SATURATED):
            cx, cy = x0 + 8 + (i % 3) * 45, 8 + (i // 3) * 45
            shape = (i + panel) % 3
            if shape == 0:
                draw.rectangle((cx, cy, cx + 35, cy + 35), fill=colour)
            elif shape == 1:
                draw.ellipse((cx, cy, cx + 35, cy + 35), fill=colour)
            else:
                draw.polygon([(cx, cy + 35), (cx + 35, cy + 35), (cx + 17, cy)], fill=colour)
        for i, colour in enumerate(SATURATED):  # lines 1 to 3 pixels wide, and one diagonal
            draw.line((x0 + 8 + 22 * i, 100, x0 + 8 + 22 * i + 12, 136), fill=colour, width=1 + i % 3)
    font = ImageFont.load_default(size=15)
    for row, text in enumerate(["SRCNN x3 test", "Text 0123456789", "ghost rings?", "AaBbCc #@%&"]):
        draw.text((2 * n + 6, 6 + 26 * row), text, fill="black", font=font)
    draw.text((2 * n + 6, 112), "small text: the quick brown fox", fill="black", font=ImageFont.load_default(size=9))
    return np.asarray(card).copy(), {"shapes on black": (0, n), "shapes on white": (n, 2 * n), "text": (2 * n, 3 * n)}


def edge_mask(hr, reach=3):
    """Pixels within ``reach`` pixels (a square) of a change of colour in the (H, W, 3) image ``hr``: (H, W) bool."""
    change = np.zeros(hr.shape[:2], bool)
    change[:, 1:] |= (hr[:, 1:] != hr[:, :-1]).any(-1)
    change[1:] |= (hr[1:] != hr[:-1]).any(-1)
    padded = np.pad(change, reach)
    h, w = change.shape
    return np.any([padded[dy:dy + h, dx:dx + w] for dy in range(2 * reach + 1) for dx in range(2 * reach + 1)], 0)


def flat_colour_error(model, scale, size=16):
    """The largest change, in 8-bit levels over every pixel and channel, that ``upscale`` makes to flat
    ``size`` x ``size`` images of :data:`FLAT_COLOURS`; returns (levels, the worst colour, its output)."""
    worst = (-1, None, None)
    for colour in FLAT_COLOURS:
        flat = np.full((size, size, 3), colour, np.uint8)
        out = upscale(model, flat, scale)
        change = int(np.abs(out.astype(int) - flat[:1, :1].astype(int)).max())
        if change > worst[0]:
            far = np.unravel_index(np.abs(out.astype(int) - np.array(colour)).max(-1).argmax(), out.shape[:2])
            worst = (change, colour, tuple(int(v) for v in out[far]))
    return worst


def card_scores(model, scale):
    """The colour card (:func:`colour_card`) down-scaled by ``scale``, upscaled by bicubic and by ``model``:
    {"bicubic" | "SRCNN": {"rgb_psnr": dB over the card, "<panel> edges": RGB RMSE in levels within 3
    pixels of an edge of that panel}}, and the (lr-as-bicubic, sr, hr) images."""
    from datasets import make_pair
    from PIL import Image
    hr_card, panels = colour_card()
    lr, hr = make_pair(Image.fromarray(hr_card), scale)
    sr = apply_network(model, lr)
    edges = edge_mask(hr)
    scores = {}
    for name, out in (("bicubic", lr), ("SRCNN", sr)):
        err = out.astype(np.float64) - hr
        row = {"rgb_psnr": psnr(out, hr)}
        for panel, (x0, x1) in panels.items():
            row[f"{panel} edges"] = float(np.sqrt(np.mean(err[:, x0:x1][edges[:, x0:x1]] ** 2)))
        scores[name] = row
    return scores, (lr, sr, hr)
