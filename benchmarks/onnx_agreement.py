"""How an exported ONNX file agrees with the engine on real images: Set5 (or another folder) at the file's scale.

    python benchmarks/onnx_agreement.py srcnn_x3.onnx checkpoint.pth [--data data/Set5]

Each image is made into the network's input as `main.py evaluate` makes it (``datasets.make_pair``: cropped to a
multiple of the scale, bicubic down and up), run by onnxruntime (``export.run_file``, rounded as a caller rounds)
and by ``inference.apply_network`` on the checkpoint's fp32 network. It prints the largest difference in 8-bit
levels and the shares of pixels (all three channels) within 1 level and equal, per image and over all of them.
"""
import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import checkpoints  # noqa: E402
from datasets import list_images, make_pair  # noqa: E402
from export import run_file  # noqa: E402
from inference import apply_network, prepare  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("onnx")
    p.add_argument("checkpoint")
    p.add_argument("--data", default=os.path.join(ROOT, "data", "Set5"))
    args = p.parse_args()
    model, ckpt = checkpoints.load_model(args.checkpoint)
    scale, engine = checkpoints.scale_of(ckpt), prepare(model, torch.device("cpu"))
    differences = []
    for path in list_images(args.data):
        lr = make_pair(Image.open(path).convert("RGB"), scale)[0]
        d = np.abs(run_file(args.onnx, lr[None])[0] - apply_network(engine, lr).astype(np.int64)).max(-1)
        differences.append(d.ravel())
        print(f"{os.path.basename(path)}: largest {d.max()}, {(d <= 1).mean():.4%} within 1 level, "
              f"{(d == 0).mean():.4%} equal")
    d = np.concatenate(differences)
    print(f"all {len(differences)} images (x{scale}, {d.size} pixels): largest {d.max()}, {(d <= 1).mean():.4%} "
          f"within 1 level, {(d == 0).mean():.4%} equal")


if __name__ == "__main__":
    main()
