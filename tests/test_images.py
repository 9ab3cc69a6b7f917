"""What the user's files carry comes back with the upscaled pixels: ICC profile, EXIF, XMP, IPTC, DPI, PNG text
and colour chunks, comments, 16 bits, every form of transparency, animation frames with their timing; what a
format cannot hold is named in a note, transparency is flattened onto the background where a format has none,
and files the tool cannot handle are refused with one line. Every file here is made by the test (its metadata
with Pillow and exiv2) and read back after the round trip, by exiftool too where it is installed."""

import io
import json
import shutil
import struct
import subprocess

import exiv2
import numpy as np
import png
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps, ImageSequence, JpegImagePlugin, PngImagePlugin

from conftest import cli, upscale_cli
from images import read_picture

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def photo(h=20, w=24, seed=0):
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 9, yy * 11, (xx + yy) * 5], -1) + np.random.default_rng(seed).integers(0, 30, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_jpeg_keeps_icc_profile_camera_exif_and_dpi_with_the_rotation_applied(checkpoint, tmp_path):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Canon", "EOS 5D", "2024:01:02 03:04:05"
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003] = 24, 20
    src = tmp_path / "cam.jpg"
    Image.fromarray(photo()).save(src, quality=92, icc_profile=SRGB, exif=exif.tobytes(), dpi=(300, 300))
    for out in (tmp_path / "cam_srcnn_x3.png", tmp_path / "big.jpg"):
        r = upscale_cli(checkpoint, src, "--output", out)
        assert r.returncode == 0, r.stderr
        im = Image.open(out)
        assert im.size == (60, 72)  # 20 x 24 shown upright, x3
        assert im.info["icc_profile"] == SRGB
        assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)
        got = im.getexif()
        assert (got[0x010F], got[0x0110], got[0x0132]) == ("Canon", "EOS 5D", "2024:01:02 03:04:05")
        assert got.get(0x0112, 1) == 1  # the rotation is in the pixels now
        assert (got.get_ifd(0x8769)[0xA002], got.get_ifd(0x8769)[0xA003]) == (60, 72)
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "big.jpg")) == 0  # 4:4:4 at the default quality


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("name, options", [("o.png", {}), ("o.tiff", {}), ("lzw.tiff", {"compression": "tiff_lzw"})])
def test_every_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation, name, options):
    exif = Image.Exif()
    exif[0x0112] = orientation
    src = tmp_path / name
    Image.fromarray(photo(6, 9)).save(src, exif=exif.tobytes(), **options)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(src)).convert("RGB"))  # Pillow turns a TIFF itself
    assert expected.shape == ((9, 6, 3) if orientation > 4 else (6, 9, 3))
    np.testing.assert_array_equal(read_picture(str(src)).frames[0], expected)


@pytest.mark.parametrize("orientation", [3, 6])
def test_a_16_bit_tiffs_orientation_is_applied_once(tmp_path, orientation):
    deep = photo(6, 9).astype(np.uint16) * 257
    src = tmp_path / "deep.tiff"
    tifffile.imwrite(src, deep, photometric="rgb", extratags=[(0x0112, "H", 1, orientation, True)])
    turned = np.rot90(photo(6, 9), -1 if orientation == 6 else 2)  # 90 degrees clockwise, or 180
    np.testing.assert_array_equal(read_picture(str(src)).frames[0], turned.astype(np.uint16) * 257)


