#!/usr/bin/env python3
"""Checks tools/grafana/strata_dashboard.json against a live node's /metrics.

usage: check_dashboard.py DASHBOARD_JSON METRICS_TXT [PROMETHEUS_URL]

Fails (exit 1, one line per problem) when the dashboard is not the Grafana
model it should be (panels without the ${DS_PROMETHEUS} data source, duplicate
ids, a layout wider than 24 columns, missing variables), when a PromQL
expression or variable query names a metric that the page METRICS_TXT does
not carry, or a label matcher names a label (or a literal value) that the
metric does not have there, or a grouping (`by`, `on`, ...) or a legend names
a label that no metric of its query has. With PROMETHEUS_URL, every expression, the
dashboard's variables replaced, is also sent to that server's query API and
must parse.
"""

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

DATASOURCE_UID = "${DS_PROMETHEUS}"
# Labels Prometheus adds at scrape time; the page itself does not carry them.
TARGET_LABELS = {"instance", "job"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}
# Values used for the dashboard's variables when an expression is sent to
# Prometheus.
SUBSTITUTIONS = {
    "instance": ".*",
    "tenant": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}

SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+\S+')
LABEL_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
SELECTOR = re.compile(r'([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}')
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
LABEL_LIST = re.compile(r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)')
IDENT = re.compile(r'[A-Za-z_:][A-Za-z0-9_:]*')
LABEL_VALUES = re.compile(r'^label_values\((?:(.*),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)$')


def parse_page(text):
    """metric name -> {label name -> set of values}, from the samples."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = series.setdefault(m.group(1), {})
        for name, value in LABEL_PAIR.findall(m.group(2) or ""):
            labels.setdefault(name, set()).add(value)
    return series


def metric_names(expr):
    """The metric names an expression reads (identifiers that are not
    functions, keywords, label names, durations or strings)."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stripped = re.sub(r'\{[^}]*\}', ' ', stripped)
    stripped = re.sub(r'\[[^\]]*\]', ' ', stripped)
    stripped = LABEL_LIST.sub(' ', stripped)
    names = set()
    for m in IDENT.finditer(stripped):
        rest = stripped[m.end():].lstrip()
        word = m.group(0)
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        if m.start() > 0 and (stripped[m.start() - 1].isdigit() or stripped[m.start() - 1] == "."):
            continue  # the exponent or suffix of a number
        names.add(word)
    return names


def check_selectors(expr, series, where, problems):
    for metric, body in SELECTOR.findall(expr):
        labels = series.get(metric)
        if labels is None:
            continue  # reported as an unknown metric
        for name, op, value in MATCHER.findall(body):
            if name in TARGET_LABELS:
                continue
            if name not in labels:
                problems.append(f"{where}: {metric} has no label '{name}' on the page")
            elif op == "=" and "$" not in value and value not in labels[name]:
                problems.append(f"{where}: {metric}{{{name}=\"{value}\"}} is not on the page")


def check_expr(expr, series, where, problems, legend_labels=()):
    names = metric_names(expr)
    if not names:
        problems.append(f"{where}: names no metric: {expr}")
    for name in sorted(names):
        if name not in series:
            problems.append(f"{where}: metric '{name}' is not exported by the node")
    check_selectors(expr, series, where, problems)
    # Labels grouped or matched on, and those a legend shows, must be on some
    # metric of the query.
    known = set(TARGET_LABELS)
    for name in names:
        known |= set(series.get(name, {}))
    grouped = set()
    for m in LABEL_LIST.finditer(expr):
        grouped |= {l.strip() for l in m.group(1).split(",") if l.strip()}
    for label in sorted(grouped | set(legend_labels)):
        if label not in known:
            problems.append(f"{where}: no metric of the query has label '{label}' on the page")
    return names


def substitute(expr, where, problems):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in SUBSTITUTIONS:
            problems.append(f"{where}: unknown variable '{name}'")
            return m.group(0)
        return SUBSTITUTIONS[name]
    return re.sub(r'\$\{([A-Za-z_]+)\}|\$([A-Za-z_]+)', repl, expr)


def query_prometheus(url, expr):
    full = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(full, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:  # 400 for a bad query, with a JSON body
        body = json.load(e)
    if body.get("status") != "success":
        return body.get("error", "no error text")
    return None


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check(dashboard, series, prometheus=None):
    problems = []
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        if key not in dashboard:
            problems.append(f"dashboard: no '{key}'")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("DS_PROMETHEUS")
    if ds is None or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("templating: no data source variable DS_PROMETHEUS of type prometheus")
    used = set()
    for name in ("instance", "tenant"):
        v = variables.get(name)
        if v is None or v.get("type") != "query":
            problems.append(f"templating: no query variable '{name}'")
            continue
        if v.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"templating: '{name}' does not use {DATASOURCE_UID}")
        query = v.get("query", {})
        query = query.get("query", "") if isinstance(query, dict) else query
        m = LABEL_VALUES.match(query.strip())
        if not m or not m.group(1):
            problems.append(f"templating: '{name}' is not label_values(METRIC, LABEL): {query}")
            continue
        where = f"variable {name}"
        used |= check_expr(m.group(1), series, where, problems)
        for metric in metric_names(m.group(1)):
            if m.group(2) not in TARGET_LABELS and m.group(2) not in series.get(metric, {}):
                problems.append(f"{where}: {metric} has no label '{m.group(2)}' on the page")

    ids = set()
    for p in all_panels(dashboard.get("panels", [])):
        where = f"panel {p.get('id')} '{p.get('title')}'"
        if p.get("id") in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append(f"{where}: gridPos needs integer h, w, x, y")
        elif g["x"] < 0 or g["w"] <= 0 or g["x"] + g["w"] > 24:
            problems.append(f"{where}: gridPos outside the 24 columns")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"{where}: data source is not {DATASOURCE_UID}")
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"{where}: no queries")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids):
            problems.append(f"{where}: duplicate refId")
        for t in targets:
            twhere = f"{where} query {t.get('refId')}"
            if t.get("datasource", {}).get("uid") != DATASOURCE_UID:
                problems.append(f"{twhere}: data source is not {DATASOURCE_UID}")
            expr = t.get("expr", "")
            if not expr.strip():
                problems.append(f"{twhere}: empty expression")
                continue
            legend = re.findall(r'\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}', t.get("legendFormat", ""))
            used |= check_expr(expr, series, twhere, problems, legend)
            filled = substitute(expr, twhere, problems)
            if prometheus:
                error = query_prometheus(prometheus, filled)
                if error:
                    problems.append(f"{twhere}: Prometheus refused it: {error}")
    return problems, used


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        dashboard = json.load(f)
    with open(argv[2]) as f:
        series = parse_page(f.read())
    problems, used = check(dashboard, series, argv[3] if len(argv) == 4 else None)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"dashboard OK: {len(used)} metrics, all on the page")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
