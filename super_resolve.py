"""Inference CLI: upscale images and videos with a trained SRCNN checkpoint, at the checkpoint's scale.

    python super_resolve.py image_examples/lr/butterfly.bmp            # writes butterfly_srcnn_x3.png beside it
    python super_resolve.py --checkpoint checkpoints/srcnn_x4.pth a.png photos/ --output-dir out/
    python super_resolve.py clip.mp4                                   # clip_srcnn_x3.mp4, frame for frame
    torchrun --nproc_per_node=4 super_resolve.py photos/ --output-dir out/   # the inputs shared by 4 processes

Takes any number of image and video files and folders (sub-folders too with ``--recursive``). The
model is loaded once; each image is upscaled by bicubic interpolation and sharpened by the network (see
``inference.py``) and written, with what the file carries (see ``media.py``), as
``<stem>_srcnn_x{scale}.png`` beside its input, in ``--output-dir``, or at ``--output`` for a single input.

No file is replaced unasked: every output name is worked out before anything is written, and two inputs
that would write the same file, an output that is an input, or an output that exists already stop the
call with one line and nothing written (``--skip-existing`` skips existing outputs, ``--overwrite``
replaces them). An image that cannot be read or written is reported on one line and skipped; the exit
status is then 1.
"""
import argparse
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from inference import (GPU_TILE, PRECISIONS, TILE, bicubic_upscale, checkpoint_scale, default_tile, load_model, upscale,
                       upscale_frames)
from media import CRF, FORMATS, IMAGE_EXTENSIONS, PRESET, PRESETS, QUALITY, VIDEO_CODEC, VIDEO_EXTENSIONS, Encoding, \
    check_writable, is_video, output_format, read_picture, upscale_video, with_frames, write_picture
from utils import HelpFormatter, UserError, choose_device, non_negative_int, positive_int, whole_lines

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint.pth")
VIDEO_BATCH = 8  # video frames through the GPU at once (on the CPU one at a time: a batch is no faster there)
MIN_TILE = 32  # output pixels: below about twice the 13-pixel receptive field, tiles mostly recompute margins


def super_resolve(model, picture, scale, tile=TILE, self_ensemble=False):
    """``picture`` (:class:`media.Picture`) with every frame upscaled by ``scale`` (:func:`inference.upscale`)
    and its transparency upscaled bicubically; the metadata is kept."""
    frames = [upscale(model, f, scale, tile, self_ensemble) for f in picture.frames]
    alphas = [None if a is None else bicubic_upscale(a, scale) for a in picture.alphas]
    return with_frames(picture, frames, alphas)


def looks_like_output(path, siblings):
    """Whether ``path`` is ``<stem>_srcnn_x{2,3,4}.*`` with a ``<stem>.*`` among ``siblings``: a result of
    an earlier run beside its input, which a second run over the folder must not upscale again."""
    stem = os.path.splitext(os.path.basename(path))[0]
    for s in range(2, 5):
        if stem.endswith(f"_srcnn_x{s}"):
            source = stem[:-len(f"_srcnn_x{s}")]
            return any(os.path.splitext(os.path.basename(p))[0] == source for p in siblings if p != path)
    return False


def expand_inputs(paths, recursive=False):
    """(files, skipped): the image files named by ``paths`` as (file, folder it was found under or None),
    and the (file, reason) of every file a folder held that is not taken. Files named directly are taken as
    given; folders give their images in name order (sub-folders too when ``recursive``). A path that does
    not exist is kept, to be reported when it is read."""
    files, skipped = [], []
    for path in paths:
        if not os.path.isdir(path):
            files.append((path, None))
            continue
        found, folders = [], []
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if not recursive:
                folders, dirs[:] = [os.path.join(folder, d) for d in dirs], []
            found += [os.path.join(folder, n) for n in sorted(names) if not n.startswith(".")]
        taken = [f for f in found if f.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)]
        skipped += [(f, "not an image or video file (by its extension)") for f in found if f not in taken]
        skipped += [(f, "a folder (--recursive takes sub-folders too)") for f in folders]
        for f in taken:
            if looks_like_output(f, [g for g in taken if os.path.dirname(g) == os.path.dirname(f)]):
                skipped.append((f, "an output of an earlier run (name it directly to upscale it)"))
            else:
                files.append((f, path))
        if not taken:
            raise UserError(f"no images or videos ({', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}) in folder {path}"
                            + (" (it has sub-folders: --recursive takes them)" if folders else ""))
    return files, skipped


