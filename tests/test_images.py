"""bench.core.images: one decoding rule for every mode a microscope exports, checked against hand-computed pixels.

Each image is written to a file (PIL or hand-written PNG/TIFF bytes where PIL cannot write the mode) and decoded;
the expected 8-bit values are worked out by hand in the test, never by the function under test.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.core.errors import BadImageError
from bench.core.images import (
    decode_rgb,
    identify,
    image_extensions,
    sniff_format,
    to_rgb,
)

# 16-bit value -> round(v / 257), worked out by hand: 128/257 = 0.498, 129/257 = 0.502, 1000/257 = 3.89,
# 32896 = 128 * 257, 40000/257 = 155.64, 65406/257 = 254.498, 65407/257 = 254.502.
SIXTEEN = [(0, 0), (128, 0), (129, 1), (257, 1), (1000, 4), (32896, 128), (40000, 156), (65406, 254),
           (65407, 255), (65535, 255)]


def _gray_expectation(pairs):
    values = np.array([[v for v, _ in pairs]] * 2)
    expected = np.array([[e for _, e in pairs]] * 2, dtype=np.uint8)
    return values, np.repeat(expected[..., None], 3, axis=2)


def _check(path: Path, expected: np.ndarray, mode_on_disk: str | None = None) -> None:
    if mode_on_disk is not None:
        with Image.open(path) as image:
            assert image.mode == mode_on_disk  # the file really holds the mode under test
    decoded = decode_rgb(path)
    assert decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded), expected)


def _png(path: Path, width: int, height: int, colour_type: int, depth: int, rows: np.ndarray) -> Path:
    """A PNG written byte by byte (no filter), for 16-bit-per-channel data PIL cannot save."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + rows[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _tiff_rgb16(path: Path, pixels: np.ndarray) -> Path:
    """A baseline little-endian TIFF, 3 x 16 bits per pixel, uncompressed, one strip."""
    height, width, _ = pixels.shape
    data = pixels.astype("<u2").tobytes()
    n_tags, bits_at = 10, 8 + 2 + 10 * 12 + 4
    data_at = bits_at + 6

    def short(tag, value):
        return struct.pack("<HHIHH", tag, 3, 1, value, 0)

    def long(tag, value):
        return struct.pack("<HHII", tag, 4, 1, value)

    tags = [short(256, width), short(257, height), struct.pack("<HHII", 258, 3, 3, bits_at), short(259, 1),
            short(262, 2), long(273, data_at), short(277, 3), short(278, height), long(279, len(data)), short(284, 1)]
    ifd = struct.pack("<H", n_tags) + b"".join(tags) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + data)
    return path


# ------------------------------------------------------------------------------------------------ 16 bits
def test_16_bit_grayscale_png_and_tiff_scale_by_the_full_range(tmp_path):
    values, expected = _gray_expectation(SIXTEEN)
    image = Image.fromarray(values.astype(np.uint16))
    image.save(tmp_path / "g.png")
    image.save(tmp_path / "g.tif")
    _check(tmp_path / "g.png", expected, "I;16")
    _check(tmp_path / "g.tif", expected, "I;16")
    big = Image.frombytes("I;16B", (values.shape[1], 2), values.astype(">u2").tobytes())
    big.save(tmp_path / "big.tif")
    _check(tmp_path / "big.tif", expected, "I;16B")


def test_16_bit_ramp_maps_0_65535_onto_0_255():
    ramp = np.arange(256, dtype=np.uint32) * 257  # 0, 257, ..., 65535: exactly k * 257 -> k
    for mode, dtype in (("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2")):
        image = Image.frombytes(mode, (256, 1), ramp.astype(dtype).tobytes())  # I;16L/N cannot be saved by PIL
        assert image.mode == mode
        out = np.asarray(to_rgb(image))
        np.testing.assert_array_equal(out[0, :, 0], np.arange(256))
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_16_bit_pgm_and_32_bit_integer_tiff_read_as_16_bit(tmp_path):
    values, expected = _gray_expectation(SIXTEEN)
    Image.fromarray(values.astype(np.uint16)).save(tmp_path / "g.pgm")
    _check(tmp_path / "g.pgm", expected, "I")  # PIL opens 16-bit PGM as mode I
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "i.tif")
    _check(tmp_path / "i.tif", expected, "I")
    for bad, value in (("over.tif", 70000), ("negative.tif", -1)):
        Image.fromarray(np.array([[0, value]], dtype=np.int32)).save(tmp_path / bad)
        with pytest.raises(BadImageError, match=rf"{bad}.*outside 0\.\.65535.*re-export"):
            decode_rgb(tmp_path / bad)


