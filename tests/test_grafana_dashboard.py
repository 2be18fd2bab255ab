"""The Grafana dashboard of examples/grafana names only metrics the exporter
emits: every PromQL query of the dashboard is tokenized, its metric names
(and the labels it matches on them) are checked against what the real
exporter writes for figures published through a real Redis."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ormcache_redis import Codec, RedisClient, TwoTierCache
from ormcache_redis.metrics import MetricsPublisher, exposition, process_figures

DASHBOARD = Path(__file__).resolve().parent.parent / "examples" / "grafana" / "ormcache_redis.json"
PREFIX = "ormcache:"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# PromQL's vocabulary (Prometheus 2.x/3.x): what an identifier that is not a
# metric name can be.
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
    "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
    "sort_by_label", "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "mad_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi",
}  # fmt: skip
# Keywords followed by a parenthesised list of label names.
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
# Grafana's own functions in variable queries, whose first argument is PromQL.
GRAFANA_QUERIES = re.compile(r"^\s*(?:label_values|query_result)\((.*)\)\s*$", re.DOTALL)

_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?:0x[0-9a-fA-F]+|\d[\w.]*)(?:[eE][+-]?\d+)?")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*")


class PromQLError(ValueError):
    """A query this tokenizer cannot read: the dashboard must change."""


def _skip_string(query: str, start: int) -> int:
    """The index after the string literal opening at ``start``."""
    quote, index = query[start], start + 1
    while index < len(query):
        if query[index] == "\\" and quote != "`":
            index += 2
            continue
        if query[index] == quote:
            return index + 1
        index += 1
    raise PromQLError(f"unterminated string in {query!r}")


def _matchers(query: str, start: int) -> tuple[list[str], int]:
    """The label names of the ``{...}`` opening at ``start``, and the index after it."""
    labels, index = [], start + 1
    while True:
        while index < len(query) and query[index] in " \t\n,":
            index += 1
        if index >= len(query):
            raise PromQLError(f"unclosed label matchers in {query!r}")
        if query[index] == "}":
            return labels, index + 1
        matcher = _MATCHER.match(query, index)
        if matcher is None or index + len(matcher.group(0)) >= len(query):
            raise PromQLError(f"bad label matcher at {query[index:]!r}")
        labels.append(matcher.group(1))
        index = matcher.end()
        if query[index] not in "\"'`":
            raise PromQLError(f"label {matcher.group(1)} is not matched against a string")
        index = _skip_string(query, index)


def _label_list(query: str, start: int) -> int:
    """The index after the ``(label, ...)`` at or after ``start`` (a keyword's list)."""
    index = start
    while index < len(query) and query[index].isspace():
        index += 1
    if index >= len(query) or query[index] != "(":
        return start  # group_left without labels
    end = query.find(")", index)
    if end < 0:
        raise PromQLError(f"unclosed label list in {query!r}")
    for name in query[index + 1 : end].split(","):
        if name.strip() and not _IDENTIFIER.fullmatch(name.strip()):
            raise PromQLError(f"bad label name {name.strip()!r} in {query!r}")
    return end + 1


def selectors(query: str) -> list[tuple[str, list[str]]]:
    """Every metric name of a PromQL query, with the labels its matchers
    name: string literals, ranges (``[5m]``, Grafana's ``[$__rate_interval]``),
    numbers, durations, operators, functions, aggregations, keywords and
    their label lists are skipped. Unknown functions raise PromQLError."""
    found: list[tuple[str, list[str]]] = []
    index = 0
    while index < len(query):
        char = query[index]
        if char.isspace() or char in "()+-*/%^,<>=!@":
            index += 1
        elif char in "\"'`":
            index = _skip_string(query, index)
        elif char == "[":
            end = query.find("]", index)
            if end < 0:
                raise PromQLError(f"unclosed range in {query!r}")
            index = end + 1
        elif char == "{":  # {__name__=~"..."} would hide the name from this check
            raise PromQLError(f"a selector without a metric name in {query!r}")
        elif char == "$":
            raise PromQLError(f"a Grafana variable outside a string or range in {query!r}")
        elif char.isdigit() or (char == "." and query[index + 1 : index + 2].isdigit()):
            index = _NUMBER.match(query, index).end()
        else:
            word = _IDENTIFIER.match(query, index)
            if word is None:
                raise PromQLError(f"unexpected {char!r} in {query!r}")
            name, index = word.group(0), word.end()
            rest = query[index:].lstrip()
            if name in LABEL_LISTS:
                index = _label_list(query, index)
            elif name in KEYWORDS:
                pass
            elif name in AGGREGATIONS:
                continue  # its "by (...)" or "(" follows
            elif rest.startswith("("):
                if name not in FUNCTIONS:
                    raise PromQLError(f"unknown function {name}() in {query!r}")
            elif rest.startswith("{"):
                labels, index = _matchers(query, query.index("{", index))
                found.append((name, labels))
            else:
                found.append((name, []))
    return found


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(where, PromQL)`` for every panel target and query variable."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        grafana = GRAFANA_QUERIES.match(query)
        if grafana:  # label_values(selector, label): the selector is PromQL
            query = grafana.group(1).rsplit(",", 1)[0]
        yield f"variable {variable['name']!r}", query


def partner_name(partner_id: int) -> str:
    """Stands for a cached model method."""
    return f"partner {partner_id}"


@pytest.fixture
def exported(redis_url: str) -> dict[str, set[str]]:
    """What the exporter emits for one published process with a cache, a
    method with misses, L2 and L1 hits, both Redis clients, session counts
    and a transaction's dropped writes: every sample name, with its labels
    (Prometheus adds ``job`` and ``instance`` at scrape time)."""
    client = RedisClient(redis_url)
    sessions = RedisClient(redis_url)

    def cache() -> TwoTierCache:
        return TwoTierCache(
            "default", 100, client=client, codec=Codec(), namespace=b"db1:r1", secret="s" * 20
        )

    writer, reader = cache(), cache()
    key = ("res.partner", partner_name, 1)
    with pytest.raises(KeyError):
        writer[key]
    writer[key] = partner_name(1)
    assert client.flush(5)
    assert reader[key] == "partner 1"  # an L2 hit, timed
    assert reader[key] == "partner 1"  # an L1 hit
    figures = process_figures(
        {"db1": {"default": reader}},
        clients={"cache": client, "sessions": sessions},
        session_counts={"saved": 2, "forged": 1},
        dropped={"db1": {"rollback": 1}},
    )
    assert MetricsPublisher(client, lambda: figures, prefix=PREFIX).publish()
    assert client.flush(5)
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition(client, PREFIX)):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels, {"job", "instance"})
    return names