def test_16_bit_rgb_png_stays_16_bit_with_its_text_chunks(checkpoint, tmp_path):
    deep = (photo().astype(np.uint16) * 257 + np.random.default_rng(1).integers(0, 257, (20, 24, 3))).astype(np.uint16)
    src = tmp_path / "deep.png"
    png.from_array(deep.reshape(20, -1), "RGB;16").save(src)
    picture = read_picture(str(src))
    assert picture.bits == 16 and picture.frames[0].dtype == np.uint16
    np.testing.assert_array_equal(picture.frames[0], deep)  # all 16 bits read, not Pillow's 8
    r = upscale_cli(checkpoint, src, "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    width, height, rows, meta = png.Reader(filename=str(tmp_path / "out" / "deep_srcnn_x3.png")).asDirect()
    out = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, 3)
    assert meta["bitdepth"] == 16 and (width, height) == (72, 60)
    assert len(np.unique(out % 257)) > 100  # real 16-bit values, not 8-bit ones times 257
    # the identity model returns the bicubic upscale: compare with Pillow's on the 8-bit version
    eight = np.asarray(Image.fromarray((deep // 257).astype(np.uint8)).resize((72, 60), Image.BICUBIC)).astype(float)
    assert np.abs(out / 257.0 - eight).mean() < 1.0


def test_16_bit_png_and_tiff_keep_profile_dpi_text_exif_xmp_and_iptc(checkpoint, tmp_path):
    deep = (photo().astype(np.uint16) * 257)
    src = tmp_path / "deep.tiff"
    tifffile.imwrite(src, deep, photometric="rgb", iccprofile=SRGB, resolution=(150, 150), resolutionunit="INCH")
    tag(src, exif=[("Exif.Image.Make", "Nikon"), ("Exif.Photo.DateTimeOriginal", "2020:01:02 03:04:05")],
        xmp=[("Xmp.dc.creator", ["Jane Doe"])], iptc=[("Iptc.Application2.Keywords", "deep")])
    text = tmp_path / "text.png"  # pypng's 16-bit file with text chunks added, as Pillow makes them
    png.from_array(deep.reshape(20, -1), "RGB;16").save(text)
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a bird")
    info.add_itxt("Comment", "café")
    with open(text, "rb") as f:
        chunks = list(png.Reader(file=f).chunks())
    with open(text, "wb") as f:
        png.write_chunks(f, chunks[:1] + [c[:2] for c in info.chunks] + chunks[1:])
    for source, fmt in ((src, "png"), (src, "tiff"), (text, "png")):
        out = tmp_path / f"{source.stem}_out.{fmt}"
        r = upscale_cli(checkpoint, source, "--output", out)
        assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
        picture = read_picture(str(out))
        assert picture.bits == 16 and picture.frames[0].shape == (60, 72, 3)
        got = blocks(out)
        if source == text:
            assert Image.open(out).text == {"Title": "a bird", "Comment": "café"}
            continue
        assert got["icc"] == SRGB and tuple(round(v) for v in got["dpi"]) == (150, 150)
        assert got["exif"]["Exif.Image.Make"] == "Nikon"
        assert got["exif"]["Exif.Photo.DateTimeOriginal"] == "2020:01:02 03:04:05"
        assert got["exif"].get("Exif.Image.ImageWidth", "72") == "72"  # not the input's 24
        if fmt == "png":  # the TIFF's layout is not kept; a TIFF output has its own
            layout = {"Exif.Image.Compression", "Exif.Image.BitsPerSample", "Exif.Image.StripOffsets"}
            assert not layout & set(got["exif"])
        assert (got["xmp"]["Xmp.dc.creator"], got["iptc"]) == ("Jane Doe", ["deep"])


def test_png_text_chunks_and_tRNS_colour_key_are_kept(checkpoint, tmp_path):
    img = photo()
    img[:5, :5] = (10, 20, 30)  # the transparent colour
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a bird")
    info.add_itxt("Comment", "café")
    src = tmp_path / "key.png"
    Image.fromarray(img).save(src, transparency=(10, 20, 30), pnginfo=info, dpi=(72, 72))
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "out.png")
    assert r.returncode == 0, r.stderr
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA" and out.text == {"Title": "a bird", "Comment": "café"}
    alpha = np.asarray(out)[..., 3]
    assert alpha[:9, :9].max() == 0 and alpha[30:, 30:].min() == 255


def test_palette_transparency_and_grey_alpha_are_kept(checkpoint, tmp_path):
    pal = Image.fromarray(photo()).quantize(16)
    index = int(np.asarray(pal)[0, 0])
    src = tmp_path / "pal.png"
    pal.save(src, transparency=index)
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "pal_out.png")
    assert r.returncode == 0, r.stderr
    out = Image.open(tmp_path / "pal_out.png")
    assert out.mode == "RGBA" and np.asarray(out)[0, 0, 3] < 128 and np.asarray(out)[..., 3].max() == 255
    la = tmp_path / "la.png"
    Image.fromarray(np.stack([photo()[..., 0], np.full((20, 24), 128, np.uint8)], -1)).save(la)
    r = upscale_cli(checkpoint, la, "--output", tmp_path / "la_out.png")
    out = Image.open(tmp_path / "la_out.png")
    assert out.mode == "LA" and np.asarray(out)[..., 1].min() == 128


def test_animated_gif_and_webp_keep_every_frame_its_duration_and_the_loop(checkpoint, tmp_path):
    frames = [Image.fromarray(np.full((10, 12, 3), (60 * i, 100, 200 - 50 * i), np.uint8)) for i in range(4)]
    for ext, loop in (("gif", 3), ("webp", 0)):
        src = tmp_path / f"anim_{ext}.{ext}"
        frames[0].save(src, save_all=True, append_images=frames[1:], duration=[100, 200, 300, 400], loop=loop)
    r = upscale_cli(checkpoint, tmp_path, "--output-dir", tmp_path / "out")  # found in a folder, like named directly
    assert r.returncode == 0, r.stderr
    for ext, loop in (("gif", 3), ("webp", 0)):
        out = Image.open(tmp_path / "out" / f"anim_{ext}_srcnn_x3.png")
        got = [(f.size, f.info["duration"], tuple(np.asarray(f.convert("RGB"))[5, 5])) for f in ImageSequence.Iterator(out)]
        assert [(s, d) for s, d, _ in got] == [((36, 30), d) for d in (100, 200, 300, 400)]
        colours = np.array([c for _, _, c in got], int)  # GIF's palette and lossy WebP move them a little
        assert np.abs(colours - [(60 * i, 100, 200 - 50 * i) for i in range(4)]).max() <= 6
        assert out.info["loop"] == loop
    r = upscale_cli(checkpoint, tmp_path / "anim_gif.gif", "--output", tmp_path / "still.jpg")
    assert r.returncode == 1 and "animated (4 frames)" in r.stderr and not (tmp_path / "still.jpg").exists()


def test_32_bit_and_float_images_are_refused_not_darkened(checkpoint, tmp_path):
    Image.fromarray(np.arange(480, dtype=np.int32).reshape(20, 24) * 2, "I").save(tmp_path / "i32.tif")
    Image.fromarray(np.linspace(0, 1, 480, dtype=np.float32).reshape(20, 24), "F").save(tmp_path / "f.tif")
    for name, words in (("i32.tif", "32-bit integers"), ("f.tif", "floats")):
        r = upscale_cli(checkpoint, tmp_path / name, "--output-dir", tmp_path / "out")
        assert r.returncode == 1 and words in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_quality_sets_jpeg_and_webp_and_low_quality_subsamples(checkpoint, tmp_path):
    src = tmp_path / "p.png"
    Image.fromarray(photo(40, 48)).save(src)
    sizes = {}
    for q in (50, 95):
        r = upscale_cli(checkpoint, src, "--output", tmp_path / f"q{q}.jpg", "--quality", q)
        assert r.returncode == 0, r.stderr
        sizes[q] = (tmp_path / f"q{q}.jpg").stat().st_size
    assert sizes[50] < sizes[95]
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "q50.jpg")) == 2  # 4:2:0 below quality 90
    r = upscale_cli(checkpoint, src, "--output-dir", tmp_path / "w", "--format", "webp", "--quality", 100)
    assert r.returncode == 0 and Image.open(tmp_path / "w" / "p_srcnn_x3.webp").format == "WEBP"
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "x.jpg", "--quality", 101)
    assert r.returncode == 2 and "quality" in r.stderr


