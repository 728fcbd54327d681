#!/usr/bin/env python3
"""The peer: Elastic's reference EQL engine (the `eql` package on PyPI) on the
benchmark corpus, against apt-netcon on the same records.

Not part of CI. Usage (from the repository root):

    python3 -m venv target/eql-venv && target/eql-venv/bin/pip install eql
    cargo bench --bench throughput          # writes target/bench/corpus.ndjson and results.json
    target/eql-venv/bin/python benches/peers/eql_peer.py [--corpus FILE] [--limit N] [--runs N]

What it measures, in events per CPU second (as `cargo bench` does), median
of `--runs` (default 3):

* eql, end to end: `json.loads` of each line, an `eql.Event` (type = first
  `event.category`, time = `@timestamp` in ms), `PythonEngine.stream_event`;
* eql, engine only: the same with the events parsed beforehand;
* apt-netcon: the release CLI on the same file (file → /dev/null), timed
  here; and the Rust API's figure from the last `cargo bench` run
  (target/bench/results.json) when it was on the same corpus.

The query is the detector's own (`apt-netcon --print-rule`), parsed with
`eql.parser.elasticsearch_syntax` and `eql.parser.ignore_missing_functions`;
`cidrmatch` is registered as a Python function (the `ipaddress` module).
The Python engine does not match a scalar test against the elements of an
array field as Elasticsearch does (`process.args == "-c"` is false on an
args array there), so the rule's two tests on array fields are rewritten
with `arrayContains` (see ARRAY_TESTS). Both engines' alert counts are
printed; where they still differ, it is the Python engine's own semantics
(e.g. its `==` ignores case, so a shell started by `APT` pairs there).

Writes target/bench/peer-eql.json, which the next `cargo bench --bench
throughput` draws in BENCHMARKS.svg.

With `--pack DIR` (e.g. ../shared/rules/elastic-linux-eql): the rule pack
instead. Every `.toml` (its `[rule] query`) and `.eql` of DIR that the
Python engine parses, compiles and runs on the corpus without raising (the
others are counted, with the first reasons) goes
into one PythonEngine, run end to end on the corpus (`--limit`, default
5,000 events: the Python engine is slow); apt-netcon's CLI runs the whole
directory (`--rules DIR --alerts-only`) on the same file. No array-field
rewriting here: the Python engine's own semantics on arrays stand, so the
alert counts are printed but not compared. Writes target/bench/peer-eql-pack.json.
"""

import argparse
import ipaddress
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime

import eql
from eql.parser import elasticsearch_syntax, ignore_missing_functions, parse_query

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cidrmatch(value, *blocks):
    """EQL's cidrMatch: the address is inside one of the blocks."""
    values = value if isinstance(value, list) else [value]
    for v in values:
        try:
            ip = ipaddress.ip_address(v)
        except (TypeError, ValueError):
            continue
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        for b in blocks:
            net = ipaddress.ip_network(b, strict=False)
            if ip.version == net.version and ip in net:
                return True
    return False


EPOCH = datetime(1970, 1, 1)


def ts_ms(s):
    """RFC 3339 in UTC ('Z'), any fractional digits → epoch milliseconds."""
    base, _, frac = s.rstrip("Z").partition(".")
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    return int((dt - EPOCH).total_seconds()) * 1000 + (int((frac + "000")[:3]) if frac else 0)


# Elasticsearch matches a scalar test against every element of an array
# field; the Python engine compares the whole array and never matches. The
# two tests of the rule on fields that Elastic Defend writes as arrays are
# rewritten with EQL's arrayContains, which is what they mean.
ARRAY_TESTS = {
    'event.type == "start"': 'arrayContains(event.type, "start")',
    'process.args == "-c"': 'arrayContains(process.args, "-c")',
}


def for_python_eql(text):
    for a, b in ARRAY_TESTS.items():
        assert a in text, a
        text = text.replace(a, b)
    return text


def to_event(doc):
    cat = doc.get("event", {}).get("category")
    etype = cat[0] if isinstance(cat, list) and cat else (cat or "generic")
    return eql.Event(etype, ts_ms(doc["@timestamp"]), doc)