def output_path(path, root, scale, args):
    """Where the output of input ``path`` (found under folder ``root``, or named directly) goes."""
    if args.output:
        return args.output
    stem, ext = os.path.splitext(os.path.basename(path))
    ext = ext.lower() if is_video(path) else FORMATS[args.format or "png"][1]  # a video stays in its container
    folder = os.path.dirname(path)
    if args.output_dir:
        sub = os.path.relpath(os.path.dirname(path), root) if root else "."
        folder = os.path.normpath(os.path.join(args.output_dir, sub))
    return os.path.join(folder, f"{stem}_srcnn_x{scale}{ext}")


def _named_format(path):
    """The format ``path``'s extension names, None for an extension of no image format."""
    try:
        return output_format(path)
    except UserError:
        return None


def plan(files, scale, args):
    """The (input, output) pairs to do, and the (input, reason) skipped for existing outputs; UserError,
    before anything is written, for two inputs of one output, an output that is an input, an output that
    exists (unless --skip-existing or --overwrite) or one that --overwrite may not replace."""
    pairs, by_output, skipped, existing = [], {}, [], []
    if args.output and os.path.isdir(args.output):
        raise UserError(f"--output names a file and {args.output} is a folder; use --output-dir for a folder")
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise UserError(f"output folder does not exist: {os.path.dirname(os.path.abspath(args.output))}")
    inputs = {os.path.realpath(p) for p, _ in files}
    for path, root in files:
        out = output_path(path, root, scale, args)
        if not is_video(path):
            output_format(out, args.format)  # an unknown extension fails here, before any work
            named = _named_format(out)
            if args.output and args.format and named not in (None, args.format):
                raise UserError(f"--output {out} names a {named} file and --format says {args.format}; "
                                f"drop --format or change the extension")
        elif not is_video(out):
            raise UserError(f"{path} is a video: its output {out} must end in one of {', '.join(VIDEO_EXTENSIONS)}")
        key = os.path.realpath(out)
        if key in inputs:
            raise UserError(f"the output {out} would replace the input {path if os.path.realpath(path) == key else out}; "
                            f"choose another --output or --output-dir")
        if key in by_output:
            raise UserError(f"{by_output[key]} and {path} would both be written to {out}; "
                            f"upscale them into different --output-dir folders or one at a time with --output")
        by_output[key] = path
        if os.path.lexists(out):
            if args.skip_existing:
                skipped.append((path, f"{out} exists (--skip-existing)"))
                continue
            if not args.overwrite:
                existing.append(out)
            elif os.path.isdir(out) or not os.access(out, os.W_OK) or not os.stat(out).st_mode & 0o222:
                raise UserError(f"{out} exists and is {'a folder' if os.path.isdir(out) else 'read-only'}; "
                                f"not replaced")
        pairs.append((path, out))
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}{more} {'exist' if more else 'exists'} already; nothing was written. Pass --skip-existing to do only "
                        f"the rest, or --overwrite to replace them")
    return pairs, skipped


def new_folders(outputs):
    """The folders that writing ``outputs`` would create (they do not exist yet), deepest first."""
    missing = set()
    for out in outputs:
        folder = os.path.dirname(os.path.abspath(out))
        while not os.path.exists(folder):
            missing.add(folder)
            folder = os.path.dirname(folder)
    return sorted(missing, key=len, reverse=True)


def remove_empty(folders):
    """Remove those of ``folders`` (deepest first) that are empty: a call whose outputs all failed leaves
    no folder it made behind."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty, or not there


def check_output_folder(path):
    """Create the folder of output ``path`` if missing; UserError when it cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {folder}: {e}") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"output folder is not writable: {folder}")


def _read(path, out, fmt):
    check_output_folder(out)
    picture = read_picture(path)
    check_writable(picture, output_format(out, fmt), out)
    return picture


