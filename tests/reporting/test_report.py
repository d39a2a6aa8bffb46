"""The run report: one self-contained HTML page and a Markdown summary, built from one tiny compare run."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atso import api
from atso.cli import main
from atso.config import config_from_dict
from atso.errors import AtsoError
from atso.reporting.cases import GREEN, RED, YELLOW, CaseChange, error_overlay
from atso.reporting.render import render_markdown
from atso.reporting.report import _case_table
from atso.running.run_dir import RunDirectory

from conftest import tiny_config, write_dataset

STRATEGIES = ["supervised", "self-learning", "stso", "atso"]
BLACK = (0, 0, 0)


class Page(HTMLParser):
    """Tables (class -> rows of cell texts), image sources and links of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self._table = (attrs.get("class") or "").split(" ")[0]  # "cases wide" is a cases table
            self.tables.setdefault(self._table, [])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny compare run (T=1); api.run writes its report at the end."""
    root = tmp_path_factory.mktemp("report")
    dataset = write_dataset(root / "shapes", {"train": 12, "val": 4})
    out = root / "run"
    result = api.run(config_from_dict(tiny_config(dataset)), out, compare=True, log=lambda line: None)
    assert result["report"] == str(out / "report" / "index.html")
    return out


@pytest.fixture(scope="module")
def page(run) -> Page:
    parser = Page()
    parser.feed((run / "report" / "index.html").read_text())
    parser.close()
    return parser


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_page_holds_every_table(page):
    for table in ("splits", "generation", "diagnostics", "classwise", "cases", "time-totals", "time-jobs"):
        assert page.tables.get(table), table
    assert "details" in page.tags and "script" not in page.tags  # config collapsible, no JavaScript


def test_split_sizes_and_list_files(page, run):
    rows = {row[0]: row for row in page.tables["splits"]}
    assert rows["labeled S"][2] == "4" and rows["test E"][2] == "4"
    assert rows["reference fold R1"][2] == "4" and rows["reference fold R2"][2] == "4"
    assert rows["test E"][1] == str((run / "splits" / "test.txt").resolve())
    for link in page.links:
        assert (run / "report" / link).resolve().is_file(), link


def test_generation_table_equals_metrics_jsonl(page, run):
    rows = {row[0]: row[1:] for row in page.tables["generation"]}
    assert set(rows) == {"G0", "G1", "final"}
    for record in records(run):
        label = "final" if record["generation"] == "final" else f"G{record['generation']}"
        targets = STRATEGIES if record["strategy"] == "shared" else [record["strategy"]]
        for strategy in targets:
            column = 2 * STRATEGIES.index(strategy)
            for offset, key in ((0, "reference_miou"), (1, "test_miou")):
                cell = rows[label][column + offset]
                if record.get(key) is None:
                    assert cell == "-"
                else:
                    assert float(cell) == round(100 * record[key], 2), (label, strategy, key)


def test_classwise_table_has_a_row_per_model_and_a_column_per_class(page, run):
    rows = {row[0]: row[1:] for row in page.tables["classwise"]}
    m0 = records(run)[0]["test"]["g0/m0"]
    assert [float(v) for v in rows["M0 (supervised, G0)"]] == [
        round(100 * m0["per_class_iou"][name], 2) for name in ("background", "square", "bar")
    ] + [round(100 * m0["miou"], 2)]
    for label in ("self-learning G1", "stso G1", "atso G1 (mean of 2 students)", "atso G1 ensemble", "atso final"):
        assert len(rows[label]) == 4, label


# Made-up per-image scores, so the tiny run's report draws cases: val_000 gains most, val_001 next (but it
# is val_000's neighbour), val_003 gains, val_002 loses.
BEFORE_SCORES = {"val_000": 0.5, "val_001": 0.5, "val_002": 0.5, "val_003": 0.5}
AFTER_SCORES = {"val_000": 0.7, "val_001": 0.65, "val_002": 0.4, "val_003": 0.6}


@pytest.fixture(scope="module")
def drawn(run, tmp_path_factory) -> tuple[Path, Page]:
    """The tiny run's report rebuilt with :data:`AFTER_SCORES` against :data:`BEFORE_SCORES`."""
    import atso.reporting.cases

    copy = shutil.copytree(run, tmp_path_factory.mktemp("drawn") / "run")

    def scores(predictor, samples, groups, modality):
        return {group: BEFORE_SCORES if group == atso.reporting.cases.BEFORE else AFTER_SCORES for group in groups}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(atso.reporting.cases, "score_cases", scores)
        api.build_report(copy, log=lambda line: None)
    parser = Page()
    parser.feed((copy / "report" / "index.html").read_text())
    parser.close()
    return copy, parser


def test_every_image_is_an_embedded_png(drawn):
    _, page = drawn
    # curves + the class legend + (image, truth, then classes and errors of M0 and final) x 3 cases x 3 strategies
    assert len(page.images) == 2 + 6 * 3 * 3
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert image.format == "PNG"
        image.verify()