def engine(query):
    alerts = []
    e = eql.PythonEngine({"time_unit": 1000})
    e.add_custom_function("cidrmatch", cidrmatch)
    e.add_query(query)
    e.add_output_hook(lambda events: alerts.append(events))
    return e, alerts


def run_end_to_end(query, lines):
    e, alerts = engine(query)
    t = time.process_time()
    for line in lines:
        e.stream_event(to_event(json.loads(line)))
    e.finalize()
    return time.process_time() - t, len(alerts)


def run_engine_only(query, events):
    e, alerts = engine(query)
    t = time.process_time()
    for ev in events:
        e.stream_event(ev)
    e.finalize()
    return time.process_time() - t, len(alerts)


def pack_queries(rules_dir):
    """(name, query text) of every rule file in the directory, sorted."""
    import tomllib

    out = []
    for name in sorted(os.listdir(rules_dir)):
        path = os.path.join(rules_dir, name)
        if name.endswith(".toml"):
            with open(path, "rb") as f:
                q = tomllib.load(f).get("rule", {}).get("query")
            if q:
                out.append((name, q))
        elif name.endswith(".eql"):
            with open(path) as f:
                out.append((name, f.read()))
    return out


def pack_main(args):
    queries = pack_queries(args.pack)
    parsed, failed = [], []
    for name, text in queries:
        try:
            with elasticsearch_syntax, ignore_missing_functions:
                q = parse_query(text)
            # Compiled alone first: some parse but name functions the Python
            # engine does not have.
            probe = eql.PythonEngine({"time_unit": 1000})
            probe.add_custom_function("cidrmatch", cidrmatch)
            probe.add_query(q)
            parsed.append(q)
        except Exception as e:  # the Python engine's own limits
            failed.append((name, (str(e).splitlines() or ["?"])[0][:120]))
    with open(args.corpus, "rb") as f:
        lines = f.read().splitlines()[: args.limit or 5000]
    n = len(lines)
    # Some raise on the corpus (e.g. a list where the engine hashes a
    # value): each rule alone first; those that raise are left out.
    events = [to_event(json.loads(l)) for l in lines]
    runnable = []
    for q in parsed:
        e = eql.PythonEngine({"time_unit": 1000})
        e.add_custom_function("cidrmatch", cidrmatch)
        e.add_query(q)
        try:
            for ev in events:
                e.stream_event(ev)
            e.finalize()
            runnable.append(q)
        except Exception as err:  # the Python engine's own limits
            failed.append((str(q)[:60], "raised at run time: " + (str(err).splitlines() or ["?"])[0][:80]))
    parsed = runnable
    path = os.path.join(ROOT, "target", "bench", "peer-pack-corpus.ndjson")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    print(f"pack: {args.pack}: {len(queries)} rules, {len(parsed)} run by eql {eql.__version__}, {len(failed)} not")
    for name, why in failed[:5]:
        print(f"  not parsed: {name}: {why}")

    def run_pack():
        alerts = []
        e = eql.PythonEngine({"time_unit": 1000})
        e.add_custom_function("cidrmatch", cidrmatch)
        for q in parsed:
            e.add_query(q)
        e.add_output_hook(lambda events: alerts.append(events))
        t = time.process_time()
        for line in lines:
            e.stream_event(to_event(json.loads(line)))
        e.finalize()
        return time.process_time() - t, len(alerts)

    runs = [run_pack() for _ in range(args.runs)]
    eql_eps = n / statistics.median(t for t, _ in runs)
    cli_times = []
    for _ in range(max(args.runs, 3)):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.devnull, "wb") as out:
            subprocess.run([args.cli, "--quiet", "--alerts-only", "--rules", args.pack, path], check=True, stdout=out)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    cli = n / statistics.median(cli_times)
    r = subprocess.run([args.cli, "--quiet", "--alerts-only", "--rules", args.pack, path], check=True, capture_output=True)
    ours_alerts = r.stdout.count(b"\n")
    print()
    print(f"| engine ({n} events) | rules | events/s | alerts | apt-netcon CLI × |")
    print("|---|---:|---:|---:|---:|")
    print(f"| eql, end to end (json.loads + engine) | {len(parsed)} | {eql_eps:,.0f} | {runs[0][1]} | {cli / eql_eps:,.0f} |")
    print(f"| apt-netcon CLI --rules, file → /dev/null | {len(queries)} | {cli:,.0f} | {ours_alerts} | 1 |")
    out = {
        "eql_version": eql.__version__,
        "rules": len(queries),
        "run_by_eql": len(parsed),
        "not_parsed": failed,
        "events": n,
        "eql_events_per_s": eql_eps,
        "eql_alerts": runs[0][1],
        "cli_events_per_s": cli,
        "ours_alerts": ours_alerts,
    }
    with open(os.path.join(ROOT, "target", "bench", "peer-eql-pack.json"), "w") as f:
        json.dump(out, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pack", help="a directory of rules: time the rule pack instead (see above)")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "target", "bench", "corpus.ndjson"))
    ap.add_argument("--limit", type=int, default=0, help="first N events only (default: all)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cli", default=os.path.join(ROOT, "target", "release", "apt-netcon"))
    args = ap.parse_args()
    if args.pack:
        return pack_main(args)

    with open(args.corpus, "rb") as f:
        lines = f.read().splitlines()
    if args.limit:
        lines = lines[: args.limit]
    n = len(lines)
    nbytes = sum(len(l) + 1 for l in lines)
    text = subprocess.run([args.cli, "--print-rule"], check=True, capture_output=True, text=True).stdout
    text = for_python_eql(text)
    with elasticsearch_syntax, ignore_missing_functions:
        query = parse_query(text)

    print(f"corpus: {args.corpus}, {n} events, {nbytes / 1e6:.1f} MB")
    print(f"eql {eql.__version__} (Python {sys.version.split()[0]}), {args.runs} runs each")

    e2e = [run_end_to_end(query, lines) for _ in range(args.runs)]
    events = [to_event(json.loads(l)) for l in lines]
    only = [run_engine_only(query, events) for _ in range(args.runs)]
    eql_e2e = n / statistics.median(t for t, _ in e2e)
    eql_only = n / statistics.median(t for t, _ in only)
    eql_alerts = e2e[0][1]

    # apt-netcon on the same bytes
    if args.limit:
        path = os.path.join(ROOT, "target", "bench", "peer-corpus.ndjson")
        with open(path, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
    else:
        path = args.corpus
    cli_times = []
    for _ in range(max(args.runs, 5)):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.devnull, "wb") as out:
            subprocess.run([args.cli, "--quiet", path], check=True, stdout=out)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    cli = n / statistics.median(cli_times)
    r = subprocess.run([args.cli, path], check=True, capture_output=True, text=True)
    ours_alerts = next((int(w.split("=")[1]) for w in r.stderr.split() if w.startswith("annotated=")), -1)

    api = None
    results = os.path.join(ROOT, "target", "bench", "results.json")
    if os.path.exists(results) and not args.limit:
        with open(results) as f:
            res = json.load(f)
        if os.path.abspath(res["corpus"]["path"]) == os.path.abspath(path) and res["corpus"]["events"] == n:
            api = next(row["events_per_s"] for row in res["rows"] if row["name"].startswith("(1) "))

    print()
    print("| engine | events/s | alerts | apt-netcon CLI × | apt-netcon Rust API × |")
    print("|---|---:|---:|---:|---:|")
    for name, eps in [("eql, end to end (json.loads + engine)", eql_e2e), ("eql, engine only (events parsed beforehand)", eql_only)]:
        print(f"| {name} | {eps:,.0f} | {eql_alerts} | {cli / eps:,.0f} | {api / eps:,.0f} |" if api else
              f"| {name} | {eps:,.0f} | {eql_alerts} | {cli / eps:,.0f} | (run cargo bench first) |")
    print(f"| apt-netcon CLI, file → /dev/null | {cli:,.0f} | {ours_alerts} | 1 | |")
    if api:
        print(f"| apt-netcon Rust API (cargo bench) | {api:,.0f} | {ours_alerts} | | 1 |")

    out = {
        "eql_version": eql.__version__,
        "python": sys.version.split()[0],
        "events": n,
        "events_per_s": eql_e2e,
        "engine_only_events_per_s": eql_only,
        "eql_alerts": eql_alerts,
        "cli_events_per_s": cli,
        "api_events_per_s": api,
        "ours_alerts": ours_alerts,
    }
    with open(os.path.join(ROOT, "target", "bench", "peer-eql.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
