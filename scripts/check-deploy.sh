#!/usr/bin/env bash
# Checks the deployment and monitoring files of Emergence:
#   - deploy/prometheus/alerts.yml: promtool check rules + promtool test rules
#     (alerts_test.yml), prometheus.yml: promtool check config;
#   - every YAML / JSON file under deploy/ parses;
#   - deploy/cloudrun/service.yaml: startup probe GET /readyz, liveness probe
#     GET /healthz, secrets from Secret Manager, session affinity;
#   - every alert has severity / summary / description and a runbook_url whose
#     anchor is a heading of docs/operations.md (GitHub anchor rules);
#   - deploy/cloudrun/alert-policies.json has one policy per Prometheus alert,
#     with valid PromQL that passes the same firing / not-firing unit tests;
#   - deploy/grafana/dashboard.json: schemaVersion 39, Prometheus datasource
#     variable, every panel query is valid PromQL, the rate-limited panel shows
#     0 (not "No data") for the series a healthy instance exports;
#   - Dockerfile: the final stage runs ["emergence", "serve"] (ENTRYPOINT +
#     CMD, exec form) as a non-root user;
#   - deploy/cloudbuild.yaml (the deploy pipeline): build, push, deploy with no
#     traffic, `emergence verify` against that revision, then the traffic
#     shift, in that order, the shift waiting for verify, and verify's exit code
#     not ignored; verify's flags exist in crates/ops/src/cli/verify.rs.
#
# Usage: scripts/check-deploy.sh   (from anywhere; exit status 0 = all good)
# Installs promtool (Debian package `prometheus`) and PyYAML when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '==> %s\n' "$*"; }
fail() {
    printf 'check-deploy: FAIL: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fail "need root (or sudo) to run: $*"
    fi
}

# --- tools -------------------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1; then
    step "installing promtool (Debian package prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y --no-install-recommends prometheus >/dev/null; then
        as_root apt-get update >/dev/null \
            || fail "apt-get update failed; install promtool by hand"
        as_root apt-get install -y --no-install-recommends prometheus >/dev/null \
            || fail "could not install promtool (apt-get install prometheus)"
    fi
    command -v promtool >/dev/null 2>&1 || fail "promtool still missing after installing prometheus"
fi
command -v python3 >/dev/null 2>&1 || fail "python3 is required"
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    step "installing PyYAML"
    python3 -m pip install --quiet pyyaml \
        || python3 -m pip install --quiet --break-system-packages pyyaml \
        || fail "could not install PyYAML (pip install pyyaml)"
fi

for f in deploy/prometheus/alerts.yml deploy/prometheus/alerts_test.yml \
    deploy/prometheus/prometheus.yml deploy/cloudrun/service.yaml \
    deploy/cloudrun/alert-policies.json deploy/cloudrun/run-monitoring.yaml \
    deploy/grafana/dashboard.json docs/operations.md Dockerfile .dockerignore; do
    [ -f "$f" ] || fail "missing file: $f"
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- Prometheus rules ---------------------------------------------------------
step "promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml || fail "alerts.yml: promtool check rules failed"

step "promtool test rules deploy/prometheus/alerts_test.yml"
promtool test rules deploy/prometheus/alerts_test.yml || fail "alerts_test.yml: rule unit tests failed"

step "promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml || fail "prometheus.yml: promtool check config failed"

# --- file contents (Python) ---------------------------------------------------
# Writes into $WORK: dashboard_rules.yml (panel queries as recording rules),
# policies_rules.yml + policies_test.yml (Cloud Monitoring policies as
# Prometheus alerts, with the alert tests of alerts_test.yml).
step "parsing deploy/ files and checking their contents"
python3 - "$WORK" <<'PY' || fail "deploy file checks failed (see the FAIL lines above)"
import glob
import json
import os
import re
import sys

import yaml

work = sys.argv[1]
errors = []


def err(msg):
    errors.append(msg)
    print(f"  FAIL: {msg}")


