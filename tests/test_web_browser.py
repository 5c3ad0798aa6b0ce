"""The web view in a real browser: Debian's Chromium, headless, driven by Selenium through Debian's chromedriver
(nothing downloaded: ``SE_OFFLINE=true``, the driver and the browser named by path).

One server and one browser for the module, on a journal of real runs: the golden journal (tests/golden), the
injection runs of tests/web_server.py, and one real tiny training run (its curves and its pose panel). The
tests click through runs -> run -> compare -> sweep and check what a person sees: text in the DOM, the curves
drawn (one SVG ``g.series`` per run), a running run's page refreshing, a lost run shown lost, user text shown
as text with no script run (a ``window`` flag never set), and the token asked for and kept.

Without Chromium, chromedriver or Selenium the tests skip with the reason, except under
``FASTPOSE_REQUIRE_BROWSER=1`` (``.ci/run``), where they fail. ``FASTPOSE_SCREENSHOTS=1`` saves the four pages
to docs/screens/web-*.png (the README's and docs/web.md's pictures).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from web_server import HTML_INJECTIONS, UiServer, build_lab, ui_env

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000", "--hide-scrollbars"]
TINY = ["--epochs", "2", "--train-size", "4", "--val-size", "4", "--batch-size", "2", "--image-size", "32",
        "--no-progress"]
TOKEN = "browser-token-0123456789"
SHOTS = ROOT / "docs" / "screens"

pytestmark = pytest.mark.slow


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        why = f"no browser to test the web view with: missing {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("FASTPOSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FASTPOSE_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """The journal (with one real tiny run, REAL) and its server (polling every second)."""
    _need_browser()
    home = tmp_path_factory.mktemp("webb") / "home"
    ids = build_lab(home)
    work = home.parent / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "fastpose", "train", "--name", "REAL", *TINY], env=ui_env(home),
                          cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    server = UiServer(ui_env(home, FASTPOSE_UI_POLL_S="1"))
    yield server, home, ids
    assert server.stop() == 0
    assert "Traceback" not in server.log, server.log


@pytest.fixture(scope="module")
def browser(lab, tmp_path_factory: pytest.TempPathFactory):
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for (or download) a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _by(kind: str):  # noqa: ANN202
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def css(driver, selector: str) -> list:  # noqa: ANN001
    return driver.find_elements(_by("CSS_SELECTOR"), selector)


def wait_for(driver, check, timeout: float = 60):  # noqa: ANN001, ANN201
    """Wait until ``check(driver)`` is true; a part the page swapped meanwhile (a refresh) is looked up again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: check(d))


def text(driver, selector: str) -> str:  # noqa: ANN001
    """The text of the first element ``selector`` finds, read again if a refresh swapped it meanwhile."""
    return wait_for(driver, lambda d: css(d, selector)[0].text + "\0").rstrip("\0")


def shot(driver, name: str, height: int | None = None) -> None:  # noqa: ANN001
    """``docs/screens/web-<name>.png`` when FASTPOSE_SCREENSHOTS=1 (the page's full height, up to ``height``)."""
    if os.environ.get("FASTPOSE_SCREENSHOTS") != "1":
        return
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(height or full, full) + 20)
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"web-{name}.png"))
    driver.set_window_size(1400, 1000)


def no_script_ran(driver) -> None:  # noqa: ANN001
    assert driver.execute_script("return window.__pwned === undefined") is True


