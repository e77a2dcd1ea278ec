"""`feast ui` on STAR's feature repo, looked at in headless Chromium: it starts (feast[grpcio] is installed), and its
feature-view pages list every view with its version and every tag Feast holds for it (the lineage)."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from star.config import Settings
from star.data.reading import frame, read_dir
from star.store.feast_repo import open_store
from star.store.marketplace import load
from tests import browser, tiny_market

BIN = Path(sys.executable).parent
NO_GRPC = "No module named 'grpc'"


def _star(args: list[str], env: dict, cwd: Path) -> str:
    done = subprocess.run([str(BIN / "star"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _exports(text: str) -> dict[str, str]:
    """`export K=V` lines as `star db env` prints them (shell-quoted values)."""
    out = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"] and "=" in words[1]:
            key, _, value = words[1].partition("=")
            out[key] = value
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"feast ui exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"feast ui did not answer {url} within {timeout} s: {log.read_text()[-3000:]}")


def test_feast_ui_lists_every_view_with_its_version_and_tags(target, tmp_path):
    load(target, read_dir(tiny_market.write(tmp_path / "m")))
    data = tiny_market.frames()  # a new column: member_categorical_v2 beside v1
    data["members"] = data["members"].assign(open_to_work=["yes", "no", "yes"])
    load(target, {k: frame(v, f"{k}.csv") for k, v in data.items()})
    env = {**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url()}
    _star(["features", "apply"], env, tmp_path)
    feast_env = _exports(_star(["db", "env"], env, tmp_path))
    assert feast_env["STAR_PG_DATABASE"] == target.dbname
    tags = {fv.name: fv.tags for fv in open_store(target).list_feature_views()}
    assert {"member_categorical_v1", "member_categorical_v2", "job_text_v1"} <= set(tags)

    port, log = _free_port(), tmp_path / "feast-ui.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "feast"), "-c", str(Settings.from_env().feature_repo), "ui", "--host",
                                 "127.0.0.1", "--port", str(port)], env={**env, **feast_env}, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        projects = _wait_for(f"{base}/projects-list.json", proc, log)
        assert b'"star"' in projects
        png = browser.screenshot(f"{base}/p/star/feature-view", tmp_path / "feast-ui-feature-views.png")
        browser.keep_screenshot(png, "feast-ui-feature-views.png")
        view_png = browser.screenshot(f"{base}/p/star/feature-view/{max(tags)}", tmp_path / "feast-ui-view.png",
                                      size=(1400, 1300))
        browser.keep_screenshot(view_png, "feast-ui-view.png")
        listing = browser.visible_text(browser.dump_dom(f"{base}/p/star/feature-view"))
        pages = {name: browser.visible_text(browser.dump_dom(f"{base}/p/star/feature-view/{name}"))
                 for name in sorted(tags)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    assert NO_GRPC not in log.read_text()
    assert NO_GRPC not in listing and "Feature Views" in listing, listing[:2000]
    assert f"Feature Views ({len(tags)})" in listing
    for name in tags:  # the list names every view, its version in the name (<family>_v<k>)
        assert name in listing, f"{name} missing from the feature-view list: {listing[:2000]}"
    for name, view_tags in tags.items():
        page = pages[name]
        assert name in page and NO_GRPC not in page
        assert view_tags.get("star_version"), f"{name} has no star_version tag: {view_tags}"
        assert view_tags.get("star_status") == "published", f"{name}: no lineage status tag: {view_tags}"
        assert "owner" in page and "star" in page  # owner and description are shown beside the tags
        for key, value in view_tags.items():  # every tag Feast holds for the view, key and value
            assert key in page and value in page, f"tag {key}={value!r} of {name} is not on its page: {page[:3000]}"
    facts = browser.png_facts(png)
    assert facts["width"] == 1400 and facts["height"] == 900, facts
    assert facts["bytes"] > 20_000 and facts["colours"] > 50, facts  # a rendered page, not a blank frame