def test_16_bit_colour_written_to_8_bit_formats_keeps_its_colours_and_alpha(checkpoint, tmp_path):
    deep = photo().astype(np.uint16) * 257 + 128
    alpha = np.tile(np.linspace(0, 65535, 24).astype(np.uint16), (20, 1))
    src = tmp_path / "deep.png"
    png.from_array(np.dstack([deep, alpha]).reshape(20, -1), "RGBA;16").save(src)
    assert upscale_cli(checkpoint, src, "--output", tmp_path / "ref.png").returncode == 0
    ref = read_picture(str(tmp_path / "ref.png"))  # the 16-bit output
    want_rgb, want_alpha = ((a.astype(np.uint32) * 255 + 32767) // 65535 for a in (ref.frames[0], ref.alphas[0]))
    a = ref.alphas[0][..., None] / 65535  # without alpha: the 16-bit colour over white, in 8 bits
    flat = np.rint((ref.frames[0] * a + 65535 * (1 - a)) / 257)
    for name, has_alpha, tolerance in [("o.webp", True, 0), ("o.bmp", False, 1), ("o.jpg", False, 8)]:
        r = upscale_cli(checkpoint, src, "--output", tmp_path / name, "--quality", "100")
        assert r.returncode == 0, r.stderr
        im = Image.open(tmp_path / name)
        assert im.mode == ("RGBA" if has_alpha else "RGB"), name
        got = np.asarray(im).astype(int)
        seen = want_alpha > 0 if has_alpha else slice(None)  # lossless WebP blanks fully transparent pixels
        want = want_rgb if has_alpha else flat
        assert np.abs(got[..., :3] - want)[seen].max() <= tolerance, name  # colour, not grey
        if has_alpha:
            np.testing.assert_array_equal(got[..., 3], want_alpha)


def test_tiff_inputs_give_only_their_real_exif_and_dpi_and_write_back_as_tiff(checkpoint, tmp_path):
    img = photo()
    plain, unitless, tagged = tmp_path / "plain.tiff", tmp_path / "unitless.tiff", tmp_path / "tagged.tiff"
    Image.fromarray(img).save(plain)  # no resolution: Pillow reads it as 1 dpi
    tifffile.imwrite(unitless, img)  # resolution 1 x 1 with unit "none"
    exif = Image.Exif()
    exif[0x010F], exif.get_ifd(0x8769)[0x9003] = "Nikon", "2020:01:02 03:04:05"
    Image.fromarray(img).save(tagged, dpi=(300, 300), exif=exif.tobytes())
    for src in (plain, unitless, tagged):
        for out in (tmp_path / f"{src.stem}-o.tiff", tmp_path / f"{src.stem}-o.jpg"):
            r = upscale_cli(checkpoint, src, "--output", out)
            assert r.returncode == 0, r.stderr
            im = Image.open(out)
            assert im.size == (72, 60) and im.mode == "RGB"
            tags = im.getexif()
            if out.suffix == ".jpg":  # the TIFF's layout (width, strips, ...) is not EXIF
                assert not {0x0100, 0x0101, 0x0111, 0x0117} & set(tags)
            if src is tagged:
                assert tags[0x010F] == "Nikon" and tags.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
                assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)
            else:
                assert "dpi" not in read_picture(str(out)).info, out  # no 1 dpi made up


