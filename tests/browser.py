"""Headless Debian Chromium for the tests that look at a page as a user would (the Feast UI, `star report`).

    url --chromium --headless --dump-dom--> the DOM after the page's scripts ran (text, for assertions)
        --chromium --headless --screenshot--> a PNG

CI installs /usr/bin/chromium (.ci/install), so a missing browser fails the test with the fix; it is not a skip.
Flags from FIELD-NOTES ("Feast UI"); each run gets its own --user-data-dir, so runs share no profile or cache.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--virtual-time-budget=15000", "--hide-scrollbars")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y --no-install-recommends "
                    "chromium`, which .ci/install does as root)", pytrace=False)
    return CHROMIUM


def _run(url: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="star-chromium-") as profile:
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"chromium on {url} exited {done.returncode}: {done.stderr[-2000:]}"
    return done


def dump_dom(url: str, *, timeout: float = 120) -> str:
    """The page's DOM (HTML) after its scripts ran."""
    return _run(url, "--dump-dom", timeout=timeout).stdout


def screenshot(url: str, path: Path, *, size: tuple[int, int] = (1400, 900), timeout: float = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    _run(url, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", timeout=timeout)
    assert path.exists(), f"chromium wrote no screenshot of {url} to {path}"
    return path


def visible_text(dom: str) -> str:
    """The DOM's text without scripts, styles and tags, whitespace collapsed (what a reader sees, in order)."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def png_facts(path: Path) -> dict:
    """Size and colour count of a PNG (raises when the file is not a PNG)."""
    from PIL import Image

    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG (starts {data[:8]!r})"
    with Image.open(path) as img:
        img.load()
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        return {"width": img.width, "height": img.height, "bytes": len(data),
                "colours": len(colours) if colours is not None else 1 << 20}


def keep_screenshot(path: Path, name: str) -> None:
    """Copy a screenshot to $STAR_SCREENSHOT_DIR when set (for the closing note of an issue)."""
    where = os.environ.get("STAR_SCREENSHOT_DIR")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(where) / name)
