"""The generated site in a real headless browser (Debian's chromium).

Chromium's --dump-dom prints the page after its scripts ran and its images
loaded; with --enable-logging=stderr every console message (console.error,
uncaught exceptions) appears on stderr as a CONSOLE line. The site writes
nothing to the console unless something is broken (a figure that fails to load
logs an error), so a clean page has no CONSOLE line at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clbench.leaderboard.site import build_site
from clbench.results import ResultsStore
from tests.leaderboard_fixtures import fake_result

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed: `make test` installs it through "
    "scripts/ensure_test_deps.sh when run as root (apt-get install chromium)",
)


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def open_page(page: Path) -> tuple[str, list[str]]:
    """The page's DOM after load, and every console message it produced."""
    done = chromium("--dump-dom", page.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def images(dom: str) -> dict[str, str]:
    """src -> data-loaded ("yes" once the browser decoded it) of every img."""
    return {
        m.group(1): (re.search(r'data-loaded="(\w+)"', m.group(0)) or [None, "never"])[1]
        for m in re.finditer(r'<img[^>]*src="([^"]+)"[^>]*>', dom)
    }


@pytest.fixture(scope="module")
def real_site(tmp_path_factory):
    """A site built from two real runs on the offline emoji scenario."""
    from clbench.runner import RunSpec, run

    store = ResultsStore(tmp_path_factory.mktemp("runs"))
    for method in ("simplecil", "ncm"):
        run(RunSpec(method=method), store=store)
    return build_site(store.all(), tmp_path_factory.mktemp("site"))


@pytest.mark.integration
def test_index_scenario_and_run_pages_load_cleanly(real_site):
    dom, console = open_page(real_site.index)
    assert console == []
    assert re.search(
        r'<table id="scenarios".*?<a href="scenarios/emoji-cil.html">emoji-cil</a>', dom, re.S
    )

    dom, console = open_page(real_site.scenario_pages["emoji-cil"])
    assert console == []
    board = re.search(r'<table id="leaderboard".*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert board.count("<tr") == 2 and "simplecil" in board and "ncm" in board
    assert images(dom) == {"emoji-cil.png": "yes"}

    run_page = next(iter(real_site.run_pages.values()))
    dom, console = open_page(run_page)
    assert console == []
    assert images(dom) == {"heatmap.png": "yes", "curve.png": "yes", "bars.png": "yes"}
    assert '<table id="matrix">' in dom and "split hash" in dom


@pytest.mark.integration
def test_screenshot_of_the_leaderboard(real_site):
    shot = REPO / "reports" / "leaderboard.png"
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    done = chromium(
        "--window-size=1100,760",
        f"--screenshot={shot}",
        real_site.scenario_pages["emoji-cil"].as_uri(),
    )
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size < 400_000


def test_a_broken_figure_is_caught(tmp_path):
    """The detection itself works: a missing PNG gives a console error."""
    site = build_site([fake_result("ncm")], tmp_path / "site", workers=1)
    page = next(iter(site.run_pages.values()))
    (page.parent / "curve.png").unlink()
    dom, console = open_page(page)
    assert images(dom)["curve.png"] == "no"
    assert any("figure failed to load: curve.png" in line for line in console)


def test_a_hostile_method_name_stays_text_in_the_browser(tmp_path):
    hostile = '<script>console.error("injected")</script><img src=x onerror=console.error("img")>'
    bad = fake_result(hostile)
    site = build_site([bad, fake_result("ncm")], tmp_path / "site", workers=1)
    for page in [site.index, site.scenario_pages["emoji-cil"], site.run_pages[bad.run_id]]:
        dom, console = open_page(page)
        assert console == [], page  # nothing from the name ran
        assert "<script>console.error" not in dom
    assert "&lt;script&gt;console.error" in open_page(site.scenario_pages["emoji-cil"])[0]


def test_clicking_a_header_sorts_the_table(tmp_path):
    runs = [
        fake_result(m, level=level) for m, level in (("ncm", 0.7), ("knn", 0.3), ("simplecil", 0.5))
    ]
    page = build_site(runs, tmp_path / "site", workers=1).scenario_pages["emoji-cil"]
    # Click the Ā header once (ascending) after the site's own script set up.
    clicked = page.with_name("clicked.html")
    clicked.write_text(
        page.read_text().replace(
            "</body>",
            """<script>
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("#leaderboard thead th")[3].click();
});
</script></body>""",
        )
    )
    dom, console = open_page(clicked)
    assert console == []
    body = re.search(r'<table id="leaderboard".*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    order = re.findall(r"<tr>\s*<td>(\w+)</td>", body)
    assert order == ["knn", "simplecil", "ncm"]
    assert 'aria-sort="ascending"' in dom