def test_a_cmyk_picture_comes_out_rgb_with_an_rgb_profile_not_its_cmyk_one(checkpoint, tmp_path):
    cmyk_profile = bytearray(SRGB)
    cmyk_profile[16:20] = b"CMYK"  # the header's colour space: what viewers read to use a profile
    src = tmp_path / "print.jpg"
    Image.fromarray(photo()).convert("CMYK").save(src, quality=95, icc_profile=bytes(cmyk_profile))
    for out in (tmp_path / "o.png", tmp_path / "o.jpg"):
        r = upscale_cli(checkpoint, src, "--output", out)
        assert r.returncode == 0, r.stderr
        im = Image.open(out)
        assert im.mode == "RGB" and im.info["icc_profile"][16:20] == b"RGB "
    plain = tmp_path / "plain.jpg"  # no profile: Pillow's conversion, and no profile made up
    Image.fromarray(photo()).convert("CMYK").save(plain, quality=95)
    assert upscale_cli(checkpoint, plain, "--output", tmp_path / "p.png").returncode == 0
    assert "icc_profile" not in Image.open(tmp_path / "p.png").info


def test_a_transparent_animated_gif_leaves_no_trails(checkpoint, tmp_path):
    frames = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):  # a square moving over a transparent field
        a = np.zeros((16, 24, 4), np.uint8)
        a[4:12, 2 + 6 * i:10 + 6 * i] = (*colour, 255)
        frames.append(Image.fromarray(a))
    src = tmp_path / "moving.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0, disposal=2)
    want = [np.asarray(f.convert("RGBA"))[..., 3] > 0 for f in ImageSequence.Iterator(Image.open(src))]
    assert upscale_cli(checkpoint, src, "--output", tmp_path / "o.gif").returncode == 0
    got = [np.asarray(f.convert("RGBA"))[..., 3] > 0 for f in ImageSequence.Iterator(Image.open(tmp_path / "o.gif"))]
    assert len(got) == 3
    for w, g in zip(want, got):  # the same share of each frame is opaque as in the input (x3 each way)
        assert abs(g.mean() - w.mean()) < 0.03, (g.mean(), w.mean())


# --------------------------------------------------------------------------- metadata blocks and transparency

# What each output format holds of a camera JPEG's metadata, as docs/files.md tables it; the note names the rest
HOLDS = {"png": {"icc", "exif", "xmp", "iptc", "dpi", "comment"},
         "jpeg": {"icc", "exif", "xmp", "iptc", "dpi", "comment"},
         "webp": {"icc", "exif", "xmp"}, "tiff": {"icc", "exif", "xmp", "iptc", "dpi"},
         "gif": {"comment"}, "bmp": {"dpi"}}
NOT_HELD = {"png": None, "jpeg": None, "webp": "IPTC, DPI, comment", "tiff": "comment",
            "gif": "ICC profile, EXIF, XMP, IPTC, DPI", "bmp": "ICC profile, EXIF, XMP, IPTC, comment"}
EXTENSION = {"png": "png", "jpeg": "jpg", "webp": "webp", "tiff": "tiff", "gif": "gif", "bmp": "bmp"}


