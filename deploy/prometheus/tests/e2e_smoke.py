#!/usr/bin/env python3
"""End-to-end smoke test of the Prometheus side, without Redshift or the daemon.

Serves exporter-shaped /metrics on 127.0.0.1, and yet-another-cloudwatch-exporter-shaped
/metrics (every name deploy/cloudwatch/yace.yml asks for, labelled as YACE labels them), starts
a real Prometheus with deploy/prometheus/prometheus.yml (target addresses, scrape and
evaluation intervals rewritten), then checks that
  * both scrape targets are up and every rule file loaded and evaluates without error,
  * every query of every Grafana dashboard returns data (the CloudWatch dashboard's through
    the join rules of cloudwatch.rules.yml, on the static labels of redshift_exporter_target_info).

    python3 deploy/prometheus/tests/e2e_smoke.py [--prometheus /usr/bin/prometheus]

Exits non-zero with one line per problem. Only loopback addresses are used; both
servers are stopped before it returns.
"""
import argparse
import glob
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yace_names  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TARGETS = ["main", "serverless"]
CHECKS = ["long_queries", "disk_used_pct"]
START = time.time()


def exposition():
    """Exporter-shaped metrics; counters grow with time so rate()/increase() see data."""
    n = int((time.time() - START) * 4)  # grows 4 per second
    out = []

    def fam(name, typ, help_, samples):
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {typ}")
        for labels, value in samples:
            ls = ",".join(f'{k}="{v}"' for k, v in labels.items())
            out.append(f"{name}{{{ls}}} {value}" if ls else f"{name} {value}")

    tc = [({"target": t, "check": c}) for t in TARGETS for c in CHECKS]
    now = time.time()
    fam("redshift_exporter_check_success", "gauge", "1 if the last run succeeded.",
        [(l, 0 if l["check"] == "disk_used_pct" and l["target"] == "serverless" else 1) for l in tc])
    fam("redshift_exporter_check_duration_seconds", "gauge", "Duration of the last run.", [(l, 0.25) for l in tc])
    fam("redshift_exporter_check_rows", "gauge", "Rows of the last run.", [(l, 3) for l in tc])
    fam("redshift_exporter_check_last_run_timestamp_seconds", "gauge", "Last run.", [(l, now - 10) for l in tc])
    fam("redshift_exporter_check_last_success_timestamp_seconds", "gauge", "Last success.", [(l, now - 10) for l in tc])
    fam("redshift_exporter_check_runs_total", "counter", "Runs by result.",
        [(dict(l, result=r), n if r in ("success", "skipped") else 0)
         for l in tc for r in ("success", "error", "timeout", "skipped")])
    fam("redshift_exporter_check_errors_total", "counter", "Errors by kind.",
        [(dict(l, kind=k), n if k == "timeout" else 0)
         for l in tc for k in ("connect", "auth", "pool_timeout", "query", "timeout", "columns", "canceled")])
    fam("redshift_exporter_sample_errors_total", "counter", "Sample errors by reason.",
        [(dict(l, reason=r), n) for l in tc for r in ("null", "not_a_number", "duplicate_labels", "series_limit")])
    fam("redshift_exporter_archive_files_total", "counter", "CSV files written.", [(l, n) for l in tc])
    fam("redshift_exporter_archive_errors_total", "counter", "CSV write errors.", [(l, n) for l in tc])
    fam("redshift_exporter_target_up", "gauge", "1 if the target is reachable.", [({"target": t}, 1) for t in TARGETS])
    # Static labels name each target's cluster / workgroup: the CloudWatch join key.
    fam("redshift_exporter_target_info", "gauge", "What the exporter decided about a target.",
        [({"target": "main", "deployment": "provisioned", "families": "stl,svv,sys", "cluster_identifier": "sales-prod"}, 1),
         ({"target": "serverless", "deployment": "serverless", "families": "svv,sys", "workgroup": "analytics"}, 1)])
    fam("redshift_exporter_pool_connections", "gauge", "Pool connections by state.",
        [({"target": t, "state": s}, 1 if s == "in_use" else 4) for t in TARGETS for s in ("idle", "in_use")])
    fam("redshift_exporter_pool_max_connections", "gauge", "Pool size.", [({"target": t}, 5) for t in TARGETS])
    fam("redshift_exporter_build_info", "gauge", "Build information.", [({"version": "0.1.0"}, 1)])
    fam("process_cpu_seconds_total", "counter", "CPU time.", [({}, n / 100)])
    fam("process_resident_memory_bytes", "gauge", "RSS.", [({}, 9 * 2**20)])
    fam("process_virtual_memory_bytes", "gauge", "VSZ.", [({}, 80 * 2**20)])
    fam("process_open_fds", "gauge", "Open fds.", [({}, 12)])
    fam("process_max_fds", "gauge", "Max fds.", [({}, 1024)])
    fam("process_start_time_seconds", "gauge", "Start time.", [({}, START)])
    # a data metric of the check pack, to show pack series next to self metrics
    fam("redshift_disk_used_ratio", "gauge", "Disk used.", [({"target": t, "node": "0"}, 0.42) for t in TARGETS])
    return ("\n".join(out) + "\n").encode()


