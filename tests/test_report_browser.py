"""report.html opened in headless Chromium (selenium + chromedriver): every table row and every
plot is on the page, sorting works, and the page made no network request.

Skipped, with the reason, where Chromium, chromedriver or selenium is missing; `.ci/run`
installs the Debian packages `chromium` and `chromium-driver`.
"""
from __future__ import annotations

import json
import shutil

import pytest

from compressbench.cli import main
from compressbench.report import summarise
from tests.test_report import copy_saved_run

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                if p), None)
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver():
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[test]'")
    if BROWSER is None or DRIVER is None:
        missing = " and ".join(n for n, p in (("chromium", BROWSER), ("chromedriver", DRIVER))
                               if p is None)
        pytest.skip(f"{missing} not on PATH: on Debian `apt-get install chromium "
                    f"chromium-driver` (.ci/run does this)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1366,900", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-default-apps", "--disable-sync"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    drv = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def page(driver, tmp_path_factory):
    run_dir = copy_saved_run(tmp_path_factory.mktemp("run"))
    assert main(["report", str(run_dir), "--format", "html", "--latency-budget", "50"]) == 0
    driver.get_log("performance")  # drop the start-up's own entries
    driver.get((run_dir / "report.html").as_uri())
    state = driver.execute_script(PAGE_STATE)
    network = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    console = driver.get_log("browser")
    return {"run_dir": run_dir, "state": state, "network": network, "console": console,
            "summary": summarise(run_dir, latency_budget=50)}


PAGE_STATE = """
const out = {tasks: {}, resources: performance.getEntriesByType('resource').map(r => r.name)};
document.querySelectorAll('section.task').forEach(sec => {
  const table = sec.querySelector('table.sortable');
  out.tasks[sec.id] = {
    rows: Array.from(table.tBodies[0].rows).map(r => r.dataset.label),
    plots: Array.from(sec.querySelectorAll('figure.plot')).map(f => {
      const svg = f.querySelector('svg'), box = svg ? svg.getBoundingClientRect() : null;
      return {axis: f.dataset.axis, points: JSON.parse(f.dataset.points),
              drawn: Array.from(f.querySelectorAll('svg [id*="point:"]'))
                          .map(g => g.id.split('point:')[1]),
              width: box ? box.width : 0, height: box ? box.height : 0};
    }),
    errorRows: Array.from(sec.querySelectorAll('table.per-class tbody tr'))
      .map(r => r.dataset.label),
  };
});
out.pick = Array.from(document.querySelectorAll('#pick tbody tr')).length;
out.overview = Array.from(document.querySelectorAll('#overview tbody tr')).map(r => r.dataset.label);
out.environment = document.querySelector('#environment').innerText;
return out;
"""


def test_every_table_row_is_on_the_page(page):
    state, summary = page["state"], page["summary"]
    for table in summary.tables:
        shown = state["tasks"][f"task-{table.task}"]
        assert shown["rows"] == [r.label for r in table.rows]
        assert shown["errorRows"] == [r.label for r in table.rows]  # per-class table
    assert state["overview"] == [r.label for r in summary.overview.rows]
    # three questions per task, one answer ("none") where the teacher is at chance (sst2)
    assert state["pick"] == sum(len(p.picks) for p in summary.picks) == 3 + 3 + 1
    assert "sha256" in state["environment"] and "CPU" in state["environment"]


def test_every_plot_is_drawn_with_every_point(page):
    for table in page["summary"].tables:
        plots = page["state"]["tasks"][f"task-{table.task}"]["plots"]
        assert sorted(p["axis"] for p in plots) == ["latency", "size"]
        for plot in plots:
            assert plot["width"] > 200 and plot["height"] > 150  # rendered, not a broken box
            assert sorted(plot["drawn"]) == sorted(plot["points"]) == sorted(
                r.label for r in table.rows)


def test_the_page_made_no_network_request(page):
    requested = [m["params"]["request"]["url"] for m in page["network"]
                 if m["method"] == "Network.requestWillBeSent"]
    page_url = (page["run_dir"] / "report.html").as_uri()
    assert requested and all(url == page_url for url in requested), requested
    assert page["state"]["resources"] == []  # no image, script, style or font fetched
    assert not [c for c in page["console"] if c["level"] == "SEVERE"], page["console"]


def test_sorting_a_column(driver, page):
    from selenium.webdriver.common.by import By

    table = driver.find_element(By.CSS_SELECTOR, "section.task table.sortable")
    header = next(th for th in table.find_elements(By.TAG_NAME, "th") if th.text == "p50 ms")
    column = [th.text for th in table.find_elements(By.TAG_NAME, "th")].index("p50 ms")

    def values():
        return [float(tr.find_elements(By.TAG_NAME, "td")[column].get_attribute("data-v"))
                for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    header.click()
    assert values() == sorted(values()) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert values() == sorted(values(), reverse=True)


LAYOUT = """
const doc = document.documentElement, width = doc.clientWidth;
const pick = document.querySelector('#pick tbody tr td'), box = pick.getBoundingClientRect();
const head = document.querySelector('#pick thead th').textContent;
const wide = Array.from(document.querySelectorAll('body *')).filter(el => {
  const r = el.getBoundingClientRect();
  return r.right > width + 1 && !el.closest('.scroll, figure.plot, pre');
}).map(el => el.tagName + '.' + el.className).slice(0, 5);
return {width: width, scroll: doc.scrollWidth, pickLeft: box.left, pickRight: box.right,
        pickText: pick.textContent, head: head, wide: wide};
"""


@pytest.mark.parametrize("width", [390, 1440])
def test_the_page_fits_the_screen_with_the_picks_in_view(driver, page, width):
    """No horizontal scroll of the page at a phone's and a desktop's width (wide tables and
    plots scroll inside their own box), and the answer column of "What to pick" is in view."""
    driver.set_window_size(width, 900)
    try:
        driver.get((page["run_dir"] / "report.html").as_uri())
        got = driver.execute_script(LAYOUT)
    finally:
        driver.set_window_size(1366, 900)
    assert got["scroll"] <= got["width"], got
    assert not got["wide"], got
    assert got["head"].startswith("pick") and got["pickText"]
    assert 0 <= got["pickLeft"] and got["pickRight"] <= got["width"], got
