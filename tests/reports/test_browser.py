"""Both reports rendered by headless Chromium (Debian's ``chromium``): DOM, images and screenshots.

The pages are loaded from disk (``file://``) as a user opens them. A copy of each page
with a small script appended asks the browser itself whether every image decoded; the
same files are also decoded with Pillow. Screenshots are checked for what they must
show: the label colours over the scan (and not with the plain-scan switch on), and the
group report's red outlier marks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from report_data import add_scan

from synthseg_bids.cli.main import main
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.reports.subject import write_subject_report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
#: Appended to a copy of a page: loads every image eagerly and, once all loaded, writes each one's decoded width
#: (0: a broken image, -1: not loaded).
IMAGE_CHECK = """<script>
document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'image-check';
  out.textContent = JSON.stringify([...document.images].map(i => [i.getAttribute('src'), i.complete ? i.naturalWidth : -1]));
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


class _Dom(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.ids, self.links, self.images = set(), [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids |= {attrs["id"]} if "id" in attrs else set()
        if tag == "a":
            self.links.append(attrs.get("href"))
        if tag == "img":
            self.images.append(attrs["src"])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Three subjects: sub-01 (two scans, one QC-flagged), sub-02, sub-03 (its scan failed); group level run."""
    root = tmp_path_factory.mktemp("browser")
    out = root / "out"
    out.mkdir()
    default_label_table().write_dseg_tsv(out / "dseg.tsv")
    low = {"general white matter confidence": 0.5, "general white matter flip dice": 0.9}
    add_scan(out, "sub-01_ses-1_T1w.nii.gz", scores=low, flag=True)
    add_scan(out, "sub-01_ses-2_T1w.nii.gz", seed=1)
    add_scan(out, "sub-02_T1w.nii.gz", seed=2, scale=1.3)
    crash = out / "logs" / "20260101-000000_abcd" / "sub-03_T1w" / "crash-1.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("Traceback")
    for subject, errors in (("01", []), ("02", []), ("03", ["sub-03_T1w.nii.gz: cannot read the header"])):
        write_subject_report(out, subject, errors=errors)
    bids = root / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    assert main([str(bids), str(out), "group", "-w", str(root / "work")]) == 0
    return out


def _images_in_browser(tmp_path: Path, page: Path) -> list:
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", IMAGE_CHECK + "</body>"))
    try:
        proc = chromium(tmp_path, probe.as_uri(), "--virtual-time-budget=15000", "--dump-dom")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="image-check">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert found, f"chromium gave no DOM: {proc.stderr[-500:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_group_report_dom_links_every_subject_and_loads_every_thumbnail(outputs, tmp_path):
    page = outputs / "group" / "report.html"
    dom = _Dom(chromium(tmp_path, page.as_uri(), "--dump-dom").stdout)
    # every scan named and linked to its subject report section, which exists there
    for link in ("../sub-01.html#sub-01_ses-1_T1w", "../sub-01.html#sub-01_ses-2_T1w", "../sub-02.html#sub-02_T1w",
                 "../sub-03.html#failed-sub-03_T1w"):
        assert link in dom.links
        target, anchor = link.split("#")
        assert anchor in _Dom((page.parent / target).read_text()).ids
    assert {"flagged", "volumes", "qc", "scans"} <= dom.ids
    flagged = re.search(r'<table class="flagged">(.*?)</table>', page.read_text(), re.DOTALL).group(1)
    assert "sub-01_ses-1_T1w.nii.gz" in flagged and "QC flag" in flagged and "sub-03_T1w" in flagged
    assert "sub-02_T1w.nii.gz" not in flagged
    # every image: its file decodes (Pillow), and the browser decoded it (no broken image)
    assert len(dom.images) == 3
    for src in dom.images:
        with PILImage.open(page.parent / src) as image:
            image.load()
    states = _images_in_browser(tmp_path, page)
    assert sorted(s for s, _ in states) == sorted(dom.images) and all(width > 0 for _, width in states)


def test_subject_report_dom_images_and_group_link(outputs, tmp_path):
    page = outputs / "sub-01.html"
    dom = _Dom(chromium(tmp_path, page.as_uri(), "--dump-dom").stdout)
    assert {"summary", "sub-01_ses-1_T1w", "sub-01_ses-2_T1w", "methods", "group-link"} <= dom.ids
    assert (outputs / "group" / "report.html").is_file() and "group/report.html" in dom.links
    states = _images_in_browser(tmp_path, page)
    assert len(states) == 2 and all(width == 1920 for _, width in states)
    failed = _Dom(chromium(tmp_path, (outputs / "sub-03.html").as_uri(), "--dump-dom").stdout)
    assert "failed-sub-03_T1w" in failed.ids and "logs/20260101-000000_abcd/sub-03_T1w/crash-1.txt" in failed.links


def _screenshot(tmp_path: Path, page: Path, name: str, size: str = "1400,2200") -> np.ndarray:
    png = tmp_path / f"{name}.png"
    chromium(tmp_path, page.as_uri(), f"--window-size={size}", f"--screenshot={png}")
    assert png.is_file(), "chromium wrote no screenshot"
    with PILImage.open(png) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_subject_screenshot_shows_labels_over_the_scan_and_the_plain_switch(outputs, tmp_path):
    """Overlay shown: white matter blue and cortex red inside the mosaic; with the switch on, neither."""
    page = outputs / "sub-01.html"
    overlay = _screenshot(tmp_path, page, "overlay")
    plain_page = page.with_name(".plain-sub-01.html")
    plain_page.write_text(page.read_text().replace('class="plain-toggle">', 'class="plain-toggle" checked>', 1))
    try:
        plain = _screenshot(tmp_path, plain_page, "plain")
    finally:
        plain_page.unlink()
    r, g, b = overlay[..., 0], overlay[..., 1], overlay[..., 2]
    changed = np.abs(overlay - plain).sum(-1) > 30
    blue = changed & (b > r + 60) & (b > g + 20)  # white matter's display colour over the scan
    red = changed & (r > b + 40) & (r > g + 40)  # cortex
    assert blue.sum() > 2000 and red.sum() > 2000
    # the mosaic: the rows spanned by its black background; the colours lie in them, and the only other
    # change is the switch's check box (a few rows above)
    black_rows = np.flatnonzero((overlay.max(-1) < 10).sum(1) > 100)
    first = np.split(black_rows, np.flatnonzero(np.diff(black_rows) > 30) + 1)[0]  # the first scan's mosaic
    top, bottom = first.min(), first.max()
    rows = np.flatnonzero((blue | red).any(1))
    assert rows.min() >= top and rows.max() <= bottom
    outside = np.flatnonzero(changed.any(1))
    assert len(outside[(outside < top) | (outside > bottom)]) <= 20
    # plain scan: grey inside the mosaic (no colour left)
    assert (np.ptp(plain[top:bottom + 1], axis=-1) > 40).sum() < 50


def test_group_screenshot_shows_the_flagged_thumbnail_frame(outputs, tmp_path):
    shot = _screenshot(tmp_path, outputs / "group" / "report.html", "group", "1400,4000")
    frame = np.all(np.abs(shot - [230, 25, 75]) < 25, axis=-1)  # the flagged scan's red frame (and marks)
    assert frame.sum() > 300
