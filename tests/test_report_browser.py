"""The report page in a real browser (headless Chromium): the tables, the images (every one decoded) and the
verdicts are there, and the page logs no console error. Each test keeps a screenshot in its tmp dir (the
path is printed: `pytest -s` shows it) for a person to look at.

Skipped where `chromium` is not on PATH (.ci/run installs it from the system packages when it can).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from synthrl.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: no `chromium` on PATH "
                                                         "(apt-get install chromium; .ci/run does when it can)")

# appended to a copy of the page (the page itself has no script): marks each image once the page has loaded
PROBE = ('<script>window.addEventListener("load", () => { for (const i of document.images) '
         'i.setAttribute("data-loaded", i.complete && i.naturalWidth > 0 ? "yes" : "no"); '
         'document.body.setAttribute("data-probed", "yes"); });</script>')
WINDOW = "--window-size=1280,4000"


def chromium(tmp: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
               f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def console_messages(stderr: str) -> list[str]:
    """What the page said on the console (Chromium logs each message as ':CONSOLE(line)] "text"'), and
    uncaught errors. The page has no script, so any message at all is a failure: a blocked or missing resource."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]|Uncaught", line)]


def render(tmp: Path, page: Path) -> tuple[str, list[str]]:
    """The DOM after the load event (with the probe) and the console messages."""
    probed = tmp / f"{page.stem}.probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = chromium(tmp, probed, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'data-probed="yes"' in result.stdout, "the page's load event never fired"
    return result.stdout, console_messages(result.stderr)


def screenshot(tmp: Path, page: Path) -> Path:
    shot = tmp / f"{page.stem}.png"
    result = chromium(tmp, page, f"--screenshot={shot}", WINDOW, "--hide-scrollbars")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot of {page.name}: {shot}")
    return shot


def images(dom: str) -> list[str]:
    return re.findall(r"<img\b[^>]*>", dom)


def test_the_checks_see_an_image_that_does_not_decode_and_a_console_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                    '<script>console.error("planted error")</script></body></html>')
    dom, console = render(tmp_path, page)
    assert [re.search(r'data-loaded="(\w+)"', i).group(1) for i in images(dom)] == ["no"]
    assert any("planted error" in line for line in console)


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Two real `synthrl run cql` ensembles (CQL and CQL+MDP, 60 updates, an evaluation every 20)."""
    from synthrl.data import make_dataset
    from synthrl.envs.policies import RandomPolicy

    root = tmp_path_factory.mktemp("runs")
    data = make_dataset("hopper", RandomPolicy(3, seed=0), 300, root / "hopper-random-report.hdf5", seed=0)
    common = ["--dataset", str(data), "--seeds", "0,1", "--updates", "60", "--eval-every", "20", "--eval-episodes",
              "1", "--batch-size", "16", "--hidden", "32", "--device", "cpu", "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:  # module scope: keep off the user's store, evaluate in-process
        mp.setenv("SYNTHRL_STORE", str(root / "store"))
        mp.setenv("SYNTHRL_EVAL_WORKERS", "0")
        assert main(["run", "cql", "--out", str(root / "results" / "cql"), *common]) == 0
        assert main(["run", "cql", "--out", str(root / "results" / "cql-mdp"), *common, "--pretrain", "mdp",
                     "--pretrain-updates", "20", "--trajectories", "10", "--length", "50"]) == 0
    return root / "results"


def test_the_report_of_real_run_directories_renders_with_tables_images_and_verdicts(real_runs, tmp_path, capsys):
    page = tmp_path / "report.html"
    assert main(["report", "--results", str(real_runs), "--out", str(page), "--paper"]) == 0
    dom, console = render(tmp_path, page)
    assert console == []
    assert dom.count('<table class="synthrl-table"') >= 3  # the aggregate table, the final and the best tables
    assert "CQL+MDP" in dom and "hopper-random-report" in dom
    assert '<table class="verdicts">' in dom and re.search(r'<tr class="verdict-[a-z-]+"', dom)
    found = images(dom)
    assert len(found) >= 4 and all('data-loaded="yes"' in i for i in found), found
    assert "eager (cpu)" in dom and "Hopper-v4" in dom  # provenance from the runs' params.json
    with capsys.disabled():
        screenshot(tmp_path, page)


def test_a_paper_scale_csv_report_renders_beside_the_paper(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_report import make_long_csv

    csv = tmp_path / "long.csv"
    make_long_csv(csv, evals=12, seeds=3)
    page = tmp_path / "paper-scale.html"
    assert main(["report", "--csv", str(csv), "--out", str(page), "--paper", "--title", "Table 6, synthetic"]) == 0
    dom, console = render(tmp_path, page)
    assert console == []
    assert "Table 6 (final)" in dom and "Table 23 (best)" in dom and "S=A=1e5 (paper)" in dom
    assert dom.count('class="verdict-') >= 5
    found = images(dom)
    assert len(found) >= 5 and all('data-loaded="yes"' in i for i in found)
    with capsys.disabled():
        screenshot(tmp_path, page)
