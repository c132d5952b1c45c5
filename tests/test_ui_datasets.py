"""The dataset index, filter suggestions, case-insensitive dataset filters, the "no runs" state
and "what changed since the last good run", in Chromium against one live server, plus the
JSON API behind them.

Jobs (one server for the module): two Spark-kind runs of `Sales.Orders` (the same uploaded
script: one succeeds with `spark.sql.shuffle.partitions=4`, one fails with `=8`) and one
Python run of `ml.model`. The Spark runs start no SparkSession: spark-submit runs the script.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.server import REPO, ChidoriServer
from tests.ui_data_support import chromium, serious_violations, signed_in

pytestmark = pytest.mark.spark
LEVELS = REPO / "tests" / "jobs" / "levels.py"


@dataclass
class Runs:
    good: dict[str, Any]
    bad: dict[str, Any]
    model: dict[str, Any]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChidoriServer]:
    with ChidoriServer(tmp_path_factory.mktemp("ui-datasets")) as running:
        yield running


@pytest.fixture(scope="module")
def runs(ui_server: ChidoriServer) -> Runs:
    with ui_server.client() as client, LEVELS.open("rb") as script:
        uploaded = client.post("/api/v1/uploads", files={"file": ("levels.py", script)})
    assert uploaded.status_code == 201, uploaded.text
    uri = uploaded.json()["uri"]
    orders = {"schema": "Sales", "table": "Orders", "kind": "spark", "application": uri}
    good = ui_server.submit(name="orders-ok", args=["ok"], conf={CONF: "4"}, **orders)
    done_good = ui_server.wait(good["id"])  # the good run first: it is the baseline
    bad = ui_server.submit(name="orders-bad", args=["fail"], conf={CONF: "8"}, **orders)
    model = ui_server.submit(
        kind="python", application="examples/train.py", name="train", schema="ml", table="model"
    )
    done = [done_good, ui_server.wait(bad["id"]), ui_server.wait(model["id"])]
    assert [j["state"] for j in done] == ["SUCCEEDED", "FAILED", "SUCCEEDED"], done
    return Runs(*done)


CONF = "spark.sql.shuffle.partitions"


@pytest.fixture(scope="module")
def page(ui_server: ChidoriServer, runs: Runs) -> Iterator[Page]:
    with chromium() as browser, signed_in(browser, ui_server) as signed:
        yield signed


@pytest.fixture(scope="module")
def browser_only() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def test_the_index_lists_datasets_with_last_run_and_freshness(page: Page, runs: Runs) -> None:
    page.goto("/ui")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Datasets").click()
    page.wait_for_url("**/ui/datasets")
    rows = page.locator("#datasets-table tbody tr")
    expect(rows).to_have_count(2)
    # Most recently run first: ml.model was submitted last.
    assert rows.nth(0).get_attribute("data-dataset") == "ml.model"
    orders = page.locator('tr[data-dataset="Sales.Orders"]')
    expect(orders.locator("td").nth(1)).to_contain_text(f"#{runs.bad['id']}")
    expect(orders.locator("td").nth(1)).to_contain_text("FAILED")
    expect(orders.locator("td").nth(2)).to_contain_text(f"#{runs.good['id']}")
    expect(orders.locator(".freshness")).to_have_text(
        re.compile(r"^\d+(\.\d)? s ago$|^\d+ m \d\d s ago$")
    )
    strip = orders.locator("ul.strip a")
    expect(strip).to_have_count(2)
    assert strip.nth(0).get_attribute("title") == f"#{runs.bad['id']} FAILED"
    assert strip.nth(1).get_attribute("title") == f"#{runs.good['id']} SUCCEEDED"
    p50 = orders.locator("td").nth(5).inner_text()
    assert p50.endswith(" s") and p50 != "—", p50
    orders.get_by_role("link", name="Sales.Orders").click()
    page.wait_for_url("**/ui/history?schema=Sales&table=Orders")
    expect(page.locator("#history-chart")).to_be_visible()
    assert serious_violations(page) == []
    page.goto("/ui/datasets?q=ORDERS")  # the filter ignores case
    expect(page.locator("#datasets-table tbody tr")).to_have_count(1)
    assert serious_violations(page) == []


def test_filters_suggest_existing_values_and_ignore_case(page: Page, runs: Runs) -> None:
    page.goto("/ui")
    if page.locator("details#filters:not([open])").count():
        page.locator("#filters summary").click()  # the filter bar folds
    schema = page.locator("#f-schema")
    schema.click()
    schema.press_sequentially("sa")
    options = page.locator("#f-schema-suggestions option")
    expect(options).to_have_count(1)
    assert options.first.get_attribute("value") == "Sales"
    schema.fill("sales")  # tables of the schema given (in any case)
    page.locator("#f-table").click()
    page.locator("#f-table").press_sequentially("o")
    expect(page.locator("#f-table-suggestions option")).to_have_count(1)
    assert page.locator("#f-table-suggestions option").first.get_attribute("value") == "Orders"
    schema.fill("sales")
    page.locator("#f-table").fill("ORDERS")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**schema=sales**")
    table = page.locator("#jobs-table")
    expect(table).to_contain_text("orders-ok")
    expect(table).to_contain_text("orders-bad")
    expect(table).not_to_contain_text("train")
    page.goto("/ui/history?schema=SALES&table=orders")
    expect(page.locator("#view-table")).to_be_visible()
    page.locator("#view-table").click()
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)
    page.goto("/ui/history")
    page.locator("#h-schema").click()
    page.locator("#h-schema").press_sequentially("M")
    expect(page.locator("#h-schema-suggestions option")).to_have_count(1)
    assert page.locator("#h-schema-suggestions option").first.get_attribute("value") == "ml"


def test_an_unknown_dataset_says_no_runs(page: Page, runs: Runs) -> None:
    page.goto("/ui/history?schema=nothing&table=here")
    expect(page.locator("#no-runs")).to_contain_text("No runs")
    expect(page.locator("#no-runs")).to_contain_text("nothing.here")
    expect(page.locator("canvas")).to_have_count(0)
    assert serious_violations(page) == []


def test_a_failed_run_shows_what_changed_since_the_last_good_run(page: Page, runs: Runs) -> None:
    page.goto(f"/ui/jobs/{runs.bad['id']}")
    section = page.locator("#run-changes")
    expect(section.locator("#changes-baseline")).to_have_text(f"#{runs.good['id']} orders-ok")
    conf = section.locator("#changes-conf tbody tr")
    expect(conf).to_have_count(1)
    expect(conf.first).to_contain_text(CONF)
    assert conf.first.locator("td").all_inner_texts() == ["4", "8"]
    spec = section.locator("#changes-spec tbody tr")
    expect(spec).to_have_count(1)
    expect(spec.first).to_contain_text('["fail"]')
    duration = section.locator("#changes-timings tbody tr").first
    expect(duration.locator("th")).to_have_text("Duration")
    expect(duration.locator("td").nth(2)).to_have_text(re.compile(r"\u00d7$"))
    expect(section.locator("#changes-error")).to_contain_text("ERROR Step: step 31 went wrong")
    section.locator("#changes-error-link").click()  # into the log viewer
    expect(page.locator("#L32")).to_have_class(re.compile(r"\btarget\b"))
    assert serious_violations(page) == []
    page.goto(f"/ui/jobs/{runs.good['id']}")  # only failed runs show it
    expect(page.locator("#log-text .line").first).to_be_attached()
    expect(page.locator("#run-changes")).to_have_count(0)


def test_the_changes_api(ui_server: ChidoriServer, runs: Runs) -> None:
    with ui_server.client() as client:
        answer = client.get(f"/api/v1/jobs/{runs.bad['id']}/changes")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["baseline"]["id"] == runs.good["id"]
        assert body["conf"] == [{"key": CONF, "before": "4", "after": "8"}]
        assert body["spec"] == [{"key": "args", "before": ["ok"], "after": ["fail"]}]
        duration = body["timings"][0]
        assert duration["name"] == "duration"
        assert duration["seconds"] == pytest.approx(runs.bad["duration_seconds"], rel=1e-3)
        assert duration["p50_seconds"] == pytest.approx(runs.good["duration_seconds"], rel=1e-3)
        assert duration["ratio"] == pytest.approx(duration["seconds"] / duration["p50_seconds"])
        assert body["first_error"] == {
            "line": 32,
            "text": "26/12/07 10:01:00 ERROR Step: step 31 went wrong needle",
        }
        good = client.get(f"/api/v1/jobs/{runs.good['id']}/changes").json()
        assert good["baseline"] is None  # no success before it
        assert good["first_error"]["line"] == 32  # the script logs an ERROR line either way
        model = client.get(f"/api/v1/jobs/{runs.model['id']}/changes").json()
        assert model["baseline"] is None and model["conf"] == [] and model["spec"] == []
        missing = client.get("/api/v1/jobs/999999/changes")
        assert missing.status_code == 404
        bad_id = client.get("/api/v1/jobs/0/changes")
        assert bad_id.status_code == 422
        assert bad_id.json()["error"]["fields"][0]["field"] == "job_id"


def test_the_dataset_index_and_suggestions_api(ui_server: ChidoriServer, runs: Runs) -> None:
    with ui_server.client() as client:
        items = client.get("/api/v1/datasets").json()["items"]
        assert [(d["schema"], d["table"]) for d in items] == [("ml", "model"), ("Sales", "Orders")]
        orders = items[1]
        assert orders["last_run"]["id"] == runs.bad["id"]
        assert orders["last_success"]["id"] == runs.good["id"]
        assert [r["state"] for r in orders["recent"]] == ["FAILED", "SUCCEEDED"]
        assert orders["p50_seconds"] == pytest.approx(runs.good["duration_seconds"], rel=1e-3)
        assert orders["succeeded_runs"] == 1
        assert 0 <= orders["freshness_seconds"] < 600
        only = client.get("/api/v1/datasets", params={"q": "sales.ord"}).json()["items"]
        assert [d["table"] for d in only] == ["Orders"]
        suggested = client.get(
            "/api/v1/datasets/suggestions", params={"field": "table", "prefix": "", "schema": "ML"}
        ).json()
        assert suggested == {"field": "table", "values": ["model"]}
        users = client.get("/api/v1/datasets/suggestions", params={"field": "user"}).json()
        assert users["values"] == ["admin"]
        clusters = client.get("/api/v1/datasets/suggestions", params={"field": "cluster"}).json()
        assert clusters["values"] == ["local"]
        for params, field in (
            ({"field": "colour"}, "field"),
            ({}, "field"),
            ({"field": "schema", "prefix": "x" * 300}, "prefix"),
        ):
            refused = client.get("/api/v1/datasets/suggestions", params=params)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["fields"][0]["field"] == field
        refused = client.get("/api/v1/datasets", params={"limit": 0})
        assert refused.status_code == 422
        assert refused.json()["error"]["fields"][0]["field"] == "limit"
        # The jobs list and history filters ignore case too.
        listed = client.get("/api/v1/jobs", params={"schema": "SALES", "table": "orders"}).json()
        assert {j["id"] for j in listed["items"]} == {runs.good["id"], runs.bad["id"]}
        history = client.get("/api/v1/history", params={"schema": "sales", "table": "ORDERS"})
        assert [r["id"] for r in history.json()["items"]] == [runs.bad["id"], runs.good["id"]]
