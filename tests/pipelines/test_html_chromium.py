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


def test_screenshot(broken_sweep: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread

    page = broken_sweep / "report" / "index.html"
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    assert pixels[..., :3].std() > 0.05  # text, tables and plots, not a blank page


def test_dom_holds_no_injected_script(broken_sweep: Path, tmp_path: Path) -> None:
    page = broken_sweep / "report" / "index.html"
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert "Sweep report: evil" in dom
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;alert" in dom  # the name is text, shown as typed
    assert dom.count("data:image/png;base64,") >= 3
