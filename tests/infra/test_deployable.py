"""Template values Azure rejects, or settings that silently do nothing, must not come back.

Bicep's compiler and Azure cannot run here, and a parser accepts all of these; each test below pins
one fact from Azure's documentation, REST specifications or reported deployment errors (cited at
the test) against the templates, host.json and the runbook.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra.templates import (
    ROOT,
    Evaluator,
    Template,
    duration_minutes,
    function_args,
    load,
    name_value_pairs,
    to_workspace_schema,
)

RUNBOOK = ROOT / "docs" / "operations.md"
HOST_JSON = ROOT / "host.json"

# The windows (minutes) a log search alert accepts; any other windowSize is answered with
# "Supported granularities are: 5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440, 2880".
# https://github.com/Azure/azure-rest-api-specs/issues/21258 (spec:
# specification/monitor/resource-manager/Microsoft.Insights/stable/2021-08-01/scheduledQueryRule_API.json)
AZURE_WINDOW_MINUTES = {5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440, 2880}
# Evaluation frequencies Microsoft Learn's log search alert template offers (@allowed):
# https://learn.microsoft.com/azure/azure-monitor/alerts/resource-manager-alerts-log
AZURE_FREQUENCY_MINUTES = {5, 15, 30, 60}


def canonical(minutes: int) -> str:
    """How Microsoft Learn's samples write a window: PT45M, PT6H, P1D (not PT60M or PT1440M)."""
    if minutes % 1440 == 0:
        return f"P{minutes // 1440}D"
    if minutes % 60 == 0:
        return f"PT{minutes // 60}H"
    return f"PT{minutes}M"


@pytest.fixture(scope="module")
def alerts() -> Template:
    return load("modules/alerts.bicep")


def _param_range(template: Template, name: str) -> list[int]:
    decorators = {d["type"]: d["argument"] for d in template.parameters[name]["decorators"]}
    if "allowed" in decorators:
        return list(decorators["allowed"])
    return list(range(decorators["min_value"], decorators["max_value"] + 1))


def _every_parameter_combination(alerts: Template) -> list[dict[str, int]]:
    """Every allowed alert interval with every allowed timer interval (one timer varied at a time:
    each rule depends on at most one of them)."""
    combinations = []
    for interval in _param_range(alerts, "alertIntervalMinutes"):
        for timer in ("syncIntervalMinutes", "reconcileIntervalMinutes"):
            for minutes in _param_range(alerts, timer):
                params = {
                    "alertIntervalMinutes": interval,
                    "syncIntervalMinutes": 15,
                    "reconcileIntervalMinutes": 60,
                }
                combinations.append({**params, timer: minutes})
    return combinations


def _rules(alerts: Template) -> dict[str, Any]:
    return {r.symbol: r for r in alerts.of_type("Microsoft.Insights/scheduledQueryRules")}


# --- Flex Consumption ---------------------------------------------------------------------------------


