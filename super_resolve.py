"""Inference CLI: upscale images and videos with a trained SRCNN checkpoint, at the checkpoint's scale.

    python super_resolve.py image_examples/lr/butterfly.bmp            # writes butterfly_srcnn_x3.png beside it
    python super_resolve.py --checkpoint checkpoints/srcnn_x4.pth a.png photos/ --output-dir out/
    python super_resolve.py clip.mp4                                   # clip_srcnn_x3.mp4, frame for frame
    torchrun --nproc_per_node=4 super_resolve.py photos/ --output-dir out/   # the inputs shared by 4 processes

Takes any number of image and video files and folders (sub-folders too with ``--recursive``). The
model is loaded once; each image is upscaled by bicubic interpolation and sharpened by the network (see
``inference.py``) and written, with what the file carries (see ``images.py`` and ``video.py``), as
``<stem>_srcnn_x{scale}.png`` beside its input, in ``--output-dir``, or at ``--output`` for a single input.

No file is replaced unasked: every output name is worked out before anything is written, and two inputs
that would write the same file, an output that is an input, or an output that exists already stop the
call with one line and nothing written (``--skip-existing`` skips existing outputs, ``--overwrite``
replaces them). An image that cannot be read or written is reported on one line and skipped; the exit
status is then 1.
"""
import sys

try:  # Ctrl-C while torch loads (a second or more) ends as at any other moment: one line
    import argparse
    import os
    import signal
    import warnings
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import dataclass

    from PIL import Image
    from tqdm import tqdm

    import checkpoints
    from distributed import Group
    from images import FORMAT_NAMES, IMAGE_EXTENSIONS, QUALITY, WHITE, check_writable, format_named, \
        output_format, parse_colour, read_picture, write_picture
    from inference import GPU_TILE, PRECISIONS, TILE, Upscaler, bicubic_upscale, precision_warning, prepare
    from utils import HelpFormatter, Parser, UserError, choose_device, non_negative_int, positive_int
    from video import CRF, PRESET, PRESETS, VIDEO_EXTENSIONS, Encoding, is_video, output_extension, upscale_video
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
except ModuleNotFoundError as e:  # a requirement not installed: one line, not a traceback
    print(f"error: the Python package {e.name} is missing; pip install -r requirements.txt", file=sys.stderr)
    sys.exit(1)

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint.pth")
MIN_TILE = 32  # output pixels: below about twice the 13-pixel receptive field, tiles mostly recompute margins


def super_resolve(upscaler, picture):
    """``picture`` (:class:`images.Picture`) with every frame upscaled by ``upscaler`` (:class:`inference.Upscaler`)
    and its transparency upscaled bicubically; the metadata is kept."""
    frames = [upscaler(f) for f in picture.frames]
    alphas = [None if a is None else bicubic_upscale(a, upscaler.scale) for a in picture.alphas]
    return picture.with_frames(frames, alphas)


# --------------------------------------------------------------------------- which files, written where

def looks_like_output(path, siblings):
    """Whether ``path`` is ``<stem>_srcnn_x{2,3,4}.*`` with a ``<stem>.*`` among ``siblings``: a result of
    an earlier run beside its input, which a second run over the folder must not upscale again."""
    stem = os.path.splitext(os.path.basename(path))[0]
    for s in range(2, 5):
        if stem.endswith(f"_srcnn_x{s}"):
            source = stem[:-len(f"_srcnn_x{s}")]
            return any(os.path.splitext(os.path.basename(p))[0] == source for p in siblings if p != path)
    return False


