"""The arena app in a real headless Chromium (Selenium): sign in, vote with the keyboard; no policy name
or path reaches the page or any network response body (fetch bodies and DevTools network log)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from annotation_fixtures import XSS_SCRIPT  # noqa: E402
from browser import chrome, needs_chromium, wait_for  # noqa: E402
from arena_fixtures import ArenaAppServer, make_arena_artifact, secrets_in  # noqa: E402

from rlhf.arena.format import Arena  # noqa: E402

# Keep every fetch response body (SSE streams included) so the test can search what the browser received.
CAPTURE_JS = """
window.__bodies = [];
const origFetch = window.fetch;
window.fetch = async (...args) => {
  const resp = await origFetch(...args);
  try {
    const reader = resp.clone().body.getReader(), dec = new TextDecoder();
    (async () => { for (;;) { const {done, value} = await reader.read(); if (done) break;
                              window.__bodies.push(dec.decode(value)); } })().catch(() => {});
  } catch (e) {}
  return resp;
};
"""


def _driver(profile: Path):
    """Chromium with the DevTools performance log on and every fetch body captured."""
    driver = chrome(profile, {"goog:loggingPrefs": {"performance": "ALL"}})
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE_JS})
    return driver


def _network_bodies(driver) -> list[str]:
    """Bodies of every finished response in the DevTools performance log (streams may be unavailable)."""
    bodies = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.loadingFinished":
            try:
                bodies.append(driver.execute_cdp_cmd("Network.getResponseBody",
                                                     {"requestId": msg["params"]["requestId"]})["body"])
            except Exception:  # evicted or a stream: covered by the fetch capture
                pass
    return bodies


@needs_chromium
@pytest.mark.timeout(150)
def test_keyboard_votes_and_no_policy_reaches_the_browser(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    arena_dir = make_arena_artifact(tmp_path / "arena")
    arena = Arena.load(arena_dir)
    with ArenaAppServer(arena_dir, tmp_path / "votes.sqlite") as srv:
        driver = _driver(tmp_path / "chrome-profile")
        try:
            driver.get(srv.url)
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "input[type=password]"), what="login form")
            driver.find_element(By.CSS_SELECTOR, "input[type=text]").send_keys("bob")
            driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys("pw-bob")
            next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Login").click()
            meta = "const m = document.querySelector('#arena-meta'); return m && [m.dataset.item, m.dataset.request];"
            item_id, request_id = wait_for(lambda: driver.execute_script(meta), what="a pair")
            texts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".cand-text")]
            assert len(texts) == 2 and texts[0] != texts[1]

            # Before any vote: nothing names a policy, neither the page nor what the network delivered.
            captured = driver.execute_script("return window.__bodies") + _network_bodies(driver)
            prompt = arena.items[item_id]["prompt"]
            assert any(prompt in body for body in captured), "the capture saw no pair: it would miss a leak"
            assert not secrets_in(driver.page_source) and not secrets_in("\n".join(captured))
            assert driver.execute_script("return typeof window.__xss") == "undefined"

            ActionChains(driver).send_keys("1").perform()  # A is better
            wait_for(lambda: len(srv.store.votes()) == 1, what="first vote in SQLite")
            vote = srv.store.votes()[0]
            assert (vote.voter, vote.item_id, vote.request_id, vote.outcome) == ("bob", item_id, request_id, "A")
            assert [arena.response(item_id, vote.left), arena.response(item_id, vote.right)] == texts

            wait_for(lambda: driver.execute_script(meta)[1] != request_id, what="the next pair")
            ActionChains(driver).send_keys("x").perform()  # both bad
            wait_for(lambda: len(srv.store.votes()) == 2, what="second vote")
            assert srv.store.votes()[1].outcome == "both_bad"
            assert not driver.find_elements(By.CSS_SELECTOR, ".cand-text script")  # XSS_SCRIPT stays text
            assert XSS_SCRIPT  # (the fixture puts it in one response)
            # No reveal: the page still names no policy after voting.
            captured = driver.execute_script("return window.__bodies") + _network_bodies(driver)
            assert not secrets_in(driver.page_source) and not secrets_in("\n".join(captured))
        finally:
            driver.quit()