def tag(path, exif=(), xmp=(), iptc=()):
    """Write the (key, value) pairs of EXIF, XMP and IPTC into the image file ``path`` with exiv2 (the XMP
    values that are lists as XMP arrays; IPTC keys given twice repeat)."""
    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    for key, value in exif:
        image.exifData()[key] = value
    for key, value in xmp:
        if isinstance(value, list):
            array = exiv2.XmpArrayValue(exiv2.TypeId.xmpSeq)
            for v in value:
                array.read(v)
            image.xmpData().add(exiv2.XmpKey(key), array)
        else:
            image.xmpData()[key] = value
    for key, value in iptc:
        image.iptcData().add(exiv2.IptcKey(key), exiv2.StringValue(value))
    image.writeMetadata()
    return path


def camera_jpeg(path):
    """A 24x20 camera JPEG shown turned (EXIF and XMP orientation 6): sRGB profile, 300 dpi, a comment, EXIF
    with make, model, copyright, GPS, its pixel size and a thumbnail, XMP creator and pixel size, IPTC keywords."""
    Image.fromarray(photo()).save(path, quality=95, icc_profile=SRGB, dpi=(300, 300), comment=b"on a tripod")
    thumbnail = io.BytesIO()
    Image.fromarray(photo()[::2, ::2]).save(thumbnail, "JPEG")
    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    exiv2.ExifThumb(image.exifData()).setJpegThumbnail(thumbnail.getvalue())  # as cameras write, unturned
    image.writeMetadata()
    return tag(path, exif=[("Exif.Image.Make", "Canon"), ("Exif.Image.Model", "Canon EOS R5"),
                           ("Exif.Image.Orientation", exiv2.UShortValue(6)), ("Exif.Image.Copyright", "(c) Jane Doe"),
                           ("Exif.GPSInfo.GPSLatitudeRef", "N"), ("Exif.GPSInfo.GPSLatitude", "48/1 51/1 3024/100"),
                           ("Exif.Photo.PixelXDimension", 24), ("Exif.Photo.PixelYDimension", 20)],
               xmp=[("Xmp.dc.creator", ["Jane Doe"]), ("Xmp.tiff.Orientation", "6"),
                    ("Xmp.exif.PixelXDimension", "24")],
               iptc=[("Iptc.Application2.Keywords", "paris"), ("Iptc.Application2.Keywords", "tower")])


def blocks(path):
    """{kind: what it says} of the metadata in the image file ``path``: EXIF, XMP and IPTC as exiv2 reads them,
    the ICC profile, DPI and comment as Pillow does."""
    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    exif, xmp, iptc = image.exifData(), image.xmpData(), image.iptcData()
    im = Image.open(path)
    comment = im.info.get("comment", getattr(im, "text", {}).get("Comment", b""))
    found = {"icc": im.info.get("icc_profile"), "dpi": im.info.get("dpi"),
             "comment": comment.rstrip(b"\0") if isinstance(comment, bytes) else comment.encode(),
             "exif": {d.key(): str(d.value()) for d in exif if d.key().split(".")[1] in ("Image", "Photo", "GPSInfo")},
             "thumbnail": [d.key() for d in exif if d.groupName() == "Thumbnail"],
             "xmp": {d.key(): str(d.value()) for d in xmp}, "iptc": [str(d.value()) for d in iptc]}
    return {k: v for k, v in found.items() if v}


def test_every_metadata_block_goes_into_each_format_that_holds_it_and_a_note_names_the_rest(checkpoint, tmp_path):
    src = camera_jpeg(tmp_path / "cam.jpg")
    for fmt, holds in HOLDS.items():
        out = tmp_path / f"out.{EXTENSION[fmt]}"
        r = upscale_cli(checkpoint, src, "--output", out)
        assert r.returncode == 0, r.stderr
        notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
        assert notes == ([f"note: {out}: {fmt} cannot hold {NOT_HELD[fmt]}: not kept"] if NOT_HELD[fmt] else []), fmt
        got = blocks(out)
        assert set(got) == holds, fmt  # and no thumbnail: the input's pixels, small and not turned upright
        assert Image.open(out).size == (60, 72)  # 20 x 24 shown upright, x3
        if "exif" in holds:
            exif = got["exif"]
            assert (exif["Exif.Image.Make"], exif["Exif.Image.Copyright"]) == ("Canon", "(c) Jane Doe"), fmt
            assert exif["Exif.GPSInfo.GPSLatitude"] == "48/1 51/1 3024/100", fmt
            assert exif.get("Exif.Image.Orientation", "1") == "1", fmt  # the rotation is in the pixels now
            assert (exif["Exif.Photo.PixelXDimension"], exif["Exif.Photo.PixelYDimension"]) == ("60", "72"), fmt
        if "xmp" in holds:
            assert got["xmp"]["Xmp.dc.creator"] == "Jane Doe", fmt
            assert (got["xmp"]["Xmp.tiff.Orientation"], got["xmp"]["Xmp.exif.PixelXDimension"]) == ("1", "60"), fmt
        if "iptc" in holds:
            assert got["iptc"] == ["paris", "tower"], fmt
        if "icc" in holds:
            assert got["icc"] == SRGB, fmt
        if "dpi" in holds:
            assert tuple(round(v) for v in got["dpi"]) == (300, 300), fmt
        if "comment" in holds:
            assert got["comment"] == b"on a tripod", fmt


