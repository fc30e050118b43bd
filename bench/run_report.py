#!/usr/bin/env python3
"""run_report: the results of one bench/run, from the raw output it leaves.

    run_report.py RAW_DIR OUT_PREFIX

RAW_DIR holds what bench/run wrote: meta.tsv (key, value per line), runs.tsv
(scenario, target, label, exit status, JSON file per line), notes.txt and the
tools' JSON files. Writes OUT_PREFIX.json (everything, the tools' JSON
included), OUT_PREFIX.md (the tables) and, when gnuplot is installed,
OUT_PREFIX-latency.png and OUT_PREFIX-fanout.png drawn by bench/plots.gp.
Standard library only.
"""
import json
import os
import shutil
import subprocess
import sys

# The load tools call a run noisy above these (cores of other processes, of
# hypervisor steal).
NOISY_OTHER_CORES = 0.2
NOISY_STEAL_CORES = 0.05
KNOWN_SCENARIOS = ("micro", "connect", "idle", "fanout", "tenants", "catchup")
PLOT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots.gp")


# ---- reading ---------------------------------------------------------------

def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_runs(raw):
    runs = []
    for scenario, target, label, status, name in read_tsv(os.path.join(raw, "runs.tsv")):
        result = load_json(os.path.join(raw, name)) if name else None
        runs.append({"scenario": scenario, "target": target, "label": label,
                     "status": status, "result": result})
    return runs


def read_notes(raw):
    path = os.path.join(raw, "notes.txt")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def select(runs, scenario, target=None, prefix=""):
    return [r for r in runs if r["scenario"] == scenario and r["result"]
            and (target is None or r["target"] == target) and r["label"].startswith(prefix)]


def targets_of(runs):
    seen = []
    for r in runs:
        if r["target"] not in seen:
            seen.append(r["target"])
    return seen


# ---- formatting ------------------------------------------------------------

def num(v, digits=0):
    if v is None or v == "":
        return "n/a"
    return f"{v:,.{digits}f}"


def duration(v, unit):
    ns = v * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]
    for limit, div, name in ((1e3, 1, "ns"), (1e6, 1e3, "µs"), (1e9, 1e6, "ms")):
        if ns < limit:
            return f"{ns / div:.3g} {name}"
    return f"{ns / 1e9:.3g} s"


def per_second(v, what):
    for div, prefix in ((1e9, "G "), (1e6, "M "), (1e3, "k ")):
        if v >= div:
            return f"{v / div:.3g} {prefix}{what}/s"
    return f"{v:.3g} {what}/s"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def ms(hist, key):
    v = (hist or {}).get(key)
    return "n/a" if v is None else f"{v / 1000:.2f}"


def noise(res, other_key):
    other, steal = res.get(other_key), res.get("steal_cores")
    text = f"{num(other, 2)} / {num(steal, 2)}" if steal is not None else num(other, 2)
    if (other or 0) > NOISY_OTHER_CORES or (steal or 0) > NOISY_STEAL_CORES:
        text += " (noisy)"
    return text


def verdict(run):
    res = run["result"] or {}
    if run["status"] == "0":
        return "PASS"
    if run["status"] == "skipped":
        return "SKIPPED: the suite's time budget was used up"
    why = res.get("error") or ("server did not start" if run["status"] == "start-failed"
                               else f"exit status {run['status']}")
    return f"FAIL: {why}"


# ---- sections --------------------------------------------------------------

def md_header(meta, notes):
    dirty = " (working tree with uncommitted changes)" if meta.get("dirty") == "true" else ""
    lines = [
        f"# Nebula Sync benchmark suite: {meta['started_utc']} UTC ({meta['mode']} run)", "",
        f"- Commit {meta['commit']}{dirty}; nebula-syncd Release build, memory storage, no auth "
        "(but for tenants: the token file the tool wrote).",
        f"- Machine: {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['mem_gib']} GiB, "
        f"Linux {meta['kernel']}, {meta['compiler']}.",
        f"- Broker on CPUs {meta['broker_cpus']} (`--workers {meta['broker_workers']}`), load "
        f"tools on CPUs {meta['tool_cpus']} (`--threads {meta['tool_threads']}`); a fresh "
        "server for every step.",
        f"- Load average (1, 5, 15 min) {meta['loadavg_start']} at the start, "
        f"{meta['loadavg_end']} at the end ({meta['finished_utc']} UTC). Rows marked "
        "(noisy) had other processes or hypervisor steal take a noticeable share of the CPUs.",
        "",
    ]
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return lines


