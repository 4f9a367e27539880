"""The HTML report renders in headless Chromium and no text from a config becomes markup.

Skipped where Chromium is absent; CI installs it with ``apt-get install -y chromium``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def screenshot(page: Path, shot: Path, tmp_path: Path, height: int = 2400) -> object:
    from matplotlib.image import imread

    result = chromium(tmp_path, f"--window-size=1280,{height}", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    return imread(shot)


def test_screenshot_of_a_real_sweep(smoke_sweep: Path, tmp_path: Path) -> None:
    """The report of a real conf/smoke.yaml sweep renders: header, contents, tables and plots.

    ``KVMSWEEP_SCREENSHOT=FILE`` keeps the screenshot for a person to look at."""
    import os
    import shutil

    page = smoke_sweep / "report" / "index.html"
    shot = tmp_path / "report.png"
    pixels = screenshot(page, shot, tmp_path, height=4000)
    assert pixels.shape[0] >= 4000 and pixels.shape[1] >= 1200
    assert pixels[..., :3].std() > 0.05  # text, tables and plots, not a blank page
    if os.environ.get("KVMSWEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["KVMSWEEP_SCREENSHOT"])
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert 'nav class="toc"' in dom and dom.count('href="#') >= 6
    for fact in ("code version", "elapsed (real wall time)", "Tiny end-to-end check"):
        assert fact in dom


def test_screenshot(broken_sweep: Path, tmp_path: Path) -> None:
    pixels = screenshot(broken_sweep / "report" / "index.html", tmp_path / "report.png", tmp_path)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    assert pixels[..., :3].std() > 0.05


def test_dom_holds_no_injected_script(broken_sweep: Path, tmp_path: Path) -> None:
    page = broken_sweep / "report" / "index.html"
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert "Sweep report: evil" in dom
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;alert" in dom  # the name is text, shown as typed
    assert dom.count("data:image/png;base64,") >= 3