def ok(msg):
    print(f"  ok: {msg}")


# 1. Every YAML / JSON file under deploy/ parses.
docs = {}
for path in sorted(glob.glob("deploy/**/*", recursive=True)):
    if os.path.isdir(path):
        continue
    try:
        with open(path, encoding="utf-8") as fh:
            if path.endswith((".yml", ".yaml")):
                docs[path] = list(yaml.safe_load_all(fh))
            elif path.endswith(".json"):
                docs[path] = [json.load(fh)]
            else:
                continue
        ok(f"{path} parses")
    except Exception as exc:  # noqa: BLE001 - report any parse error
        err(f"{path} does not parse: {exc}")
if errors:
    sys.exit(1)


def one(path):
    d = docs.get(path) or [None]
    return d[0]


# 2. Cloud Run service.
svc = one("deploy/cloudrun/service.yaml") or {}
if svc.get("apiVersion") != "serving.knative.dev/v1" or svc.get("kind") != "Service":
    err("service.yaml: expected apiVersion serving.knative.dev/v1, kind Service")
if (svc.get("metadata") or {}).get("name") != "emergence":
    err("service.yaml: metadata.name must be emergence")
tmpl = (svc.get("spec") or {}).get("template") or {}
tspec = tmpl.get("spec") or {}
annotations = (tmpl.get("metadata") or {}).get("annotations") or {}
containers = tspec.get("containers") or []
ingress = [c for c in containers if c.get("ports")] or containers[:1]
if len(ingress) != 1:
    err("service.yaml: expected exactly one container with ports (the server)")
else:
    c = ingress[0]
    sp = ((c.get("startupProbe") or {}).get("httpGet") or {}).get("path")
    lp = ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path")
    if sp != "/readyz":
        err(f"service.yaml: startupProbe.httpGet.path is {sp!r}, expected '/readyz'")
    else:
        ok("service.yaml: startup probe GET /readyz")
    if lp != "/healthz":
        err(f"service.yaml: livenessProbe.httpGet.path is {lp!r}, expected '/healthz'")
    else:
        ok("service.yaml: liveness probe GET /healthz")
    env = {e.get("name"): e for e in c.get("env") or []}
    for name in ("DATABASE_URL", "EMERGENCE_SIGNING_KEY"):
        ref = ((env.get(name) or {}).get("valueFrom") or {}).get("secretKeyRef")
        if not ref or "value" in (env.get(name) or {}):
            err(f"service.yaml: {name} must come from Secret Manager (valueFrom.secretKeyRef)")
    if "PORT" in env:
        err("service.yaml: PORT is reserved on Cloud Run (it is set from containerPort)")
if str(annotations.get("run.googleapis.com/sessionAffinity")) != "true":
    err('service.yaml: template annotation run.googleapis.com/sessionAffinity must be "true"')
if not isinstance(tspec.get("timeoutSeconds"), int) or tspec["timeoutSeconds"] < 3600:
    err("service.yaml: timeoutSeconds must be 3600 (WebSocket connections last up to an hour)")
rm = one("deploy/cloudrun/run-monitoring.yaml") or {}
if (rm.get("metadata") or {}).get("name") != "emergence":
    err("run-monitoring.yaml: metadata.name must be emergence (it becomes the job label)")
# The collector must scrape the port /metrics is served on: the separate
# metrics listener when EMERGENCE_METRICS_ADDR is set, else the main port.
if len(ingress) == 1:
    env = {e.get("name"): e.get("value") for e in ingress[0].get("env") or []}
    if env.get("EMERGENCE_METRICS_ADDR"):
        metrics_port = int(str(env["EMERGENCE_METRICS_ADDR"]).rsplit(":", 1)[1])
    else:
        metrics_port = int((ingress[0].get("ports") or [{}])[0].get("containerPort", 8080))
    ports = [e.get("port") for e in (rm.get("spec") or {}).get("endpoints") or []]
    if metrics_port not in ports:
        err(f"run-monitoring.yaml: scrapes ports {ports}, but /metrics is served on port {metrics_port}")
    else:
        ok(f"run-monitoring.yaml: scrapes /metrics on port {metrics_port}")


