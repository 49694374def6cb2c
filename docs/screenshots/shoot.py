"""Full-page screenshots of a report at a given CSS width, in headless Chromium (Debian package
`chromium`), offline.

`chromium --screenshot --window-size=390,...` lays a page out at least 500 pixels wide (the
browser's smallest window), so it cannot show a phone. This script drives Chromium over its
DevTools pipe instead and emulates the device width (as the browser's device toolbar does):

    python docs/screenshots/shoot.py PAGE.html OUT.png --width 390 [--scroll-tables] [--palette 128]

--scroll-tables scrolls every table box to its last column first: the proof that a reader on a
phone reaches every column by swiping the table. --screen 844 captures only the first screen of a
390 x 844 phone: what a reader sees before scrolling.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="shoot-")
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=lambda: (os.dup2(to_chrome_r, 3), os.dup2(from_chrome_w, 4)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r), os.close(from_chrome_w)
        self._buf, self._id, self.events = b"", 0, []

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: str = None, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._read())

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except RuntimeError:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


def to_palette(path: Path, colors: int) -> None:
    """Rewrite a screenshot with a palette of `colors` (a page of text and a few figures needs few;
    the file shrinks to about a third)."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def shoot(page: Path, out: Path, width: int, scroll_tables: bool, screen: int = 0) -> None:
    b = Browser()
    try:
        target = b.call("Target.createTarget", url="about:blank")["targetId"]
        s = b.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        b.call("Emulation.setDeviceMetricsOverride", s, width=width, height=800, deviceScaleFactor=1,
               mobile=width < 600)
        b.call("Page.enable", s)
        b.call("Page.navigate", s, url=page.resolve().as_uri())
        b.wait_for("Page.loadEventFired")
        if scroll_tables:
            b.call("Runtime.evaluate", s, expression="for (const t of document.querySelectorAll('.scroll')) "
                                                     "t.scrollLeft = t.scrollWidth;")
        size = b.call("Page.getLayoutMetrics", s)["cssContentSize"]
        height = min(screen, size["height"]) if screen else size["height"]  # --screen: the first screen only
        shot = b.call("Page.captureScreenshot", s, format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        out.write_bytes(base64.b64decode(shot["data"]))
        print(f"{out}: {width} x {size['height']:.0f} CSS pixels (page {size['width']:.0f} wide)")
    finally:
        b.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=390)
    ap.add_argument("--scroll-tables", action="store_true")
    ap.add_argument("--palette", type=int, metavar="N", help="save with a palette of N colours (smaller file)")
    ap.add_argument("--screen", type=int, metavar="H", default=0,
                    help="capture only the first H CSS pixels: what a phone shows before any scrolling (844)")
    a = ap.parse_args()
    shoot(a.page, a.out, a.width, a.scroll_tables, a.screen)
    if a.palette:
        to_palette(a.out, a.palette)