def upscale_all(pairs, upscale_one, fmt=None, quality=QUALITY):
    """Upscale each (input, output) of ``pairs``; returns how many failed, each reported on a line.

    Reading and decoding the next image and encoding and writing the last one run in worker threads
    (Pillow releases the GIL while it decodes, encodes and compresses) while this one is upscaled."""
    failed = 0

    def report(future):
        nonlocal failed
        try:
            tqdm.write(f"wrote {future.result()}")
        except UserError as e:
            failed += 1
            tqdm.write(f"error: {e}", file=sys.stderr)

    bar = tqdm(pairs, desc="upscaling", unit="image", disable=None if len(pairs) > 1 else True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        read = lambda i: pool.submit(_read, *pairs[i], fmt)
        reading, writing = read(0), None
        for i, (path, out) in enumerate(bar):
            current, reading = reading, read(i + 1) if i + 1 < len(pairs) else None
            try:
                picture = upscale_one(current.result())
            except UserError as e:
                failed += 1
                tqdm.write(f"error: {e}", file=sys.stderr)
                continue
            if writing is not None:
                report(writing)
            writing = pool.submit(write_picture, picture, out, output_format(out, fmt), quality)
        if writing is not None:
            report(writing)
    return failed


def video_encoder(name):
    """``name`` if FFmpeg (PyAV's) has a video encoder of that name."""
    if name == VIDEO_CODEC:
        return name  # the default: no PyAV import for a call on images
    import av
    try:
        if av.codec.Codec(name, "w").type == "video":
            return name
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{name!r} is not a video encoder here (libx264, libx265, libvpx-vp9, ffv1, ...)")


def crf_value(text):
    value = non_negative_int(text)
    if value > 51:
        raise argparse.ArgumentTypeError(f"{text} is past 51, the worst quality libx264 has")
    return value


def tile_size(text):
    value = positive_int(text)
    if value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"{text} is below the smallest tile, {MIN_TILE} pixels")
    return value


def quality(text):
    value = positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"{text} is not a quality from 1 to 100")
    return value


def build_parser():
    p = argparse.ArgumentParser(description="Upscale images with a trained SRCNN, at its checkpoint's scale.",
                                formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="low-resolution image files or folders of them")
    p.add_argument("--checkpoint", help="checkpoint file (default: the x3 model checkpoint.pth beside this "
                                        "script; checkpoints/srcnn_x2.pth and srcnn_x4.pth are the other scales)")
    p.add_argument("--output", help="where to write, for a single input (default: <stem>_srcnn_x{scale}.png "
                                    "beside the input)")
    p.add_argument("--output-dir", help="write every output into this folder (created if missing); with "
                                        "--recursive, sub-folders are kept below it")
    p.add_argument("--recursive", action="store_true", help="take the images of sub-folders too")
    p.add_argument("--format", choices=list(FORMATS),
                   help="output format (default: by --output's extension, else png); 16-bit inputs stay 16-bit "
                        "in png and tiff")
    p.add_argument("--quality", type=quality, default=QUALITY,
                   help="jpeg and webp quality, 1-100 (jpeg at 90 and above keeps full-resolution colour, 4:4:4; "
                        "webp at 100 is lossless)")
    exists = p.add_mutually_exclusive_group()
    exists.add_argument("--skip-existing", action="store_true",
                        help="skip inputs whose output exists (to finish a batch that was stopped)")
    exists.add_argument("--overwrite", action="store_true", help="replace outputs that exist (never an input)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the network over the 8 flips and rotations of the input (8x slower)")
    p.add_argument("--cuda", action="store_true", help="run on the GPU: bicubic and network, 8 bits in and out")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="arithmetic of the network: fp32 is the exact result; bf16 is faster on GPUs and on CPUs "
                        "with bfloat16 instructions (README: speed and cost)")
    p.add_argument("--video-codec", type=video_encoder, default=VIDEO_CODEC,
                   help="videos: the encoder (libx264, 8-bit 4:2:0 that every player opens; ffv1: lossless RGB, "
                        "in .mkv; WebM outputs get libvpx-vp9)")
    p.add_argument("--crf", type=crf_value, default=CRF, help="videos: libx264/VP9 quality, 0-51, lower is "
                                                               "better (about 18 and below looks lossless)")
    p.add_argument("--preset", choices=PRESETS, default=PRESET,
                   help="videos: libx264 speed against file size (medium and slower: smaller files for more "
                        "encoding work; README: Speed)")
    p.add_argument("--tile", type=tile_size,
                   help=f"tile side in output pixels (bounds memory; at least {MIN_TILE}) [default: {TILE} on the CPU, "
                        f"{GPU_TILE} with --cuda]")
    return p


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # as Ctrl-C: the output being written is removed, not left half-written