# 3. Alerts: labels, annotations, runbook anchors in docs/operations.md.
def github_anchor(text):
    text = re.sub(r"`([^`]*)`", r"\1", text)  # inline code
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links, images
    text = re.sub(r"<[^>]+>", "", text)  # html tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # drop punctuation (keeps letters, digits, _ and -)
    return text.replace(" ", "-")


anchors = set()
seen = {}
fence = None
with open("docs/operations.md", encoding="utf-8") as fh:
    for line in fh:
        m = re.match(r"^\s{0,3}(`{3,}|~{3,})", line)
        if m:
            if fence is None:
                fence = m.group(1)[0]
            elif m.group(1)[0] == fence:
                fence = None
            continue
        if fence is not None:
            continue
        m = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = github_anchor(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchors.add(base if n == 0 else f"{base}-{n}")

with open("docs/operations.md", encoding="utf-8") as fh:
    for target in re.findall(r"\]\(#([^)\s]+)\)", fh.read()):
        if target not in anchors:
            err(f"docs/operations.md: link to #{target}, which is not a heading")

RUNBOOK_PREFIX = "https://github.com/emergence-chat/emergence/blob/main/docs/operations.md#"
rules = one("deploy/prometheus/alerts.yml") or {}
alerts = {}
for group in rules.get("groups") or []:
    for rule in group.get("rules") or []:
        if "alert" in rule:
            alerts[rule["alert"]] = rule
expected_alerts = {
    "EmergenceDbConnectionFailures",
    "EmergenceDbDown",
    "EmergenceDbPendingWritesGrowing",
    "EmergenceWebSocketErrorRate",
    "EmergenceRateLimited429",
    "EmergenceInstanceDown",
    "EmergenceHighLatencyP99",
}
missing = expected_alerts - set(alerts)
if missing:
    err(f"alerts.yml: missing alerts {sorted(missing)}")
for name, rule in sorted(alerts.items()):
    labels = rule.get("labels") or {}
    ann = rule.get("annotations") or {}
    if labels.get("severity") not in ("critical", "warning", "info"):
        err(f"alerts.yml: {name} needs a severity label (critical / warning / info)")
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            err(f"alerts.yml: {name} has no {key} annotation")
    url = ann.get("runbook_url") or ""
    if not url.startswith(RUNBOOK_PREFIX):
        err(f"alerts.yml: {name} runbook_url must start with {RUNBOOK_PREFIX}")
        continue
    anchor = url[len(RUNBOOK_PREFIX):]
    if anchor not in anchors:
        err(f"alerts.yml: {name} runbook anchor #{anchor} is not a heading of docs/operations.md")
    else:
        ok(f"{name}: runbook #{anchor} exists in docs/operations.md")

# 4. Cloud Monitoring alert policies mirror the Prometheus alerts.
def prom_seconds(d):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total = 0
    for num, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(d)):
        total += int(num) * units[unit]
    return total


policies = one("deploy/cloudrun/alert-policies.json")
prom_rules = []
if not isinstance(policies, list) or not policies:
    err("alert-policies.json: expected a non-empty JSON array of AlertPolicy objects")
    policies = []
