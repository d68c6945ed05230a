"""The HTML report in a real browser (headless Chromium, the Debian package): it renders, no
script runs, no request leaves the page, and it prints to PDF without losing rows, for the demo
host and for a host whose names are built to break out of the markup."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from lxml import html

from auditor.engine.audit import with_rule_docs
from auditor.engine.registry import load_rules
from auditor.reports import render
from testlab.pytest_fixtures import require
from tests.helpers import run_cli
from tests.sample_results import sample_result

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "</style><script>alert(1)</script>",
    "javascript:alert(1)",
    '"><svg onload=alert(1)>',
    "'-alert(1)-'",
    "\u202eexe.txt\u202c \u2066rtl\u2069",
]
# Chromium's own services, which it calls whatever the page does (clock, updates).
BROWSER_SERVICES = re.compile(r"(^|\.)(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)$")
FINDING = re.compile(r"\b[A-Z]{4}\d{3} (?:error|warning|info)\b")
STATUS = re.compile(r"\b(?:non)?compliant\b")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require(found, "not installed: chromium (scripts/test.sh installs it)")
    require(shutil.which("pdftotext"), "not installed: pdftotext (poppler-utils)")
    return found


class Proxy:
    """A proxy that answers nothing and records every request the browser makes: with it as
    the browser's only way out, any request from the page shows up here."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self.readers: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        # Once stopping, one more empty wait means the queue is drained: the browser has exited.
        while True:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                if self.stopping.is_set():
                    return
                continue
            reader = threading.Thread(target=self._read, args=(conn,), daemon=True)
            reader.start()
            self.readers.append(reader)

    def _read(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                data = conn.recv(4096)
            except OSError:
                data = b"(no request line)"
        # A connection closed without a byte is the browser warming up its proxy, not a request.
        if data:
            self.requests.append(data.split(b"\r\n")[0].decode("latin-1"))

    def from_page(self) -> list[str]:
        hosts = [re.sub(r"^\w+ (?:\w+://)?([^/:\s]+).*", r"\1", r) for r in self.requests]
        return [
            r for r, h in zip(self.requests, hosts, strict=True) if not BROWSER_SERVICES.search(h)
        ]

    def close(self) -> None:
        self.stopping.set()
        self.acceptor.join()
        for reader in self.readers:
            reader.join()
        self.sock.close()


def browse(chromium: str, page: Path, tmp: Path, *action: str) -> tuple[str, str, list[str]]:
    """Run Chromium once on PAGE: (stdout, console messages, requests from the page)."""
    proxy = Proxy()
    try:
        proc = subprocess.run(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp / 'profile'}",
                # No network: every request goes to the recording proxy, which forwards nothing.
                f"--proxy-server=http://127.0.0.1:{proxy.port}",
                "--proxy-bypass-list=<-loopback>",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1280,2400",
                "--no-pdf-header-footer",
                *action,
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=90,  # a dialog (alert) would block the page until then
        )
    finally:
        proxy.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, "\n".join(console), proxy.from_page()


def hostile_node_file(path: Path) -> None:
    """A test-driver host whose domains, snapshots, descriptions and paths carry HOSTILE."""

    def q(text: str) -> str:
        return escape(text, {"'": "&apos;", '"': "&quot;"})

    domains = []
    for i, text in enumerate(HOSTILE):
        name = q(text.replace("/", ""))  # libvirt refuses '/' in names; paths keep it
        uuid = f"3f0c2a7e-1b5d-4c8e-9a61-2d7f4e8b0{i:03d}"
        disk = (
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='/img/{q(text)}.qcow2'/><target dev='vda' bus='virtio'/></disk>"
        )
        definition = (
            f"<name>{name}</name><uuid>{uuid}</uuid><memory>1024</memory>"
            f"<os><type>hvm</type></os><devices>{disk}</devices>"
        )
        snapshots = "".join(
            f"<test:domainsnapshot><name>{name}-{j}</name><description>{q(text)}</description>"
            f"<state>running</state><creationTime>{1700000000 + j}</creationTime>"
            "<memory snapshot='internal'/><disks><disk name='vda' snapshot='internal'/></disks>"
            f"<domain type='kvm'>{definition}</domain><active>0</active></test:domainsnapshot>"
            for j in range(3)
        )
        domains.append(f"<domain type='test'>{definition}{snapshots}</domain>")
    path.write_text(
        "<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        + "".join(domains)
        + "</node>"
    )


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """name → (HTML report, JSON report) for the demo host and the hostile one."""
    tmp = tmp_path_factory.mktemp("reports")
    hostile_node_file(tmp / "hostile.xml")
    made = {}
    for name, source in (
        ("demo", ["--demo"]),
        ("hostile", ["-c", f"test://{tmp / 'hostile.xml'}"]),
    ):
        page, data = tmp / f"{name}.html", tmp / f"{name}.json"
        proc = run_cli("scan", *source, "-f", f"html:{page}", "-f", f"json:{data}")
        assert proc.returncode == 1, proc.stderr  # both hosts have error findings
        made[name] = (page, json.loads(data.read_text()))
    assert len(made["hostile"][1]["snapshots"]) == 3 * len(HOSTILE)
    return made


