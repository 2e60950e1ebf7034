"""The report in a real browser: headless Chromium renders index.html; the screenshot is not blank and the
rendered DOM shows every experiment's row with the numbers of results.json.

Skipped with a reason where Chromium is missing, except in CI (the CI variable set), where it must run."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import pytest

from kexue.experiments import Check
from kexue.experiments.runner import run_experiments
from kexue.experiments.summary import fmt

from .fakes import from_metrics, gaussian


def _chromium() -> str:
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is not installed (.ci/run installs it with apt-get)")
        pytest.skip("chromium not installed: the report is not checked in a browser "
                    "(apt-get install chromium; in CI this test must run)")
    return exe


def _browser(exe: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, timeout=120, check=True)


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB pixels) of a PNG: with PIL when installed, else decoded here with zlib."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return _png_pixels_zlib(data)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    raw = img.tobytes()
    return img.width, img.height, [raw[i:i + 3] for i in range(0, len(raw), 3)]


def _png_pixels_zlib(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB pixels) of an 8-bit truecolour PNG, decoded with zlib (no PIL needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"unexpected PNG format depth={depth} colour={colour}"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, prev, pixels = zlib.decompress(idat), width * bpp, bytearray(width * bpp), []
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):           # undo the PNG filters (None, Sub, Up, Average, Paeth)
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels += [bytes(line[i:i + 3]) for i in range(0, stride, bpp)]
        prev = line
    return width, height, pixels


class _Rows(HTMLParser):
    """The text of each <tr id=...> of the rendered DOM."""
    def __init__(self):
        super().__init__()
        self.rows, self._id = {}, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._id = dict(attrs).get("id")
            if self._id:
                self.rows[self._id] = ""

    def handle_endtag(self, tag):
        if tag == "tr":
            self._id = None

    def handle_data(self, data):
        if self._id:
            self.rows[self._id] += data + " "


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    exe = _chromium()
    out = tmp_path_factory.mktemp("report")
    experiments = [gaussian("fake_gauss"),
                   from_metrics("fake_hand", lambda s: {"err": 0.125 + 0.01 * s, "gap": 3.0},
                                [Check("err", "<=", 0.12, "0-1 loss"), Check("gap", ">", 2.0, "gap")])]
    run_experiments(experiments, "quick", 2, out, progress=False)
    return exe, out, json.loads((out / "results.json").read_text())


def test_the_png_reader_without_pil_agrees_with_pil(report, tmp_path):
    pytest.importorskip("PIL")
    data = (report[1] / "plots" / "fake_gauss-cumulative_mean.png").read_bytes()
    assert _png_pixels_zlib(data) == _png_pixels(data)


def test_the_rendered_page_is_not_blank(report):
    exe, out, _ = report
    shot = out / "shot.png"
    _browser(exe, f"--screenshot={shot}", "--window-size=1200,1600", (out / "index.html").as_uri())
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    colours = set(pixels)
    background = max(colours, key=pixels.count) if len(colours) < 50 else None
    assert len(colours) > 200, f"screenshot looks blank: {len(colours)} distinct colours"   # text, tables, plot
    assert background is None or pixels.count(background) < 0.98 * len(pixels)


def test_the_rendered_dom_shows_every_experiment_with_the_numbers_of_results_json(report):
    exe, out, results = report
    dom = _browser(exe, "--dump-dom", (out / "index.html").as_uri()).stdout.decode("utf-8")
    parser = _Rows()
    parser.feed(dom)
    assert len(results["experiments"]) == 2
    for e in results["experiments"]:
        row = re.sub(r"\s+", " ", parser.rows[f"row-{e['name']}"])
        assert e["verdict"] in row and f"{e['seconds']:.1f}" in row
        for c in e["checks"]:
            assert f"{c['metric']} {fmt(c['measured'])} ± {fmt(c['std'])}" in row, (row, c)
        assert f'id="section-{e["name"]}"' in dom                      # the row's link target exists
    hand = next(e for e in results["experiments"] if e["name"] == "fake_hand")
    assert hand["verdict"] == "partly" and hand["checks"][0]["measured"] == pytest.approx(0.13)
    assert "<img" in dom and "plots/fake_gauss-cumulative_mean.png" in dom