def test_click_through_runs_run_compare_sweep(lab, browser) -> None:
    server, home, ids = lab
    d = browser
    d.get(server.base + "/")
    assert d.title == "Runs · fastpose"
    table = css(d, "#runs")[0].text
    assert "2026-11-28 Saturday" in table and "AGG_QLOSS_CONT" in table and "REAL" in table
    assert "✗ RuntimeError: CUDA error: out of memory" in table
    gone = css(d, f'tr[data-run="{ids["gone"]}"] .badge')[0]
    assert gone.text == "lost" and "is gone" in gone.get_attribute("title")
    button = css(d, "#compare-btn")[0]
    assert not button.is_enabled()
    shot(d, "runs", 900)

    d.find_element(_by("LINK_TEXT"), "AGG_QLOSS_CONT").click()
    wait_for(d, lambda d: d.current_url.endswith("/runs/2"))
    assert "AGG_QLOSS_CONT" in css(d, "h1")[0].text and "26-11-27/11-15-AGG_QLOSS_CONT" in css(d, "h1")[0].text
    assert "loss.name" in css(d, "#config-changed")[0].text
    charts = css(d, "#charts svg.chart")
    assert len(charts) >= 10 and all(len(c.find_elements(_by("CSS_SELECTOR"), "g.series")) == 1 for c in charts)
    first = charts[0].find_elements(_by("CSS_SELECTOR"), "polyline")[0].get_attribute("points").split()
    assert len(first) == 8  # val/10deg over the run's 8 epochs
    assert css(d, 'tr[data-metric="val/10deg"] .final')[0].text == "0.4321"

    d.back()
    wait_for(d, lambda d: css(d, "#runs"))
    for run_id in (1, 2):
        css(d, f'input.pick[value="{run_id}"]')[0].click()
    wait_for(d, lambda d: css(d, "#compare-btn")[0].is_enabled())
    assert css(d, "#picked")[0].text == "2 selected"
    css(d, "#compare-btn")[0].click()
    wait_for(d, lambda d: "/compare?" in d.current_url)
    assert d.current_url.endswith("/compare?run=2&run=1")  # in the listing's order: the newest is #1
    assert "#1 AGG_QLOSS_CONT with best 0.4321" in css(d, "#verdict")[0].text
    charts = css(d, "#charts svg.chart")
    assert charts and all(len(c.find_elements(_by("CSS_SELECTOR"), "g.series")) == 2 for c in charts)
    colours = {c.find_elements(_by("CSS_SELECTOR"), "g.series polyline")[-1].get_attribute("stroke") for c in charts[:1]}
    assert len(colours) == 1
    assert "train.epochs" in css(d, "#config-diff")[0].text
    shot(d, "compare", 1100)

    d.find_element(_by("LINK_TEXT"), "Sweeps").click()
    wait_for(d, lambda d: css(d, "#sweeps"))
    d.find_element(_by("LINK_TEXT"), "ls").click()
    wait_for(d, lambda d: css(d, "#cells"))
    assert "qloss beats mse on val/10deg" in css(d, "#verdicts")[0].text
    assert len(css(d, "#cells tbody tr")) == 6 and "completed" in css(d, "#cells")[0].text
    assert all(len(c.find_elements(_by("CSS_SELECTOR"), "g.series")) == 2 for c in css(d, "#charts svg.chart"))
    shot(d, "sweep", 1200)
    no_script_ran(d)