covered = set()
for i, pol in enumerate(policies):
    conds = pol.get("conditions") or []
    if not pol.get("displayName") or len(conds) != 1:
        err(f"alert-policies.json[{i}]: needs displayName and exactly one condition")
        continue
    pq = conds[0].get("conditionPrometheusQueryLanguage") or {}
    name = pq.get("alertRule")
    if not pq.get("query") or name not in alerts:
        err(f"alert-policies.json[{i}]: conditionPrometheusQueryLanguage needs a query and an alertRule naming an alert of alerts.yml (got {name!r})")
        continue
    covered.add(name)
    runbook = (alerts[name].get("annotations") or {}).get("runbook_url", "")
    if runbook not in (pol.get("documentation") or {}).get("content", ""):
        err(f"alert-policies.json: {name}: documentation.content must link its runbook {runbook}")
    dur = pq.get("duration", "0s")
    if not re.fullmatch(r"\d+s", dur):
        err(f"alert-policies.json: {name}: duration {dur!r} must be like '120s'")
        continue
    if int(dur[:-1]) != prom_seconds(alerts[name].get("for", "0s")):
        err(f"alert-policies.json: {name}: duration {dur} differs from the alert's for: {alerts[name].get('for')}")
    prom_rules.append({
        "alert": name,
        "expr": pq["query"],
        "for": dur,
        "labels": pq.get("labels") or {},
    })
if set(alerts) - covered:
    err(f"alert-policies.json: no policy for {sorted(set(alerts) - covered)}")
else:
    ok(f"alert-policies.json: one policy per alert ({len(covered)})")
with open(os.path.join(work, "policies_rules.yml"), "w") as fh:
    yaml.safe_dump({"groups": [{"name": "cloud-monitoring-policies", "rules": prom_rules}]}, fh, sort_keys=False)

# The alert unit tests of alerts_test.yml, run against the policies' queries
# (annotations are not part of a policy, so they are not compared).
tests = one("deploy/prometheus/alerts_test.yml") or {}
ptests = []
for t in tests.get("tests") or []:
    art = t.get("alert_rule_test")
    if not art:
        continue
    nt = {k: v for k, v in t.items() if k not in ("promql_expr_test", "alert_rule_test")}
    nt["name"] = f"[cloud monitoring] {t.get('name', '')}"
    nt["alert_rule_test"] = []
    for case in art:
        case = dict(case)
        case["exp_alerts"] = [{"exp_labels": a.get("exp_labels") or {}} for a in case.get("exp_alerts") or []]
        nt["alert_rule_test"].append(case)
    ptests.append(nt)
ptest_doc = {
    "rule_files": ["policies_rules.yml"],
    "evaluation_interval": tests.get("evaluation_interval", "1m"),
    "tests": ptests,
}
with open(os.path.join(work, "policies_test.yml"), "w") as fh:
    yaml.safe_dump(ptest_doc, fh, sort_keys=False)

# 5. Grafana dashboard.
dash = one("deploy/grafana/dashboard.json") or {}
if dash.get("schemaVersion") != 39:
    err(f"dashboard.json: schemaVersion is {dash.get('schemaVersion')!r}, expected 39")
tvars = (dash.get("templating") or {}).get("list") or []
dsvars = [v for v in tvars if v.get("type") == "datasource" and v.get("query") == "prometheus"]
if not dsvars:
    err("dashboard.json: needs a datasource variable of type prometheus")
dsname = dsvars[0]["name"] if dsvars else "datasource"
exprs = []


def walk(panels):
    for p in panels or []:
        yield p
        yield from walk(p.get("panels"))


n_panels = 0
for p in walk(dash.get("panels")):
    if p.get("type") == "row":
        continue
    n_panels += 1
    ds = (p.get("datasource") or {}).get("uid")
    if ds != "${" + dsname + "}":
        err(f"dashboard.json: panel {p.get('title')!r} must use the ${{{dsname}}} datasource")
    for t in p.get("targets") or []:
        if t.get("expr"):
            exprs.append((p.get("title"), t["expr"]))
if not exprs:
    err("dashboard.json: no panel queries found")
else:
    ok(f"dashboard.json: {n_panels} panels, {len(exprs)} queries")
drules = []
index = []
for i, (title, e) in enumerate(exprs):
    e = e.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    e = re.sub(r"\$\{?[A-Za-z_]\w*\}?", ".*", e)  # template variables
    drules.append({"record": f"dashboard:query_{i}", "expr": e})
    index.append(f"  dashboard:query_{i} -> panel {title!r}")