def micro_row(b):
    unit = b.get("time_unit", "ns")
    through = []
    if "items_per_second" in b:
        through.append(per_second(b["items_per_second"], "items"))
    if "bytes_per_second" in b:
        through.append(f"{b['bytes_per_second'] / 2**30:.3g} GiB/s")
    extra = [f"{k} {b[k]:.3g}" for k in ("reads_per_s", "skipped_pct", "overruns") if k in b]
    if b.get("error_occurred"):
        extra.append("ERROR: " + b.get("error_message", ""))
    return [f"`{b['name']}`", duration(b["real_time"], unit), duration(b["cpu_time"], unit),
            ", ".join(through) or "", ", ".join(extra)]


def md_micro(runs, meta):
    found = select(runs, "micro")
    if not found:
        return []
    benches = found[0]["result"].get("benchmarks", [])
    return ["## Micro-benchmarks (nebula-micro-bench)", "",
            f"Google Benchmark, `--benchmark_min_time={meta.get('micro_min_time_s')}`, unpinned. "
            "Time per iteration (wall, and CPU of the benchmark thread); for the ring fan-out "
            "rows the time is the producer's (FreeRunning) or until the last reader is done "
            "(Paced), and items are events.", ""] + \
        table(["benchmark", "time", "CPU", "throughput", "counters"], [micro_row(b) for b in benches])


def md_transport(runs, meta):
    by = {(r["scenario"], r["label"]): r["result"] for r in runs if r["result"]}
    if not any(s in ("connect", "idle") for s, _ in by):
        return []
    labels = ["plain", "tls"] + (["subscribed"] if ("idle", "subscribed") in by else [])

    def cell(scenario, fn):
        return [fn(by.get((scenario, label)) or {}) for label in labels]

    def lat(r):
        h = r.get("latency_us") or {}
        return f"{num(h.get('p50'))} / {num(h.get('p99'))} / {num(h.get('max'))}"

    rows = [
        [f"handshakes per second (64 in flight, {meta['connect_s']} s)"] +
        cell("connect", lambda r: num(r.get("handshakes_per_s"))),
        ["handshakes per broker CPU-second"] +
        cell("connect", lambda r: num(r.get("handshakes_per_broker_cpu_s"))),
        ["handshake latency p50 / p99 / max (µs)"] + cell("connect", lat),
        ["connect failures"] + cell("connect", lambda r: num(r.get("failures"))),
        [f"idle connections open (of {meta['idle_connections']}, held {meta['idle_hold_s']} s)"] +
        cell("idle", lambda r: num(r.get("open"))),
        ["broker RSS before / after (KiB)"] +
        cell("idle", lambda r: f"{num(r.get('rss_before_kib'))} / {num(r.get('rss_after_kib'))}"),
        ["broker KiB per idle connection"] + cell("idle", lambda r: num(r.get("kib_per_connection"), 2)),
        ["other processes' CPU during connect / idle (cores)"] +
        [f"{noise(by.get(('connect', lb)) or {}, 'other_processes_cpu_cores')} / "
         f"{noise(by.get(('idle', lb)) or {}, 'other_processes_cpu_cores')}" for lb in labels],
    ]
    tls = (by.get(("connect", "tls")) or by.get(("idle", "tls")) or {}).get("tls_info")
    header = ["measurement", "plain ws://", "TLS wss://"]
    if "subscribed" in labels:
        header.append("plain, subscribed (nebula-sync-bench idle)")
    return ["## Transport (nebula-ws-bench, nebula-sync-bench idle)", "",
            "Connect: full handshakes (TCP, TLS, upgrade, Hello/Welcome, Close) as fast as they "
            "complete. Idle: connections opened, then held; memory is the broker's VmRSS. "
            "Subscribed: each idle connection also subscribed to one collection (its snapshot "
            "received).", ""] + table(header, rows) + ([f"TLS: {tls}.", ""] if tls else [])


def per_broker_cpu_s(res):
    us = res.get("broker_cpu_us_per_delivery")
    return 1e6 / us if us else None


