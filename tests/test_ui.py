"""`rapo ui` as a person uses it: a real server subprocess, Debian's chromium driven by Selenium, real videos.

The browser tests skip with the reason when chromium, chromedriver or selenium is missing, unless
RAPO_REQUIRE_BROWSER=1 (set by .ci/run) makes that a failure. Screenshots go to the test's tmp dir, and also to
$RAPO_SCREENSHOTS when set (`RAPO_SCREENSHOTS=docs` refreshes the README's images).
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rapo.agent.loop.context import SSPOConfig
from rapo.agent.runs.optimize import PromptItem, open_run, optimize
from tests.required import skip_or_fail
from tests.test_cli import RAPO, rapo
from tests.test_sspo import context  # noqa: F401 - the fixture that builds an SSPO context with the scripted LLM

PROMPTS = ["a dog running on the beach", "a dog on the beach"]  # what the scripted LLM can rewrite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """`rapo ui` in a subprocess, stopped by its own pid."""

    def __init__(self, *args: str, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*RAPO, "ui", "--host", host, "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        self.banner = self.proc.stderr.readline()  # "rapo ui on URL", printed before it listens
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"rapo ui exited: {self.banner}{self.proc.stderr.read()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "rapo ui did not listen within 120 s"
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def run_dir(tmp_path, context) -> Path:  # noqa: F811 - pytest's fixture injection
    """A finished run in tmp_path: two prompts, Stage 1 and one revision round, tiny-Wan videos, two critics."""
    ctx = context(SSPOConfig(max_iters=1, candidates=2))
    settings = {"generator": "tiny-wan", "critics": ctx.critics}
    items = [PromptItem(text=p) for p in PROMPTS]
    rows = optimize(items, open_run(tmp_path, tmp_path / "prompts.txt", items, settings, resume=False), ctx)
    assert [r["status"] for r in rows] == ["done", "done"]
    return tmp_path


@pytest.fixture
def browser(tmp_path):
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        skip_or_fail("BROWSER", f"no {', '.join(missing)}: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--hide-scrollbars", "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def screenshot(driver, tmp_path: Path, name: str, full_height: bool = True) -> Path:
    if full_height:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(height + 20, 600), 2400))
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    if os.environ.get("RAPO_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["RAPO_SCREENSHOTS"]) / name)
    return path


@pytest.mark.browser
def test_run_page_in_a_browser_shows_iterations_playing_videos_and_a_chart(run_dir, browser, tmp_path):
    server = Server("--runs", str(run_dir), "--no-chat")
    try:
        # 1. The runs list links to the run
        browser.get(server.base + "/")
        browser.find_element("css selector", "table.runs a").click()
        assert browser.current_url == server.base + "/runs/0"

        # 2. Every prompt with its rounds (Stage 1's and one revision), best marked, diffs, feedback, tool calls
        sections = browser.find_elements("css selector", "section.prompt")
        assert len(sections) == 2
        for section in sections:
            rounds = [h.text for h in section.find_elements("css selector", ".round h3")]
            assert rounds == ["round 0", "round 1"]
            assert section.find_elements("css selector", ".candidate.best")
            assert section.find_elements("css selector", ".diff ins")
            assert "revise_prompt" in section.find_element("css selector", "details.calls").get_attribute("textContent")

        # 3. A score chart: one line per critic
        lines = browser.find_elements("css selector", "section.prompt svg.chart polyline")
        assert sorted({line.get_attribute("data-metric") for line in lines}) == ["imaging", "temporal"]

        # 4. The videos play: decoded, not paused, and the clock moves
        video = "document.querySelector('video')"
        browser.execute_script(f"{video}.play()")
        first = browser.execute_script(f"return [{video}.readyState, {video}.currentTime, {video}.error]")
        time.sleep(0.7)
        later = browser.execute_script(f"return [{video}.readyState, {video}.currentTime, {video}.paused]")
        assert first[2] is None and later[0] >= 2 and not later[2], (first, later)
        assert later[1] != first[1], "the video's currentTime did not advance"
        assert browser.execute_script(f"return {video}.videoWidth") == 64
        assert screenshot(browser, tmp_path, "run-page.png").stat().st_size > 10_000
    finally:
        server.stop()


def test_only_files_inside_the_run_dirs_are_served(run_dir, tmp_path_factory):
    secret = tmp_path_factory.mktemp("outside") / "secret.txt"
    secret.write_text("not for the web")
    (run_dir / "link.txt").symlink_to(secret)
    server = Server("--runs", str(run_dir), "--no-chat")
    try:
        assert get(server.base + "/runs/0/files/run.json")[0] == 200
        video = json.loads(get(server.base + "/api/runs/0")[1])["prompts"][0]["rounds"][0][0]["video"]
        assert get(f"{server.base}/runs/0/files/{video}")[0] == 200
        escape = "%2e%2e/" * len(run_dir.parts) + str(secret).lstrip("/")
        for path in (f"/runs/0/files/{escape}", f"/runs/0/files/..%2f{secret.parent.name}/secret.txt",
                     f"/runs/0/files/{secret}", "/runs/0/files/link.txt", "/runs/1/files/run.json",
                     "/runs/0/files/videos"):  # fmt: skip
            assert get(server.base + path)[0] == 404, path
        raw = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # a path no client would normalise
        raw.request("GET", "/runs/0/files/../../../../etc/passwd")
        assert raw.getresponse().status == 404
    finally:
        server.stop()


def test_a_non_loopback_host_requires_the_token(run_dir):
    server = Server("--runs", str(run_dir), "--no-chat", host="0.0.0.0")
    try:
        url = server.banner.split(" on ", 1)[1].strip()
        token = url.split("?token=", 1)[1]
        assert len(token) >= 20
        assert get(server.base + "/")[0] == 401
        assert get(server.base + "/?token=wrong")[0] == 401
        assert get(f"{server.base}/api/runs?token={token}")[0] == 200
        request = urllib.request.Request(server.base + "/api/runs", headers={"Authorization": f"Bearer {token}"})
        assert urllib.request.urlopen(request, timeout=30).status == 200
    finally:
        server.stop()


def test_ui_refuses_a_dir_that_is_not_a_run(tmp_path):
    proc = rapo("ui", "--runs", str(tmp_path), "--port", str(free_port()))
    assert proc.returncode == 2 and f"not a run dir: {tmp_path / 'trajectory.sqlite'}" in proc.stderr


@pytest.mark.slow
@pytest.mark.browser
def test_chat_page_drives_a_session_in_the_browser(graph, browser, tmp_path):
    server = Server("--home", str(tmp_path / "chat"), "--graph", str(graph), "--generator", "tiny-wan",
                    "--critics", "temporal,imaging")  # fmt: skip
    wait = lambda condition, seconds=600: _wait(browser, condition, seconds)  # noqa: E731
    try:
        browser.get(server.base + "/chat")
        browser.find_element("name", "prompt").send_keys("a dog running on the beach")
        browser.find_element("css selector", "#new button").click()
        wait(lambda d: d.find_elements("css selector", "#candidates .candidate"))
        browser.find_element("css selector", "button.generate").click()
        wait(lambda d: d.find_elements("css selector", "#candidates video"))
        assert {s.split()[0] for s in text_of(browser, "#candidates .score").splitlines()} == {"temporal", "imaging"}
        video = "document.querySelector('#candidates video')"
        wait(lambda d: d.execute_script(f"return {video}.readyState >= 2 && !{video}.paused"), 30)
        screenshot(browser, tmp_path, "chat-page.png")

        # Pin a modifier: Stage 1 runs again, in another request (the server keeps chat work on one thread)
        [pin] = [b for b in browser.find_elements("css selector", "#session button") if b.text == "pin"]
        pin.click()
        wait(lambda d: "pinned" in text_of(d, ".flag"))

        # Undo to the start, then accept: the same session API, persisted
        browser.find_elements("css selector", "button.undo")[0].click()
        wait(lambda d: d.execute_script("return document.querySelectorAll('#session ol li').length") == 1, 60)
        assert "pinned" not in text_of(browser, ".flag")
        first = text_of(browser, "#candidates .text").splitlines()[0]
        browser.find_element("css selector", "button.accept").click()
        # The page says "accepted" once the accept's response has come back, and the server answers only after
        # the session row is saved; reading the API sooner than that races the request.
        wait(lambda d: json.loads(get(server.base + "/api/chat/sessions")[1])[0]["status"] == "accepted", 120)
        [session] = json.loads(get(server.base + "/api/chat/sessions")[1])
        view = json.loads(get(f"{server.base}/api/chat/sessions/{session['id']}")[1])
        assert session["accepted"] == first and view["status"] == "accepted", (session, view["steps"], view["turns"])
    finally:
        server.stop()


def text_of(driver, selector: str) -> str:
    """The text of every element matching `selector`, a line each, read in one script (the page re-renders)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent).join('\\n')", selector
    )


def _wait(driver, condition, seconds: float):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(condition)


def test_runs_export_vbench_and_show_json(run_dir, tmp_path):
    out = tmp_path / "best.txt"
    exported = rapo("runs", "export", str(run_dir), "--out", str(out), "--format", "vbench")
    assert exported.returncode == 0, exported.stderr
    best = [json.loads(line)["best_prompt"] for line in (run_dir / "best_prompts.jsonl").read_text().splitlines()]
    assert out.read_text().splitlines() == best and len(best) == len(PROMPTS)
    shown = rapo("runs", "show", str(run_dir), "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert [p["row"]["input"] for p in detail["prompts"]] == PROMPTS
    assert [len(p["rounds"]) for p in detail["prompts"]] == [2, 2]
    table = rapo("runs", "show", str(run_dir))
    assert "tool calls" in table.stdout and "videos/" in table.stdout
