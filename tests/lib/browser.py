"""Headless Chromium driven through the DevTools protocol (Debian's chromium and
python3-websockets): open a page, evaluate JavaScript in it, take a screenshot.

    with Browser() as b:
        page = b.open("http://127.0.0.1:8080/page.html")
        page.eval("window.received.length")
"""
import asyncio, base64, json, os, shutil, socket, subprocess, tempfile, time, urllib.request

import websockets


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Page:
    def __init__(self, browser, ws_url):
        self.browser = browser
        self.loop = browser.loop
        self.ws = self.loop.run_until_complete(websockets.connect(ws_url, max_size=None))
        self.next_id = 0

    def call(self, method, **params):
        async def go():
            self.next_id += 1
            mid = self.next_id
            await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
            while True:
                msg = json.loads(await self.ws.recv())
                if msg.get("id") == mid:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})
        return self.loop.run_until_complete(go())

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS exception: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if self.eval(expression):
                    return True
            except RuntimeError:
                pass
            time.sleep(0.1)
        return False

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        self.loop.run_until_complete(self.ws.close())


class Browser:
    def __init__(self, width=1200, height=900):
        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="pgcast-chromium-", dir=os.environ.get("PGCAST_TEST_WORK"))
        self.proc = subprocess.Popen(
            ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--window-size={width},{height}",
             f"--remote-debugging-port={self.port}", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        end = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/version", timeout=1).read()
                break
            except OSError:
                if time.time() > end or self.proc.poll() is not None:
                    raise RuntimeError("chromium did not start")
                time.sleep(0.2)
        self.pages = []

    def open(self, url):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?{url}", method="PUT")
        target = json.loads(urllib.request.urlopen(req, timeout=10).read())
        page = Page(self, target["webSocketDebuggerUrl"])
        self.pages.append(page)
        return page

    def close(self):
        for p in self.pages:
            try:
                p.close()
            except Exception:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.loop.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