def _interrupted(error):
    """Whether ``error`` is Ctrl-C or SIGTERM, or an error raised while one unwound: the stop lands anywhere,
    inside a lock that tqdm takes for instance, whose release then fails ("cannot release un-acquired lock")."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__context__
    return False


def main(argv=None):
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    group = Group.join()
    error = None
    try:
        files, skipped = expand_inputs(args.inputs, args.recursive)
        if args.output and len(files) > 1:
            raise UserError("--output names one file: give a single input image, or use --output-dir")
        if args.output and args.output_dir:
            raise UserError("give --output or --output-dir, not both")
        device = choose_device(args.cuda, group.local_rank)
        model, ckpt = load_model(args.checkpoint or DEFAULT_CHECKPOINT, device, args.precision)
        args.tile = args.tile or default_tile(device)
        scale = checkpoint_scale(ckpt)
        pairs, existing = plan(files, scale, args)
    except UserError as e:
        error = f"error: {e}"
    failing, first_failing = group.totals(error is not None, group.rank == 0 and error is not None)
    if failing:  # all stop; the first process says why, or the others where it could go on
        group.leave()
        if error and (group.rank == 0 or not first_failing):
            print(error, file=sys.stderr, flush=True)
        sys.exit(1)
    created = new_folders(out for _, out in pairs)  # before the barrier: no process has made one yet
    group.wait()  # every process has planned before any writes (else a later one would find outputs)
    if group.rank == 0:
        for path, reason in skipped + existing:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        if not pairs:
            print("nothing to do", file=sys.stderr)
    images = group.share([(p, o) for p, o in pairs if not is_video(p)])
    videos = group.share([(p, o) for p, o in pairs if is_video(p)])
    try:
        failed = upscale_all(images, lambda picture: super_resolve(model, picture, scale, args.tile,
                                                                   args.self_ensemble),
                             args.format, args.quality) if images else 0
        for path, out in videos:
            failed += not upscale_one_video(path, out, model, scale, args)
    except BaseException as e:
        if not _interrupted(e):
            raise
        if group.world == 1:
            remove_empty(created)
        group.exit("interrupted: every output written is whole, the one being written was removed (run again with "
                   "--skip-existing to do the rest)")
    failed = group.totals(failed)[0]  # every process is done writing
    if group.rank == 0:
        remove_empty(created)
    group.leave()
    kinds = ("input" if any(is_video(p) for p, _ in pairs) else "image") + ("s" if len(pairs) > 1 else "")
    if failed and len(pairs) > 1:  # each failure has had its line; a summary where there were several inputs
        group.exit(f"error: {failed} of {len(pairs)} {kinds} failed"
                   + (f" ({group.world} processes)" if group.world > 1 else ""))
    if failed:
        sys.exit(1)
    if group.world > 1 and group.rank == 0 and pairs:
        print(f"{len(pairs)} {kinds} upscaled by {group.world} processes")


class Group:
    """The processes of one call: a single one, or those torchrun started (``torchrun --nproc_per_node=N
    super_resolve.py ...``), which plan alike, share the inputs and count the failures together (gloo)."""

    def __init__(self, rank=0, world=1, local_rank=0):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @classmethod
    def join(cls):
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        import torch.distributed as dist
        whole_lines()
        dist.init_process_group("gloo")
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))

    def share(self, pairs):
        """This process's part of ``pairs``: every ``world``-th, from its rank on; together, each once."""
        return pairs[self.rank::self.world]

    def wait(self):
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def totals(self, *counts):
        """Each of ``counts`` summed over the processes."""
        if self.world == 1:
            return [int(c) for c in counts]
        import torch
        import torch.distributed as dist
        t = torch.tensor([int(c) for c in counts])
        dist.all_reduce(t)
        return t.tolist()

    def leave(self):
        """Leave the process group, after every process has come here (none closes its connections while
        another still reads from them)."""
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()

    def exit(self, message):
        """Exit with status 1 and ``message``, printed by the first process only."""
        if self.rank == 0:
            print(message, file=sys.stderr, flush=True)
        sys.exit(1)


def upscale_one_video(path, out, model, scale, args):
    """Upscale the video ``path`` into ``out`` with a progress bar in frames; False (reported) on failure."""
    bar = tqdm(desc=os.path.basename(path), unit="frame", disable=None, leave=False)

    def progress(done, total):  # frames, frames/s and, where the container says how many, time left
        bar.total = total
        bar.update(done - bar.n)
    try:
        check_output_folder(out)
        frames, _ = upscale_video(path, out, lambda lr: upscale_frames(model, lr, scale, args.tile, args.self_ensemble),
                                  scale, Encoding(args.video_codec, args.crf, args.preset), progress,
                                  VIDEO_BATCH if args.cuda else 1)
    except UserError as e:
        tqdm.write(f"error: {e}", file=sys.stderr)
        return False
    finally:
        bar.close()
    print(f"wrote {out} ({frames} frames)")
    return True


if __name__ == "__main__":
    main()
