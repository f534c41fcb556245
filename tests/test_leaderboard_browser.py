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
            "--virtual-time-budget=8000",
            # Offline: every host name fails to resolve, so a page that needs the
            # network (a CDN script) shows it as a console error or a failed check.
            "--host-resolver-rules=MAP * ~NOTFOUND",
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
    assert images(dom) == {
        name: "yes"
        for name in (
            "emoji-cil.png",
            "emoji-cil-time.png",
            "emoji-cil-params.png",
            "emoji-cil-forgetting.png",
        )
    }
    # plotly (bundled in assets/) drew every chart, so the PNG fallbacks are hidden.
    assert dom.count('class="chart interactive"') == 4

    run_page = next(iter(real_site.run_pages.values()))
    dom, console = open_page(run_page)
    assert console == []
    assert images(dom) == {"heatmap.png": "yes", "curve.png": "yes", "bars.png": "yes"}
    assert '<table id="matrix">' in dom and "split hash" in dom
    assert "stores no class names" not in dom and "<th>scorer</th><td>accuracy</td>" in dom


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
    order = re.findall(r"<tr[^>]*>\s*<td>(\w+)</td>", body)
    assert order == ["knn", "simplecil", "ncm"]
    assert 'aria-sort="ascending"' in dom


def with_script(page: Path, script: str, name: str) -> Path:
    """A copy of ``page`` that runs ``script`` after the page loaded, beside it
    (so its relative links still work)."""
    copy = page.with_name(name)
    copy.write_text(page.read_text().replace("</body>", f"<script>{script}</script></body>"))
    return copy


@pytest.fixture(scope="module")
def three_methods_site(tmp_path_factory):
    runs = [
        fake_result("ncm", level=0.7),
        fake_result("ncm", seed=2, level=0.68),
        fake_result("knn", level=0.5),
        fake_result("simplecil", level=0.6),
        fake_result("simplecil", scenario="imagenet-r", level=0.5, protocol={"init_cls": 20}),
        fake_result("ncm", scenario="cub200", level=0.8, backbone="vit-b16"),
        fake_result("knn", level=0.9),
    ]
    runs[-1].task_incremental = True  # its own table, never beside the others
    return build_site(runs, tmp_path_factory.mktemp("site3"), workers=1)


def visible_overview(dom: str) -> str:
    sections = re.findall(r'<section class="overview-view"([^>]*)>(.*?)</section>', dom, re.S)
    shown = [body for attrs, body in sections if "hidden" not in attrs]
    assert len(shown) == 1, "exactly one convention x setting table is shown"
    return shown[0]


def test_front_page_has_one_row_per_method_and_one_column_per_scenario(three_methods_site):
    dom, console = open_page(three_methods_site.index)
    assert console == []
    table = visible_overview(dom)
    assert "sample-weighted" in table.split("</h2>")[0]
    header = re.search(r"<thead>(.*?)</thead>", table, re.S).group(1)
    assert re.findall(r'<a href="scenarios/[^"]+">([^<]+)</a>', header) == [
        "cub200",
        "emoji-cil",
        "imagenet-r",
    ]
    rows = re.findall(r"<tr data-backbone[^>]*>(.*?)</tr>", table, re.S)
    labels = [re.search(r"<summary>(.*?)</summary>", r).group(1) for r in rows]
    # ncm on two backbones is two entries; every other method one.
    assert sorted(labels) == ["knn", "ncm", "ncm", "simplecil"]
    assert all(r.count('<td class="num') == 3 for r in rows)  # one cell per scenario


def test_front_page_toggles_and_filters(three_methods_site):
    page = with_script(
        three_methods_site.index,
        """window.addEventListener("load", () => {
  const form = document.getElementById("view");
  form.elements["convention"][1].checked = true;           // task-averaged
  form.elements["backbone"].value = "vit-b16";
  form.dispatchEvent(new Event("change"));
});""",
        "toggled.html",
    )
    dom, console = open_page(page)
    assert console == []
    table = visible_overview(dom)
    assert "Mammoth" in table.split("</h2>")[0]
    rows = re.findall(r"<tr data-backbone=\"([^\"]+)\"( hidden)?", table)
    assert [b for b, hidden in rows if not hidden] == ["vit-b16"]

    page = with_script(
        three_methods_site.index,
        """window.addEventListener("load", () => {
  const form = document.getElementById("view");
  form.elements["setting"][1].checked = true;              // task id given at test
  form.dispatchEvent(new Event("change"));
});""",
        "task-incremental.html",
    )
    dom, console = open_page(page)
    assert console == []
    table = visible_overview(dom)
    assert "task id given at test" in table.split("</h2>")[0]
    rows = re.findall(r"<summary>(.*?)</summary>", table)
    assert rows == ["knn"] and "published" not in table


def test_clicking_a_legend_entry_hides_and_shows_a_series(three_methods_site):
    page = with_script(
        three_methods_site.scenario_pages["emoji-cil"],
        """window.addEventListener("load", () => {
  const plot = document.querySelector("#chart-curves .plot");
  const out = document.createElement("pre");
  out.id = "legend-check";
  document.body.appendChild(out);
  const drawn = () => plot.querySelectorAll(".scatterlayer .trace").length;
  const click = () => {
    const toggle = plot.querySelectorAll(".legend .traces .legendtoggle")[0];
    const box = toggle.getBoundingClientRect();
    const at = { bubbles: true, clientX: box.x + 4, clientY: box.y + 4, button: 0 };
    toggle.dispatchEvent(new MouseEvent("mousedown", at));
    toggle.dispatchEvent(new MouseEvent("mouseup", at));
  };
  const states = [];
  const record = () => states.push(String(plot.data[0].visible) + "/" + drawn());
  const wait = (f) => setTimeout(f, 800);  // plotly waits to tell a click from a double-click
  const start = () => {
    if (!plot.data) return setTimeout(start, 50);
    record(); click();
    wait(() => { record(); click(); wait(() => { record(); out.textContent = states.join(" "); }); });
  };
  start();
});""",
        "legend.html",
    )
    dom, console = open_page(page)
    assert console == []
    states = re.search(r'<pre id="legend-check">([^<]*)</pre>', dom).group(1).split()
    # 3 entries (ncm, knn, simplecil): hidden after one click, shown after the second.
    assert states == ["undefined/3", "legendonly/2", "true/3"]


def test_no_page_loads_anything_from_the_network(three_methods_site):
    site = three_methods_site
    for page in [site.index, *site.scenario_pages.values(), *site.run_pages.values()]:
        html = page.read_text()
        assert not re.search(r'(?:src|href)="(?:https?:)?//', html), page
    dom, console = open_page(site.scenario_pages["cub200"])
    assert console == [] and dom.count('class="chart interactive"') == 4
