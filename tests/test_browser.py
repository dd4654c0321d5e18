"""A learner's first lab in a real browser: Debian's Chromium, driven by Selenium through chromedriver, against the
JupyterLab `make lab` starts (same command, same settings). Screenshots of each step go to the test's folder
(``--basetemp`` keeps them), or to $DELAB_BROWSER_SHOTS.

Without Chromium and chromedriver the test FAILS, saying how to install them: it must never pass unseen in CI.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from delab import config, curriculum, jupyterlab

ROOT = config.project_root()
LAB = curriculum.current().lab("m00.l01")
RIGHT_E1 = 'orders_per_channel = shop.orders.drop_duplicates("order_id").groupby("channel").order_id.count().to_dict()'
BROWSER_HELP = "apt install chromium chromium-driver (Debian/Ubuntu; `delab doctor` says how elsewhere)"


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(f"no browser to test JupyterLab with (chromium: {browser}, chromedriver: {driver}): {BROWSER_HELP}")
    return browser, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab_server(tmp_path):
    """`make lab`'s JupyterLab on a copy of labs/ (the browser edits and saves notebooks) with a fresh user
    settings folder, as on a learner's first start."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "labs", project / "labs")
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "DELAB_STATE_DIR": str(tmp_path / "state"),  # the kernels' progress store
    }
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(
        jupyterlab.command(port=port, token=token, root=project),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).close()
            break
        except OSError:
            assert server.poll() is None, (tmp_path / "jupyter.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
            time.sleep(0.5)
    try:
        yield base, token, env, project
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DELAB_BROWSER_SHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_all(driver, wait) -> None:
    """Run → Run All Cells, through the menus as a learner would."""
    from selenium.webdriver.common.by import By

    wait.until(lambda d: d.find_element(By.XPATH, "//div[@class='lm-MenuBar-itemLabel' and text()='Run']")).click()
    item = "//div[contains(@class,'lm-Menu-itemLabel') and text()='Run All Cells']"
    wait.until(lambda d: d.find_element(By.XPATH, item)).click()


def outputs_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return "\n".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))


def test_a_learner_solves_an_exercise_in_jupyterlab(lab_server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, env, _project = lab_server
    shots = shots_dir(tmp_path)
    wait = WebDriverWait(browser, 120, poll_frequency=0.5)

    # 1. JupyterLab opens on the course's labs folder, with no news prompt over it
    browser.get(f"{base}/?token={token}")  # the address `make lab` prints, less its path
    module = LAB.lab_notebook.parent.name
    folder = wait.until(lambda d: d.find_element(By.XPATH, f"//li[@title and .//span[text()='{module}']]"))
    time.sleep(3)  # give a news prompt the time it would take to appear
    browser.save_screenshot(str(shots / "1-course.png"))
    assert "news" not in " ".join(t.text for t in browser.find_elements(By.CSS_SELECTOR, ".Toastify__toast")).lower()
    assert not browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog")

    # 2. open the lab from the file browser
    ActionChains(browser).double_click(folder).perform()
    item = wait.until(lambda d: d.find_element(By.XPATH, f"//li[.//span[text()='{LAB.lab_notebook.name}']]"))
    ActionChains(browser).double_click(item).perform()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook-cell"))
    kernel = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel-toolbar .jp-KernelName"))
    wait.until(lambda d: "delab" in kernel.text)
    browser.save_screenshot(str(shots / "2-lab-open.png"))

    # 3. run every cell: the first check answers in one line, no traceback
    run_all(browser, wait)
    wait.until(lambda d: "Not solved yet" in outputs_text(d))
    outputs = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
    verdict = next(e for e in outputs if "Not solved yet" in e.text)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", verdict)
    browser.save_screenshot(str(shots / "3-not-solved-yet.png"))
    assert len(verdict.text.strip().splitlines()) == 1, verdict.text
    assert "Traceback" not in outputs_text(browser)

    # 4. type the answer into the exercise cell, run again: the check passes
    cells = browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell")
    exercise = next(c for c in cells if "orders_per_channel = ..." in c.text)
    editor = exercise.find_element(By.CSS_SELECTOR, ".cm-content")
    editor.click()
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()
    ActionChains(browser).send_keys(f"{RIGHT_E1}\norders_per_channel").perform()
    run_all(browser, wait)
    wait.until(lambda d: f"Passed [{LAB.exercises[0]}]" in outputs_text(d))
    passed = next(e for e in browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output") if "Passed [" in e.text)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", passed)
    browser.save_screenshot(str(shots / "4-passed.png"))

    # 5. the scoreboard report shows it
    report = tmp_path / "report.html"
    subprocess.run(
        [sys.executable, "-m", "delab.cli", "progress", "--module", "00", "--html", str(report)],
        env=env,
        check=True,
        capture_output=True,
    )
    browser.get(report.as_uri())
    wait.until(lambda d: "e1 passed" in d.find_element(By.TAG_NAME, "body").text)
    browser.save_screenshot(str(shots / "5-scoreboard.png"))