def test_the_tokenizer_finds_metric_names_only() -> None:
    query = (
        'sum by (db, cache) (rate(a_total{job="$job", db=~"$db"}[$__rate_interval])) '
        "/ on (db) group_left (cache) (1 + b_total offset 5m) > bool 0.5 "
        "and on (db, cache, method) topk(10, histogram_quantile(0.99, sum by (le) "
        '(rate(c_bucket{x="a}b,c"}[5m])))) or vector(1e3) unless d:recorded'
    )
    assert selectors(query) == [
        ("a_total", ["job", "db"]),
        ("b_total", []),
        ("c_bucket", ["x"]),
        ("d:recorded", []),
    ]
    with pytest.raises(PromQLError, match="unknown function rte"):
        selectors("rte(a_total[5m])")
    with pytest.raises(PromQLError, match="without a metric name"):
        selectors('{__name__="a_total"}')


def test_every_query_names_an_emitted_metric(exported: dict[str, set[str]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    named: set[str] = set()
    problems = []
    for where, query in dashboard_queries(dashboard):
        found = selectors(query)
        if not found:
            problems.append(f"{where}: no metric in {query!r}")
        for name, labels in found:
            named.add(name)
            if name not in exported:
                problems.append(f"{where}: {name} is not emitted")
            elif not set(labels) <= exported[name]:
                problems.append(f"{where}: {name} has no label {set(labels) - exported[name]}")
    assert problems == []
    # What the issue asks the dashboard to show: hit ratio per cache and per
    # method, L2 latency, the circuit state, failovers, dropped writes.
    assert {
        "ormcache_redis_cache_hits_total",
        "ormcache_redis_cache_misses_total",
        "ormcache_redis_l1_hits_total",
        "ormcache_redis_l2_hits_total",
        "ormcache_redis_misses_total",
        "ormcache_redis_redis_latency_seconds_bucket",
        "ormcache_redis_redis_latency_seconds_sum",
        "ormcache_redis_redis_latency_seconds_count",
        "ormcache_redis_processes_redis_unhealthy",
        "ormcache_redis_client_failovers_total",
        "ormcache_redis_client_writes_dropped_total",
        "ormcache_redis_pending_writes_dropped_total",
    } <= named


def test_the_exporter_check_is_not_vacuous(exported: dict[str, set[str]]) -> None:
    # Histograms are queried by their series' names, counters with _total.
    assert "ormcache_redis_redis_latency_seconds_bucket" in exported
    assert "le" in exported["ormcache_redis_redis_latency_seconds_bucket"]
    assert "ormcache_redis_redis_latency_seconds" not in exported
    assert "ormcache_redis_l1_hits" not in exported
    assert {"db", "cache", "method"} <= exported["ormcache_redis_l1_hits_total"]
    assert "method" not in exported["ormcache_redis_cache_hits_total"]


def test_the_dashboard_imports_into_grafana_10() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 38 and dashboard["uid"] and dashboard["id"] is None
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24 and position["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)) and refs, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    assert len(ids) == len(set(ids))
