"""The explorer pages in a real browser: Debian's Chromium, driven by Playwright, over the service
on a loopback port. One published workspace for the module: a copy of the toy pipeline's feature
repo, an MLflow store of its own with two registered tables, the first one live.

A missing `chromium` fails the tests, never skips them: `make test` installs it (`make chromium`).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest

from pipelines import feature_store, online, registry
from pipelines.config import load_config
from pipelines.explorer import MODEL_NAME, TABLE_FILE, explorer_settings
from pipelines.serve import create_app
from pipelines.workspace import feature_repo_dir
from tests.pipelines.test_serve import related_table_from, serving

TOP_N = 5
MAX_N = 8
HOSTILE = "<script>alert('attribute')</script>"
HOSTILE_REASON = "<img src=x onerror=alert('reason')>"
PAGE_TIMEOUT_MS = 15_000


def with_contributions(table: pd.DataFrame) -> pd.DataFrame:
    """Per-objective contributions that add up to the score, one of them subtracting."""
    return table.assign(
        contribution_click=table["score"] * 0.7,
        contribution_like=table["score"] * 0.4,
        contribution_dislike=table["score"] * -0.1,
    )


def reshuffled(pairs: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Another table from the same pairs: similarities jittered, so that some lists change."""
    noise = np.random.default_rng(seed).uniform(0, 0.3, len(pairs))
    return related_table_from(
        pairs.assign(content_similarity=pairs["content_similarity"] + noise), TOP_N
    )


def register(client, experiment: str, folder: Path, table: pd.DataFrame, tags: dict) -> str:
    """A related-videos version whose files are `table` as TABLE_FILE, from a run of its own."""
    folder.mkdir(parents=True)
    table.to_parquet(folder / TABLE_FILE, index=False)
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    tags = {**tags, "table_digest": registry.file_digest(folder / TABLE_FILE)}
    return str(
        client.create_model_version(
            MODEL_NAME, str(folder), run_id=run.info.run_id, tags=tags
        ).version
    )


def wipe_related_rows(repo: Path) -> None:
    """The copied online store may hold rows of versions other tests published: version numbers
    must not repeat within a repo, and this module's MLflow store starts again at 1."""
    with sqlite3.connect(repo / "data" / "online_store.db") as connection:
        names = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for name in names:
            if any(f"related_videos_{color}" in name for color in feature_store.RELATED_COLORS):
                connection.execute(f'DELETE FROM "{name}"')


@pytest.fixture(scope="module")
def published_workspace(toy_pipeline, tmp_path_factory) -> Iterator[SimpleNamespace]:
    import mlflow

    root = tmp_path_factory.mktemp("explorer")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = load_config(
        overrides=[f"paths.workspace={root}", "synthetic.size=toy", f"mlflow.tracking_uri={uri}"]
    )
    repo = feature_repo_dir(config)
    shutil.copytree(feature_repo_dir(toy_pipeline.config), repo)
    (online.related_folder(repo) / online.LIVE_FILE).unlink(missing_ok=True)
    wipe_related_rows(repo)

    pairs = toy_pipeline.candidates.pairs
    first = with_contributions(related_table_from(pairs, TOP_N))
    hostile_video = str(first["video_id"].iloc[0])
    first.loc[first["video_id"] == hostile_video, "reason"] = HOSTILE_REASON
    second = with_contributions(reshuffled(pairs, seed=5))
    dropped = str(second["video_id"].iloc[-1])  # a video only the first table holds
    second = second[second["video_id"] != dropped]

    # A hostile attribute value, as a data set could carry one.
    source = repo / "data" / "sources" / feature_store.SOURCE_FILES["video_attributes"]
    attributes = pd.read_parquet(source)
    row = attributes.index[attributes["video_id"] == hostile_video][0]
    attributes.at[row, "tags"] = np.array([*attributes.at[row, "tags"], HOSTILE], dtype=object)
    attributes.to_parquet(source, index=False)

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("explorer", artifact_location=(root / "art").as_uri())
    client.create_registered_model(MODEL_NAME)
    metrics = {"recall_click": 0.30, "dislike_rate": 0.010}
    versions = [
        register(
            client,
            experiment,
            root / f"table{i}",
            table,
            {f"offline_{k}": str(v * (1 + 0.1 * i)) for k, v in metrics.items()},
        )
        for i, table in enumerate((first, second))
    ]
    client.set_registered_model_alias(MODEL_NAME, "champion", versions[0])
    client.set_registered_model_alias(MODEL_NAME, "challenger", versions[1])
    live = online.publish_table(repo, first, versions[0])
    report = root / "reports" / "synthetic" / "evaluation" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<!doctype html><title>Offline evaluation</title><h1>Offline evaluation</h1>")

    app = create_app(repo, max_n=MAX_N, default_n=TOP_N, explorer=explorer_settings(config))
    with serving(app) as url:
        yield SimpleNamespace(
            url=url,
            root=root,
            tables=dict(zip(versions, (first, second), strict=True)),
            versions=versions,
            live=live,
            hostile_video=hostile_video,
            dropped=dropped,
            attributes=attributes,
        )


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "no chromium on PATH: `make chromium` installs Debian's"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(PAGE_TIMEOUT_MS)
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.dialogs = dialogs
    yield opened
    context.close()


