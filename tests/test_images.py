"""Reading images: a broken file is ovq's one line naming it, with nothing from the decoding library above it."""

from __future__ import annotations

import io
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from ovq.cli import main
from ovq.core.errors import DatasetError
from ovq.data.images import bmp_problem, png_problem, read_image


def _png(size=(48, 64)) -> bytes:
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x5A
    return bytes(out)


def _no_iend(data: bytes) -> bytes:
    return data[: data.rindex(b"IEND") - 4]


def _header_lies(data: bytes) -> bytes:
    """A bit depth of 3, with a CRC that matches: a header no encoder writes, whole as a file."""
    ihdr = bytearray(data[12:29])
    ihdr[12] = 3
    return data[:12] + bytes(ihdr) + zlib.crc32(bytes(ihdr)).to_bytes(4, "big") + data[33:]


DAMAGE = {  # what libpng or OpenCV printed above ovq's line before
    "cut in its image data": (lambda d: d[: len(d) // 2], "cut short: PNG chunk IDAT runs past the end of the file"),
    "a byte flipped in its image data": (lambda d: _flip(d, len(d) // 2), "PNG chunk IDAT fails its CRC check"),
    "a byte flipped in its header": (lambda d: _flip(d, 18), "PNG chunk IHDR fails its CRC check"),
    "only the signature": (lambda d: d[:8], "cut short: the file ends after 8 bytes"),
    "only the signature and header": (lambda d: d[:33], "cut short: the file ends after 33 bytes"),
    "no end chunk": (_no_iend, "cut short: the file ends after"),
    "a header PNG does not allow": (_header_lies, "bit depth 3, colour type 2"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_broken_png_is_one_line_with_nothing_from_libpng(tiny, tmp_path, capfd, damage):
    """'libpng error: PNG input buffer is incomplete' (or OpenCV's '[ERROR:0@1.2] ... readHeader') came first."""
    change, says = DAMAGE[damage]
    png = tmp_path / "broken.png"
    png.write_bytes(change(_png()))
    out = tmp_path / "out"
    assert main(["predict", str(tiny), str(png), "-o", str(out), "-q"]) == 2
    err = capfd.readouterr().err.splitlines()  # the file descriptor: libpng writes there, not to sys.stderr
    assert len(err) == 1 and err[0].startswith(f"ovq predict: error: {png}: not a readable image: "), err
    assert says in err[0]
    assert not out.exists()


def test_eval_on_a_folder_with_a_cut_png_is_one_line(tiny, tmp_path, capfd):
    data = tmp_path / "data"
    (data / "images/val").mkdir(parents=True)
    (data / "labels/val").mkdir(parents=True)
    png = data / "images/val/a.png"
    png.write_bytes(_png()[:900])
    (data / "labels/val/a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert main(["eval", str(tiny), "--data", str(data), "--no-progress", "-q"]) == 2
    err = capfd.readouterr().err.splitlines()
    said = f"{png}: not a readable image: cut short: PNG chunk IDAT runs past the end of the file (900 bytes)"
    assert err == [f"ovq eval: error: {said}"]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "LA", "1", "I;16"])
def test_every_kind_of_whole_png_passes_the_check_and_decodes(tmp_path, mode):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    (image.convert(mode) if mode != "I;16" else Image.fromarray(np.full((30, 40), 4000, np.uint16))).save(
        buffer, "PNG")
    assert png_problem(buffer.getvalue()) is None
    path = tmp_path / "whole.png"
    path.write_bytes(buffer.getvalue())
    assert read_image(path).shape == (30, 40, 3)


def test_what_is_not_a_png_is_left_to_opencv(tmp_path):
    assert png_problem(b"\xff\xd8\xff\xe0 a JPEG") is None and png_problem(b"") is None
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"broken\.jpg: not a readable image$"):
        read_image(broken)


def _bmp(mode: str = "RGB", size=(37, 45)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (*size, 3), dtype=np.uint8)).convert(mode).save(
        buffer, "BMP")
    return buffer.getvalue()


@pytest.mark.parametrize(("cut", "says"), [(1, "cut short: its pixels need 5086 bytes, the file has 5085"),
                                           (2000, "cut short: its pixels need 5086 bytes, the file has 3086"),
                                           (5070, "cut short: the file ends inside the BMP's header (16 bytes)")])
def test_a_cut_bmp_is_one_line_with_nothing_from_opencv(tiny, tmp_path, capfd, cut, says):
    """OpenCV printed '[ERROR:0@1.4] global loadsave.cpp:1412 imdecode_ imdecode_(''): can't read data: ... Unexpected
    end of input stream in function 'readBlock'' (and a blank line) above ovq's."""
    bmp = tmp_path / "cut.bmp"
    bmp.write_bytes(_bmp()[:-cut])
    assert main(["predict", str(tiny), str(bmp), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capfd.readouterr().err.splitlines()
    assert err == [f"ovq predict: error: {bmp}: not a readable image: {says}"]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "1"])
def test_every_kind_of_whole_bmp_passes_the_check(tmp_path, mode):
    data = _bmp(mode)
    assert bmp_problem(data) is None
    (tmp_path / "whole.bmp").write_bytes(data)
    assert read_image(tmp_path / "whole.bmp").shape == (37, 45, 3)
