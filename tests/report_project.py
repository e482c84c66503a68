"""A sweep to make reports of, shared by the report's structure tests and its browser tests.

Imported as ``from report_project import ...`` (pytest puts ``tests/`` on ``sys.path``). Every
value a user can choose carries markup: a parameter, a tag, an error message and a file name.
"""

from __future__ import annotations

import struct
import zlib

EVIL_PARAM = "<script>alert(1)</script>"
EVIL_FILE = 'x" onerror="alert(1).png'
EVIL_TAG = "<img src=x onerror=alert(2)>"
EVIL_ERROR = "diverged </script><!-- <b>boom</b>"


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real PNG of one colour (no imaging library needed)."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def sweep_source(lrs: int = 3, seeds: int = 3, sizes: int = 1) -> str:
    """A test module: ``test_train`` over lr x seed x name x size (``2 * lrs * seeds * sizes`` runs,
    one of them failing, each logging a loss series) and ``test_files`` (one run with images).

    Sizes are 8, 16, 32...: sorted as strings they would come out 128, 16, 256, 32...
    """
    return f"""
import pytest

from report_project import EVIL_ERROR, EVIL_FILE, EVIL_PARAM, EVIL_TAG, png

LRS = [0.001 * 10**i for i in range({lrs})]
SIZES = [2 ** (i + 3) for i in range({sizes})]


@pytest.mark.grid(lr=LRS, seed=list(range({seeds})), name=["plain", EVIL_PARAM], size=SIZES)
def test_train(xp, lr, seed, name, size):
    for step in range(8):
        xp.log_metric("loss", (1 + seed / 10) / (1 + lr * 10 * step), step=step)
    xp.tags["name"] = name
    if lr == LRS[-1] and seed == {seeds - 1} and name == "plain" and size == SIZES[0]:
        raise ValueError(EVIL_ERROR)
    return {{"acc": 0.5 + lr + seed / 100, "loss": 1 / (1 + lr * 70)}}


def test_files(xp):
    (xp.dir / EVIL_FILE).write_bytes(png(40, 20))
    xp.log_artifact(png(64, 32, (30, 90, 200)), name="curve.png")
    xp.tags["team"] = EVIL_TAG
    return {{"acc": 0.25}}
"""