def mean_overlap(a: pd.DataFrame, b: pd.DataFrame, n: int) -> float:
    """overlap@n averaged over the videos both tables hold, with plain sets."""
    lists_a = a[a["rank"] <= n].groupby("video_id")["related_video_id"].agg(set)
    lists_b = b[b["rank"] <= n].groupby("video_id")["related_video_id"].agg(set)
    both = lists_a.index.intersection(lists_b.index)
    return float(
        np.mean(
            [len(lists_a[v] & lists_b[v]) / max(len(lists_a[v]), len(lists_b[v])) for v in both]
        )
    )


def test_search_a_video_read_its_list_and_compare_two_versions(published_workspace, page, tmp_path):
    ws = published_workspace
    live_version, other = ws.versions
    table = ws.tables[live_version]
    video_id = str(table.groupby("video_id").size().loc[lambda s: s == TOP_N].index[1])
    value = ws.attributes.set_index("video_id").loc[video_id, "tags"][0]

    page.goto(ws.url + "/")
    assert f"v{live_version}" in page.inner_text("#live")
    assert (
        page.get_attribute("#live a[href^='/reports/']", "href")
        == "/reports/evaluation/report.html"
    )
    assert "/#/experiments/" in page.get_attribute("#live a[href^='http']", "href")
    page.screenshot(path=tmp_path / "index.png")

    page.fill("#q", value)
    page.click("button[type=submit]")
    page.wait_for_selector("#results")
    assert value in page.inner_text("#results")
    page.click(f"#results a[href='/videos/{video_id}']")
    page.wait_for_selector("#related")

    rows = page.locator("#related tr:has(td)")
    expected = table[table["video_id"] == video_id].sort_values("rank")
    assert rows.count() == len(expected) == TOP_N
    first_row = rows.nth(0)
    assert (
        first_row.locator("td").nth(1).locator("a").inner_text()
        == expected["related_video_id"].iloc[0]
    )
    assert first_row.locator("td.reason").inner_text() == expected["reason"].iloc[0]
    assert first_row.locator(".bar-row").count() == 3  # click, dislike, like
    assert first_row.locator(".bar.negative").count() == 1  # dislike subtracts
    assert "tags=" in first_row.locator("td").nth(4).inner_text()  # the same source pairs share
    page.screenshot(path=tmp_path / "video.png", full_page=True)

    page.select_option("#compare-b", other)
    page.click("#compare-with button")
    page.wait_for_selector("#overlap")
    asked = parse_qs(urlsplit(page.url).query)
    assert asked == {"a": [live_version], "b": [other], "video": [video_id]}
    shown = float(page.inner_text("#overlap"))
    assert shown == pytest.approx(mean_overlap(table, ws.tables[other], TOP_N), abs=5e-4)
    assert 0 < shown < 1
    assert page.locator("svg.histogram rect").count() == 10  # serving.explorer.histogram_bins
    assert page.locator("#this-video").count() == 1  # the video we came from, listed first
    assert "recall_click" in page.inner_text("#metrics")
    assert f"only in v{live_version}" in page.inner_text("#videos")  # the dropped video
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
    assert page.dialogs == []
    for name in ("index", "video", "compare"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0


def test_hostile_attribute_values_and_reasons_are_shown_as_text(
    published_workspace, page, tmp_path
):
    ws = published_workspace
    page.goto(f"{ws.url}/videos/{ws.hostile_video}")
    page.wait_for_selector("#attributes")
    assert HOSTILE in page.inner_text("#attributes")
    assert page.locator("#related td.reason").first.inner_text() == HOSTILE_REASON
    page.goto(ws.url + "/")
    page.fill("#q", "<script>")
    page.click("button[type=submit]")
    page.wait_for_selector("#results")
    assert f"tags={HOSTILE}" in page.inner_text("#results")
    page.screenshot(path=tmp_path / "hostile.png")
    assert page.dialogs == []  # nothing the data carried ran
    body = httpx.get(f"{ws.url}/videos/{ws.hostile_video}").text
    assert HOSTILE not in body and "&lt;script&gt;" in body
    assert HOSTILE_REASON not in body


def test_unknown_ids_and_versions_are_404_pages_without_paths(published_workspace):
    ws = published_workspace
    ok = [httpx.get(ws.url + path) for path in ("/", f"/videos/{ws.hostile_video}", "/?q=a")]
    assert all(response.status_code == 200 for response in ok)
    missing = {
        "/videos/v-not-in-the-catalog": "Unknown video",
        "/videos/%3Cscript%3Ealert(1)": "Unknown video",
        "/videos/%3Cscript%3Ealert(1)%3C%2Fscript%3E": "Not found",  # %2F: a path of its own
        f"/compare?a={ws.versions[0]}&b=999": "Unknown version",
        "/compare?a=x&b=%3Cb%3E": "Unknown version",
        "/reports/evaluation/mlflow.db": "No report",
        "/reports/evaluation/..%2F..%2Fmlflow.db": "Not found",
        "/no-such-page": "Not found",
    }
    for path, title in missing.items():
        response = httpx.get(ws.url + path)
        assert response.status_code == 404, path
        assert title in response.text, path
        assert "Traceback" not in response.text and "<b>" not in response.text
        assert "<script" not in response.text  # the pages carry no script at all
    escaped = httpx.get(ws.url + "/videos/%3Cscript%3Ealert(1)").text
    assert "&lt;script&gt;alert(1)" in escaped and "<script>alert" not in escaped
    api = httpx.get(ws.url + "/related/v-not-in-the-catalog")
    assert api.status_code == 404 and "not in the live related table" in api.json()["detail"]
    bad_n = httpx.get(f"{ws.url}/compare?a={ws.versions[0]}&b={ws.versions[1]}&n=0")
    assert bad_n.status_code == 400 and "n must be 1.." in bad_n.text
    for response in [*ok, httpx.get(f"{ws.url}/compare?a=1&b=2"), bad_n]:
        assert str(ws.root) not in response.text and "/tmp/" not in response.text
    report = httpx.get(ws.url + "/reports/evaluation/report.html")
    assert report.status_code == 200 and "Offline evaluation" in report.text


def test_the_pages_say_when_nothing_is_published(tmp_path):
    """No pointer, no MLflow store: the pages answer, and create no store."""
    config = load_config(overrides=[f"paths.workspace={tmp_path}"])
    settings = explorer_settings(config)
    app = create_app(feature_repo_dir(config), max_n=MAX_N, default_n=TOP_N, explorer=settings)
    with serving(app) as url:
        index = httpx.get(url + "/")
        assert index.status_code == 200
        assert "no related table is published yet" in index.text
        assert "No related-videos version is registered yet" in index.text
        assert httpx.get(url + "/videos/v000001").status_code == 404
        assert httpx.get(url + "/compare?a=1&b=2").status_code == 404
    assert not (tmp_path / "mlflow.db").exists()
    assert re.search(r"/tmp/|" + re.escape(str(tmp_path)), index.text) is None