def yace_exposition():
    """What YACE would serve for deploy/cloudwatch/yace.yml: one cluster, one workgroup."""
    out = []
    for name, namespace, dims in yace_names.names(os.path.join(ROOT, "deploy", "cloudwatch", "yace.yml")):
        if namespace == "AWS/Redshift":
            arn, resource = "arn:aws:redshift:eu-west-1:111111111111:cluster:sales-prod", "sales-prod"
        else:
            arn, resource = "arn:aws:redshift-serverless:eu-west-1:111111111111:workgroup/0f1e", "analytics"
        labels = {"name": arn, "account_id": "111111111111", "region": "eu-west-1"}
        labels.update({d: resource for d in dims})
        value = 1 if "health_status" in name else 0 if "maintenance_mode" in name else 42
        ls = ",".join(f'{k}="{v}"' for k, v in labels.items())
        out += [f"# HELP {name} Help is not implemented yet.", f"# TYPE {name} gauge", f"{name}{{{ls}}} {value}"]
    return ("\n".join(out) + "\n").encode()


class YaceHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = yace_exposition()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/metrics":
            body, ctype = exposition(), "text/plain; version=0.0.4"
        elif self.path in ("/-/healthy", "/-/ready"):
            body, ctype = b"OK", "text/plain"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, path, **params):
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def dashboard_queries():
    for f in sorted(glob.glob(os.path.join(ROOT, "grafana", "dashboards", "*.json"))):
        d = json.load(open(f))
        stack = list(d.get("panels", []))
        while stack:
            p = stack.pop()
            stack.extend(p.get("panels", []))
            for t in p.get("targets", []):
                e = t.get("expr", "")
                e = re.sub(r"\$__(rate_interval|interval|range)", "20s", e)
                e = re.sub(r"\$\{?\w+\}?", ".+", e)
                yield f"{os.path.basename(f)}: panel {p.get('title')!r} {t.get('refId')}", e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--wait", type=float, default=25.0, help="seconds of scraping before the checks")
    args = ap.parse_args()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    exporter = f"127.0.0.1:{srv.server_address[1]}"
    ysrv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), YaceHandler)
    threading.Thread(target=ysrv.serve_forever, daemon=True).start()
    yace = f"127.0.0.1:{ysrv.server_address[1]}"

    tmp = tempfile.mkdtemp(prefix="ops-e2e-")
    prom = None
    errors = []
    try:
        shutil.copytree(os.path.join(ROOT, "deploy", "prometheus", "rules"), os.path.join(tmp, "rules"))
        cfg = open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")).read()
        if "localhost:9439" not in cfg:
            errors.append("prometheus.yml: placeholder target localhost:9439 not found")
        cfg = cfg.replace("localhost:9439", exporter)
        if "localhost:5000" not in cfg:
            errors.append("prometheus.yml: placeholder yace target localhost:5000 not found")
        cfg = cfg.replace("localhost:5000", yace)
        cfg = re.sub(r"(scrape_interval|evaluation_interval): \S+", r"\1: 1s", cfg)
        cfg = re.sub(r"scrape_timeout: \S+", "scrape_timeout: 1s", cfg)
        open(os.path.join(tmp, "prometheus.yml"), "w").write(cfg)
        port = free_port()
        log = open(os.path.join(tmp, "prometheus.log"), "w")
        prom = subprocess.Popen(
            [args.prometheus, "--config.file", os.path.join(tmp, "prometheus.yml"),
             "--storage.tsdb.path", os.path.join(tmp, "data"),
             "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                api(port, "status/runtimeinfo")
                break
            except Exception:
                if prom.poll() is not None or time.time() > deadline:
                    raise SystemExit("prometheus did not start:\n" + open(os.path.join(tmp, "prometheus.log")).read()[-3000:])
                time.sleep(0.3)
        time.sleep(args.wait)

        targets = api(port, "targets")["data"]["activeTargets"]
        jobs = {(t["labels"].get("job"), t["health"]) for t in targets}
        for job in ("redshift-exporter", "yace"):
            if (job, "up") not in jobs:
                errors.append(f"scrape target of job {job} not up: {sorted(jobs)} {[t.get('lastError') for t in targets]}")

        groups = api(port, "rules")["data"]["groups"]
        files = {os.path.basename(g["file"]) for g in groups}
        for f in glob.glob(os.path.join(ROOT, "deploy", "prometheus", "rules", "*.rules.yml")):
            if os.path.basename(f) not in files:
                errors.append(f"rule file {os.path.basename(f)} not loaded via prometheus.yml rule_files")
        nrules = 0
        for g in groups:
            for r in g["rules"]:
                nrules += 1
                if r.get("health") != "ok" or r.get("lastError"):
                    errors.append(f"rule {r.get('name')}: health {r.get('health')} {r.get('lastError', '')}")
        if not nrules:
            errors.append("no rules loaded")
        # Alerts that must be pending or firing on this data (the rest must not error).
        active = {a["labels"]["alertname"] for a in api(port, "alerts")["data"]["alerts"]}
        for want in ("RedshiftExporterCheckFailing", "RedshiftExporterSkippedRuns",
                     "RedshiftExporterSampleErrors", "RedshiftExporterArchiveErrors"):
            if want not in active:
                errors.append(f"alert {want} is not active on data that should trigger it (active: {sorted(active)})")
        for quiet in ("RedshiftExporterDown", "RedshiftTargetDown", "RedshiftExporterCheckStale", "RedshiftExporterAbsent"):
            if quiet in active:
                errors.append(f"alert {quiet} is active although the exporter is healthy")

        nq = 0
        for where, expr in dashboard_queries():
            nq += 1
            res = api(port, "query", query=expr)
            if res.get("status") != "success":
                errors.append(f"{where}: {res.get('error')}")
            elif not res["data"]["result"]:
                errors.append(f"{where}: no data for {expr}")
        print(f"e2e: {len(targets)} target(s), {nrules} rules, {nq} dashboard queries checked")
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prom.kill()
        srv.shutdown()
        ysrv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