def is_picture(path):
    """Whether Pillow identifies the file ``path`` as a picture (its MPEG plugin takes MPEG-1 video, which it
    cannot decode: not a picture)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a large picture's DecompressionBombWarning: read_picture says
            with Image.open(path) as im:
                return im.format != "MPEG"
    except Exception:  # noqa: BLE001 - whatever Pillow raises on a file it does not read, it is no picture
        return False


def input_kind(path):
    """"image" or "video": what the file ``path`` holds, by its content: a picture Pillow identifies (a JPEG named
    .mp4 is an image), else a video FFmpeg reads (:func:`video.is_video`: AVI, MPEG-TS, 3GP, FLV, MP4, Matroska,
    ...). A file neither reads (or that is missing) takes the kind its extension names, so that the reader of that
    kind says why it cannot read it; None where its extension names neither."""
    if os.path.isfile(path) and is_picture(path):
        return "image"
    if os.path.isfile(path) and is_video(path):
        return "video"
    ext = os.path.splitext(path)[1].lower()
    return "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else None


def expand_inputs(paths, recursive=False):
    """(files, skipped): the image and video files named by ``paths`` as (file, folder it was found under or
    None, its :func:`input_kind`), and the (file, reason) of every file a folder held that is not taken. Files
    named directly are taken as given; folders give their images and videos, recognised by content, in name
    order (sub-folders too when ``recursive``). A path that does not exist is kept, to be reported when it is
    read."""
    files, skipped = [], []
    for path in paths:
        if not os.path.isdir(path):
            files.append((path, None, input_kind(path)))
            continue
        found, folders = [], []
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if not recursive:
                folders, dirs[:] = [os.path.join(folder, d) for d in dirs], []
            found += [os.path.join(folder, n) for n in sorted(names) if not n.startswith(".")]
        kinds = {f: input_kind(f) for f in found}
        taken = [f for f in found if kinds[f]]
        skipped += [(f, "not an image or video file (by its content)") for f in found if f not in taken]
        skipped += [(f, "a folder (--recursive takes sub-folders too)") for f in folders]
        for f in taken:
            if looks_like_output(f, [g for g in taken if os.path.dirname(g) == os.path.dirname(f)]):
                skipped.append((f, "an output of an earlier run (name it directly to upscale it)"))
            else:
                files.append((f, path, kinds[f]))
        if not taken:
            raise UserError(f"no images or videos in folder {path}"
                            + (" (it has sub-folders: --recursive takes them)" if folders else ""))
    return files, skipped


@dataclass(frozen=True)
class Destination:
    """Where outputs go: ``output`` (one file), else ``output_dir`` (a folder; None: beside each input), in the
    image format ``fmt`` (a --format name; None: by --output's extension, else PNG), videos with ``encoding``
    (:class:`video.Encoding`) in their own container where it holds the result (:func:`video.output_extension`);
    and what to do with an output that exists: ``existing`` is "refuse" (the default), "skip" or "overwrite"."""
    output: str = None
    output_dir: str = None
    fmt: str = None
    existing: str = "refuse"
    encoding: Encoding = Encoding()

    def path(self, src, root, scale, kind):
        """Where the output of input ``src`` (found under folder ``root``, or named directly; an "image" or a
        "video", :func:`input_kind`) goes."""
        if self.output:
            return self.output
        stem = os.path.splitext(os.path.basename(src))[0]
        ext = output_extension(src, self.encoding) if kind == "video" else format_named(self.fmt or "png").extensions[0]
        folder = os.path.dirname(src)
        if self.output_dir:
            sub = os.path.relpath(os.path.dirname(src), root) if root else "."
            folder = os.path.normpath(os.path.join(self.output_dir, sub))
        return os.path.join(folder, f"{stem}_srcnn_x{scale}{ext}")

    def check(self, src, out, kind):
        """UserError, before any work, where the output ``out`` of ``src`` (of ``kind``) cannot be of the kind
        asked for (whether a video's container holds all of it is asked when it is written, before that)."""
        if kind != "video":
            fmt = output_format(out, self.fmt)  # an unknown extension fails here
            named = _named_format(out)
            if self.output and self.fmt and named not in (None, fmt):
                raise UserError(f"--output {out} names a {named.name} file and --format says {self.fmt}; "
                                f"drop --format or change the extension")
        elif not out.lower().endswith(VIDEO_EXTENSIONS):
            raise UserError(f"{src} is a video: its output {out} must end in one of {', '.join(VIDEO_EXTENSIONS)}")


def _named_format(path):
    """The :class:`images.Format` ``path``'s extension names, None for an extension of no image format."""
    try:
        return output_format(path)
    except UserError:
        return None


def plan(files, scale, destination):
    """The (input, output, kind) triples to do, and the (input, reason) skipped for existing outputs; UserError,
    before anything is written, for two inputs of one output, an output that is an input, an output that
    exists (unless ``destination`` skips or overwrites them) or one that may not be replaced."""
    pairs, by_output, skipped, existing = [], {}, [], []
    output = destination.output
    if output and os.path.isdir(output):
        raise UserError(f"--output names a file and {output} is a folder; use --output-dir for a folder")
    if output and not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise UserError(f"output folder does not exist: {os.path.dirname(os.path.abspath(output))}")
    inputs = {os.path.realpath(p) for p, _, _ in files}
    for path, root, kind in files:
        out = destination.path(path, root, scale, kind)
        destination.check(path, out, kind)
        key = os.path.realpath(out)
        if key in inputs:
            raise UserError(f"the output {out} would replace the input {path if os.path.realpath(path) == key else out}; "
                            f"choose another --output or --output-dir")
        if key in by_output:
            raise UserError(f"{by_output[key]} and {path} would both be written to {out}; "
                            f"upscale them into different --output-dir folders or one at a time with --output")
        by_output[key] = path
        if os.path.lexists(out):
            if destination.existing == "skip":
                skipped.append((path, f"{out} exists (--skip-existing)"))
                continue
            if destination.existing == "refuse":
                existing.append(out)
            elif os.path.isdir(out) or not os.access(out, os.W_OK) or not os.stat(out).st_mode & 0o222:
                raise UserError(f"{out} exists and is {'a folder' if os.path.isdir(out) else 'read-only'}; "
                                f"not replaced")
        pairs.append((path, out, kind))
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}{more} {'exist' if more else 'exists'} already; nothing was written. Pass "
                        f"--skip-existing to do only the rest, or --overwrite to replace them")
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


