"""Headless Chromium (Debian's ``chromium``) in a topology's namespace, driven
over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in a NUL byte, commands on its fd 3, answers and events on
its fd 4), so no WebSocket client and no WebDriver are needed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium")
TIMEOUT = 15.0                 # seconds any one command may take


class BrowserError(AssertionError):
    """A DevTools command answered with an error."""


class Browser:
    def __init__(self, namespace: str, profile: Path) -> None:
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()

        def as_fds_3_and_4() -> None:
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, CHROMIUM or "chromium", "--headless",
             "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--mute-audio",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=1280,900",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(3, 4),
            preexec_fn=as_fds_3_and_4)
        os.close(to_browser)
        os.close(from_browser)
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffered = b""
        while True:
            data = os.read(self._answers, 65536)
            if not data:
                break
            buffered += data
            *messages, buffered = buffered.split(b"\0")
            with self._arrived:
                for message in messages:
                    decoded = json.loads(message)
                    if "id" in decoded:
                        self._replies[decoded["id"]] = decoded
                self._arrived.notify_all()
        with self._arrived:
            self._replies[-1] = {"error": {"message": "the browser closed its pipe"}}
            self._arrived.notify_all()

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next += 1
        number = self._next
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        with self._arrived:
            while number not in self._replies and -1 not in self._replies:
                left = deadline - time.monotonic()
                assert left > 0, f"no answer to {method} within {TIMEOUT}s"
                self._arrived.wait(left)
            reply = self._replies.pop(number, None) or self._replies[-1]
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply["result"]

    def page(self, scripts: bool = True) -> "Tab":
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        if not scripts:
            self.send("Emulation.setScriptExecutionDisabled", session, value=True)
        return Tab(self, session)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except AssertionError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._commands)
        os.close(self._answers)


class Tab:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def go(self, url: str) -> None:
        self.browser.send("Page.navigate", self.session, url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools runs it
        even where the page's own scripts are disabled)."""
        result = self.browser.send("Runtime.evaluate", self.session, expression=expression,
                                   returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def html(self) -> str:
        """The document as HTML; "" while a navigation replaces it (its node
        is gone between the two commands)."""
        try:
            root = self.browser.send("DOM.getDocument", self.session)["root"]["nodeId"]
            return self.browser.send("DOM.getOuterHTML", self.session, nodeId=root)["outerHTML"]
        except BrowserError:
            return ""

    def screenshot(self, path: Path) -> None:
        data = self.browser.send("Page.captureScreenshot", self.session, format="png",
                                 captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