def test_summary_md_links_images_that_exist(drawn):
    run, page = drawn
    text = (run / "report" / "summary.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "curves.png" in links and "class-colours.png" in links and len(links) == len(page.images)
    for link in links:
        assert Image.open(run / "report" / link).format == "PNG"
    assert "| G1 |" in text and "```yaml" in text


def test_cases_gain_or_lose_and_are_not_neighbours(drawn):
    _, page = drawn
    rows = page.tables["cases"]
    assert [row[0] for row in rows] == 3 * ["best: val_000 (+20.00)", "best: val_003 (+10.00)", "worst: val_002 (-10.00)"]
    for row in rows:
        assert len(row) == 7  # case, image, truth, M0 classes and errors, final classes and errors
        assert row[4] == "mIoU 50.00" and re.fullmatch(r"mIoU \d+\.\d\d", row[6])


def test_the_class_legend_is_shown_once_above_the_cases(drawn):
    run, _ = drawn
    html_text = (run / "report" / "index.html").read_text()
    assert html_text.count('alt="class colours"') == 1
    assert html_text.index('alt="class colours"') < html_text.index('<table class="cases wide">')
    summary = (run / "report" / "summary.md").read_text()
    assert summary.count("![class colours](class-colours.png)") == 1
    legend = Image.open(run / "report" / "class-colours.png")
    assert legend.format == "PNG" and (220, 40, 40) in {c for _, c in legend.convert("RGB").getcolors(1 << 16)}


def test_a_direction_without_a_case_says_so_instead_of_showing_one():
    names = ["image", "before_errors", "after_errors"]
    lost = CaseChange("vol_003", 0.8, 0.7, {name: np.zeros((4, 4, 3), np.uint8) for name in names})
    table = _case_table("atso", {"gained": [], "lost": [lost]}, names, "DSC", "volume")
    assert [row[0] for row in table.rows] == ["Case (DSC change)", "no test volume gained", "worst: vol_003 (-10.00)"]
    assert table.rows[0][1:] == ["Image", "M0", "atso final"] and table.css == "cases"
    assert "| no test volume gained |  |  |" in render_markdown("t", [table])


def test_wall_times_cover_every_job(page, run):
    manifest = json.loads((run / "manifest.json").read_text())
    rows = {row[0]: row for row in page.tables["time-jobs"]}
    assert set(rows) == set(manifest["jobs"])
    assert rows["g0/m0"][1:4] == ["train", "shared", "G0"] and rows["g0/m0"][4].endswith(" s")
    assert rows["atso/final/model"][3] == "final"
    assert [row[0] for row in page.tables["time-totals"]][1:5] == STRATEGIES


def test_without_matplotlib_the_report_says_how_to_get_curves(run, tmp_path, monkeypatch):
    copy = shutil.copytree(run, tmp_path / "run")
    shutil.rmtree(copy / "report")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    logged = []
    path = api.build_report(copy, cases=False, log=logged.append)
    text = path.read_text()
    assert "pip install atso[report]" in text and "pip install atso[report]" in logged[0]
    assert "curves.png" not in (copy / "report" / "summary.md").read_text()
    assert 'class="generation"' in text


def test_a_report_that_fails_to_draw_does_not_lose_the_run(run, tmp_path, monkeypatch):
    import atso.reporting.report

    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    copy = shutil.copytree(run, tmp_path / "run")
    monkeypatch.setattr(atso.reporting.report, "write_report", broken)
    logged = []
    config = RunDirectory(copy).load_config()
    result = api.run(config, copy, compare=True, log=logged.append)
    assert result["report"] is None and "G1" in result["table"]
    assert any("no ink" in line and f"atso report {copy}" in line for line in logged)


def test_report_command_rebuilds_and_refuses_a_non_run_dir(run, tmp_path, capsys):
    copy = shutil.copytree(run, tmp_path / "run")
    shutil.rmtree(copy / "report")
    assert main(["report", str(copy), "--no-cases", "--quiet"]) == 0
    assert (copy / "report" / "index.html").is_file() and (copy / "report" / "summary.md").is_file()
    not_a_run = tmp_path / "photos"
    not_a_run.mkdir()
    assert main(["report", str(not_a_run)]) == 2
    assert str(not_a_run) in capsys.readouterr().err
    with pytest.raises(AtsoError, match="not a run directory"):
        api.build_report(tmp_path / "missing")


@pytest.mark.parametrize(
    "background, expected",
    [
        (0, [YELLOW, RED, RED, GREEN, BLACK, BLACK]),  # with a background class: the paper's three colours
        (None, [YELLOW, RED, RED, RED, YELLOW, BLACK]),  # every class is foreground (CamVid): right or wrong
    ],
)
def test_error_overlay_colours(background, expected):
    truth = np.array([[1, 1, 2, 0, 0, 255]])
    prediction = np.array([[1, 0, 1, 2, 0, 2]])
    out = error_overlay(np.zeros((1, 6, 3), np.uint8), prediction, truth, background=background, alpha=1.0)
    assert [tuple(pixel) for pixel in out[0].tolist()] == expected