def test_float_images_in_0_1_scale_by_255_and_others_are_refused(tmp_path):
    # float32 of 0.2 is 0.2000000030 -> 51.0000008 -> 51; 0.25 -> 63.75 -> 64; 0.75 -> 191.25 -> 191
    values, expected = _gray_expectation([(0.0, 0), (0.2, 51), (0.25, 64), (0.75, 191), (1.0, 255)])
    Image.fromarray(values.astype(np.float32)).save(tmp_path / "f.tif")
    _check(tmp_path / "f.tif", expected, "F")
    for name, bad in (("big.tif", 4095.0), ("neg.tif", -0.5), ("nan.tif", np.nan)):
        Image.fromarray(np.array([[0.5, bad]], dtype=np.float32)).save(tmp_path / name)
        with pytest.raises(BadImageError, match=rf"{name} is a float image with values outside \[0, 1\]"):
            decode_rgb(tmp_path / name)


def test_16_bit_per_channel_rgb_png_and_tiff_keep_the_high_byte(tmp_path):
    # PIL reads each 16-bit channel as its high byte (v >> 8): 255 -> 0, 256 -> 1, 32768 -> 128, 65535 -> 255
    pixels = np.array([[[0, 255, 65535], [256, 32768, 40000], [65535, 0, 1000]]] * 2, dtype=np.uint16)
    expected = np.array([[[0, 0, 255], [1, 128, 156], [255, 0, 3]]] * 2, dtype=np.uint8)
    _check(_png(tmp_path / "rgb16.png", 3, 2, 2, 16, pixels.reshape(2, -1)), expected, "RGB")
    _check(_tiff_rgb16(tmp_path / "rgb16.tif", pixels), expected, "RGB")
    gray_alpha = np.array([[[1000, 0], [40000, 65535]]] * 2, dtype=np.uint16)  # 16-bit gray + alpha
    want = np.array([[[3] * 3, [156] * 3]] * 2, dtype=np.uint8)  # alpha dropped, gray kept
    _check(_png(tmp_path / "la16.png", 2, 2, 4, 16, gray_alpha.reshape(2, -1)), want)


# ------------------------------------------------------------------------------------------------ 8 bits
def test_eight_bit_modes_and_alpha_is_dropped(tmp_path):
    Image.fromarray(np.array([[0, 255, 255, 0]], dtype=bool)).save(tmp_path / "one.png")
    _check(tmp_path / "one.png", np.array([[[0] * 3, [255] * 3, [255] * 3, [0] * 3]], dtype=np.uint8), "1")
    Image.fromarray(np.array([[0, 17, 200]], dtype=np.uint8)).save(tmp_path / "l.png")
    _check(tmp_path / "l.png", np.array([[[0] * 3, [17] * 3, [200] * 3]], dtype=np.uint8), "L")
    # alpha 0 does not hide the stored grey/colour: it is dropped, not composited
    Image.fromarray(np.array([[[90, 0], [200, 255]]], dtype=np.uint8), "LA").save(tmp_path / "la.png")
    _check(tmp_path / "la.png", np.array([[[90] * 3, [200] * 3]], dtype=np.uint8), "LA")
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    _check(tmp_path / "rgba.png", rgba[..., :3], "RGBA")
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "rgb.png")
    _check(tmp_path / "rgb.png", rgba[..., :3], "RGB")

    palette = Image.new("P", (3, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette.putdata([2, 0, 1])
    palette.save(tmp_path / "p.png", transparency=0)  # index 0 (red) transparent: its colour is kept
    _check(tmp_path / "p.png", np.array([[[0, 0, 255], [255, 0, 0], [0, 255, 0]]], dtype=np.uint8), "P")
    pa = palette.convert("PA")
    pa.save(tmp_path / "pa.tif")
    _check(tmp_path / "pa.tif", np.array([[[0, 0, 255], [255, 0, 0], [0, 255, 0]]], dtype=np.uint8), "PA")

    # CMYK with K = 0: R, G, B = 255 - C, 255 - M, 255 - Y
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 128, 40, 0]]], dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.tif")
    _check(tmp_path / "cmyk.tif", np.array([[[255, 255, 255], [0, 255, 255], [255, 127, 215]]], dtype=np.uint8), "CMYK")
    # YCbCr with neutral chroma (Cb = Cr = 128): R = G = B = Y
    ycc = np.array([[[0, 128, 128], [128, 128, 128], [255, 128, 128]]], dtype=np.uint8)
    Image.fromarray(ycc, "YCbCr").save(tmp_path / "ycc.tif")
    _check(tmp_path / "ycc.tif", np.array([[[0] * 3, [128] * 3, [255] * 3]], dtype=np.uint8), "YCbCr")