@pytest.mark.parametrize("name", ["demo", "hostile"])
def test_the_report_renders_and_runs_nothing(chromium, reports, tmp_path, name):
    page, data = reports[name]
    dom, console, requests = browse(chromium, page, tmp_path, "--dump-dom")
    assert (console, requests) == ("", [])
    tree = html.fromstring(dom)
    # Nothing that could run or fetch: no script, handler, frame, image or javascript: link.
    assert tree.xpath("//script|//iframe|//object|//embed|//img|//svg|//link|//base") == []
    assert [a for e in tree.iter() for a in e.attrib if a.lower().startswith("on")] == []
    assert [h for h in tree.xpath("//@href|//@src") if not h.startswith("#")] == []
    text = tree.text_content()
    # Each finding is shown once, as a paragraph led by its rule and severity.
    shown = [b.text_content() for b in tree.xpath("//p/b") if FINDING.fullmatch(b.text_content())]
    assert len(shown) == len(data["findings"])
    for snapshot in data["snapshots"]:
        assert snapshot["name"] in text  # shown as text, whatever its markup
    if name == "hostile":
        for hostile in HOSTILE:
            assert hostile in text


@pytest.mark.parametrize("name", ["demo", "hostile"])
def test_the_report_prints_every_row_and_leaves_a_screenshot(chromium, reports, tmp_path, name):
    page, data = reports[name]
    pdf = tmp_path / f"{name}.pdf"
    _, console, requests = browse(chromium, page, tmp_path, f"--print-to-pdf={pdf}")
    assert (console, requests) == ("", [])
    printed = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    # Every finding and every snapshot's status is on paper, none cut off at a page break:
    # each finding once, and each rule that found something once more in the rules table.
    rules = {f["rule"] for f in data["findings"]}
    assert len(FINDING.findall(printed)) == len(data["findings"]) + len(rules)
    tree = html.fromstring(page.read_text())
    verdicts = tree.xpath("//td[text()='compliant' or text()='noncompliant']")
    assert len(verdicts) == len(data["snapshots"])
    dom_text = " ".join(tree.itertext())  # cells apart, as on paper
    assert len(STATUS.findall(printed)) == len(STATUS.findall(dom_text))

    screenshot = tmp_path / f"{name}.png"
    _, console, requests = browse(chromium, page, tmp_path, f"--screenshot={screenshot}")
    assert (console, requests) == ("", [])
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot of the {name} report: {screenshot}")


def test_the_checks_see_a_script_and_a_request(chromium, tmp_path):
    # The detectors above must be able to fail: a page that logs and fetches is caught.
    page = tmp_path / "canary.html"
    page.write_text(
        "<p>canary</p><script>console.error('canary ran');"
        "</script><img src='http://canary.example/x.png'>"
    )
    _, console, requests = browse(chromium, page, tmp_path, "--dump-dom")
    assert "canary ran" in console
    assert [r for r in requests if "canary.example" in r] != []


# Measures the page as laid out, every section open, into an attribute --dump-dom shows.
MEASURE = """<script>
for (const d of document.querySelectorAll("details")) d.open = true;
const lines = (td) => {  // its text's lines (the cell itself is as tall as its row)
  const range = document.createRange();
  range.selectNodeContents(td);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.bottom))).size;
};
const root = document.documentElement;
document.body.dataset.layout = JSON.stringify({
  cards: [...document.querySelectorAll(".card")].map((c) => c.getBoundingClientRect().top),
  disks: [...document.querySelectorAll("table.snaps tbody td:nth-child(6)")].map(
    (td) => lines(td) / (td.querySelectorAll("br").length + 1)),
  overflow: root.scrollWidth - root.clientWidth,
});
</script>"""


def measured(chromium: str, reports, tmp_path: Path, name: str) -> dict:
    """The layout of a report at 1280 px: "demo" or the sample result (accepted findings)."""
    if name == "sample":
        result = with_rule_docs(sample_result(), load_rules()[0])
        assert result.waivers  # the accepted-findings card is shown
        source = render("html", result)
    else:
        source = reports[name][0].read_text()
    page = tmp_path / f"{name}-measured.html"
    page.write_text(source.replace("</body>", MEASURE + "</body>"))
    dom, console, _ = browse(chromium, page, tmp_path, "--dump-dom")
    assert console == ""
    return json.loads(html.fromstring(dom).xpath("//body/@data-layout")[0])


@pytest.mark.parametrize("name", ["demo", "sample"])
def test_rows_stay_readable_in_a_normal_window(chromium, reports, tmp_path, name):
    layout = measured(chromium, reports, tmp_path, name)
    # Each disk on one line, not wrapped over several; nothing wider than the window.
    assert layout["disks"] and max(layout["disks"]) == 1, layout["disks"]
    assert layout["overflow"] <= 0


@pytest.mark.parametrize("name", ["demo", "sample"])
def test_the_summary_cards_fit_one_row(chromium, reports, tmp_path, name):
    cards = measured(chromium, reports, tmp_path, name)["cards"]
    assert len(cards) >= 7 and len(set(cards)) == 1, cards  # the accepted-findings card too