with open(os.path.join(work, "dashboard_rules.yml"), "w") as fh:
    yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": drules}]}, fh, sort_keys=False)
with open(os.path.join(work, "dashboard_queries.txt"), "w") as fh:
    fh.write("\n".join(index) + "\n")

# A healthy instance exports every rate-limit scope at 0 from start
# (src/metrics/labels.rs): the "Rate-limited answers" panel must then show
# 0 per scope, and 0 HTTP 429s even where no 429 series exists (an instance of
# an older version, a route outside the registered table), never "No data".
with open("src/metrics/labels.rs", encoding="utf-8") as fh:
    m = re.search(r"RATE_LIMIT_SCOPES: &\[&str\] = &\[(.*?)\];", fh.read(), re.S)
scopes = re.findall(r'"([a-z_]+)"', m.group(1)) if m else []
if not scopes:
    err("src/metrics/labels.rs: RATE_LIMIT_SCOPES not found")
healthy = [
    {"series": f'rate_limited_total{{job="emergence",instance="a",scope="{sc}"}}', "values": "0x20"}
    for sc in scopes
] + [
    {"series": 'http_requests_total{job="emergence",instance="a",route="/api/auth/login",method="POST",status="200"}', "values": "0+10x20"},
]
zero_checks = []
for title, e in exprs:
    if title != "Rate-limited answers per minute":
        continue
    e = e.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    e = re.sub(r"\$\{?[A-Za-z_]\w*\}?", ".*", e)
    if "by (scope)" in e:
        want = [{"labels": f'{{scope="{sc}"}}', "value": 0} for sc in scopes]
    else:
        want = [{"labels": "{}", "value": 0}]
    zero_checks.append({"expr": e, "eval_time": "4m", "exp_samples": want})
if len(zero_checks) != 2:
    err("dashboard.json: expected the 'Rate-limited answers per minute' panel with a by-scope and an HTTP 429 query")
with open(os.path.join(work, "dashboard_test.yml"), "w") as fh:
    yaml.safe_dump({
        "rule_files": ["dashboard_rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "name": "a healthy instance shows 0 rate-limited answers, not No data",
            "interval": "15s",
            "input_series": healthy,
            "promql_expr_test": zero_checks,
        }],
    }, fh, sort_keys=False)

# 6. Dockerfile: the final stage runs ["emergence", "serve"] as a non-root user.
with open("Dockerfile", encoding="utf-8") as fh:
    raw = fh.read()
logical = []
buf = ""
for line in raw.splitlines():
    s = line.strip()
    if not buf and (not s or s.startswith("#")):
        continue
    if s.startswith("#"):
        continue
    if s.endswith("\\"):
        buf += s[:-1] + " "
        continue
    logical.append(buf + s)
    buf = ""
stage = []
for ins in logical:
    if re.match(r"(?i)^FROM\s", ins):
        stage = []
    stage.append(ins)


def exec_form(keyword):
    found = [i for i in stage if re.match(rf"(?i)^{keyword}\s", i)]
    if not found:
        return None
    arg = found[-1].split(None, 1)[1].strip()
    try:
        val = json.loads(arg)
    except ValueError:
        err(f"Dockerfile: {keyword} must use the exec (JSON array) form, got: {arg}")
        return []
    if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
        err(f"Dockerfile: {keyword} must be a JSON array of strings")
        return []
    return val


entry = exec_form("ENTRYPOINT")
cmd = exec_form("CMD")
argv = (entry or []) + (cmd or [])
if len(argv) != 2 or os.path.basename(argv[0]) != "emergence" or argv[1] != "serve":
    err(f'Dockerfile: final stage runs {argv}, expected ENTRYPOINT ["emergence"] + CMD ["serve"]')
elif entry != ["emergence"] and os.path.basename((entry or [""])[0]) != "emergence":
    err('Dockerfile: ENTRYPOINT must be the emergence binary')
