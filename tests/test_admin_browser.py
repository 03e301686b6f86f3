"""The Admin tab in headless Chromium shows annotator and model text literally: Markdown/HTML
payloads in a prompt, a candidate and a rationale appear as text, create no <img>/<a>/<script>
elements and make the browser fetch nothing (a local HTTP server counts any hit). Sign-out leads
back to the login form."""

from __future__ import annotations

import http.server
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from annotation_fixtures import Server, free_port  # noqa: E402
from browser import chrome, needs_chromium, wait_for  # noqa: E402

from rlhf.preferences.store import Item  # noqa: E402

class _Canary(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _Canary.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _payload(port: int, where: str) -> str:
    url = f"http://127.0.0.1:{port}/{where}"
    return (f"![pic]({url}-md.png) [link]({url}-mdlink) <img src=\"{url}-img.png\"> "
            f"<a href=\"{url}-a\">anchor</a> <script>fetch('{url}-js')</script> **bold** end-{where}")


@needs_chromium
@pytest.mark.timeout(120)
def test_admin_tab_shows_payloads_literally_and_fetches_nothing(tmp_path):
    from selenium.webdriver.common.by import By

    canary = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Canary)
    port = canary.server_address[1]
    threading.Thread(target=canary.serve_forever, daemon=True).start()
    prompt, cand, rationale = _payload(port, "prompt"), _payload(port, "cand"), _payload(port, "rationale")
    srv = Server(tmp_path / "labels.sqlite", None, overlap=2)
    srv.store.add_items([Item("x1", prompt, ["x1a", "x1b"], [cand, "plain"]),
                         Item("x2", "second", ["x2a", "x2b"], ["one", "two"])])
    srv.store.submit("bob", "x1", {"x1a": 1, "x1b": 2}, flagged=True, rationale=rationale)
    driver = None
    try:
        with srv:
            driver = chrome(tmp_path / "chrome-profile")
            driver.get(srv.url)
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "input[type=password]"), what="login form")
            driver.find_element(By.CSS_SELECTOR, "input[type=text]").send_keys("alice")
            driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys("pw-alice")
            next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Login").click()
            tab = wait_for(lambda: next((b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                                      if b.text.strip() == "Admin"), None), what="Admin tab")
            tab.click()
            report = wait_for(lambda: next((e for e in driver.find_elements(By.ID, "admin-report")
                                         if "end-rationale" in e.text), None), what="admin report")
            assert rationale in report.text  # the full rationale, literally (both tables: flagged + rationales)
            box = driver.find_element(By.CSS_SELECTOR, "#admin-item-id textarea, #admin-item-id input")
            box.send_keys("x1")
            driver.find_element(By.ID, "admin-show").click()
            item = wait_for(lambda: next((e for e in driver.find_elements(By.ID, "admin-item")
                                       if "end-cand" in e.text), None), what="item view")
            assert prompt in item.text and cand in item.text and rationale in item.text
            for root in ("#admin-report", "#admin-item"):
                assert not driver.find_elements(By.CSS_SELECTOR, f"{root} img, {root} a, {root} script, {root} strong")
            time.sleep(1.0)  # give any (wrongly) created element time to fetch
            fetched = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
                ".filter(n => n.includes(':' + arguments[0] + '/'))", port)
            assert fetched == [] and _Canary.hits == []

            # Sign out (Gradio's /logout drops the session): back to the login form.
            driver.find_element(By.CSS_SELECTOR, "#sign-out, a#sign-out, #sign-out a").click()
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "input[type=password]"), what="login form again")
    finally:
        if driver is not None:
            driver.quit()
        canary.shutdown()
