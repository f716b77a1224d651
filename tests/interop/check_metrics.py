"""The run metrics file read by Python's prometheus-client parsers: the Prometheus text format
parser (what node_exporter's textfile collector speaks) and the strict OpenMetrics parser (the
format prometheus-client's Rust encoder writes). Usage: check_metrics.py FILE.prom"""

import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus

EXPECTED = {
    "ticketsync_run_start_timestamp_seconds",
    "ticketsync_run_end_timestamp_seconds",
    "ticketsync_run_duration_seconds",
    "ticketsync_last_success_timestamp_seconds",
    "ticketsync_run_success",
    "ticketsync_run_status",
    "ticketsync_run_tickets",
    "ticketsync_run_rejects",
    "ticketsync_run_api_calls",
    "ticketsync_run_api_credits",
    "ticketsync_run_api_rate_limited_responses",
    "ticketsync_run_api_retries",
    "ticketsync_api_rate_limit_credits",
    "ticketsync_run_budget_utilization_ratio",
    "ticketsync_run_written_bytes",
    "ticketsync_run_written_files",
    "ticketsync_dataset_newest_closed_timestamp_seconds",
    "ticketsync_run_redactions",
    "ticketsync_run_erased_tickets",
    "ticketsync_run_retention_removed",
}


def samples(families):
    out = {}
    for family in families:
        if family.type != "gauge":
            sys.exit(f"{family.name}: type {family.type}, expected gauge")
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    for parser in (prometheus, openmetrics):
        found = samples(parser(text))
        names = {name for name, _ in found}
        missing = EXPECTED - names
        if missing:
            sys.exit(f"{parser.__module__}: missing {sorted(missing)}")
        extra = names - EXPECTED
        if extra:
            sys.exit(f"{parser.__module__}: unexpected {sorted(extra)}")
        if found[("ticketsync_run_success", ())] != 1.0:
            sys.exit("the demo run did not succeed")
        status = {labels[0][1]: v for (n, labels), v in found.items() if n == "ticketsync_run_status"}
        if sorted(status.values()) != [0.0, 0.0, 0.0, 0.0, 1.0]:
            sys.exit(f"run status is not one-hot: {status}")
        redacted = found[("ticketsync_run_redactions", (("rule", "credential"),))]
        if redacted <= 0:
            sys.exit("the demo's notes hold credentials, but none was redacted")
        written = found[("ticketsync_run_tickets", (("outcome", "written"),))]
        if written <= 0:
            sys.exit("no tickets written")
        if found[("ticketsync_last_success_timestamp_seconds", ())] < found[("ticketsync_run_start_timestamp_seconds", ())]:
            sys.exit("last success before the run's start")
    print(f"metrics: {len(found)} samples in {len(names)} families, read by both parsers")


main()
