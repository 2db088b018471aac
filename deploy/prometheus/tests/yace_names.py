#!/usr/bin/env python3
"""The Prometheus metric names yet-another-cloudwatch-exporter (YACE) publishes for a config.

YACE names a CloudWatch metric aws_<namespace>_<metric>_<statistic>, each part through its
PromString (lower-case, "_" before an upper-case letter that follows a lower-case letter or a
digit, "/" "-" "." and the like to "_"), leading namespace words trimmed from the metric part
(pkg/promutil: BuildMetricName, PromString). The lint (.ci/lint-ops) allows these names in
dashboards, and the e2e smoke test serves them, so a panel or rule can only use what
deploy/cloudwatch/yace.yml actually asks CloudWatch for.

    python3 deploy/prometheus/tests/yace_names.py deploy/cloudwatch/yace.yml
"""
import sys

import yaml


def prom_string(text):
    out, prev = [], ""
    for c in text:
        if c in " ,\t/\\.-:=@<>()":
            out.append("_")
        elif c == "%":
            out.append("_percent")
        else:
            if c.isupper() and (prev.islower() or prev.isdigit()):
                out.append("_")
            out.append(c.lower())
        prev = c
    return "".join(out)


def metric_name(namespace, metric, statistic):
    ns = prom_string(namespace.lower()).lstrip("_")
    name = prom_string(metric)
    for part in ns.split("_"):
        if name.startswith(part):
            name = name[len(part):]
    name = name.lstrip("_")
    prefix = "" if ns.startswith("aws") else "aws_"
    return f"{prefix}{ns}_{name}_{prom_string(statistic)}"


def names(config_path):
    """(name, namespace, dimension label) for every metric and statistic of the config."""
    cfg = yaml.safe_load(open(config_path))
    out = []
    for job in cfg.get("discovery", {}).get("jobs", []):
        dims = job.get("dimensionNameRequirements") or []
        for m in job.get("metrics", []):
            for s in m.get("statistics", job.get("statistics", [])):
                out.append((metric_name(job["type"], m["name"], s), job["type"],
                            [f"dimension_{d}" for d in dims]))
    return out


if __name__ == "__main__":
    assert metric_name("AWS/EC2", "CPUUtilization", "Maximum") == "aws_ec2_cpuutilization_maximum"
    assert metric_name("AWS/Redshift", "ReadIOPS", "Average") == "aws_redshift_read_iops_average"
    assert metric_name("AWS/Redshift-Serverless", "ComputeCapacity", "Average") == \
        "aws_redshift_serverless_compute_capacity_average"
    for n, ns, dims in names(sys.argv[1]):
        print(n, ns, ",".join(dims))