def test_gif_and_webp_decode(tmp_path):
    pixels = np.array([[0, 64, 128, 255]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "g.gif")
    _check(tmp_path / "g.gif", np.repeat(pixels[..., None], 3, axis=2))
    Image.fromarray(np.repeat(pixels[..., None], 3, axis=2)).save(tmp_path / "w.webp", lossless=True)
    _check(tmp_path / "w.webp", np.repeat(pixels[..., None], 3, axis=2))


# ------------------------------------------------------------------------------------------------ failures
def _truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_and_non_images_raise_bad_image_error_naming_the_file(tmp_path):
    truncated = _truncated_jpeg(tmp_path / "cut.jpg")
    with Image.open(truncated) as image:
        image.verify()  # PIL's structural check passes the cut file: why verify() is not enough
    with pytest.raises(BadImageError, match=r"cannot decode image .*cut\.jpg: OSError: .*truncated.*re-export"):
        decode_rgb(truncated)
    (tmp_path / "page.png").write_text("<html>404</html>")
    with pytest.raises(BadImageError, match=r"page\.png"):
        decode_rgb(tmp_path / "page.png")


def test_check_dataset_verify_decodes_the_whole_file(tmp_path):
    from tasks import get_task
    from tasks.checks import check_dataset
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "cells", {"a": 3, "b": 3}, size=16)
    _truncated_jpeg(root / "a" / "cut.jpg")
    Image.fromarray(np.array([[0.5, 7.0]], dtype=np.float32)).save(root / "b" / "float.tif")
    report = check_dataset(get_task(f"imagefolder:{root}"), None, tmp_path, verify=True)
    assert [u.split(":")[0] for u in report.unreadable] == ["a/cut.jpg", "b/float.tif"]
    assert "truncated" in report.unreadable[0] and "outside [0, 1]" in report.unreadable[1]
    assert not report.ok
    unverified = check_dataset(get_task(f"imagefolder:{root}"), None, tmp_path, verify=False)
    assert unverified.unreadable == [] and unverified.n_images == 8


# ------------------------------------------------------------------------------------------------ formats
def test_which_files_are_images():
    extensions = image_extensions()
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".tga", ".jp2"} <= extensions
    assert not {".eps", ".mpg", ".h5", ".txt", ".pdf"} & extensions  # not decodable to pixels here
    assert sniff_format(b"GIF89a....") == "gif" and sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_format(b"\x00\x00\x00\x0cjP  \r\n\x87\n") == "jpeg2000" and sniff_format(b"hello") is None


def test_identify_finds_formats_without_a_magic_signature(tmp_path):
    Image.new("L", (4, 2), 9).save(tmp_path / "x.tga")  # TGA has no signature in its first bytes
    assert sniff_format((tmp_path / "x.tga").read_bytes()[:16]) is None
    assert identify(tmp_path / "x.tga") == "tga"
    (tmp_path / "t.tga").write_text("plain text")
    assert identify(tmp_path / "t.tga") is None


# ------------------------------------------------------------------------------------------------ wiring
def test_extraction_and_trainer_use_the_decoding_rule(tmp_path):
    import torch
    from torchvision.transforms import ToTensor

    from bench.extract import ImageFiles
    from dinobloom_train.data import ImageListDataset

    values, expected = _gray_expectation(SIXTEEN)
    Image.fromarray(values.astype(np.uint16)).save(tmp_path / "g.png")
    tensor, _, ok = ImageFiles([tmp_path / "g.png"], ToTensor(), 8, skip_bad=False)[0]
    assert ok and torch.equal(tensor, ToTensor()(Image.fromarray(expected)))  # not white: 0..255 as above
    np.testing.assert_array_equal(np.asarray(ImageListDataset([tmp_path / "g.png"]).load(0)), expected)
    cut = _truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(BadImageError, match="cut.jpg"):
        ImageListDataset([cut]).load(0)
    _, _, ok = ImageFiles([cut], ToTensor(), 8, skip_bad=True)[0]
    assert not ok