def max_row(run):
    res = run["result"]
    window = res.get("window_s") or 0
    cores = res["broker_cpu_s"] / window if window and "broker_cpu_s" in res else None
    lat = res.get("latency_us")
    return [run["target"], num(res.get("subscribers")), num(res.get("events_accepted_per_s")),
            num(res.get("deliveries_per_s")), num(cores, 2),
            num(res.get("broker_cpu_us_per_delivery"), 3), num(per_broker_cpu_s(res)),
            f"{ms(lat, 'p50')} / {ms(lat, 'p99')}",
            f"{num(res.get('lost'))} / {num(res.get('duplicated'))}",
            noise(res, "other_processes_cores"), verdict(run)]


def md_fanout_max(runs, meta):
    found = sorted(select(runs, "fanout", prefix="max-"),
                   key=lambda r: (r["result"].get("subscribers", 0), r["target"]))
    if not found:
        return []
    return ["## Fan-out as fast as acknowledged (nebula-sync-bench fanout)", "",
            f"1 publisher, batches of 10 events of 200 B, 4 Pushes in flight; "
            f"{meta['fanout_warmup_s']} s warm-up, {meta['fanout_s']} s window. Broker CPU is "
            "its utime+stime over the window (softirq not included).", ""] + \
        table(["target", "subscribers", "events/s", "deliveries/s", "broker CPU (cores)",
               "broker µs per delivery", "deliveries per broker CPU-s",
               "latency p50 / p99 (ms)", "lost / dup", "other / steal (cores)", "result"],
              [max_row(r) for r in found])


def latency_row(run):
    res = run["result"]
    lat = res.get("latency_us")
    asked = res.get("rate") or 0
    reached = res.get("events_accepted_per_s", 0) / asked * 100 if asked else None
    # nebula-sync-bench's own threshold: below it the latencies are not at the asked rate.
    short = " (not reached)" if reached is not None and reached < 98 else ""
    return [run["target"], run["label"][len("rate-"):], num(asked), f"{num(reached, 1)}%{short}",
            ms(lat, "p50"), ms(lat, "p90"), ms(lat, "p99"), ms(lat, "p999"), ms(lat, "max"),
            num(res.get("broker_cpu_us_per_delivery"), 3),
            noise(res, "other_processes_cores"), verdict(run)]


def md_latency(runs, meta):
    found = sorted(select(runs, "fanout", prefix="rate-"),
                   key=lambda r: (r["target"], r["result"].get("rate", 0)))
    if not found:
        return []
    return [f"## Fan-out latency against offered load ({meta['latency_subscribers']} subscribers)", "",
            "Publishers paced to a fraction of the target's own maximum events/s at "
            f"{meta['latency_subscribers']} subscribers (table above). Latency is publish -> "
            "deliver, every event of the window, in ms.", ""] + \
        table(["target", "fraction", "offered events/s", "reached", "p50", "p90", "p99", "p99.9",
               "max", "broker µs per delivery", "other / steal (cores)", "result"],
              [latency_row(r) for r in found])


def compare_rows(runs):
    """Per subscriber count: deliveries per broker CPU-second, nebula vs peers."""
    peers = [t for t in targets_of(select(runs, "fanout")) if t != "nebula"]
    value = {(r["target"], r["result"].get("subscribers")): per_broker_cpu_s(r["result"])
             for r in select(runs, "fanout", prefix="max-")}
    rows = []
    for subs in sorted({s for t, s in value if t == "nebula"}):
        ours = value.get(("nebula", subs))
        row = {"subscribers": subs, "nebula": ours, "peers": {}}
        for p in peers:
            theirs = value.get((p, subs))
            row["peers"][p] = {"value": theirs,
                               "ratio": ours / theirs if ours and theirs else None}
        rows.append(row)
    return peers, rows


def md_compare(runs):
    peers, rows = compare_rows(runs)
    if not peers:
        return []
    header = ["subscribers", "nebula"]
    for p in peers:
        header += [p, f"nebula ÷ {p}"]
    body = []
    for row in rows:
        cells = [num(row["subscribers"]), num(row["nebula"])]
        for p in peers:
            ratio = row["peers"][p]["ratio"]
            cells += [num(row["peers"][p]["value"]), "n/a" if ratio is None else f"{ratio:.2f}×"]
        body.append(cells)
    return ["## Nebula vs peers: deliveries per broker CPU-second", "",
            "From the as-fast-as-acknowledged runs above; the peers ran on the broker's CPUs, "
            "measured through the node process's CPU time.", ""] + table(header, body)