else:
    ok(f"Dockerfile: runs {json.dumps(argv)} (ENTRYPOINT {json.dumps(entry)}, CMD {json.dumps(cmd)})")
users = [i.split(None, 1)[1].strip() for i in stage if re.match(r"(?i)^USER\s", i)]
if not users or users[-1].split(":")[0] in ("root", "0"):
    err("Dockerfile: the final stage must switch to a non-root USER")

sys.exit(1 if errors else 0)
PY

step "promtool: dashboard queries and Cloud Monitoring policy queries are valid PromQL"
promtool check rules "$WORK/dashboard_rules.yml" >/dev/null || {
    echo "dashboard queries (rule name -> panel):" >&2
    cat "$WORK/dashboard_queries.txt" >&2
    fail "dashboard.json: a panel query is not valid PromQL (see promtool's message above)"
}
step "promtool test rules: the rate-limited panel shows 0 (not No data) on a healthy instance"
promtool test rules "$WORK/dashboard_test.yml" \
    || fail "dashboard.json: the 'Rate-limited answers per minute' panel has no data on a healthy instance"
promtool check rules "$WORK/policies_rules.yml" >/dev/null \
    || fail "alert-policies.json: a policy query is not valid PromQL (see promtool's message above)"

step "promtool test rules: the Cloud Monitoring policies pass the alert tests of alerts_test.yml"
promtool test rules "$WORK/policies_test.yml" \
    || fail "alert-policies.json: the policies do not behave like the alerts of alerts.yml"

# --- deploy pipeline (Python) -------------------------------------------------
step "deploy/cloudbuild.yaml: build, deploy with no traffic, verify, then shift traffic"
python3 - <<'PY' || fail "deploy/cloudbuild.yaml checks failed (see the FAIL lines above)"
import re
import sys

import yaml

errors = []


def err(msg):
    errors.append(msg)
    print(f"  FAIL: {msg}")


def ok(msg):
    print(f"  ok: {msg}")


try:
    with open("deploy/cloudbuild.yaml", encoding="utf-8") as fh:
        build = yaml.safe_load(fh) or {}
except FileNotFoundError:
    err("missing file: deploy/cloudbuild.yaml")
    sys.exit(1)
steps = build.get("steps") or []
subs = build.get("substitutions") or {}


def command(step):
    """The step's command line as one string (entrypoint + args)."""
    parts = [step.get("entrypoint") or ""] + [str(a) for a in step.get("args") or []]
    return " ".join(parts)


def expand(text):
    """User substitutions expanded (twice: _IMAGE refers to others)."""
    for _ in range(2):
        text = re.sub(r"\$\{?(_[A-Z0-9_]+)\}?", lambda m: str(subs.get(m.group(1), m.group(0))), text)
    return text


def find(what, pred):
    found = [i for i, s in enumerate(steps) if pred(s, expand(command(s)))]
    if len(found) != 1:
        err(f"expected exactly one {what} step, found {len(found)}")
        return None
    return found[0]


image = expand(str(subs.get("_IMAGE", "")))
if not image:
    err("substitutions: _IMAGE (the image reference) is missing")
build_i = find("docker build", lambda s, c: re.search(r"(^|\s)build\s", c) and "docker" in s.get("name", "") and image in c)
push_i = find("docker push", lambda s, c: re.search(r"(^|\s)push\s", c) and image in c)
deploy_i = find("gcloud run deploy", lambda s, c: re.search(r"\brun deploy\b", c))
verify_i = find("emergence verify", lambda s, c: re.search(r"\bemergence verify\b|^ ?verify\b", c))
shift_i = find("traffic shift", lambda s, c: "update-traffic" in c)

if build_i is not None:
    args = [str(a) for a in steps[build_i].get("args") or []]
    dockerfile = args[args.index("--file") + 1] if "--file" in args else "Dockerfile"
    if dockerfile != "Dockerfile" or args[-1] != ".":
        err("the build step must build the repository's Dockerfile with the repository as context")
    else:
        ok("build: the repository's Dockerfile")
