"""The alerts in infra/ and the KQL in the runbook read what the app really logs.

A renamed log field or function would silently turn an alert into one that never fires, so these
tests tie the queries to the code: the customDimensions they read are fields the app writes, the
host message the poison alert matches is the one the host logs, and the heartbeat window covers
two schedule intervals for any interval.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from shared.ncrontab import parse_ncrontab
from shared.services.invoice_booking import InvoiceOutcome
from tests.infra.templates import (
    INFRA,
    ROOT,
    Evaluator,
    Template,
    custom_dimensions_used,
    duration_minutes,
    function_args,
    load,
    logged_fields,
)

RUNBOOK = ROOT / "docs" / "operations.md"
# Dimensions the Functions host or the OpenTelemetry exporter adds, not the app.
PLATFORM_FIELDS = {"faas.name"}


@pytest.fixture(scope="module")
def alerts() -> Template:
    return load("modules/alerts.bicep")


def _rules(alerts: Template) -> dict[str, dict]:
    rules = {r.symbol: r for r in alerts.of_type("Microsoft.Insights/scheduledQueryRules")}
    assert set(rules) == {
        "poisonAlert",
        "failedBookingsAlert",
        "failureRateAlert",
        "heartbeatAlert",
        "businessSyncFailingAlert",
        "reconcileHeartbeatAlert",
    }
    return rules


def _query(alerts: Template, rule) -> str:
    """The rule's KQL with any format() placeholder left in."""
    (criterion,) = rule.get("properties/criteria/allOf")
    query = criterion["query"]
    if isinstance(query, dict):
        query = function_args(query, "format")[0]
    return alerts.variables[query]


def _runbook_kql() -> list[str]:
    return re.findall(r"```kusto\n(.*?)```", RUNBOOK.read_text(encoding="utf-8"), flags=re.S)


def test_every_rule_is_a_log_alert_on_application_insights_that_notifies(alerts: Template) -> None:
    for symbol, rule in _rules(alerts).items():
        assert rule.get("kind") == "LogAlert", symbol
        assert rule.get("properties/scopes") == ["applicationInsightsId"], symbol
        assert rule.get("properties/actions/actionGroups") == "actionGroups", symbol
        assert rule.get("properties/enabled") is True and rule.get("properties/autoMitigate") is True
    main = load("main.bicep")
    params = main.module_params("alerts")
    assert (
        params["actionGroupResourceId"] == "actionGroupResourceId"
        and "actionGroupResourceId" in main.parameters
    )


def test_poison_alert_matches_the_message_the_host_logs(alerts: Template) -> None:
    query = _query(alerts, _rules(alerts)["poisonAlert"])
    prefix = re.search(r'message startswith "([^"]+)"', query).group(1)
    assert prefix == "Message has reached MaxDequeueCount"
    # devhost copies the Functions host's wording; the alert must match both.
    assert prefix in (ROOT / "devhost" / "queues.py").read_text(encoding="utf-8")


def test_failed_booking_alert_splits_by_the_error_code_the_invoicing_code_logs(alerts: Template) -> None:
    rule = _rules(alerts)["failedBookingsAlert"]
    query = _query(alerts, rule)
    assert f'tostring(customDimensions.outcome) == "{InvoiceOutcome.FAILED}"' in query
    (criterion,) = rule.get("properties/criteria/allOf")
    assert [d["name"] for d in criterion["dimensions"]] == ["errorCode"]
    assert re.search(r"\|\s*(extend|project)[^|]*\berrorCode\s*=", query), "the dimension must be a column"


def test_failure_rate_alert_measures_create_invoice_executions(alerts: Template) -> None:
    rule = _rules(alerts)["failureRateAlert"]
    query = _query(alerts, rule)
    (criterion,) = rule.get("properties/criteria/allOf")
    assert criterion["metricMeasureColumn"] in query
    assert "success == false" in query and '"create_invoice"' in query
    assert criterion["threshold"] == "createInvoiceFailureRatePercent"


def test_heartbeat_fires_when_no_sync_succeeded_for_two_intervals(alerts: Template) -> None:
    rule = _rules(alerts)["heartbeatAlert"]
    (criterion,) = rule.get("properties/criteria/allOf")
    assert (criterion["operator"], criterion["threshold"], criterion["timeAggregation"]) == (
        "LessThan",
        1,
        "Count",
    )
    assert function_args(criterion["query"], "format")[1] == "heartbeatMinutes"
    assert re.search(r"^var heartbeatMinutes = 2 \* syncIntervalMinutes$", alerts.text, flags=re.M)
    assert "ago({0}m)" in _query(alerts, rule)


