"""The app page in a real browser: headless Chromium driven by Selenium through the system's chromedriver (Debian's
`chromium` and `chromium-driver` packages), for the browser test and the screenshot script.

`missing()` says what is absent (Selenium, the browser, the driver), so a caller can skip and say why; `served()`
runs a page on 127.0.0.1 at a free port and stops it afterwards; `chromium()` starts and always quits the browser;
`AppPage` uploads a photo, waits (bounded) for the answer and reads it off the page: the message line, and for each
face its label and every probability, as text and as the `data-` attributes `render` writes. Selenium never
downloads a driver here: the driver is the one on PATH.
"""
from __future__ import annotations

import base64
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ['BROWSERS', 'DRIVERS', 'browser_paths', 'missing', 'free_port', 'served', 'chromium', 'AppPage']

BROWSERS = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')
DRIVERS = ('chromedriver',)
HOST = '127.0.0.1'


def browser_paths() -> tuple[str | None, str | None]:
    "The Chromium (or Chrome) executable and chromedriver on PATH, or None for each that is not there."
    return next(filter(None, map(shutil.which, BROWSERS)), None), next(filter(None, map(shutil.which, DRIVERS)), None)


def missing() -> str:
    "What a browser test lacks, in one line ('' when Selenium, Chromium and chromedriver are all there)."
    try: import selenium  # noqa: F401
    except ImportError: return "selenium is not installed (pip install 'fastmask[full]')"
    browser, driver = browser_paths()
    if browser is None: return 'no Chromium on PATH (apt-get install chromium chromium-driver)'
    if driver is None: return 'no chromedriver on PATH (apt-get install chromium-driver)'
    return ''


def free_port(host: str = HOST) -> int:
    "A TCP port free on `host` now."
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def served(run_dir, **kw):
    "The app page of `run_dir` served on 127.0.0.1 at a free port: yields its URL; the server stops afterwards."
    from fastmask.app.page import serve
    port = free_port()
    demo = serve(run_dir, host=HOST, port=port, block=False, quiet=True, **kw)
    try: yield f'http://{HOST}:{port}/'
    finally: demo.close()


@contextmanager
def chromium(width: int = 1400, height: int = 1000, camera: bool = False):
    "A headless Chromium WebDriver (`camera`: Chromium's fake webcam, no permission prompt); always quit afterwards."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    browser, driver = browser_paths()
    if browser is None or driver is None: raise RuntimeError(missing())
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', f'--window-size={width},{height}',
              '--no-first-run', '--disable-extensions', '--hide-scrollbars'):
        opts.add_argument(a)
    if camera:
        opts.add_argument('--use-fake-device-for-media-stream')
        opts.add_argument('--use-fake-ui-for-media-stream')
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        d.set_page_load_timeout(60)
        d.set_script_timeout(30)
        yield d
    finally: d.quit()