if deploy_i is not None:
    c = expand(command(steps[deploy_i]))
    if "--no-traffic" not in c:
        err("the deploy step must deploy with --no-traffic (users stay on the current revision)")
    if not re.search(r"--tag[= ]candidate\b", c):
        err("the deploy step must tag the revision (--tag=candidate) so verify can reach it")
    if f"--image={image}" not in c and f"--image {image}" not in c:
        err("the deploy step must deploy the image built by this pipeline")
    if "--no-traffic" in c and "--tag" in c:
        ok("deploy: a tagged revision with no traffic")
if verify_i is not None:
    v = steps[verify_i]
    c = expand(command(v))
    if expand(str(v.get("name", ""))) != image:
        err("the verify step must run the image this pipeline built (its own emergence verify)")
    if "candidate_url" not in c and "candidate---" not in c:
        err("verify must check the candidate revision's tagged URL, not the live service")
    if v.get("allowFailure") or v.get("allowExitCodes"):
        err("verify's exit code is the gate: no allowFailure / allowExitCodes on its step")
    if re.search(r"\|\|\s*true|;\s*true|set \+e", c):
        err("verify's exit code is the gate: its command must not swallow a failure")
    # Every flag used exists in crates/ops/src/cli/verify.rs.
    with open("crates/ops/src/cli/verify.rs", encoding="utf-8") as fh:
        fields = re.findall(r"pub ([a-z_]+):", fh.read())
    known = {"--" + f.replace("_", "-") for f in fields}
    used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", c.split("verify", 1)[1]))
    if not used <= known:
        err(f"verify step: unknown flags {sorted(used - known)} (crates/ops/src/cli/verify.rs has {sorted(known)})")
    if "--url" not in used:
        err("verify step: --url is required")
    if not errors:
        ok(f"verify: the built image checks the candidate ({' '.join(sorted(used))})")
if shift_i is not None:
    c = expand(command(steps[shift_i]))
    if "--to-latest" not in c and not re.search(r"--to-tags[= ]candidate=100", c):
        err("the traffic step must move traffic to the verified revision (--to-latest or --to-tags candidate=100)")

order = [build_i, push_i, deploy_i, verify_i, shift_i]
if None not in order:
    if order != sorted(order):
        err("steps must run in this order: build, push, deploy (no traffic), verify, shift traffic")
    else:
        ok("order: build, push, deploy, verify, shift traffic")
    # The dependency graph: the shift must (transitively) wait for verify, verify for the deploy.
    ids = [s.get("id") for s in steps]
    if None in ids or len(set(ids)) != len(ids):
        err("every step needs a unique id")
    else:
        def deps(i):
            w = steps[i].get("waitFor")
            if w is None:  # default: every earlier step
                return set(range(i))
            if w == ["-"]:
                return set()
            return {ids.index(x) for x in w if x in ids}

        def ancestors(i):
            seen, todo = set(), [i]
            while todo:
                for d in deps(todo.pop()):
                    if d not in seen:
                        seen.add(d)
                        todo.append(d)
            return seen

        if verify_i not in ancestors(shift_i):
            err("the traffic shift must wait for the verify step (waitFor)")
        elif deploy_i not in ancestors(verify_i) or push_i not in ancestors(deploy_i):
            err("verify must wait for the deploy, and the deploy for the push")
        else:
            ok("the traffic shift waits for verify, which waits for the deploy")
    for i, s in enumerate(steps):
        c = expand(command(s))
        if i != shift_i and "update-traffic" in c:
            err(f"step {s.get('id')}: only the last step may move traffic")
        if i < verify_i and re.search(r"\brun deploy\b", c) and "--no-traffic" not in c:
            err(f"step {s.get('id')}: deploys before verify must not take traffic")
sys.exit(1 if errors else 0)
PY

echo "check-deploy: all checks passed"