def test_maximum_instance_count_is_at_least_40_by_default_and_by_constraint() -> None:
    # "The lowest maximum scale is currently 40. The highest currently supported value is 1000."
    # https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
    main, function_app = load("main.bicep"), load("modules/functionapp.bicep")
    for template in (main, function_app):
        values = _param_range(template, "maximumInstanceCount")
        assert (min(values), max(values)) == (40, 1000), template.name
    assert main.parameters["maximumInstanceCount"]["default"] == 40
    assert main.module_params("functionApp")["maximumInstanceCount"] == "maximumInstanceCount"
    site = function_app.one("Microsoft.Web/sites")
    scale = site.get("properties/functionAppConfig/scaleAndConcurrency")
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    given = json.loads((ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert "maximumInstanceCount" not in given  # azd deploys the template's default, 40


def test_flex_site_sets_no_site_config_property_flex_stamps_reject() -> None:
    # Current Flex Consumption stamps answer "The following list of 4 site configuration properties
    # (Site.SiteConfig.FtpsState, Site.SiteConfig.Use32BitWorkerProcess,
    # Site.SiteConfig.NetFrameworkVersion, Site.SiteConfig.FunctionsRuntimeScaleMonitoringEnabled)
    # for Flex Consumption sites is invalid": https://github.com/microsoft/azure-pipelines-tasks/issues/21032
    # linuxFxVersion is replaced by functionAppConfig.runtime:
    # https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
    site = load("modules/functionapp.bicep").one("Microsoft.Web/sites")
    site_config = {key.lower() for key in site.get("properties/siteConfig")}
    rejected = {
        "ftpsstate",
        "use32bitworkerprocess",
        "netframeworkversion",
        "functionsruntimescalemonitoringenabled",
        "linuxfxversion",
    }
    assert not site_config & rejected, f"Flex Consumption rejects {sorted(site_config & rejected)}"
    assert site.get("properties/functionAppConfig/runtime") == {"name": "python", "version": "3.11"}


def test_ftp_and_basic_auth_publishing_are_closed_by_policies_that_carry_a_location() -> None:
    # Without `location` these child resources fail with "The parameter location has an invalid
    # value": https://github.com/Azure/bicep-types-az/issues/1571, https://github.com/Azure/bicep/issues/7396
    function_app = load("modules/functionapp.bicep")
    policies = function_app.of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {p.get("name"): p.get("properties/allow") for p in policies} == {"ftp": False, "scm": False}
    for policy in policies:
        assert policy.get("location") == "location", policy.get("name")
        assert policy.get("parent") == "site"
    assert "location" in function_app.parameters
    # The checkov check for ftpsState is skipped, with the reason where it is skipped.
    skip = re.search(r"checkov:skip=CKV_AZURE_78:(.+)", function_app.text)
    assert skip, "CKV_AZURE_78 (ftpsState) fails without a skip that says why"
    assert "basicPublishingCredentialsPolicies" in skip.group(1) and "Flex" in skip.group(1)


# --- Alert windows ------------------------------------------------------------------------------------


def test_window_durations_are_exactly_the_windows_azure_accepts(alerts: Template) -> None:
    durations = Evaluator(alerts).value("windowDurations", {})
    assert {int(k) for k in durations} == AZURE_WINDOW_MINUTES
    for minutes, duration in durations.items():
        assert duration_minutes(duration) == int(minutes) and duration == canonical(int(minutes))


def test_every_rule_gets_a_window_and_frequency_azure_accepts_for_every_allowed_parameter(
    alerts: Template,
) -> None:
    evaluate = Evaluator(alerts)
    rules = _rules(alerts)
    assert rules
    for params in _every_parameter_combination(alerts):
        for symbol, rule in rules.items():
            window = evaluate.value(rule.get("properties/windowSize"), params)
            frequency = evaluate.value(rule.get("properties/evaluationFrequency"), params)
            window_minutes, frequency_minutes = duration_minutes(window), duration_minutes(frequency)
            where = (symbol, params, window, frequency)
            assert window_minutes in AZURE_WINDOW_MINUTES and window == canonical(window_minutes), where
            assert frequency_minutes in AZURE_FREQUENCY_MINUTES, where
            assert frequency == canonical(frequency_minutes), where
            assert frequency_minutes <= window_minutes, where


def test_alert_interval_offers_only_values_whose_lookback_azure_accepts(alerts: Template) -> None:
    evaluate = Evaluator(alerts)
    for interval in _param_range(alerts, "alertIntervalMinutes"):
        lookback = evaluate.value("lookback", {"alertIntervalMinutes": interval})
        assert duration_minutes(lookback) == 2 * interval
    # 10 would need a 20-minute window, which Azure rejects (the issue this pins).
    assert 10 not in _param_range(alerts, "alertIntervalMinutes")
    assert 20 not in AZURE_WINDOW_MINUTES
    assert alerts.parameters["alertIntervalMinutes"]["default"] in _param_range(
        alerts, "alertIntervalMinutes"
    )


def _sync_function_source() -> str:
    """The timer and the use case it runs (sync, recovery, then the backlog line)."""
    return "\n".join(
        (ROOT / path).read_text(encoding="utf-8")
        for path in ("functions/timer_triggers.py", "shared/services/timer_run.py")
    )


def test_poison_alert_looks_back_over_the_schedule_its_evidence_is_logged_on(alerts: Template) -> None:
    # The standing evidence: the backlog line (poisonDepth) sync_bookings logs once per run, on
    # SYNC_SCHEDULE, whose interval main.bicep passes as syncIntervalMinutes.
    source = _sync_function_source()
    assert 'schedule="%SYNC_SCHEDULE%"' in source and "report_backlog(" in source
    assert '"poisonDepth"' in (ROOT / "shared" / "services" / "backlog.py").read_text(encoding="utf-8")
    assert "customDimensions.poisonDepth" in alerts.variables["poisonQuery"]
    main = load("main.bicep")
    assert main.module_params("alerts")["syncIntervalMinutes"] == "syncIntervalMinutes"

    evaluate = Evaluator(alerts)
    rule = _rules(alerts)["poisonAlert"]
    for params in _every_parameter_combination(alerts):
        window = duration_minutes(evaluate.value(rule.get("properties/windowSize"), params))
        frequency = duration_minutes(evaluate.value(rule.get("properties/evaluationFrequency"), params))
        # Two sync intervals: a window that always holds the last run's line even when the run is
        # late, so the alert does not resolve between runs and fire again.
        assert window >= 2 * params["syncIntervalMinutes"], (params, window)
        assert window >= 2 * frequency, (params, window)


def _flickers(window: int, sync_interval: int, frequency: int, ingestion_delay: int) -> bool:
    """Whether a poison queue that never drains is ever judged empty (the alert would resolve).

    The backlog line is logged at every multiple of the sync interval and visible `ingestion_delay`
    minutes later; each evaluation sees the lines visible and inside its window.
    """
    for now in range(0, 3 * 1440, frequency):
        if now < 2 * sync_interval + ingestion_delay:
            continue  # before the first runs
        visible = [t for t in range(0, now + 1, sync_interval) if t + ingestion_delay <= now]
        if not any(now - window <= t for t in visible):
            return True
    return False


def test_the_poison_window_does_not_flicker_and_the_old_one_did(alerts: Template) -> None:
    evaluate = Evaluator(alerts)
    rule = _rules(alerts)["poisonAlert"]
    for sync in (1, 5, 15, 30, 60, 240, 1440):
        for interval in _param_range(alerts, "alertIntervalMinutes"):
            params = {"alertIntervalMinutes": interval, "syncIntervalMinutes": sync}
            window = duration_minutes(evaluate.value(rule.get("properties/windowSize"), params))
            frequency = duration_minutes(evaluate.value(rule.get("properties/evaluationFrequency"), params))
            # Late rows: up to a few minutes of ingestion delay, up to a whole run late.
            assert not _flickers(window, sync, frequency, ingestion_delay=min(sync, 5)), params
    # The model is not vacuous: the previous 10-minute window over a 15-minute schedule flickers.
    assert _flickers(window=10, sync_interval=15, frequency=5, ingestion_delay=2)


def test_poison_alert_fires_on_the_latest_evidence_only(alerts: Template) -> None:
    query = alerts.variables["poisonQuery"]
    # Both sources report a depth; the latest of them decides, so a drained queue resolves the alert.
    assert re.search(r"summarize arg_max\(timestamp, [^)]*poisonDepth[^)]*\)", query)
    assert re.search(r"\|\s*where poisonDepth > 0\s*\n", query)
    (criterion,) = _rules(alerts)["poisonAlert"].get("properties/criteria/allOf")
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
        "Count",
        "GreaterThan",
        0,
    )


# --- Sampling and itemCount ---------------------------------------------------------------------------


def test_host_json_has_no_application_insights_settings_that_opentelemetry_mode_ignores() -> None:
    # With "telemetryMode": "OpenTelemetry" host.json's logging.applicationInsights section
    # (samplingSettings, excludedTypes) is not used, and the host's own telemetry cannot be sampled:
    # https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto,
    # https://github.com/Azure/azure-functions-host/issues/11496
    host = json.loads(HOST_JSON.read_text(encoding="utf-8"))
    assert host["telemetryMode"].lower() == "opentelemetry"
    assert "applicationInsights" not in host.get("logging", {})
    # Host.Results and Host.Aggregator are the classic SDK's request and aggregate-metric
    # categories; in OpenTelemetry mode the host exports requests as spans, so levels for them
    # set nothing. Only the default level stays.
    assert set(host["logging"].get("logLevel", {})) <= {"default"}


def test_worker_sampling_is_configured_where_it_applies() -> None:
    # The Python worker's Azure Monitor distro reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    # (https://pypi.org/project/azure-monitor-opentelemetry/1.8.11/); the value must be one it knows.
    from azure.monitor.opentelemetry._constants import SUPPORTED_OTEL_SAMPLERS

    function_app = load("modules/functionapp.bicep")
    platform = name_value_pairs(function_app.variables["platformSettings"])
    assert platform["OTEL_TRACES_SAMPLER"] in SUPPORTED_OTEL_SAMPLERS
    assert platform["OTEL_TRACES_SAMPLER"] == "microsoft.rate_limited"
    argument = platform["OTEL_TRACES_SAMPLER_ARG"]
    assert argument["function"]["parameters"]["value_to_convert"] == "telemetryTracesPerSecond"
    main = load("main.bicep")
    assert main.module_params("functionApp")["telemetryTracesPerSecond"] == "telemetryTracesPerSecond"
    assert min(_param_range(main, "telemetryTracesPerSecond")) >= 1


def _kql_blocks() -> list[str]:
    return re.findall(r"```kusto\n(.*?)```", RUNBOOK.read_text(encoding="utf-8"), flags=re.S)


ROW_COUNTS = re.compile(r"\b(count|countif)\(", flags=re.I)


def test_queries_weight_sampled_rows_by_item_count(alerts: Template) -> None:
    # A sampled row stands for itemCount rows: "instead of simply counting records, you should use
    # summarize sum(itemCount)": https://learn.microsoft.com/azure/azure-monitor/app/sampling-classic-api
    queries = {name: q for name, q in alerts.variables.items() if isinstance(q, str) and "|" in q}
    queries |= {f"runbook #{i}": q for i, q in enumerate(_kql_blocks())}
    for name, query in queries.items():
        assert not ROW_COUNTS.search(query), f"{name} counts rows: {ROW_COUNTS.search(query).group(0)}"
    for symbol, rule in _rules(alerts).items():
        (criterion,) = rule.get("properties/criteria/allOf")
        if criterion["timeAggregation"] == "Count":
            # Counting result rows only asks whether any exist, which sampling does not change.
            assert (criterion["operator"], criterion["threshold"]) in {("GreaterThan", 0), ("LessThan", 1)}, (
                symbol
            )
            continue
        query = criterion["query"]
        text = alerts.variables[query if isinstance(query, str) else function_args(query, "format")[0]]
        sums = set(re.findall(r"\b(\w+)\s*=\s*sum(?:if)?\(itemCount\b", text))
        column = criterion["metricMeasureColumn"]
        if column not in sums:
            # A measure computed from other columns: each of them must be such a sum.
            derived = re.search(rf"\b{column}\s*=\s*([^\n]+)", text)
            assert derived, (symbol, column)
            inputs = set(re.findall(r"\b[A-Za-z_]\w*\b", derived.group(1)))
            assert inputs and inputs <= sums, (symbol, column, inputs - sums)


# --- The runbook --------------------------------------------------------------------------------------


def test_runbook_sizing_uses_the_host_json_arithmetic_and_the_shared_budget() -> None:
    queues = json.loads(HOST_JSON.read_text(encoding="utf-8"))["extensions"]["queues"]
    batch, threshold = queues["batchSize"], queues["newBatchThreshold"]
    scale = RUNBOOK.read_text(encoding="utf-8").split("## Scale and limits", 1)[1]
    flat = " ".join(scale.split())
    # Per instance: batchSize + newBatchThreshold invocations (host.json), not batchSize alone.
    assert "`batchSize + newBatchThreshold`" in flat
    assert f"{batch} + {threshold} = {batch + threshold}" in flat
    assert f"40 \N{MULTIPLICATION SIGN} {batch + threshold} = {40 * (batch + threshold)}" in flat
    # No "N per instance" / "N in flight" that is not what host.json and the budget give.
    for number in re.findall(r"(\d+) (?:messages )?per instance", flat):
        assert int(number) == batch + threshold, number
    for number in re.findall(r"(\d+) in flight", flat):
        pytest.fail(f"the runbook claims {number} in flight; the budget caps it at BC_MAX_CONCURRENCY")
    for setting in ("BC_MAX_CONCURRENCY", "BC_MAX_REQUESTS_PER_5_MIN", "maximumInstanceCount"):
        assert setting in flat, setting
    assert "do not make invoicing faster" in flat


def _workspace_pairs() -> list[tuple[str, str]]:
    text = RUNBOOK.read_text(encoding="utf-8").split("## KQL queries", 1)[1].split("## Scale", 1)[0]
    blocks = re.findall(r"```kusto\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 16 and len(blocks) % 2 == 0
    return list(zip(blocks[::2], blocks[1::2], strict=True))


CLASSIC_TABLE = re.compile(r"^\s*(traces|requests|exceptions)\b")
WORKSPACE_TABLE = re.compile(r"^\s*(AppTraces|AppRequests|AppExceptions)\b")
CLASSIC_ONLY = re.compile(r"\b(timestamp|customDimensions|itemCount|operation_Name|outerMessage)\b")


def test_every_runbook_query_has_its_log_analytics_workspace_form() -> None:
    # Application Insights' classic schema (traces, timestamp, customDimensions) and the workspace
    # schema of the same rows (AppTraces, TimeGenerated, Properties):
    # https://learn.microsoft.com/azure/azure-monitor/app/convert-classic-resource#workspace-based-resource-changes
    for classic, workspace in _workspace_pairs():
        assert CLASSIC_TABLE.match(classic) and WORKSPACE_TABLE.match(workspace), (classic, workspace)
        # The same query, column for column: editing one form and not the other fails here.
        assert to_workspace_schema(classic) == workspace, f"{classic}\n!=\n{workspace}"
        stray = CLASSIC_ONLY.search(re.sub(r"\"[^\"]*\"", '""', workspace))
        assert not stray, f"the workspace form names the classic column {stray.group(0)}: {workspace}"


def test_the_schema_translation_renames_columns_but_not_strings() -> None:
    assert to_workspace_schema('traces | where message startswith "message" | project timestamp') == (
        'AppTraces | where Message startswith "message" | project TimeGenerated'
    )
    assert to_workspace_schema("tostring(customDimensions.outcome)") == "tostring(Properties.outcome)"