# --------------------------------------------------------------------------- the work

def _read(path, out, fmt):
    check_output_folder(out)
    picture = read_picture(path)
    check_writable(picture, output_format(out, fmt), out)
    return picture


def upscale_all(pairs, upscale_one, fmt=None, quality=QUALITY, background=WHITE):
    """Upscale each (input, output) of ``pairs``; returns how many failed, each reported on a line. Transparency
    written to a format without it is flattened onto ``background`` ((r, g, b)). What an output cannot hold of
    its input, or was flattened, gets a ``note:`` line.

    Reading and decoding the next image and encoding and writing the last one run in worker threads
    (Pillow releases the GIL while it decodes, encodes and compresses) while this one is upscaled."""
    failed = 0

    def report(future, out):
        nonlocal failed
        try:
            notes = future.result()
        except UserError as e:
            failed += 1
            tqdm.write(f"error: {e}", file=sys.stderr)
            return
        for note in notes:
            tqdm.write(f"note: {out}: {note}", file=sys.stderr)
        tqdm.write(f"wrote {out}")

    bar = tqdm(pairs, desc="upscaling", unit="image", disable=None if len(pairs) > 1 else True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        read = lambda i: pool.submit(_read, *pairs[i], fmt)  # noqa: E731
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
                report(*writing)
            writing = pool.submit(write_picture, picture, out, output_format(out, fmt), quality, background), out
        if writing is not None:
            report(*writing)
    return failed


def upscale_one_video(path, out, upscaler, encoding):
    """Upscale the video ``path`` into ``out`` with a progress bar in frames; False (reported) on failure."""
    bar = tqdm(desc=os.path.basename(path), unit="frame", disable=None, leave=False)

    def progress(done, total):  # frames, frames/s and, where the container says how many, time left
        bar.total = total
        bar.update(done - bar.n)
    try:
        check_output_folder(out)
        frames, _ = upscale_video(path, out, upscaler, encoding, progress)
    except UserError as e:
        tqdm.write(f"error: {e}", file=sys.stderr)
        return False
    finally:
        bar.close()
    print(f"wrote {out} ({frames} frames)")
    return True


# --------------------------------------------------------------------------- command line

def video_encoder(name):
    """``name`` if FFmpeg (PyAV's) has a video encoder of that name."""
    import av
    try:
        if av.codec.Codec(name, "w").type == "video":
            return name
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{name!r} is not a video encoder here (libx264, libx265, libvpx-vp9, ffv1, ...)")


def bounded_int(low, high, what):
    """An argparse type: a whole number from ``low`` to ``high``, ``what`` saying what lies outside."""
    def parse(text):
        value = non_negative_int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} {what}")
        return value
    return parse