def test_a_business_that_fails_every_run_alerts_per_business(alerts: Template) -> None:
    rule = _rules(alerts)["businessSyncFailingAlert"]
    query = _query(alerts, rule)
    (criterion,) = rule.get("properties/criteria/allOf")
    assert [d["name"] for d in criterion["dimensions"]] == ["businessId"]
    assert re.search(r"\|\s*(extend|project)[^|]*\bbusinessId\s*=", query), "the dimension must be a column"
    assert criterion["metricMeasureColumn"] == "failedRuns" and "failedRuns" in query
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)
    # The same span as the heartbeat: two sync intervals.
    assert function_args(criterion["query"], "format")[1] == "heartbeatMinutes"
    assert rule.get("properties/windowSize") == "heartbeatWindow"
    assert "ago({0}m)" in query and "sumif(itemCount" in query
    assert "A business fails every sync" in str(rule.get("properties/description"))
    assert "### A business fails every sync" in RUNBOOK.read_text(encoding="utf-8")


def test_a_failing_reconcile_raises_the_same_kind_of_alert_as_a_failing_sync(alerts: Template) -> None:
    rules = _rules(alerts)
    sync, reconcile = rules["heartbeatAlert"], rules["reconcileHeartbeatAlert"]
    (sync_criterion,) = sync.get("properties/criteria/allOf")
    (criterion,) = reconcile.get("properties/criteria/allOf")
    for name in ("operator", "threshold", "timeAggregation"):
        assert criterion[name] == sync_criterion[name], name
    assert reconcile.get("properties/severity") == sync.get("properties/severity")
    assert function_args(criterion["query"], "format")[1] == "reconcileHeartbeatMinutes"
    assert '"reconciled"' in _query(alerts, reconcile)
    assert re.search(
        r"^var reconcileHeartbeatMinutes = 2 \* reconcileIntervalMinutes$", alerts.text, flags=re.M
    )
    # Only a run whose reconcile and retention both succeeded logs that outcome.
    source = (ROOT / "shared" / "services" / "reconcile_run.py").read_text(encoding="utf-8")
    assert '"failed" if report.failed else "reconciled"' in source


def _window_minutes(duration: str) -> int:
    match = re.fullmatch(r"PT(\d+)([MH])|P(\d+)D", duration)
    assert match, duration
    if match.group(3):
        return int(match.group(3)) * 1440
    return int(match.group(1)) * (60 if match.group(2) == "H" else 1)


def test_heartbeat_window_covers_two_intervals_for_every_allowed_interval(alerts: Template) -> None:
    evaluate = Evaluator(alerts)
    window_var = _rules(alerts)["heartbeatAlert"].get("properties/windowSize")
    low, high = (d["argument"] for d in alerts.parameters["syncIntervalMinutes"]["decorators"][1:3])
    for interval in range(low, high + 1):
        window = evaluate.value(window_var, {"syncIntervalMinutes": interval, "alertIntervalMinutes": 5})
        assert 2 * interval <= duration_minutes(window) <= 2 * 1440, (interval, window)


def _interval_minutes(schedule: str) -> int:
    """The largest gap between runs of an NCRONTAB schedule over a week (from a fixed date)."""
    parsed = parse_ncrontab(schedule)
    moment = datetime(2026, 1, 5, tzinfo=UTC)
    gaps = []
    while moment < datetime(2026, 1, 12, tzinfo=UTC):
        following = parsed.next_after(moment)
        gaps.append(following - moment)
        moment = following
    return int(max(gaps[1:]) / timedelta(minutes=1))


def test_sync_interval_parameter_matches_the_schedule() -> None:
    main = load("main.bicep")
    assert main.module_params("alerts")["syncIntervalMinutes"] == "syncIntervalMinutes"
    defaults = main.parameters
    assert (
        _interval_minutes(defaults["syncSchedule"]["default"]) == defaults["syncIntervalMinutes"]["default"]
    )
    # azd's parameters file changes neither (both stay the template's defaults) or both together.
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert ("syncSchedule" in given) == ("syncIntervalMinutes" in given)


def test_alerts_and_runbook_queries_read_only_fields_the_app_logs(alerts: Template) -> None:
    queries = [value for value in alerts.variables.values() if isinstance(value, str) and "|" in value]
    queries += _runbook_kql()
    assert len(queries) >= 10
    used = set().union(*(custom_dimensions_used(q) for q in queries))
    missing = used - logged_fields() - PLATFORM_FIELDS
    assert not missing, f"queries read customDimensions the app never logs: {sorted(missing)}"


def test_queries_name_functions_that_exist(alerts: Template) -> None:
    sources = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "functions").glob("*.py"))
    defined = set(re.findall(r'function_name\("(\w+)"\)', sources))
    text = "\n".join(str(v) for v in alerts.variables.values()) + "\n".join(_runbook_kql())
    for name in ("create_invoice", "sync_bookings"):
        assert name in defined, f"function {name} is gone"
    named = set(re.findall(r'"(create_invoice|sync_bookings|submit_invoice_requests)"', text))
    assert named <= defined


def test_runbook_kql_is_balanced_and_the_readme_links_the_runbook() -> None:
    for query in _runbook_kql():
        assert query.count("(") == query.count(")"), query
        assert query.count('"') % 2 == 0, query
        assert re.match(
            r"\s*(traces|requests|exceptions|union|AppTraces|AppRequests|AppExceptions)\b", query
        ), query
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/operations.md" in readme