def exiftool(path):
    """exiftool's reading of ``path``, {group:tag: value}; skips the test where exiftool is not installed."""
    if shutil.which("exiftool") is None:
        pytest.skip("exiftool not installed (Debian/Ubuntu: apt-get install libimage-exiftool-perl): "
                    "the outputs are not read back by a second reader")
    run = subprocess.run(["exiftool", "-G", "-j", "-a", str(path)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout)[0]


def test_exiftool_reads_every_block_of_every_output_and_no_warning(checkpoint, tmp_path):
    src = camera_jpeg(tmp_path / "cam.jpg")
    exiftool(src)  # skips here without exiftool, before any work
    for fmt, holds in HOLDS.items():
        out = tmp_path / f"out.{EXTENSION[fmt]}"
        assert upscale_cli(checkpoint, src, "--output", out).returncode == 0
        tags = exiftool(out)
        groups = {key.split(":")[0] for key in tags}
        assert "ExifTool:Warning" not in tags and "ExifTool:Error" not in tags, (fmt, tags)
        assert ("EXIF" in groups) == ("exif" in holds or fmt == "tiff"), fmt  # a TIFF's own tags are EXIF to exiftool
        assert [g in groups for g in ("XMP", "IPTC", "ICC_Profile")] == \
               ["xmp" in holds, "iptc" in holds, "icc" in holds], fmt
        if "exif" in holds:
            assert (tags["EXIF:Make"], tags["EXIF:Orientation"]) == ("Canon", "Horizontal (normal)"), fmt
            assert (tags["EXIF:ExifImageWidth"], tags["EXIF:ExifImageHeight"]) == (60, 72), fmt
            assert tags["EXIF:GPSLatitude"] == "48 deg 51' 30.24\"" and "EXIF:ThumbnailImage" not in tags, fmt
        if "xmp" in holds:
            assert (tags["XMP:Creator"], tags["XMP:Orientation"], tags["XMP:ExifImageWidth"]) == \
                   ("Jane Doe", "Horizontal (normal)", 60), fmt
        if "iptc" in holds:
            assert tags["IPTC:Keywords"] == ["paris", "tower"], fmt
        if "icc" in holds:
            assert tags["ICC_Profile:ProfileDescription"] == "sRGB built-in", fmt
    png_src = tmp_path / "chunks.png"
    Image.fromarray(photo()).save(png_src, pnginfo=colour_chunks())
    assert upscale_cli(checkpoint, png_src, "--output", tmp_path / "chunks_out.png").returncode == 0
    tags = exiftool(tmp_path / "chunks_out.png")
    assert (tags["PNG:Gamma"], tags["PNG:SRGBRendering"], tags["PNG:WhitePointX"], tags["PNG:Title"]) == \
           (2.2, "Perceptual", 0.3127, "a bird")


def colour_chunks():
    """A PngInfo with the colour chunks gAMA (1/2.2), cHRM (sRGB's), sRGB (perceptual), cICP (BT.709, sRGB
    transfer, full range) and a Title text."""
    info = PngImagePlugin.PngInfo()
    for kind, data in COLOUR_CHUNKS.items():
        info.add(kind, data)
    info.add_text("Title", "a bird")
    return info


COLOUR_CHUNKS = {b"gAMA": struct.pack(">I", 45455),
                 b"cHRM": struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000),
                 b"sRGB": b"\0", b"cICP": bytes([1, 13, 0, 1])}


def chunks_of(path):
    return [(kind, data) for kind, data in png.Reader(filename=str(path)).chunks() if kind not in (b"IDAT", b"IEND")]


