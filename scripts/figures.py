"""The documentation's figures, from ``make demo``'s output: ``python scripts/figures.py --demo demo_out --out docs``.

Why from the demo: its model answers True or False, so the viewer and the report show what a user sees, not a random
checkpoint's bytes. Writes ``viewer.png`` (the viewer on the first document a method changed, every run's answer and
heatmap) and ``report.png`` (the top of the demo's ``report.html``). Needs Debian's ``chromium`` and
``chromium-driver`` and Selenium (in ``.[dev]``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from models.methods import METHODS  # noqa: E402
from models.names import STUDY  # noqa: E402
from vsr_tasks.data import DATA_DIR_VARIABLE  # noqa: E402

RUN_ORDER = tuple(STUDY.name(method) for method in (None, *METHODS))  # the demo's runs, baseline first
WINDOW = (1400, 1900)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--demo", type=Path, default=Path("demo_out"), help="make demo's output folder (default demo_out)"
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go (default docs)")
    parser.add_argument("--port", type=int, default=None, help="the viewer's port (default: a free one)")
    return parser.parse_args(argv)


def demo_runs(demo: Path) -> list[Path]:
    """The demo's run folders in the report's order; refuses a folder ``make demo`` did not finish."""
    runs = [demo / "runs" / model for model in RUN_ORDER if any((demo / "runs" / model).rglob("*_results.json"))]
    problems = []
    if not runs or runs[0].name != RUN_ORDER[0]:
        problems.append(f"no {RUN_ORDER[0]} results under {demo / 'runs'}")
    if not (demo / "report" / "report.html").is_file():
        problems.append(f"no {demo / 'report' / 'report.html'}")
    if problems:
        raise SystemExit(f"{'; '.join(problems)}: run `make demo` first (or pass --demo FOLDER)")
    return runs


def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        raise SystemExit("the figures need Debian's Chromium: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def wait_for(condition, what: str, timeout: float = 120.0):
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def viewer_figure(driver, demo: Path, runs: list[Path], out: Path, port: int) -> Path:
    """The viewer on the demo's runs, filtered to the documents a method changed (the first of them)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    env = {**os.environ, DATA_DIR_VARIABLE: str(demo / "data"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="vsr-figures-") as cache:
        command = [sys.executable, "-m", "analysis", "view", *map(str, runs), "--port", str(port), "--cache_dir", cache]
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: reachable(port), "the viewer to start")
            driver.get(f"http://127.0.0.1:{port}/")

            def text(element_id: str) -> str:
                found = driver.find_elements(By.ID, element_id)
                return found[0].text if found else ""

            wait_for(lambda: " / " in text("counter"), "the viewer's counter")
            box = driver.find_element(By.CSS_SELECTOR, "#filter input")
            box.click()
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys("changed by a method")
            time.sleep(1)
            box.send_keys(Keys.ENTER)
            wait_for(lambda: text("counter").startswith("1 / "), "the filtered set")
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#heatmap img"), "the heatmaps")
            time.sleep(2)  # let the images finish painting
            path = out / "viewer.png"
            driver.save_screenshot(str(path))
            note = driver.find_element(By.ID, "heatmap_note").rect  # the page's last element: crop below it
            crop(path, 0, note["y"] + note["height"] + 24)
        finally:
            server.terminate()
            server.communicate(timeout=30)
    return path


# The report's opening: from the overview heading to the end of the first paired-comparison table.
REPORT_REGION = """
const headings = [...document.querySelectorAll('h2, h3')];
const first = headings.find(h => h.textContent.startsWith(arguments[0]));
const last = headings.find(h => h.textContent.startsWith(arguments[1]));
let table = last; while (table && table.tagName !== 'TABLE') table = table.nextElementSibling;
return [first.getBoundingClientRect().top + window.scrollY, table.getBoundingClientRect().bottom + window.scrollY];
"""


def report_figure(driver, demo: Path, out: Path) -> Path:
    """The opening of the demo's HTML report: the results overview and the paired comparison with the baseline."""
    driver.get((demo / "report" / "report.html").resolve().as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW[0], min(int(height) + 100, 8000))
    time.sleep(2)
    top, bottom = driver.execute_script(REPORT_REGION, "Results overview", "Paired comparison")
    path = out / "report.png"
    driver.save_screenshot(str(path))
    crop(path, max(0, top - 16), bottom + 16)
    return path


def crop(path: Path, top: float, bottom: float) -> None:
    """Keep rows ``top..bottom`` (CSS pixels) of a screenshot."""
    from PIL import Image

    with Image.open(path) as image:
        scale = image.width / WINDOW[0]
        kept = image.crop((0, int(top * scale), image.width, min(image.height, int(bottom * scale))))
    kept.save(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = demo_runs(args.demo)
    args.out.mkdir(parents=True, exist_ok=True)
    driver = browser()
    try:
        written = [viewer_figure(driver, args.demo, runs, args.out, args.port or free_port())]
        written.append(report_figure(driver, args.demo, args.out))
    finally:
        driver.quit()
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
