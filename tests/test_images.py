"""What the user's files carry comes back with the upscaled pixels: ICC profile, EXIF, DPI, text, 16 bits,
every form of transparency, animation frames with their timing; files the tool cannot handle are refused
with one line. Every file here is made by the test and read back after the round trip."""

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
def test_every_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    src = tmp_path / "o.png"
    Image.fromarray(photo(6, 9)).save(src, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(src)).convert("RGB"))
    np.testing.assert_array_equal(read_picture(str(src)).frames[0], expected)


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


def test_16_bit_png_and_tiff_keep_profile_dpi_and_text(checkpoint, tmp_path):
    deep = (photo().astype(np.uint16) * 257)
    src = tmp_path / "deep.tiff"
    tifffile.imwrite(src, deep, photometric="rgb", iccprofile=SRGB, resolution=(150, 150), resolutionunit="INCH")
    for fmt in ("png", "tiff"):
        r = upscale_cli(checkpoint, src, "--output-dir", tmp_path / fmt, "--format", fmt)
        assert r.returncode == 0, r.stderr
        out = next((tmp_path / fmt).iterdir())
        picture = read_picture(str(out))
        assert picture.bits == 16 and picture.frames[0].shape == (60, 72, 3)
        assert picture.info["icc_profile"] == SRGB
        assert tuple(round(v) for v in picture.info["dpi"]) == (150, 150)


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
    for name, has_alpha, tolerance in [("o.webp", True, 0), ("o.bmp", False, 0), ("o.jpg", False, 8)]:
        r = upscale_cli(checkpoint, src, "--output", tmp_path / name, "--quality", "100")
        assert r.returncode == 0, r.stderr
        im = Image.open(tmp_path / name)
        assert im.mode == ("RGBA" if has_alpha else "RGB"), name
        got = np.asarray(im).astype(int)
        seen = want_alpha > 0 if has_alpha else slice(None)  # lossless WebP blanks fully transparent pixels
        assert np.abs(got[..., :3] - want_rgb)[seen].max() <= tolerance, name  # colour, not grey
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
