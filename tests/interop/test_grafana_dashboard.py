"""The Grafana dashboard (packaging/grafana/ringkeeper.json) loads against what we
export: every metric each panel's query names is on our /metrics after some traffic, or
is a leader-only key (docs/compat.md rows whose meaning starts with "leader:").
RingKeeper only."""

import json
import os
import re
import urllib.request

import pytest

from conftest import REPO, TARGET, free_port

pytestmark = pytest.mark.skipif(TARGET != "ringkeeper", reason="RingKeeper's dashboard")

METRICS_PORT = free_port()
SERVER_EXTRA_CFG = [
    "metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
    "metricsProvider.httpHost=127.0.0.1",
    f"metricsProvider.httpPort={METRICS_PORT}",
]
DASHBOARD = os.path.join(REPO, "packaging", "grafana", "ringkeeper.json")
PROMQL_WORDS = {"sum", "max", "min", "avg", "by", "without", "rate", "increase", "irate",
                "histogram_quantile", "count", "topk", "on", "ignoring", "group_left",
                "offset", "and", "or", "unless", "bool"}


def metric_names(expr):
    """Identifiers of a PromQL expression that name metrics: not functions, keywords,
    label names inside braces or by(...), nor template strings."""
    e = re.sub(r"\{[^}]*\}", "", expr)                 # label matchers
    e = re.sub(r"\b(by|without)\s*\([^)]*\)", "", e)   # grouping labels
    e = re.sub(r"\[[^\]]*\]", "", e)                   # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e))
    return {n for n in names if n not in PROMQL_WORDS}


def leader_only():
    keys = set()
    with open(os.path.join(REPO, "docs", "compat.md")) as f:
        for line in f:
            m = re.match(r"\| `zk_([a-z0-9_]+)` \| leader: ", line)
            if m:
                keys.add(m.group(1))
    return keys


def test_every_panel_queries_metrics_we_export(server, kz):
    kz.ensure_path("/dash/x")
    for i in range(20):
        kz.set("/dash/x", b"%d" % i)
        kz.get("/dash/x", watch=lambda e: None)
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=20) as r:
        text = r.read().decode()
    exported = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    assert "ringkeeper_latency_seconds_count" in exported and "znode_count" in exported
    known = exported | leader_only()
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["panels"], "no panels"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("throughput", "stage", "quorum", "sessions", "watches", "snapshot", "fsync"):
        assert topic in titles, f"no panel about {topic}"
    for p in dash["panels"]:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            names = metric_names(t["expr"])
            assert names, (p["title"], t["expr"])
            unknown = names - known
            assert not unknown, f"panel {p['title']!r} queries {sorted(unknown)}, not exported"


def test_the_name_check_catches_a_wrong_name():
    assert metric_names('sum by (instance) (rate(packets_recieved[1m]))') == {"packets_recieved"}
    assert metric_names('max(ringkeeper_latency_seconds{quantile="0.99",stage=~"write_.*"})') \
        == {"ringkeeper_latency_seconds"}