def test_png_colour_chunks_come_through_as_they_are_in_8_and_16_bits(checkpoint, tmp_path):
    src8 = tmp_path / "c8.png"
    Image.fromarray(photo()).save(src8, pnginfo=colour_chunks())
    src16 = tmp_path / "c16.png"  # pypng's file with the chunks added: a 16-bit picture Pillow cannot write
    png.from_array((photo().astype(np.uint16) * 257).reshape(20, -1), "RGB;16").save(src16)
    with open(src16, "rb") as f:
        chunks = list(png.Reader(file=f).chunks())
    with open(src16, "wb") as f:
        png.write_chunks(f, chunks[:1] + list(COLOUR_CHUNKS.items()) + chunks[1:])
    for src in (src8, src16):
        out = tmp_path / f"{src.stem}_out.png"
        r = upscale_cli(checkpoint, src, "--output", out)
        assert r.returncode == 0 and "note:" not in r.stderr, r.stderr
        got = dict(chunks_of(out))
        assert {kind: got.get(kind) for kind in COLOUR_CHUNKS} == COLOUR_CHUNKS, src
        r = upscale_cli(checkpoint, src, "--output", tmp_path / f"{src.stem}.jpg")
        assert r.returncode == 0, r.stderr
        assert "PNG colour chunks (gAMA, cHRM, sRGB, cICP)" in r.stderr.split("jpeg cannot hold")[1]
    assert png.Reader(filename=str(tmp_path / "c16_out.png")).read()[3]["bitdepth"] == 16


def logo(path, size=64):
    """A red disc on a transparent field, antialiased (drawn 4x larger, then reduced): its edge has every
    alpha from 1 to 254; the transparent pixels are black."""
    yy, xx = np.mgrid[0:4 * size, 0:4 * size]
    inside = (xx - 2 * size) ** 2 + (yy - 2 * size) ** 2 < (1.4 * size) ** 2
    big = np.zeros((4 * size, 4 * size, 4), np.uint8)
    big[inside] = (220, 30, 30, 255)
    Image.fromarray(big).resize((size, size), Image.LANCZOS).save(path)
    return path


def test_transparency_into_jpeg_bmp_and_gif_is_composited_onto_the_background_and_said(checkpoint, tmp_path):
    src = logo(tmp_path / "logo.png")
    assert upscale_cli(checkpoint, src, "--output", tmp_path / "ref.png").returncode == 0
    ref = np.asarray(Image.open(tmp_path / "ref.png")).astype(float)  # the upscaled colour and alpha
    rgb, a = ref[..., :3], ref[..., 3:] / 255
    edge, clear = (a[..., 0] > 0) & (a[..., 0] < 1), a[..., 0] == 0
    assert edge.sum() > 500 and clear.sum() > 1000
    for name, background, given, tolerance in [("o.bmp", (16, 32, 48), ["--background", "#102030"], 0),
                                               ("o.jpg", (255, 255, 255), ["--quality", "100"], 4),
                                               ("b.bmp", (0, 0, 0), ["--background", "black"], 0),
                                               ("c.bmp", (0, 128, 255), ["--background", "0,128,255"], 0)]:
        r = upscale_cli(checkpoint, src, "--output", tmp_path / name, *given)
        assert r.returncode == 0, r.stderr
        fmt = "bmp" if name.endswith("bmp") else "jpeg"
        assert r.stderr.splitlines() == [f"note: {tmp_path / name}: {fmt} has no transparency: flattened onto "
                                         f"#{'%02x%02x%02x' % background} (--background)"]
        got = np.asarray(Image.open(tmp_path / name).convert("RGB")).astype(float)
        want = np.rint(a * rgb + (1 - a) * np.array(background))  # composited, not thresholded
        assert np.abs(got - want)[edge].max() <= tolerance, name
        assert np.abs(got - np.array(background))[clear].max() <= tolerance, name  # exactly the background
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "o.gif")
    assert r.returncode == 0 and "gif shows a pixel or hides it: partly transparent pixels blended onto #ffffff" \
        in r.stderr
    gif = np.asarray(Image.open(tmp_path / "o.gif").convert("RGBA")).astype(float)
    np.testing.assert_array_equal(gif[..., 3] == 0, a[..., 0] < 0.5)  # shown from half opaque on
    shown = edge & (a[..., 0] >= 0.5)
    want = a * rgb + (1 - a) * 255
    assert np.abs(gif[..., :3] - want)[shown].mean() < 4  # blended onto white (GIF's palette moves them a little)
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "x.jpg", "--background", "nope")
    assert r.returncode == 2 and "'nope' is not a colour" in r.stderr and not (tmp_path / "x.jpg").exists()