class AppPage:
    "The app page (or an exported Space's) in a WebDriver: upload, wait for the answer, read it, switch tabs, shoot."
    def __init__(self, driver, url: str, timeout: float = 60):
        self.d, self.url, self.timeout = driver, url, timeout

    def _wait(self, cond, what: str, timeout: float | None = None):
        end = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < end:
            try:
                if (v := cond()): return v
            except Exception: pass   # the page is re-rendering: try again
            time.sleep(0.1)
        raise TimeoutError(f'{self.url}: {what} did not happen within {timeout or self.timeout:.0f} s')

    def _css(self, sel: str):
        from selenium.webdriver.common.by import By
        return self.d.find_elements(By.CSS_SELECTOR, sel)

    def open(self) -> 'AppPage':
        "Load the page and wait until the photo input is there."
        self.d.get(self.url)
        self._wait(lambda: self._css('#fm-photo input[type=file]'), 'the photo input')
        return self

    def message(self) -> str:
        "The page's one-line message."
        el = self._css('#fm-message-text')
        return el[0].text.strip() if el else ''

    def upload(self, path) -> dict:
        "Upload a file into the photo input (clearing an earlier one) and return the answer read off the page."
        before = self.message()
        clear = self._css('#fm-photo button[aria-label=Clear]')
        if clear:
            clear[0].click()
        inp = self._wait(lambda: self._css('#fm-photo input[type=file]'), 'the photo input')[0]
        inp.send_keys(str(Path(path).resolve()))
        self._wait(lambda: (m := self.message()) and m != before, 'an answer to the upload')
        return self.answer()

    def webcam(self) -> dict:
        "Open the webcam (Chromium's fake one: `chromium(camera=True)`), take a photo, return the answer read off the page."
        before, cam = self.message(), '#fm-camera'
        self._wait(lambda: [b for b in self._css(f'{cam} button') if 'Webcam' in b.text], 'the webcam button')[0].click()
        self._wait(lambda: self.d.execute_script(f"const v = document.querySelector('{cam} video'); "
                                                 'return v !== null && v.readyState >= 2'), 'the webcam stream')
        self._wait(lambda: [b for b in self._css(f'{cam} button.capture-button') if b.is_displayed()],
                   'the capture button')[0].click()
        self._wait(lambda: (m := self.message()) and m != before, 'an answer to the webcam photo')
        return self.answer()

    def choose(self, mode: str) -> dict:
        "Pick a 'Faces' option (e.g. 'whole photo') and return the answer it gives for the last photo."
        before = self.message()
        label = next(el for el in self._css('#fm-mode label') if el.text.strip() == mode)
        label.click()
        self._wait(lambda: (m := self.message()) and m != before, f"the answer with '{mode}'")
        return self.answer()

    def answer(self) -> dict:
        "The message, whether it is an error, and each face: label, probability, and per task every class's probability."
        err = bool(self._css('#fm-message .fm-error'))
        faces = []
        for f in self._css('#fm-result .fm-face'):
            tasks = {}
            for t in f.find_elements('css selector', '.fm-task'):
                rows = t.find_elements('css selector', '.fm-row')
                tasks[t.get_attribute('data-task')] = {
                    r.get_attribute('data-class'): dict(p=float(r.get_attribute('data-p')),
                                                        text=r.find_element('css selector', '.fm-pct').text.strip())
                    for r in rows}
            faces.append(dict(label=f.find_element('css selector', '.fm-label').text.strip(),
                              p=float(f.get_attribute('data-p')), p_text=f.find_element('css selector', '.fm-p').text.strip(),
                              cls=f.get_attribute('data-cls'), tasks=tasks))
        return dict(message=self.message(), error=err, faces=faces)

    def tab(self, name: str) -> 'AppPage':
        "Open a tab by its title ('Try it', 'Its mistakes', 'The run')."
        button = self._wait(lambda: [b for b in self._css('button[role=tab]') if b.text.strip() == name], f"the tab '{name}'")
        button[0].click()
        self._wait(lambda: button[0].get_attribute('aria-selected') == 'true', f"the tab '{name}' opening")
        return self

    def text(self, css: str) -> str:
        "The visible text of the first element matching `css` (waits for it)."
        return self._wait(lambda: self._css(css), css)[0].text

    def scroll_through(self, pause: float = 0.2) -> None:
        "Scroll down the whole page and back, so that lazily loaded images below the window load."
        height = self.d.execute_script('return document.body.scrollHeight')
        for y in range(0, int(height) + 1, 500):
            self.d.execute_script(f'window.scrollTo(0, {y})')
            time.sleep(pause)
        self.d.execute_script('window.scrollTo(0, 0)')
        time.sleep(pause)

    def screenshot(self, path, full: bool = True) -> Path:
        "A PNG of the page (`full`: the whole page, every image loaded, not only the window)."
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if full:
            self.scroll_through()
            shot = self.d.execute_cdp_cmd('Page.captureScreenshot', {'format': 'png', 'captureBeyondViewport': True})
            path.write_bytes(base64.b64decode(shot['data']))
        else: self.d.save_screenshot(str(path))
        return path
