"""The annotation app in a real headless Chromium (Selenium): sign in, rank with clicks and keys,
revise, skip, vote on a pair; labels land in SQLite; untrusted HTML in a candidate stays text.

Also makes the screenshots in docs/: ``python tests/test_annotation_browser.py --screenshots docs``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from annotation_fixtures import XSS_IMG, XSS_SCRIPT, Server, make_candidates_artifact  # noqa: E402
from browser import HAVE_CHROMIUM, NO_CHROMIUM, chrome, needs_chromium, wait_for  # noqa: E402

from annotation_ui.app import display_order  # noqa: E402

# p000..p002: three responses (p000 carries the XSS payloads); p003: a pair.
KS = [3, 3, 3, 2]

class Page:
    """Small driver for the app's page."""

    def __init__(self, driver, srv: Server):
        from selenium.webdriver.common.by import By

        self.d, self.srv, self.By = driver, srv, By

    def sign_in(self, user: str, password: str) -> None:
        By = self.By
        self.d.get(self.srv.url)
        wait_for(lambda: self.d.find_elements(By.CSS_SELECTOR, "input[type=password]"), what="login form")
        self.d.find_element(By.CSS_SELECTOR, "input[type=text]").send_keys(user)
        self.d.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(password)
        next(b for b in self.d.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Login").click()
        self.wait_item()

    def item_id(self) -> str | None:
        return self.d.execute_script("const m = document.querySelector('#task-meta'); return m && m.dataset.item;")

    def wait_item(self, item_id: str | None = None) -> str:
        if item_id is None:
            return wait_for(self.item_id, what="a task")
        wait_for(lambda: self.item_id() == item_id, what=f"task {item_id} (showing {self.item_id()})")
        return item_id

    def click_rank(self, slot: int, rank: int) -> None:
        # Click the visible label of the radio option, as a person would.
        el = self.d.find_element(self.By.CSS_SELECTOR, f"#rank-{slot} input[value='{rank}']")
        el.find_element(self.By.XPATH, "./..").click()

    def keys(self, *keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        for key in keys:
            ActionChains(self.d).send_keys(key).perform()
            time.sleep(0.15)

    def checked(self, k: int) -> list[str | None]:
        return self.d.execute_script(
            "return [...Array(arguments[0]).keys()].map("
            "i => (document.querySelector('#rank-' + i + ' input:checked') || {}).value || null);", k)

    def candidate_texts(self) -> list[str]:
        return [e.text for e in self.d.find_elements(self.By.CSS_SELECTOR, ".cand-text") if e.is_displayed()]


def _ranks_by_id(order: list[str], slot_ranks: list[int]) -> dict[str, int]:
    return dict(zip(order, slot_ranks))


@pytest.fixture
def app(tmp_path):
    make_candidates_artifact(tmp_path / "candidates", len(KS), KS)
    with Server(tmp_path / "labels.sqlite", tmp_path / "candidates", overlap=1) as srv:
        yield srv


@needs_chromium
@pytest.mark.timeout(180)
def test_rank_with_clicks_and_keys_in_chromium(app, tmp_path):
    from selenium.webdriver.common.keys import Keys

    assert HAVE_CHROMIUM, NO_CHROMIUM
    store = app.store
    driver = chrome(tmp_path / "chrome-profile")
    try:
        page = Page(driver, app)
        page.sign_in("alice", "pw-alice")

        # Task 1 (three responses, one with HTML/JS in it): rank by clicking, submit with Enter.
        first = page.wait_item("p000")
        texts = page.candidate_texts()
        assert any(XSS_SCRIPT in t and XSS_IMG in t for t in texts), texts  # shown literally, as text
        assert driver.execute_script("return typeof window.__xss") == "undefined"
        assert not driver.find_elements(page.By.CSS_SELECTOR, ".cand-text img, .cand-text script")
        order = display_order("alice", store.item(first))
        for slot, rank in enumerate([2, 1, 3]):
            page.click_rank(slot, rank)
        expected = _ranks_by_id(order, [2, 1, 3])
        wait_for(lambda: (store.load_draft("alice", first) or {}).get("ranks") == expected, what="auto-saved draft")
        driver.refresh()  # a reload restores the same task and the draft
        page.wait_item(first)
        wait_for(lambda: page.checked(3) == ["2", "1", "3"], what="draft restored after reload")
        page.keys(Keys.ENTER)
        wait_for(lambda: len(store.labels()) == 1, what="first label in SQLite")
        lab = store.labels()[0]
        assert (lab.annotator, lab.item_id, lab.ranks) == ("alice", first, _ranks_by_id(order, [2, 1, 3]))
        assert lab.meta["display_order"] == order and not lab.skipped

        # Task 2: keys only - ranks in display order, with a tie, then Enter.
        second = page.wait_item("p001")
        page.keys("1", "1", "3", Keys.ENTER)
        wait_for(lambda: len(store.labels()) == 2, what="second label")
        order2 = display_order("alice", store.item(second))
        original = store.labels()[1]
        assert original.ranks == _ranks_by_id(order2, [1, 1, 3])

        # Backspace while typing ranks retypes the previous one (it is not "Back").
        page.wait_item("p002")
        page.keys("2", Keys.BACKSPACE, "3")
        wait_for(lambda: page.checked(3)[0] == "3", what="retyped first rank")
        assert page.wait_item("p002") == "p002" and len(store.labels()) == 2
        # Back (ArrowLeft) reopens task 2 prefilled; a new ranking is stored as a superseding row.
        page.keys(Keys.ARROW_LEFT)
        page.wait_item(second)
        wait_for(lambda: page.checked(3) == ["1", "1", "3"], what="previous ranks prefilled")
        page.keys("3", "2", "1", Keys.ENTER)
        wait_for(lambda: len(store.labels(latest_only=False)) == 3, what="revision row")
        revised = store.label_for("alice", second)
        assert revised.ranks == _ranks_by_id(order2, [3, 2, 1]) and revised.supersedes == original.label_id
        assert len(store.labels()) == 2  # still one current label per item

        # Task 3: flag with a rationale, then skip with the "s" key.
        page.wait_item("p002")
        page.d.find_element(page.By.CSS_SELECTOR, "#rationale textarea").send_keys("looks broken")
        page.d.find_element(page.By.CSS_SELECTOR, "body").click()
        page.keys("f", "s")
        wait_for(lambda: store.label_for("alice", "p002"), what="skip row")
        skipped = store.label_for("alice", "p002")
        assert skipped.skipped and skipped.flagged and skipped.rationale == "looks broken"

        # Task 4 is a pair: the arena buttons, by key ("t" = tie) and by click.
        page.wait_item("p003")
        assert driver.find_element(page.By.ID, "vote-a").is_displayed()
        page.keys("t")
        wait_for(lambda: store.label_for("alice", "p003"), what="tie vote")
        tie = store.label_for("alice", "p003")
        assert set(tie.ranks.values()) == {1} and tie.meta["vote"] == "tie"
        wait_for(lambda: "All done" in driver.find_element(page.By.ID, "status").text, what="all-done message")
        assert driver.execute_script("return typeof window.__xss") == "undefined"
        assert {lab.annotator for lab in store.labels(latest_only=False)} == {"alice"}
        tabs = [e.text for e in driver.find_elements(page.By.CSS_SELECTOR, "button[role=tab]")]
        assert "Admin" in tabs  # alice is an admin
    finally:
        driver.quit()


def make_screenshots(out_dir: Path) -> None:
    """docs/annotation_task.png (a task with three responses) and docs/annotation_admin.png."""
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    make_candidates_artifact(tmp / "candidates", 6, [3, 2, 3, 3, 2, 3])
    with Server(tmp / "labels.sqlite", tmp / "candidates", overlap=3,
                users="alice:pw-alice,bob:pw-bob,carol:pw-carol") as srv:
        # Some labels so the admin view has something to show.
        for name, vote in [("bob", [1, 2, 3]), ("carol", [2, 1, 3])]:
            for _ in range(4):
                item = srv.store.next_item(name, 3)
                ranks = dict(zip(item.candidate_ids, vote[: len(item.candidate_ids)]))
                srv.store.submit(name, item.item_id, ranks, flagged=item.item_id == "p002",
                                 rationale="off-topic and rude" if item.item_id == "p002" else "")
        for item_id in ["p000", "p001"]:  # alice is past the first two tasks (so "Back" has something)
            item = srv.store.item(item_id)
            srv.store.submit("alice", item_id, dict(zip(item.candidate_ids, [1, 2, 3])))
        driver = chrome(tmp / "profile")
        try:
            driver.set_window_size(1400, 1100)
            page = Page(driver, srv)
            page.sign_in("alice", "pw-alice")
            page.click_rank(0, 2)
            page.click_rank(1, 1)
            time.sleep(1.0)
            driver.save_screenshot(str(out_dir / "annotation_task.png"))
            next(e for e in driver.find_elements(page.By.CSS_SELECTOR, "button[role=tab]") if e.text == "Admin").click()
            time.sleep(1.5)
            driver.save_screenshot(str(out_dir / "annotation_admin.png"))
        finally:
            driver.quit()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--screenshots":
        make_screenshots(Path(sys.argv[2]))
    else:
        print("usage: python tests/test_annotation_browser.py --screenshots docs")


def test_handlers_back_and_revise_walk_without_browser(tmp_path):
    """The plain handlers (no Gradio server): back twice, revise, and move forward in order."""
    from types import SimpleNamespace

    from annotation_ui import app as ui
    from rlhf.preferences.store import LabelStore
    from annotation_ui.users import Users

    make_candidates_artifact(tmp_path / "candidates", len(KS), KS)
    from annotation_ui.__main__ import import_candidates

    store = LabelStore(tmp_path / "l.sqlite")
    import_candidates(store, str(tmp_path / "candidates"))
    cfg = ui.AppConfig(overlap=1, users=Users({"alice": "pw"}))
    req = SimpleNamespace(username="alice")
    page = lambda v: (v.state.item_id or "", v.state.request_id)  # noqa: E731 - what the page's hidden fields hold
    view = ui.on_load(store, cfg, ui.TaskState(), req)
    for expected in ["p000", "p001", "p002"]:
        assert view.state.item_id == expected
        view = ui.submit_ranking(store, cfg, view.state, page(view), ["1", "2", "3"], False, "", req)
    assert view.state.item_id == "p003" and len(view.candidates) == 2
    view = ui.go_back(store, cfg, view.state, page(view), req)
    view = ui.go_back(store, cfg, view.state, page(view), req)
    assert view.state.item_id == "p001" and view.ranks == ["1", "2", "3"] and view.state.revising
    view = ui.submit_ranking(store, cfg, view.state, page(view), ["3", "2", "1"], True, "second thoughts", req)
    assert view.state.item_id == "p002" and "revision" in view.status  # forward through the history
    view = ui.submit_ranking(store, cfg, view.state, page(view), ["1", "2", "3"], False, "", req)
    assert view.state.item_id == "p003" and view.state.back_steps == 0  # back to fresh work
    view = ui.submit_vote(store, cfg, view.state, page(view), "both_bad", False, "", req)
    assert view.state.item_id is None and "All done" in view.status
    revised = store.label_for("alice", "p001")
    assert revised.flagged and revised.rationale == "second thoughts" and revised.supersedes
    assert store.label_for("alice", "p003").meta["vote"] == "both_bad"
    with pytest.raises(Exception, match="Not signed in"):
        ui.on_load(store, cfg, ui.TaskState(), SimpleNamespace(username=None))
    with pytest.raises(Exception, match="missing"):
        v = ui.on_load(store, ui.AppConfig(overlap=2, users=cfg.users), ui.TaskState(), SimpleNamespace(username="bob"))
        ui.submit_ranking(store, cfg, v.state, page(v), ["1", None, "2"], False, "", SimpleNamespace(username="bob"))