def test_an_opaque_alpha_channel_flattens_to_the_same_pixels_and_says_nothing(checkpoint, tmp_path):
    src = tmp_path / "opaque.png"
    Image.fromarray(np.dstack([photo(), np.full((20, 24), 255, np.uint8)])).save(src)
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "o.bmp", "--background", "black")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    ref = tmp_path / "rgb.png"
    Image.fromarray(photo()).save(ref)
    assert upscale_cli(checkpoint, ref, "--output", tmp_path / "rgb.bmp").returncode == 0
    np.testing.assert_array_equal(*(np.asarray(Image.open(tmp_path / name)) for name in ("o.bmp", "rgb.bmp")))


def test_an_orientation_in_xmp_alone_is_applied_and_reset(checkpoint, tmp_path):
    src = tmp_path / "xmp.png"
    Image.fromarray(photo()).save(src)
    tag(src, xmp=[("Xmp.tiff.Orientation", "6")])
    for out in (tmp_path / "o.png", tmp_path / "o.jpg", tmp_path / "o.webp", tmp_path / "o.tiff"):
        assert upscale_cli(checkpoint, src, "--output", out).returncode == 0
        assert Image.open(out).size == (60, 72), out
        assert blocks(out)["xmp"]["Xmp.tiff.Orientation"] == "1", out
        assert ImageOps.exif_transpose(Image.open(out)).size == (60, 72), out  # as a viewer shows it


def test_a_jpeg_resolution_without_a_unit_or_missing_is_no_dpi(checkpoint, tmp_path):
    unitless, none = tmp_path / "unitless.jpg", tmp_path / "none.jpg"
    Image.fromarray(photo()).save(unitless)  # JFIF density 1:1, no unit: an aspect ratio only
    tag(unitless, exif=[("Exif.Image.XResolution", "1/1"), ("Exif.Image.YResolution", "1/1"),
                        ("Exif.Image.ResolutionUnit", exiv2.UShortValue(1))])
    Image.fromarray(photo()).save(none)
    tag(none, exif=[("Exif.Image.Make", "Canon")])  # Pillow reports 72 dpi for it
    for src in (unitless, none):
        for out in (tmp_path / f"{src.stem}_o.png", tmp_path / f"{src.stem}_o.jpg"):
            assert upscale_cli(checkpoint, src, "--output", out).returncode == 0
            assert "dpi" not in read_picture(str(out)).info, out
    assert b"pHYs" not in dict(chunks_of(tmp_path / "unitless_o.png"))


def test_animations_keep_every_frame_and_duration_with_their_metadata_written_in(checkpoint, tmp_path):
    frames = [Image.fromarray(np.full((10, 12, 3), (60 * i, 100, 200 - 50 * i), np.uint8)) for i in range(3)]
    src = tmp_path / "anim.png"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=2, icc_profile=SRGB)
    tag(src, exif=[("Exif.Image.Artist", "Jane Doe")], xmp=[("Xmp.dc.creator", ["Jane Doe"])])
    for out in (tmp_path / "o.png", tmp_path / "o.webp"):
        assert upscale_cli(checkpoint, src, "--output", out).returncode == 0
        shown = []
        for f in ImageSequence.Iterator(Image.open(out)):
            f.load()  # WebP gives a frame's duration once it is decoded
            shown.append((f.size, f.info["duration"]))
        assert shown == [((36, 30), d) for d in (100, 200, 300)], out
        got = blocks(out)
        assert got["exif"]["Exif.Image.Artist"] == "Jane Doe" and got["xmp"]["Xmp.dc.creator"] == "Jane Doe", out
        assert got["icc"] == SRGB, out


@pytest.mark.parametrize("where, value, says", [(8, b"\xff\xff", "part of its EXIF, XMP or IPTC could not be read"),
                                                (4, b"\x7f\xff\xff\xff", "its EXIF, XMP and IPTC could not be read")])
def test_exif_that_cannot_be_read_is_a_note_and_the_picture_is_written(checkpoint, tmp_path, where, value, says):
    src = tmp_path / "bad.jpg"
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    Image.fromarray(photo()).save(src, exif=exif.tobytes())
    data = bytearray(src.read_bytes())
    start = data.find(b"Exif\0\0") + 6  # the TIFF header: byte order, 42, then the first directory's offset
    data[start + where:start + where + len(value)] = value  # its number of entries, or the offset itself
    src.write_bytes(bytes(data))
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "o.png")
    assert r.returncode == 0, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(f"note: {tmp_path / 'o.png'}: {says} (")
    assert Image.open(tmp_path / "o.png").size == (72, 60)