def build_parser():
    p = Parser(description="Upscale images with a trained SRCNN, at its checkpoint's scale.",
               formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="low-resolution image and video files or folders of them, recognised by their content")
    p.add_argument("--checkpoint", help="checkpoint file (default: the x3 model checkpoint.pth beside this "
                                        "script; checkpoints/srcnn_x2.pth and srcnn_x4.pth are the other scales)")
    p.add_argument("--output", help="where to write, for a single input (default: <stem>_srcnn_x{scale}.png "
                                    "beside the input)")
    p.add_argument("--output-dir", help="write every output into this folder (created if missing); with "
                                        "--recursive, sub-folders are kept below it")
    p.add_argument("--recursive", action="store_true", help="take the images of sub-folders too")
    p.add_argument("--format", choices=list(FORMAT_NAMES),
                   help="output format (default: by --output's extension, else png); 16-bit inputs stay 16-bit "
                        "in png and tiff")
    p.add_argument("--background", type=colour, default="white", metavar="COLOUR",
                   help="what transparency is flattened onto in formats without it (jpeg, bmp; gif shows a pixel "
                        "or hides it): white, black, another name, #rrggbb or r,g,b")
    p.add_argument("--quality", type=bounded_int(1, 100, "is not a quality from 1 to 100"), default=QUALITY,
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
    p.add_argument("--video-codec", type=video_encoder,
                   help="videos: the encoder (default: libx264, 8-bit 4:2:0 that every player opens; for 10- and "
                        "12-bit inputs libx265 Main 10, or libx264 High 10 where the container holds no HEVC; "
                        "libvpx-vp9 for .webm; ffv1: lossless RGB; docs/video.md)")
    p.add_argument("--crf", type=bounded_int(0, 51, "is past 51, the worst quality libx264 has"), default=CRF,
                   help="videos: libx264/libx265/VP9 quality, 0-51, lower is better (about 18 and below looks "
                        "lossless)")
    p.add_argument("--preset", choices=PRESETS, default=PRESET,
                   help="videos: libx264/libx265 speed against file size (medium and slower: smaller files for "
                        "more encoding work; README: Speed)")
    p.add_argument("--tile", type=tile_size,
                   help=f"tile side in output pixels (bounds memory; at least {MIN_TILE}) [default: {TILE} on the CPU, "
                        f"{GPU_TILE} with --cuda]")
    return p


def colour(text):
    """An argparse type: the (r, g, b) of a colour (:func:`images.parse_colour`)."""
    try:
        return parse_colour(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def tile_size(text):
    value = positive_int(text)
    if value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"{text} is below the smallest tile, {MIN_TILE} pixels")
    return value


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the output being written is removed, not left half-written."""


def _stop_on_sigterm(signum, frame):
    raise Terminated


def _interrupted(error):
    """The stop (Ctrl-C's KeyboardInterrupt or SIGTERM's :class:`Terminated`) behind ``error``, or None: the
    stop lands anywhere, inside a lock that tqdm takes for instance, whose release then fails ("cannot release
    un-acquired lock") while the stop unwinds, and that error is what comes out."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return error
        error = error.__context__
    return None


def prepare_call(args, group):
    """(upscaler, the (input, output, kind) triples to do, those skipped with why, the inputs not found) of a
    parsed command line; UserError for anything wrong with it, before anything is written. An input that does
    not exist is reported as such whatever its output would have been (and never skipped for an existing one)."""
    files, skipped = expand_inputs(args.inputs, args.recursive)
    missing = [path for path, _, _ in files if not os.path.lexists(path)]
    files = [(path, root, kind) for path, root, kind in files if path not in missing]
    if missing and not files:
        raise UserError(f"input not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                           else ""))
    videos = [path for path, _, kind in files if kind == "video"]
    if args.format and videos and len(videos) == len(files):
        raise UserError(f"--format {args.format} is an image format, and {videos[0]} is a video, written as a video; "
                        f"drop --format (--output NAME.mkv, say, chooses the container)")
    if args.output and len(files) > 1:
        raise UserError("--output names one file: give a single input image, or use --output-dir")
    if args.output and args.output_dir:
        raise UserError("give --output or --output-dir, not both")
    model, ckpt = checkpoints.load_model(args.checkpoint or DEFAULT_CHECKPOINT)
    device = choose_device(args.cuda, group.local_rank)
    upscaler = Upscaler(prepare(model, device, args.precision), checkpoints.scale_of(ckpt), args.tile,
                        args.self_ensemble)
    existing = "skip" if args.skip_existing else "overwrite" if args.overwrite else "refuse"
    encoding = Encoding(args.video_codec, args.crf, args.preset)
    pairs, existing = plan(files, upscaler.scale,
                           Destination(args.output, args.output_dir, args.format, existing, encoding))
    if group.main and precision_warning(device, args.precision):
        print(f"warning: {precision_warning(device, args.precision)}", file=sys.stderr, flush=True)
    return upscaler, pairs, skipped + existing, missing


def say(group, message, code=1):
    """Exit with status ``code`` and ``message``, printed by the first process only."""
    if group.main:
        print(message, file=sys.stderr, flush=True)
    sys.exit(code)


def main(argv=None):
    try:
        return upscale_call(build_parser().parse_args(argv))
    except KeyboardInterrupt as e:  # a stop before any output was begun (while loading, planning)
        print("interrupted", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)


def upscale_call(args):
    """The whole call of a parsed command line: plan, upscale this process's share, sum up; exits non-zero
    where anything failed."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    group = Group.from_env().join()
    error = None
    try:
        upscaler, pairs, skipped, missing = prepare_call(args, group)
    except UserError as e:
        error = f"error: {e}"
    failing, first_failing = group.totals(error is not None, group.main and error is not None)
    if failing:  # all stop; the first process says why, or the others where it could go on
        group.leave()
        if error and (group.main or not first_failing):
            print(error, file=sys.stderr, flush=True)
        sys.exit(1)
    created = new_folders(out for _, out, _ in pairs)  # before the barrier: no process has made one yet
    group.barrier()  # every process has planned before any writes (else a later one would find outputs)
    if group.main:
        for path in missing:
            print(f"error: input not found: {path}", file=sys.stderr)
        for path, reason in skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        if not pairs:
            print("nothing to do", file=sys.stderr)
        if args.format and any(kind == "video" for _, _, kind in pairs):
            print(f"note: --format {args.format} applies to the images; videos are written as videos",
                  file=sys.stderr)
    failed = run(args, group, upscaler, pairs, created)
    failed = group.totals(failed)[0] + len(missing)  # every process is done writing
    if group.main:
        remove_empty(created)
    group.leave()
    count = len(pairs) + len(missing)
    kinds = ("image" if all(kind == "image" for _, _, kind in pairs) else "input") + ("s" if count > 1 else "")
    if failed and count > 1:  # each failure has had its line; a summary where there were several inputs
        say(group, f"error: {failed} of {count} {kinds} failed" + (f" ({group.world} processes)"
                                                                   if group.world > 1 else ""))
    if failed:
        sys.exit(1)
    if group.world > 1 and group.main and pairs:
        print(f"{len(pairs)} {kinds} upscaled by {group.world} processes")


def unreadable(path):
    """Why the input ``path``, of no kind (:func:`input_kind`), cannot be upscaled, in words."""
    if not os.path.exists(path):
        return f"input not found: {path}"
    return f"cannot read {path}: it is neither an image that Pillow reads nor a video that FFmpeg reads"


def run(args, group, upscaler, pairs, created):
    """Upscale this process's share of ``pairs``; returns how many failed. A stop (Ctrl-C, SIGTERM) ends the
    call in one line, leaving only whole outputs and no folder of ``created`` that stayed empty."""
    images = group.share([(p, o) for p, o, kind in pairs if kind == "image"])
    videos = group.share([(p, o) for p, o, kind in pairs if kind == "video"])
    unread = group.share([p for p, _, kind in pairs if kind is None])
    encoding = Encoding(args.video_codec, args.crf, args.preset)
    try:
        for path in unread:
            tqdm.write(f"error: {unreadable(path)}", file=sys.stderr)
        failed = len(unread)
        failed += upscale_all(images, lambda picture: super_resolve(upscaler, picture), args.format,
                              args.quality, args.background) if images else 0
        for path, out in videos:
            failed += not upscale_one_video(path, out, upscaler, encoding)
        return failed
    except BaseException as e:
        stop = _interrupted(e)
        if stop is None:
            raise
        if group.world == 1:
            remove_empty(created)
        say(group, "interrupted: every output written is whole, the one being written was removed (run again "
                   "with --skip-existing to do the rest)", 128 + (signal.SIGTERM if isinstance(stop, Terminated)
                                                              else signal.SIGINT))


if __name__ == "__main__":
    main()
