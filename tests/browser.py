"""A headless Chromium driven over the DevTools protocol through a pipe (no websocket, no driver).

``--remote-debugging-pipe`` makes Chromium read protocol messages from file descriptor 3 and
write its answers to descriptor 4, each message one JSON object followed by a NUL byte. That is
all the client below does: send a command with an id, read messages until the answer with that
id arrives (keeping the events seen on the way), raise if the browser reports an error.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "about:blank"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One Chromium process with one page; ``with Browser() as b: b.open(url); b.evaluate(js)``."""

    def __init__(self, width: int = 1100, height: int = 1400, timeout: float = 60.0):
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium not found: apt-get install -y chromium (tests/conftest.py does, as root)")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="npegg-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds():  # in the child: the protocol's fixed descriptors 3 and 4 (copies first: the
            a, b = os.dup(to_browser_r), os.dup(from_browser_w)  # pipe ends may be 3 or 4 already)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([exe, f"--user-data-dir={self._profile}", *FLAGS], preexec_fn=fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.requested: list[str] = []    # the URL of every request the page made, in order
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.send("Page.enable", session=True)
            self.send("Network.enable", session=True)   # every request is recorded: see requests()
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit code {self.proc.poll()})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def _note_requests(self) -> None:
        self.requested += [e["params"]["request"]["url"] for e in self.events
                           if e.get("method") == "Network.requestWillBeSent"]

    def open(self, url: str) -> None:
        """Navigate and wait for the load event (which waits for every image)."""
        self._note_requests()
        self.events.clear()
        result = self.send("Page.navigate", session=True, url=url)
        if result.get("errorText"):
            raise RuntimeError(f"cannot open {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def requests(self) -> list[str]:
        """Every URL requested since the browser started (pages, scripts, fonts, images, fetches)."""
        self._note_requests()
        self.events = [e for e in self.events if e.get("method") != "Network.requestWillBeSent"]
        return list(self.requested)

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"javascript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, clip: dict | None = None) -> bytes:
        """PNG bytes of the visible viewport, or of ``clip`` ({x, y, width, height} in page pixels)."""
        params = {"format": "png"}
        if clip:
            params.update(clip={**clip, "scale": 1})
        return base64.b64decode(self.send("Page.captureScreenshot", session=True, **params)["data"])

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