def test_a_real_runs_page_has_its_curves_and_pose_panel(lab, browser) -> None:
    server, home, _ = lab
    d = browser
    d.get(server.base + "/?name=REAL")
    d.find_element(_by("LINK_TEXT"), "REAL").click()
    wait_for(d, lambda d: css(d, "#live"))
    assert css(d, "#status")[0].text == "completed"
    panel = css(d, "img#poses")[0]
    wait_for(d, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", panel))
    assert d.execute_script("return arguments[0].naturalWidth", panel) > 100  # drawn at 4x the 32-px images
    charts = css(d, "#charts svg.chart")
    names = [c.get_attribute("aria-label") for c in charts]
    assert names[0] == "val/10deg" and "val/loss" in names and "train/loss" in names
    loss = charts[names.index("val/loss")]
    assert len(loss.find_elements(_by("CSS_SELECTOR"), "circle")) == 2  # one point per epoch
    assert css(d, 'tr[data-metric="val/loss"] .n')[0].text == "2"
    shot(d, "run", 1400)


def test_user_text_is_shown_as_text_and_no_injected_script_runs(lab, browser) -> None:
    server, _, ids = lab
    d = browser
    for path in ("/", f"/runs/{ids['inj0']}", f"/compare?run={ids['inj0']}&run={ids['inj1']}", "/?name=INJ0"):
        d.get(server.base + path)
        wait_for(d, lambda d: d.execute_script("return document.readyState") == "complete")
        time.sleep(0.3)  # an onerror or onload would have fired by now
        no_script_ran(d)
        assert not css(d, "main script, main img[src='x'], main svg[onload]")
    d.get(server.base + f"/runs/{ids['inj0']}")
    notes = " ".join(n.text for n in css(d, "p.note"))
    assert HTML_INJECTIONS[0] in notes and HTML_INJECTIONS[1] in notes and "{{ 7 * 7 }}" in notes
    assert "see [/bold] and [red]x[/]" in notes
    assert HTML_INJECTIONS[0] in css(d, "#traceback")[0].text
    d.get(server.base + "/")
    assert HTML_INJECTIONS[0] in css(d, "#runs")[0].text  # the day note and the run notes, as text
    no_script_ran(d)


def test_a_running_runs_page_refreshes_until_it_ends(lab, browser) -> None:
    from fastpose.journal.store import JournalStore, MetricPoint

    server, home, _ = lab
    d = browser
    with JournalStore.open(f"sqlite:///{home / 'fastpose.db'}") as store:
        run = store.start_run(name="LIVE", label="26-12-03/08-00-LIVE-SYNTHETIC-resnet18-scratch")
        store.log_metrics(run.id, [MetricPoint("val/loss", 2.0, 0, 1)])
        d.get(server.base + f"/runs/{run.id}")
        assert text(d, "#status") == "running"
        assert text(d, 'tr[data-metric="val/loss"] .n') == "1"
        store.log_metrics(run.id, [MetricPoint("val/loss", 1.5, 1, 2), MetricPoint("val/loss", 1.25, 2, 3)])
        wait_for(d, lambda d: css(d, 'tr[data-metric="val/loss"] .n')[0].text == "3")
        assert text(d, 'tr[data-metric="val/loss"] .final') == "1.25"
        assert wait_for(d, lambda d: len(css(d, "#charts svg.chart circle"))) == 3
        store.finish(run.id, epoch=2, step=3)
        wait_for(d, lambda d: css(d, "#status")[0].text == "completed")
        refreshed = int(d.find_element(_by("TAG_NAME"), "body").get_attribute("data-refreshed"))
        time.sleep(2.5)  # ended: no more polling
        assert int(d.find_element(_by("TAG_NAME"), "body").get_attribute("data-refreshed")) == refreshed
    no_script_ran(d)


def test_the_token_is_asked_for_and_kept_in_the_browser(lab, browser, tmp_path: Path) -> None:
    _, home, _ = lab
    copy = tmp_path / "home"
    copy.mkdir()
    shutil.copy(home / "fastpose.db", copy / "fastpose.db")
    server = UiServer(ui_env(copy, FASTPOSE_UI_TOKEN=TOKEN))
    d = browser
    try:
        d.get(server.base + "/runs/2")
        assert css(d, "h1")[0].text == "Token required" and not css(d, "#runs") and "AGG_QLOSS" not in d.page_source
        field = css(d, "input[name=token]")[0]
        field.send_keys("not-the-token-0000000000")
        field.submit()
        wait_for(d, lambda d: "That token is not this server's." in d.page_source)
        field = css(d, "input[name=token]")[0]
        field.send_keys(TOKEN)
        field.submit()
        wait_for(d, lambda d: css(d, "#live"))
        assert d.current_url == server.base + "/runs/2"  # the token left the address bar
        assert "AGG_QLOSS_CONT" in css(d, "h1")[0].text
        d.get(server.base + "/sweeps")  # the cookie carries it from here on
        assert css(d, "#sweeps")
        d.delete_all_cookies()
        d.get(server.base + "/")
        assert css(d, "h1")[0].text == "Token required"
    finally:
        assert server.stop() == 0
    assert TOKEN not in server.log