def tenants_row(run):
    res = run["result"]
    lat = res.get("latency_us")
    return [f"{num(res.get('tenants'))} x {num(res.get('collections'))}", num(res.get("subscribers")),
            num(res.get("publishers")), num(res.get("events_accepted_per_s")),
            num(res.get("deliveries_per_s")), num(res.get("broker_cpu_us_per_delivery"), 3),
            f"{ms(lat, 'p50')} / {ms(lat, 'p99')}",
            f"{num(res.get('lost'))} / {num(res.get('duplicated'))}",
            f"{num(res.get('isolation_violations'))} / {num(res.get('cross_collection'))}",
            noise(res, "other_processes_cores"), verdict(run)]


def md_tenants(runs, meta):
    found = select(runs, "tenants")
    if not found:
        return []
    return ["## Tenants (nebula-sync-bench tenants)", "",
            "Fan-out over tenants x collections (the same collection names under every tenant's "
            "token), 10 subscribers and 1 publisher per stream, as fast as acknowledged; "
            f"{meta['fanout_warmup_s']} s warm-up, {meta['fanout_s']} s window. Isolation: events of "
            "another tenant / of another collection of the same tenant that a subscriber received "
            "(must be 0 / 0).", ""] + \
        table(["tenants x collections", "subscribers", "publishers", "events/s", "deliveries/s",
               "broker µs per delivery", "latency p50 / p99 (ms)", "lost / dup", "isolation / cross",
               "other / steal (cores)", "result"], [tenants_row(r) for r in found])


def catchup_rows(run):
    res = run["result"]
    subs = res.get("subscribers")
    replay = [num(subs), num(res.get("replay_last_seq")), f"{num(res.get('replay_first_ms'), 1)}",
              f"{num(res.get('replay_last_ms'), 1)}", num(res.get("replay_events_per_s")),
              num(res.get("replay_events_per_s_all")),
              num(res.get("replay_broker_cpu_us_per_item"), 3),
              f"{num(res.get('replay_lost'))} / {num(res.get('replay_duplicated'))}"]
    snapshot = [num(subs), num(res.get("snapshot_documents")), num(res.get("snapshot_pages")),
                f"{num(res.get('snapshot_first_ms'), 1)}", f"{num(res.get('snapshot_last_ms'), 1)}",
                num(res.get("snapshot_documents_per_s")),
                num(res.get("snapshot_broker_cpu_us_per_item"), 3),
                f"{num(res.get('snapshot_documents_seen'))} / {num(res.get('snapshot_repeated'))}"]
    tail = [noise(res, "other_processes_cores"), verdict(run)]
    return replay + tail, snapshot + tail


def md_catchup(runs, meta):
    found = sorted(select(runs, "catchup"), key=lambda r: r["result"].get("subscribers", 0))
    if not found:
        return []
    rows = [catchup_rows(r) for r in found]
    return ["## Catch-up (nebula-sync-bench catchup)", "",
            f"Replay: {num(int(meta['catchup_events']))} events pushed into a fresh collection, "
            "then the subscribers subscribe from the cursor it had before (seq 0) and replay them "
            "from storage. Times are from each one's Subscribe, the slowest subscriber's; "
            "events/s per subscriber is its events over its time, in all the events of all of "
            "them over the slowest time; broker µs per replayed event over the step.", ""] + \
        table(["subscribers", "events each", "first event (ms)", "caught up (ms)",
               "events/s per subscriber", "events/s in all", "broker µs per event", "lost / dup",
               "other / steal (cores)", "result"], [r[0] for r in rows]) + \
        [f"Snapshot: {num(int(meta['catchup_documents']))} distinct documents pushed into another "
         "fresh collection, then the subscribers subscribe with no cursor; the check is every "
         "document exactly once in each snapshot.", ""] + \
        table(["subscribers", "documents", "pages", "first page (ms)", "last page (ms)",
               "documents/s per subscriber", "broker µs per document", "seen / repeated",
               "other / steal (cores)", "result"], [r[1] for r in rows])


def md_other(runs):
    found = [r for r in runs if r["scenario"] not in KNOWN_SCENARIOS and r["result"]]
    if not found:
        return []
    rows = []
    for r in found:
        res = r["result"]
        lat = res.get("latency_us")
        rows.append([r["scenario"], r["target"], r["label"], num(res.get("events_accepted_per_s")),
                     num(res.get("deliveries_per_s")), f"{ms(lat, 'p50')} / {ms(lat, 'p99')}",
                     num(res.get("broker_cpu_us_per_delivery"), 3), verdict(r)])
    return ["## Other scenarios", ""] + \
        table(["scenario", "target", "label", "events/s", "deliveries/s", "latency p50 / p99 (ms)",
               "broker µs per delivery", "result"], rows)


