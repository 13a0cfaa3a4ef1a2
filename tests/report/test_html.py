"""The HTML report in a real headless browser (Chromium), and the PNG/SVG images."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qcgpj_async.report import RunRecord, TaskRecord, parse_allocation, summarize
from qcgpj_async.report._html import render_html

TIMEOUT = 120
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium: apt-get install chromium (scripts/test does, as root)",
)


def browser(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # root in a container has no user namespaces for it
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1800",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to its console (errors, uncaught exceptions)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished batch with a failed, an omitted and successful tasks on two nodes."""
    tmp = tmp_path_factory.mktemp("html")
    reqs = [
        {
            "request": "submit",
            "jobs": [
                {
                    "name": "ok",
                    "execution": {"script": "sleep 0.2"},
                    "resources": {"numCores": {"exact": 2}},
                },
                {"name": "bad", "execution": {"script": "echo no >&2; exit 3"}},
                {
                    "name": "dep",
                    "execution": {"script": "true"},
                    "dependencies": {"after": ["bad"]},
                },
                {
                    "name": "it",
                    "iteration": {"stop": 6},
                    "execution": {"script": "sleep 0.1; test ${it} != 4"},
                },
            ],
        }
    ]
    (tmp / "r.json").write_text(json.dumps(reqs))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qcgpj_async",
            "--file-path",
            "r.json",
            "--wd",
            "wd",
            "--nodes",
            "n1:2,n2:2",
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    return tmp


def make_html(run_dir: Path, name: str = "report.html") -> Path:
    out = run_dir / name
    proc = subprocess.run(
        [sys.executable, "-m", "qcgpj_async", "report", "wd", "--html", str(out)],
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    return out


def test_html_is_self_contained(run_dir: Path) -> None:
    text = make_html(run_dir).read_text()
    # nothing to fetch: no external script, style, image or font
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text
    assert text.count("<script") == 2  # the data and the code, both inline
    assert 'id="failures"' in text and "bad</td>" in text


@needs_chromium
def test_html_renders_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    page = make_html(run_dir).as_uri()
    dom = browser("--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    # the script ran to its end and every chart has ink on it
    assert re.search(r'data-rendered="(\d+)"', body.group(1)).group(1) == "9"  # type: ignore[union-attr]
    drawn = re.search(r'data-drawn="([^"]*)"', body.group(1))
    assert drawn and drawn.group(1).split() == ["gantt", "busy", "queue", "hist"]
    table = dom.stdout[dom.stdout.index('id="failures"') :]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td>", table)
    assert sorted(rows) == [("bad", "FAILED"), ("dep", "OMITTED"), ("it:4", "FAILED")]
    shot = tmp_path / "report.png"
    res = browser(f"--screenshot={shot}", page)
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@needs_chromium
def test_a_script_error_would_be_seen(tmp_path: Path) -> None:
    # the console check above can fail: a page with an error shows up in it
    page = tmp_path / "e.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    res = browser("--dump-dom", page.as_uri())
    assert any("undefinedFunction" in m for m in console_messages(res.stderr))


def test_html_of_a_constructed_run_escapes_names() -> None:
    t = TaskRecord(
        "<b>x</b>:0",
        "<b>x</b>",
        0,
        "FAILED",
        0,
        0,
        0,
        1,
        parse_allocation("n[0]"),
        1,
        "</script><script>alert(1)",
    )
    run = RunRecord("p", nodes={"n": 1}, opened=0, closed=2, tasks=[t], now=2)
    text = render_html(run, summarize(run))
    assert "</script><script>alert" not in text  # not in the data, not in the table
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in text


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_images(run_dir: Path, fmt: str) -> None:
    pytest.importorskip("matplotlib", reason="--png/--svg need the [report] extra (matplotlib)")
    out = run_dir / f"report.{fmt}"
    proc = subprocess.run(
        [sys.executable, "-m", "qcgpj_async", "report", "wd", f"--{fmt}", str(out)],
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    if fmt == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert b"<svg" in data[:1000] and b"Tasks on cores" in data


def test_occupancy_grid_known_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from qcgpj_async.report import _plotdata

    monkeypatch.setattr(_plotdata, "GRID_BINS", 2)
    monkeypatch.setattr(_plotdata, "GRID_ROWS", 1)
    a = TaskRecord("a", "a", None, "SUCCEED", 0, 0, 0, 5, parse_allocation("n[0]"))
    b = TaskRecord("b", "b", None, "SUCCEED", 0, 0, 2.5, 10, parse_allocation("n[1]"))
    # two cores in one group, bins of 5 s: (5 + 2.5) / 10 and 5 / 10
    grid, per = _plotdata.occupancy([a, b], [0, 1], [0, 1], 2, 0, 10)
    assert per == 2 and grid == [[0.75, 0.5]]


def many_tasks_run(n: int) -> RunRecord:
    tasks = [
        TaskRecord(
            f"t:{i}",
            "t",
            i,
            "SUCCEED" if i % 7 else "FAILED",
            0,
            i * 0.01,
            i * 0.01,
            i * 0.01 + 0.5,
            parse_allocation(f"n{i % 4}[{i % 8}]"),
            0 if i % 7 else 1,
        )
        for i in range(n)
    ]
    return RunRecord(
        "p", nodes={f"n{k}": 8 for k in range(4)}, opened=0, closed=n * 0.01 + 1, tasks=tasks, now=0
    )


@needs_chromium
def test_aggregated_gantt_renders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from qcgpj_async.report import _plotdata

    monkeypatch.setattr(_plotdata, "SEG_LIMIT", 100)  # 500 bars: aggregated
    run = many_tasks_run(500)
    page = tmp_path / "grid.html"
    page.write_text(render_html(run, summarize(run)))
    assert '"grid":[[' in page.read_text()
    dom = browser("--dump-dom", page.as_uri())
    assert console_messages(dom.stderr) == []
    drawn = re.search(r'data-drawn="([^"]*)"', dom.stdout)
    assert drawn and drawn.group(1).split() == ["gantt", "busy", "queue", "hist"]
    assert dom.stdout.count("<tr><td>t:") == 72  # every 7th of 500 failed


def test_aggregated_png(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--png/--svg need the [report] extra (matplotlib)")
    from qcgpj_async.report import _plotdata
    from qcgpj_async.report._plots import write_image

    monkeypatch.setattr(_plotdata, "SEG_LIMIT", 100)
    run = many_tasks_run(500)
    write_image(run, summarize(run), str(tmp_path / "g.svg"), "svg")
    svg = (tmp_path / "g.svg").read_text()
    assert "<image" in svg  # the grid, drawn as one image instead of 500 bars
