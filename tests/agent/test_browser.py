# SPDX-License-Identifier: GPL-2.0-or-later
"""Real browser: headless Chromium (Debian chromium + chromium-driver + python3-selenium) logs in
with the token, blocks and unblocks a source through the UI, and the test sees the firewall change
in the maps and with packets from the peer namespace.

Screenshots go to a temp dir; with NETXFW_UPDATE_SCREENSHOTS=1 also to docs/screenshots/.
"""

import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from agent_env import HOST4, PEER4, REPO

webdriver = pytest.importorskip("selenium.webdriver", reason="needs python3-selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = os.path.join(REPO, "docs", "screenshots")
PEER_KEY = bytes([198, 51, 100, 2])


@pytest.fixture
def browser(clean):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="netxfw-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--user-data-dir=" + profile, "--window-size=1200,860"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, tmp_path, name):
    path = str(tmp_path / name)
    driver.save_screenshot(path)
    if os.environ.get("NETXFW_UPDATE_SCREENSHOTS") == "1":
        os.makedirs(SHOTS, exist_ok=True)
        shutil.copy(path, os.path.join(SHOTS, name))
    return path


def traffic(lab, seconds):
    """Some pings from the peer so the live chart has something to draw."""
    def run():
        subprocess.run(["nsenter", "--net=" + lab.ns_path(lab.peer_ns), "ping", "-q", "-i", "0.05",
                        "-w", str(seconds), HOST4], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def click(driver, selector, timeout=10):
    """Click what the selector finds, again if the UI re-rendered it in between (tables are redrawn)."""
    from selenium.common.exceptions import StaleElementReferenceException, NoSuchElementException
    deadline = time.monotonic() + timeout
    while True:
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return
        except (StaleElementReferenceException, NoSuchElementException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_until(predicate, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def test_login_block_unblock_through_the_ui(browser, clean, tmp_path):
    lab, d = clean, browser
    wait = WebDriverWait(d, 20)
    d.get(lab.url + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "token")))

    # a wrong token is refused
    d.find_element(By.ID, "token").send_keys("not-the-token-at-all")
    d.find_element(By.ID, "login-btn").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "login-error"), "Wrong token"))
    assert not d.find_element(By.ID, "app").is_displayed()

    d.find_element(By.ID, "token").clear()
    d.find_element(By.ID, "token").send_keys(lab.token)
    d.find_element(By.ID, "login-btn").click()
    wait.until(EC.visibility_of_element_located((By.ID, "app")))
    assert d.execute_script("return sessionStorage.getItem('netxfw-token')") == lab.token

    # dashboard: live chart fed by real counters while the peer pings
    pinger = traffic(lab, 9)
    wait.until(lambda drv: drv.execute_script("return state.history.length") >= 3)
    wait.until(EC.text_to_be_present_in_element((By.ID, "host-state"), "loaded"))
    assert "nxah0" in d.find_element(By.ID, "ifaces").text
    assert "src4_host" in d.find_element(By.ID, "maps").text
    assert d.execute_script("return Math.max(...state.history.map(h => h.pass))") > 0
    pinger.join()

    # block the peer through the Rules tab
    assert lab.ping(HOST4)
    d.find_element(By.CSS_SELECTOR, '.tab[data-tab="rules"]').click()
    wait.until(EC.visibility_of_element_located((By.ID, "bl-cidr")))
    d.find_element(By.ID, "bl-cidr").send_keys(PEER4)
    d.find_element(By.ID, "bl-add").click()
    row = '#bl-table tr[data-rule="198.51.100.2/32"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row)))
    assert PEER_KEY in lab.source_keys("src4_host", "blacklist")
    assert [e["cidr"] for e in lab.rules_json()["blacklist"]] == ["198.51.100.2/32"]
    assert not lab.ping(HOST4), "the peer still gets through after the UI blocked it"
    d.find_element(By.ID, "wl-cidr").send_keys("203.0.113.0/24")
    d.find_element(By.ID, "wl-add").click()
    d.find_element(By.ID, "port-ports").send_keys("443")
    d.find_element(By.ID, "port-add").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#port-table tr[data-rule="any tcp 443"]')))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#wl-table tr[data-rule="203.0.113.0/24"]')))
    d.find_element(By.ID, "rl-source").send_keys("203.0.113.128/25")
    d.find_element(By.ID, "rl-rate").send_keys("50")
    d.find_element(By.ID, "rl-syn").click()
    d.find_element(By.ID, "rl-add").click()
    rl_row = '#rl-table tr[data-rule="203.0.113.128/25"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, rl_row)))
    assert lab.rules_json()["ratelimits"] == [
        {"source": "203.0.113.128/25", "rate": 50, "burst": 50, "syn_only": True, "ban_ttl": 0}]
    shot(d, tmp_path, "rules.png")

    # the dashboard now counts blacklist drops
    traffic(lab, 3).join()
    d.find_element(By.CSS_SELECTOR, '.tab[data-tab="dashboard"]').click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "blocked"), "198.51.100.2/32"))
    wait.until(lambda drv: drv.execute_script("return Math.max(...state.history.map(h => h.drop))") > 0)
    first = d.execute_script("return document.querySelector('#drops tbody td').textContent")
    assert first == "drop_blacklist"  # sorted: most drops first
    shot(d, tmp_path, "dashboard.png")

    # unblock through the UI
    d.find_element(By.CSS_SELECTOR, '.tab[data-tab="rules"]').click()
    click(d, row + " button.remove")
    wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, row)))
    wait_until(lambda: PEER_KEY not in lab.map_keys("src4_host"), what="the map entry to go")
    assert lab.rules_json()["blacklist"] == []
    assert lab.ping(HOST4)
    click(d, rl_row + " button.remove")
    wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, rl_row)))
    assert not lab.rules_json().get("ratelimits")
    lab.assert_in_step()

    # conntrack view renders real flows
    d.find_element(By.CSS_SELECTOR, '.tab[data-tab="conntrack"]').click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "ct-summary"), "flows"))

    # sign out clears the token
    d.find_element(By.ID, "logout").click()
    assert d.execute_script("return sessionStorage.getItem('netxfw-token')") is None
    assert d.find_element(By.ID, "token").is_displayed()


def test_dashboard_shows_the_alerts_of_status(browser, clean):
    """What `netxfw status` prints first with "!!" is on the dashboard too, in place of a green pill."""
    from netxfw_engine import rulemaps
    lab, d = clean, browser
    wait = WebDriverWait(d, 20)
    maps = lab.fw.open_maps()
    try:
        rulemaps.mark_generation(maps, None)  # what a write killed half way leaves (test_api.py)
    finally:
        lab.fw.close_maps(maps)
    d.get(lab.url + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "token")))
    d.find_element(By.ID, "token").send_keys(lab.token)
    d.find_element(By.ID, "login-btn").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "alerts"), "RULE MAPS OUT OF STEP"))
    assert d.find_element(By.ID, "alerts").is_displayed()
    assert "bad" in d.find_element(By.ID, "host-state").get_attribute("class")
    lab.cli("reload")
    wait.until(EC.invisibility_of_element_located((By.ID, "alerts")))
    wait.until(lambda drv: "ok" in drv.find_element(By.ID, "host-state").get_attribute("class"))