def md_failures(runs):
    bad = [r for r in runs if r["status"] != "0"]
    if not bad:
        return ["Every step ran and passed.", ""]
    return ["## Failed or skipped steps", ""] + \
        [f"- {r['scenario']} {r['target']} {r['label']}: {verdict(r)}" for r in bad] + [""]


# ---- plots -----------------------------------------------------------------

def write_plot_data(runs, folder):
    """Data files for plots.gp; returns the targets with latency and fan-out data."""
    os.makedirs(folder, exist_ok=True)
    lat_targets, fan_targets = [], []
    for t in targets_of(runs):
        lat = sorted(select(runs, "fanout", t, "rate-"), key=lambda r: r["result"].get("rate", 0))
        lat = [r for r in lat if (r["result"].get("latency_us") or {}).get("p50") is not None]
        if lat:
            lat_targets.append(t)
            with open(os.path.join(folder, f"latency-{t}.dat"), "w", encoding="utf-8") as f:
                f.write("# offered_events_per_s p50_ms p90_ms p99_ms p999_ms\n")
                for r in lat:
                    h = r["result"]["latency_us"]
                    f.write(f"{r['result']['rate']} " +
                            " ".join(f"{h[k] / 1000:.4f}" for k in ("p50", "p90", "p99", "p999")) + "\n")
        fan = sorted(select(runs, "fanout", t, "max-"), key=lambda r: r["result"].get("subscribers", 0))
        fan = [r for r in fan if r["result"].get("broker_cpu_us_per_delivery")]
        if fan:
            fan_targets.append(t)
            with open(os.path.join(folder, f"fanout-{t}.dat"), "w", encoding="utf-8") as f:
                f.write("# subscribers deliveries_per_s broker_us_per_delivery\n")
                for r in fan:
                    res = r["result"]
                    f.write(f"{res['subscribers']} {res['deliveries_per_s']} "
                            f"{res['broker_cpu_us_per_delivery']}\n")
    return lat_targets, fan_targets


def make_plots(runs, raw, out_prefix, meta):
    """Runs gnuplot; returns the PNG files made (names relative to the .md)."""
    if not shutil.which("gnuplot"):
        return []
    folder = os.path.join(raw, "plots")
    lat_targets, fan_targets = write_plot_data(runs, folder)
    made = []
    for kind, targets in (("latency", lat_targets), ("fanout", fan_targets)):
        if not targets:
            continue
        png = f"{out_prefix}-{kind}.png"
        settings = (f"kind='{kind}'; datadir='{folder}'; targets='{' '.join(targets)}'; "
                    f"out='{png}'; subscribers='{meta['latency_subscribers']}'; "
                    f"stamp='{meta['started_utc']} UTC, {meta['mode']} run'")
        done = subprocess.run(["gnuplot", "-e", settings, PLOT_SCRIPT], capture_output=True, text=True)
        if done.returncode == 0 and os.path.exists(png):
            made.append(os.path.basename(png))
        else:
            print(f"run_report: gnuplot failed for {kind}: {done.stderr.strip()}", file=sys.stderr)
    return made


def md_plots(plots):
    if not shutil.which("gnuplot"):
        return ["No plots: gnuplot is not installed (on Debian: apt-get install gnuplot-nox).", ""]
    if not plots:
        return []
    return ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]


# ---- main ------------------------------------------------------------------

def main():
    if len(sys.argv) != 3:
        sys.exit("usage: run_report.py RAW_DIR OUT_PREFIX")
    raw, out_prefix = sys.argv[1], sys.argv[2]
    meta = dict(read_tsv(os.path.join(raw, "meta.tsv")))
    runs, notes = read_runs(raw), read_notes(raw)
    plots = make_plots(runs, raw, out_prefix, meta)
    md = (md_header(meta, notes) + md_micro(runs, meta) + md_transport(runs, meta) +
          md_fanout_max(runs, meta) + md_latency(runs, meta) + md_compare(runs) +
          md_tenants(runs, meta) + md_catchup(runs, meta) + md_other(runs) +
          md_plots(plots) + md_failures(runs))
    with open(out_prefix + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    summary = {"suite": "bench/run", "meta": meta, "notes": notes, "runs": runs,
               "compare": compare_rows(runs)[1], "plots": plots}
    with open(out_prefix + ".json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
