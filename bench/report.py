#!/usr/bin/env python3
"""Turns the generator's JSON lines (bench/run) into BENCHMARKS.md and PNG plots.

Each measurement may be repeated (--reps); every figure shown is the median over repetitions.
Ratios are always ssehub/peer: above 1 is better for rates, below 1 for latency and memory.
"""

import argparse
import json
import os
import statistics
from collections import Counter, defaultdict

PEER_ORDER = ["ssehub", "ssehub-durable", "nchan", "pushpin", "express", "better-sse"]
PEER_NAMES = {
    "ssehub": "ssehub (memory)",
    "ssehub-durable": "ssehub (durable)",
    "ssehub-redis": "ssehub (Redis)",
    "ssehub-postgres": "ssehub (PostgreSQL)",
    "ssehub-es256": "ssehub, ES256 token",
    "ssehub-eddsa": "ssehub, EdDSA token",
    "nchan": "nginx + nchan",
    "pushpin": "Pushpin (GRIP origin)",
    "express": "Express (nests tutorial)",
    "better-sse": "better-sse on Express",
}


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def get(row, path):
    v = row
    for k in path.split("."):
        if not isinstance(v, dict) or v.get(k) is None:
            return None
        v = v[k]
    return v


def gen_ramp(rows):
    """The generator's CPU time next to the ramp's wall time, medians (idle workload)."""
    g = median_of(rows, "generator_cpu_s")
    w = median_of(rows, "ramp_s")
    if g is None or w is None:
        return "n/a"
    return f"{g:.2f} s / {w:.2f} s"


def ramp_cost(rows):
    """The server's CPU per new subscription during the ramp, and the two cores' busy shares
    (server's, generator's), medians (idle workload; older result lines lack them)."""
    us = median_of(rows, "ramp_server_us_per_subscription")
    cores = [r.get("ramp_cores_busy_pct") for r in rows]
    cores = [c for c in cores if c and len(c) == 2 and None not in c]
    busy = (
        f"{statistics.median(c[0] for c in cores):.0f} % / {statistics.median(c[1] for c in cores):.0f} %"
        if cores
        else "n/a"
    )
    return f"{fmt(us)} µs" if us is not None else "n/a", busy


def median_of(rows, path):
    vals = [get(r, path) for r in rows]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


# A repetition during which other processes took more than this share of a core on the two
# benchmark cores is disturbed; it is left out when an undisturbed one of the same measurement
# exists (the machine is shared with builds).
DISTURBED_PCT = 20


def disturbed(r):
    return (r.get("other_cpu_pct") or 0) > DISTURBED_PCT


def newest_run(rows):
    """The rows of the newest run among `rows`: partial runs (bench/run --only) append to the
    earlier runs' lines, and a section must not mix builds."""
    latest = max(r.get("run", "") for r in rows)
    return [r for r in rows if r.get("run", "") == latest]


def group(rows, workload):
    """{(peer, subscribers): [rows]} for one workload: failed runs left out, and disturbed ones
    too where a clean repetition exists."""
    g = defaultdict(list)
    for r in rows:
        if r.get("workload") == workload and not r.get("failed"):
            g[(r["peer"], r.get("subscribers"))].append(r)
    for k, rs in g.items():
        clean = [r for r in rs if not disturbed(r)]
        g[k] = clean or rs
    return g


def peers_in(rows):
    seen = {r["peer"] for r in rows}
    return [p for p in PEER_ORDER if p in seen] + sorted(seen - set(PEER_ORDER))


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float) and abs(v) < 100 and v != int(v):
        return f"{v:,.2f}{unit}"
    return f"{int(round(v)):,}{unit}"


def pct(v):
    return "n/a" if v is None else f"{v:.0f} %"


def gen_pct(v):
    """The generator's CPU, flagged when it may have set the pace."""
    if v is None:
        return "n/a"
    return f"**{v:.0f} %**" if v >= GEN_BUSY_PCT else f"{v:.0f} %"


# At or above this, the generator's core was nearly full: the peer's figure is a lower bound.
GEN_BUSY_PCT = 85


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def us_to_ms(v):
    return None if v is None else v / 1000.0


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v:.2f} ms" if v < 10 else f"{v:,.0f} ms"


def loss_cell(rs):
    lost = median_of(rs, "lost")
    exp = median_of(rs, "expected")
    closed = median_of(rs, "streams_closed") or 0
    if lost is None:
        return "n/a"
    s = f"{int(lost):,} / {int(exp or 0):,}"
    if closed:
        s += f" ({int(closed)} streams closed)"
    if lost:
        # stalled: nothing more arrived for 2 s, the events are gone; timeout: still arriving.
        states = sorted({r.get("drain") for r in rs if r.get("drain")})
        if states:
            s += f" (drain {'/'.join(states)})"
    return s


def comparison_table(out, peers, keys, value, label_key, better_note):
    """One row per key (e.g. subscriber count), one column per peer, then ssehub/peer ratios."""
    others = [p for p in peers if p != "ssehub"]
    head = [label_key] + [PEER_NAMES.get(p, p) for p in peers] + [f"ssehub/{p}" for p in others]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for k in keys:
        vals = {p: value(p, k) for p in peers}
        cells = [fmt(k) if isinstance(k, (int, float)) else str(k)]
        cells += [vals[p][1] for p in peers]
        base = vals.get("ssehub", (None, ""))[0]
        cells += [ratio(base, vals[p][0]) for p in others]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"Ratios are ssehub/peer ({better_note}).")
    out.append("")


def detail_table(out, g, peers, keys):
    out.append("| peer | subscribers | deliveries/s | publishes/s | p50 | p99 | max | lost / expected | generator CPU | server CPU | other CPU |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for p in peers:
        for k in keys:
            rs = g.get((p, k))
            if not rs:
                continue
            out.append(
                "| "
                + " | ".join(
                    [
                        PEER_NAMES.get(p, p),
                        fmt(k),
                        fmt(median_of(rs, "deliveries_per_s")),
                        fmt(median_of(rs, "publishes_per_s")),
                        fmt_ms(us_to_ms(median_of(rs, "latency_us.p50"))),
                        fmt_ms(us_to_ms(median_of(rs, "latency_us.p99"))),
                        fmt_ms(us_to_ms(median_of(rs, "latency_us.max"))),
                        loss_cell(rs),
                        gen_pct(median_of(rs, "generator_cpu_pct")),
                        pct(median_of(rs, "server_cpu_pct")),
                        pct(median_of(rs, "other_cpu_pct")),
                    ]
                )
                + " |"
            )
    out.append("")


CATCHUP_TITLE = "## Replay and reconnect storm (issue 5)"


def secs_cell(v, target=None):
    """Seconds with the issue's target: a figure over it is marked."""
    if v is None:
        return "n/a"
    s = f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if target is not None and v > target:
        s = f"**{s}** (over {target:g} s)"
    return s


def catchup_section(rows):
    """The replay and storm workloads (ssehub only): lines of the section, or [] without rows."""
    mine = [r for r in rows if r.get("workload") in ("replay", "storm")]
    if not mine:
        return []
    # Partial runs (bench/run --only) append to the full run's lines: show the newest one.
    mine = newest_run(mine)
    latest = mine[0].get("run", "")
    rep = mine[0]
    out = [CATCHUP_TITLE, ""]
    out.append(
        "ssehub only; every figure is from the hub's history, nothing live. *Replay*: N updates "
        "(~100 B of data each) published to a fresh topic T by 8 keep-alive publishers as fast as "
        "acknowledged, then ONE subscriber opens `?topic=T&lastEventID=earliest`; time from "
        "writing its request until it holds all N. The hub keeps them: `--history-size 100000` "
        "(memory: the ring; durable: the log, with the newest 100,000 cached). *Storm*: S "
        "subscribers on one topic receive an update whose id (the POST answer) they keep, all "
        "disconnect (reset), 100 more are published, then all S reconnect at once (1,024 connects "
        "in flight, from 127.0.0.1-4) with `Last-Event-ID: <id>`; time from the first reconnect "
        "until the last subscriber holds all 100. Every update carries a sequence number, so "
        "loss and duplicates are counted per subscriber and update; *id replayed* counts "
        "subscribers sent the update the id names (it must not be). Targets (issue 5): replay of "
        "100,000 in under 1 s; storm of 10,000, 100 behind, all caught up within 3 s. "
        "CPU columns as above (n/a: a window under 0.1 s, below `/proc`'s 10 ms resolution). "
        "In the storm a subscriber holds its 100 updates within a millisecond or so of its "
        "response head, so *all caught up* is close to *last reconnected*, the reconnect ramp; "
        "with the generator's core nearly full there, it is an upper bound for the hub."
    )
    out.append("")
    if latest:
        out.append(
            f"Measured {latest} by `{rep.get('command', 'bench/run --only replay,storm')}`, "
            "separately from the full run above (same machine, same pinning); lines appended to "
            "`bench/results/results.jsonl`."
        )
        out.append("")
    peers = peers_in(mine)
    rg = group(mine, "replay")
    if rg:
        out.append("| peer | updates | replay time | events/s | lost / duplicated | first byte | publishing them | server CPU | generator CPU |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for p in peers:
            for (pp, _), rs in rg.items():
                if pp != p:
                    continue
                states = sorted({r.get("replay") for r in rs if r.get("replay") != "complete"})
                note = f" ({'/'.join(states)})" if states else ""
                # /proc counts CPU in 10 ms ticks: a replay shorter than 0.1 s has no CPU figure.
                short = (median_of(rs, "replay_s") or 0) < 0.1
                srv_cpu = "n/a" if short else pct(median_of(rs, "server_cpu_pct"))
                gen_cpu = "n/a" if short else gen_pct(median_of(rs, "generator_cpu_pct"))
                out.append(
                    f"| {PEER_NAMES.get(p, p)} | {fmt(median_of(rs, 'acked'))} | "
                    f"{secs_cell(median_of(rs, 'replay_s'), 1.0)}{note} | "
                    f"{fmt(median_of(rs, 'events_per_s'))} | "
                    f"{fmt(median_of(rs, 'lost'))} / {fmt(median_of(rs, 'duplicated'))} | "
                    f"{fmt_ms((median_of(rs, 'head_s') or 0) * 1000)} | "
                    f"{fmt(median_of(rs, 'publishes_per_s'))} publishes/s | "
                    f"{srv_cpu} | {gen_cpu} |"
                )
        out.append("")
    sg = group(mine, "storm")
    if sg:
        out.append("| peer | subscribers x behind | all caught up | p50 | p99 | last reconnected | caught up | lost / duplicated | id replayed | server CPU | generator CPU | server RSS |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for p in peers:
            for (pp, n), rs in sg.items():
                if pp != p:
                    continue
                states = sorted({r.get("storm") for r in rs if r.get("storm") != "complete"})
                note = f" ({'/'.join(states)})" if states else ""
                rss = median_of(rs, "server_rss_kib")
                out.append(
                    f"| {PEER_NAMES.get(p, p)} | {fmt(n)} x {fmt(median_of(rs, 'behind'))} | "
                    f"{secs_cell(median_of(rs, 'catchup_s'), 3.0)}{note} | "
                    f"{secs_cell(median_of(rs, 'catchup_p50_s'))} | {secs_cell(median_of(rs, 'catchup_p99_s'))} | "
                    f"{secs_cell(median_of(rs, 'ramp_s'))} | "
                    f"{fmt(median_of(rs, 'caught_up'))} / {fmt(median_of(rs, 'connected'))} | "
                    f"{fmt(median_of(rs, 'lost'))} / {fmt(median_of(rs, 'duplicated'))} | "
                    f"{fmt(median_of(rs, 'replayed_recorded'))} | "
                    f"{pct(median_of(rs, 'server_cpu_pct'))} | {gen_pct(median_of(rs, 'generator_cpu_pct'))} | "
                    f"{'n/a' if rss is None else f'{rss / 1024:.0f} MiB'} |"
                )
        out.append("")
    return out


MATCHERS_TITLE = "## The matcher engine (issue 20)"


def ms(v):
    return "n/a" if v is None else f"{v / 1000:.2f} ms"


def target_cell(v_us, target_ms):
    """A latency in ms, bold with the target when over it."""
    if v_us is None:
        return "n/a"
    s = f"{v_us / 1000:.2f} ms"
    return f"**{s}** (over {target_ms:g} ms)" if v_us > target_ms * 1000 else s


def matchers_section(rows):
    """The matcher engine's workloads (ssehub only): lines of the section, or [] without rows."""
    mine = [r for r in rows if r.get("kind") == "matchers" and not r.get("failed")]
    if not mine:
        return []
    mine = newest_run(mine)
    latest = mine[0].get("run", "")
    rep = mine[0]
    out = [MATCHERS_TITLE, ""]
    out.append(
        "ssehub only (`--memory`, default matcher limits), Mercure 1.0 subscriptions. *Shared*: "
        "N anonymous subscribers from 4 addresses, each with the same 128 `match_urlpattern` "
        "matchers `https://example.com/:section/{k}/:item` (one literal prefix for all: the index "
        "narrows nothing, every matcher is a candidate for every topic), plus 10 subscribers of an "
        "unrelated exact topic from a fifth address; 20 publishes/s of one topic, then of 64 topics "
        "(each matching another matcher: every subscriber gets each publish once), then the "
        "unrelated topic at 20/s alone and beside 64-topic publishes sent back to back. *Publish* "
        "is the POST's round trip (a RAM-only hub answers after the fan-out), *delivery* the "
        "publish-to-receive latency over all deliveries. *Users*: subscriber i on "
        "`https://example.com/users/{i}/:rest*` (16 source addresses), 100 publishes/s each to "
        "one user's topic. *Flood*: one client address opens subscriptions with 16 distinct "
        "64-group URL patterns each, 16 requests in flight, keeping the newest 64 open, for 10 s; "
        "the server's RSS before, at its peak, and 2 s after the client closed everything. "
        "*Fan-out*: 5,000 subscribers on one `match_urlpattern` against the same on one exact "
        "`match`, 4 publishers as fast as answered. Targets (issue 20) in the last column."
    )
    out.append("")
    if latest:
        out.append(
            f"Measured {latest} by `{rep.get('command', 'bench/run --only matchers')}`; "
            "lines appended to `bench/results/results.jsonl`; medians over the repetitions."
        )
        out.append("")
    by = defaultdict(list)
    for r in mine:
        by[r.get("mode")].append(r)
    sh = by.get("shared", [])
    if sh:
        n = median_of(sh, "subscribers")
        out.append(f"| shared, {fmt(n)} subscribers x 128 patterns | publish p50 | publish p99 | delivery p50 | delivery p99 | target |")
        out.append("|---|---|---|---|---|---|")
        for label, key, target in (
            ("one topic, 20/s", "single", ("publish", 2)),
            ("64 topics, 20/s", "multi", ("publish", 20)),
            ("unrelated topic alone, 20/s", "unrelated_alone", None),
            ("unrelated topic beside back-to-back 64-topic publishes", "unrelated_beside", ("delivery", 10)),
        ):
            cells = [
                target_cell(median_of(sh, f"{key}.publish.p50_us"), target[1]) if target and target[0] == "publish" else ms(median_of(sh, f"{key}.publish.p50_us")),
                ms(median_of(sh, f"{key}.publish.p99_us")),
                target_cell(median_of(sh, f"{key}.delivery.p50_us"), target[1]) if target and target[0] == "delivery" else ms(median_of(sh, f"{key}.delivery.p50_us")),
                ms(median_of(sh, f"{key}.delivery.p99_us")),
            ]
            t = "n/a" if not target else f"{target[0]} p50 <= {target[1]} ms"
            out.append(f"| {label} | " + " | ".join(cells) + f" | {t} |")
        busy = median_of(sh, "unrelated_beside.busy_publishes")
        out.append("")
        out.append(
            f"Back-to-back 64-topic publishes during the last phase: {fmt(busy)} in "
            f"{fmt(median_of(sh, 'phase_s'))} s (publish p50 {ms(median_of(sh, 'unrelated_beside.busy_publish.p50_us'))}); "
            f"deliveries {fmt(median_of(sh, 'received'))} of {fmt(median_of(sh, 'expected'))} expected; "
            f"connecting the {fmt(n)}: {fmt(median_of(sh, 'ramp_s'))} s, server RSS "
            f"{fmt((median_of(sh, 'rss_before_kib') or 0) / 1024)} -> {fmt((median_of(sh, 'rss_connected_kib') or 0) / 1024)} MiB."
        )
        out.append("")
    us = by.get("users", [])
    if us:
        out.append("| users | publish p50 | publish p99 | delivery p50 | delivery p99 | received / published | target |")
        out.append("|---|---|---|---|---|---|---|")
        out.append(
            f"| {fmt(median_of(us, 'subscribers'))} subscribers, one pattern each | "
            f"{target_cell(median_of(us, 'publish.p50_us'), 1)} | {ms(median_of(us, 'publish.p99_us'))} | "
            f"{ms(median_of(us, 'delivery.p50_us'))} | {ms(median_of(us, 'delivery.p99_us'))} | "
            f"{fmt(median_of(us, 'received'))} / {fmt(median_of(us, 'published'))} | publish p50 <= 1 ms |"
        )
        out.append("")
    fl = by.get("flood", [])
    if fl:
        out.append("| flood (one address) | accepted requests (patterns) | 429 | 503 | RSS before | peak growth | after closing | target |")
        out.append("|---|---|---|---|---|---|---|---|")
        for j, r in enumerate(fl):
            base = (r.get("rss_baseline_kib") or 0) / 1024
            for i, rd in enumerate(r.get("rounds") or [r]):
                out.append(
                    f"| run {j + 1}, flood {i + 1}: {fmt(r.get('flood_s'))} s | {fmt(rd.get('ok'))} ({fmt(rd.get('patterns_accepted'))}) | "
                    f"{fmt(rd.get('refused_429'))} | {fmt(rd.get('refused_503'))} | "
                    f"{fmt(base)} MiB | +{fmt(rd.get('growth_mib'))} MiB | "
                    f"+{fmt(rd.get('after_mib'))} MiB ({fmt(r.get('settle_s'))} s later) | growth <= 64 MiB, after <= 16 MiB |"
                )
        out.append("")
    fu, fe = by.get("fanout-url", []), by.get("fanout-exact", [])
    if fu or fe:
        u, e = median_of(fu, "deliveries_per_s"), median_of(fe, "deliveries_per_s")
        out.append("| fan-out, 5,000 subscribers, 4 publishers | deliveries/s | server CPU | runs |")
        out.append("|---|---|---|---|")
        out.append(f"| one exact `match` | {fmt(e)} | {pct(median_of(fe, 'server_cpu_pct'))} | {len(fe)} |")
        out.append(f"| one `match_urlpattern` | {fmt(u)} | {pct(median_of(fu, 'server_cpu_pct'))} | {len(fu)} |")
        out.append("")
        out.append(f"Pattern / exact: {ratio(u, e)} (target: at least 80 %).")
        out.append("")
    return out


TOKENS_TITLE = "## Publish throughput by token algorithm"


def tokens_section(rows):
    """The publish workload on hubs whose issuer key is HS256, ES256 or EdDSA, beside nchan's
    (issue 19: each at least 2x nchan)."""
    mine = [r for r in rows if r.get("workload") == "tokens"]
    if not mine:
        return []
    # Partial runs (bench/run --only) append to the earlier runs' lines: show the newest one, so
    # a figure never mixes builds.
    tok = group(newest_run(mine), "tokens")
    out = [TOKENS_TITLE, ""]
    out.append(
        "The publish workload (10 subscribers, 16 keep-alive publisher connections as fast as they "
        "are answered) with the hub's trusted issuer holding an HS256, ES256 (P-256) or EdDSA "
        "(Ed25519) key, and a 1.0 access token signed with it on every request; nchan from the "
        "same run. The hub verifies a distinct token once and then finds it in its cache, so the "
        "algorithm's cost is paid per token, not per publish. Target: each >= 2x nchan."
    )
    out.append("")
    out.append("| peer | publishes/s | x nchan | p99 | lost / expected | server CPU | runs |")
    out.append("|---|---|---|---|---|---|---|")
    nchan = median_of(tok.get(("nchan", 10), []), "publishes_per_s")
    for p in ("ssehub", "ssehub-es256", "ssehub-eddsa", "nchan"):
        rs = tok.get((p, 10), [])
        if not rs:
            continue
        v = median_of(rs, "publishes_per_s")
        name = "ssehub, HS256 token" if p == "ssehub" else PEER_NAMES.get(p, p)
        out.append(
            f"| {name} | {fmt(v)} | {ratio(v, nchan) if p != 'nchan' else '-'} | "
            f"{fmt_ms(us_to_ms(median_of(rs, 'latency_us.p99')))} | {loss_cell(rs)} | "
            f"{pct(median_of(rs, 'server_cpu_pct'))} | {len(rs)} |"
        )
    out.append("")
    return out


def splice(path, section, title=CATCHUP_TITLE):
    """Rewrites the section `title` of an existing BENCHMARKS.md in place (or inserts it before
    the plots), leaving every other line as it was."""
    if not os.path.exists(path):
        # bench/run --quick --only: no earlier report to splice into.
        with open(path, "w") as f:
            f.write("\n".join(section))
        return
    lines = open(path).read().split("\n")
    start = next((i for i, l in enumerate(lines) if l == title), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    else:
        heads = ("## Runs that failed", "## Plots", "## Reading this run", "## Machine")
        start = next((i for i, l in enumerate(lines) if l in heads), len(lines))
        end = start
    lines[start:end] = section
    with open(path, "w") as f:
        f.write("\n".join(lines))


def window(rows):
    w = median_of(rows, "window_s")
    return "?" if w is None else f"{w:g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plots", default="")
    ap.add_argument("--notes", default="", help="hand-written analysis of this run, included if present")
    ap.add_argument(
        "--splice",
        action="store_true",
        help="rewrite only the sections of what ran (replay/storm, matchers, tokens, TLS) in the existing --out (bench/run --only)",
    )
    a = ap.parse_args()

    rows = load(a.results)
    # Imported here, not at the top: report_tls imports this module's helpers. No __pycache__
    # left in bench/ by a run.
    import sys

    sys.dont_write_bytecode = True
    from report_tls import TLS_TITLE, tls_section

    if a.splice:
        section = catchup_section(rows)
        if section:
            splice(a.out, section)
            print(f"rewrote the replay/storm section of {a.out}")
        section = matchers_section(rows)
        if section:
            splice(a.out, section, MATCHERS_TITLE)
            print(f"rewrote the matcher engine section of {a.out}")
        section = tokens_section(rows)
        if section:
            splice(a.out, section, TOKENS_TITLE)
            print(f"rewrote the token algorithm section of {a.out}")
        section = tls_section(rows)
        if section:
            splice(a.out, section, TLS_TITLE)
            print(f"rewrote the TLS and HTTP/2 section of {a.out}")
        return

    peers = peers_in(rows)
    machine = open(a.machine).read()
    # The repetitions asked for: the usual group size (a measurement repeated because it was
    # disturbed, and kept because no repetition was clean, makes its group larger).
    sizes = Counter(len(v) for v in group(rows, "fanout").values())
    reps = sizes.most_common(1)[0][0] if sizes else 1
    cmd = next((l.split(": ", 1)[1] for l in machine.splitlines() if l.startswith("command: ")), "bench/run")

    out = ["# Benchmarks", ""]
    out.append(
        "Side-by-side SSE servers on one machine, produced by `bench/run` (issue 6). Every server "
        "runs pinned to core 0 (`taskset -c 0`), the load generator `ssehub-bench` to core 1; "
        "loopback only; each peer is started fresh for each measurement. Events carry ~100 bytes "
        "of data with the publish timestamp in it. Figures are medians over "
        f"{reps} repetition(s) (more where a disturbed measurement was measured again). Raw JSON lines: `bench/results/results.jsonl`."
    )
    out.append("")
    out.append(
        "CPU columns are percent of one core over the window, from `/proc`: *generator* is "
        "`ssehub-bench` itself (near 100 % would mean the generator, not the server, set the "
        "pace), *server* the peer's process (nginx: its worker), *other* whatever else ran on "
        "the two cores meanwhile (the machine is shared; a high figure marks a disturbed run). "
        f"Generator CPU in **bold** (>= {GEN_BUSY_PCT} %) means its core was nearly full, so that "
        "peer's figure is a lower bound. In loss cells, *drain stalled* means nothing more "
        "arrived for 2 s after publishing stopped (the events are lost, not late)."
    )
    ok = [r for r in rows if not r.get("failed")]
    dist = [r for r in ok if disturbed(r)]
    out.append("")
    out.append(
        f"{len(dist)} of {len(ok)} measurements ran while other processes used over "
        f"{DISTURBED_PCT} % of a core on the two benchmark cores (bench/run then measures once "
        "more); a disturbed measurement is left out where an undisturbed repetition exists."
    )
    out.append("")
    out.append(f"Command: `{cmd}`")
    out.append("")

    # ---------------------------------------------------------------- fan-out
    fan = group(rows, "fanout")
    fan_ns = sorted({k[1] for k in fan})
    fan_peers = [p for p in peers if any((p, n) in fan for n in fan_ns)]
    if fan_ns:
        out.append("## Fan-out: deliveries/s, one topic, publishers saturating")
        out.append("")
        out.append(
            "N subscribers on one topic; 4 publisher connections post as fast as the server "
            "answers (one request in flight each). Deliveries/s = events received by all "
            f"subscribers in a {window(rows)} s window after the warm-up. Loss: every subscriber must receive "
            "every acknowledged publish (counted after publishing stops and the backlog drains). "
            "Target for ssehub at 5,000: >= 1,000,000 deliveries/s, 0 loss."
        )
        out.append("")

        def fv(p, n):
            v = median_of(fan.get((p, n), []), "deliveries_per_s")
            return v, fmt(v)

        comparison_table(out, fan_peers, fan_ns, fv, "subscribers", "higher is better")
        detail_table(out, fan, fan_peers, fan_ns)

    # ---------------------------------------------------------------- latency
    lat = group(rows, "latency")
    lat_ns = sorted({k[1] for k in lat})
    lat_peers = [p for p in peers if any((p, n) in lat for n in lat_ns)]
    if lat_ns:
        out.append("## Latency: publish to receive, 100 publishes/s")
        out.append("")
        out.append(
            "N subscribers, 100 publishes/s in total (2 publishers, each publish stamped with "
            "its scheduled time, so a server that delays publishes is charged for it). Latency is "
            "measured for every delivery of a publish stamped inside the window. A peer that "
            "cannot take 100 publishes/s falls behind its schedule, and its latency grows with the run "
            "(marked *overloaded*; *unbounded* when no publish scheduled in the window was even sent "
            "before the run ended). "
            "Target for ssehub at 5,000: p99 <= 10 ms, max <= 50 ms."
        )
        out.append("")

        def overloaded(p, n):
            """A peer that could not take 100 publishes/s: its latency grows with the run."""
            rs = lat.get((p, n), [])
            pub = median_of(rs, "publishes_per_s")
            rate = median_of(rs, "rate")
            if pub is not None and rate and pub < 0.95 * rate:
                return f" (overloaded: {pub:.0f} publishes/s taken)"
            return ""

        def lv(p, n):
            v = median_of(lat.get((p, n), []), "latency_us.p99")
            if v is None and overloaded(p, n):
                return None, "unbounded" + overloaded(p, n)
            return v, fmt_ms(us_to_ms(v)) + overloaded(p, n)

        out.append("p99:")
        out.append("")
        comparison_table(out, lat_peers, lat_ns, lv, "subscribers", "lower is better")

        def mv(p, n):
            v = median_of(lat.get((p, n), []), "latency_us.max")
            if v is None and overloaded(p, n):
                return None, "unbounded" + overloaded(p, n)
            return v, fmt_ms(us_to_ms(v)) + overloaded(p, n)

        out.append("max:")
        out.append("")
        comparison_table(out, lat_peers, lat_ns, mv, "subscribers", "lower is better")
        detail_table(out, lat, lat_peers, lat_ns)

    # ---------------------------------------------------------------- idle + ramp
    idle = group(rows, "idle")
    idle_peers = [p for p in peers if any(k[0] == p for k in idle)]
    if idle:
        n = max(k[1] for k in idle)
        out.append(f"## Idle subscribers and connection ramp, {n:,} subscribers")
        out.append("")
        out.append(
            f"{n:,} subscribers opened as fast as the server takes them (256 connects in flight); "
            "the ramp rate is subscribers / time until the last one had its response head. After "
            "3 s idle, the server's VmRSS (`/proc/PID/status`; nginx: its worker) minus its RSS "
            "before the first connection, per open subscriber. Targets for ssehub: <= 2 KiB per "
            "subscriber, >= 25,000 subscriptions/s. *Generator CPU* is the generator process's "
            "whole CPU time (its setup, the connects, the idle wait) next to the ramp's wall time: "
            "close to it means the generator's core was nearly full while connecting, and the "
            "ramp rate is a lower bound for the server. *Server CPU / subscription* is the "
            "server's CPU time during the ramp over the subscriptions opened (its own capacity "
            "is about 1 s / that); *cores busy* is each core's busy share during the ramp, softirq "
            "included (server's core / generator's core). On loopback the kernel runs the whole "
            "TCP handshake, the listener's half included, in the connecting process's softirq, "
            "so the generator's core pays for it."
        )
        out.append("")
        others = [p for p in idle_peers if p != "ssehub"]
        out.append("| peer | KiB / subscriber | ssehub/peer | subscriptions/s | ssehub/peer | generator CPU / ramp | server CPU / subscription | cores busy | connected | RSS before -> after |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        s_kib = median_of(idle.get(("ssehub", n), []), "kib_per_subscriber")
        s_ramp = median_of(idle.get(("ssehub", n), []), "ramp_per_s")
        for p in idle_peers:
            rs = idle.get((p, n), [])
            kib = median_of(rs, "kib_per_subscriber")
            rp = median_of(rs, "ramp_per_s")
            b = median_of(rs, "rss_baseline_kib")
            r = median_of(rs, "rss_kib")
            out.append(
                f"| {PEER_NAMES.get(p, p)} | {fmt(kib)} | {ratio(s_kib, kib) if p in others else '-'} | "
                f"{fmt(rp)} | {ratio(s_ramp, rp) if p in others else '-'} | "
                f"{gen_ramp(rs)} | {' | '.join(ramp_cost(rs))} | "
                f"{fmt(median_of(rs, 'still_open'))} | {fmt(b)} -> {fmt(r)} KiB |"
            )
        out.append("")

    # ---------------------------------------------------------------- publish throughput
    pub = group(rows, "publish")
    pub_peers = [p for p in peers if any(k[0] == p for k in pub)]
    if pub:
        out.append("## Publish throughput over HTTP, 10 subscribers")
        out.append("")
        out.append(
            "16 keep-alive publisher connections post as fast as they are answered; ssehub "
            "verifies a Bearer JWT on every publish (Mercure form body), nchan takes the raw body, "
            "the Node peers a JSON body. Acknowledged publishes/s in the window; the 10 "
            "subscribers must receive all of them. Target for ssehub: >= 2x nchan."
        )
        out.append("")
        out.append("| peer | publishes/s | ssehub/peer | deliveries/s | p99 | lost / expected | server CPU | generator CPU |")
        out.append("|---|---|---|---|---|---|---|---|")
        s_pub = median_of(pub.get(("ssehub", 10), []), "publishes_per_s")
        for p in pub_peers:
            rs = pub.get((p, 10), [])
            v = median_of(rs, "publishes_per_s")
            out.append(
                f"| {PEER_NAMES.get(p, p)} | {fmt(v)} | {ratio(s_pub, v) if p != 'ssehub' else '-'} | "
                f"{fmt(median_of(rs, 'deliveries_per_s'))} | {fmt_ms(us_to_ms(median_of(rs, 'latency_us.p99')))} | "
                f"{loss_cell(rs)} | {pct(median_of(rs, 'server_cpu_pct'))} | "
                f"{gen_pct(median_of(rs, 'generator_cpu_pct'))} |"
            )
        out.append("")

    # ---------------------------------------------------------------- durable publish
    p64 = group(rows, "publish64")
    if pub and p64:
        out.append("## Durable publish throughput: group commit against memory")
        out.append("")
        out.append(
            "The publish workload above (10 subscribers, publishers as fast as they are answered, "
            "JWT on every publish) against the RAM-only hub and the durable one, whose answer "
            "waits for the fsync of the group its update is in, at 16 and at 64 publisher "
            "connections. Target (issue 5): durable at least half of memory."
        )
        out.append("")
        out.append("| publishers | memory publishes/s | durable publishes/s | durable / memory | durable lost / expected | durable server CPU |")
        out.append("|---|---|---|---|---|---|")
        for m, g in ((16, pub), (64, p64)):
            mem = median_of(g.get(("ssehub", 10), []), "publishes_per_s")
            drs = g.get(("ssehub-durable", 10), [])
            dur = median_of(drs, "publishes_per_s")
            out.append(
                f"| {m} | {fmt(mem)} | {fmt(dur)} | {ratio(dur, mem)} | {loss_cell(drs)} | "
                f"{pct(median_of(drs, 'server_cpu_pct'))} |"
            )
        out.append("")

    # ---------------------------------------------------------------- topics
    top = group(rows, "topics")
    top_peers = [p for p in peers if any(k[0] == p for k in top)]
    if top:
        n = max(k[1] for k in top)
        t = max(r.get("topics", 1) for rs in top.values() for r in rs)
        out.append(f"## Fan-out with {t:,} topics, {n:,} subscribers (one topic each)")
        out.append("")
        out.append(
            f"Subscriber i takes topic i mod {t:,}; 16 publishers go round the topics as fast as "
            "they are answered, so each publish reaches N/topics subscribers. Compared with the "
            "one-topic fan-out at the same N. The tutorial servers have no topics (n/a). Target "
            "for ssehub: the same delivery rate as one topic."
        )
        out.append("")
        out.append("| peer | deliveries/s, topics | deliveries/s, 1 topic | topics / 1 topic | publishes/s | lost / expected | ssehub/peer |")
        out.append("|---|---|---|---|---|---|---|")
        s_top = median_of(top.get(("ssehub", n), []), "deliveries_per_s")
        for p in top_peers:
            rs = top.get((p, n), [])
            v = median_of(rs, "deliveries_per_s")
            one = median_of(fan.get((p, n), []), "deliveries_per_s")
            out.append(
                f"| {PEER_NAMES.get(p, p)} | {fmt(v)} | {fmt(one)} | {ratio(v, one)} | "
                f"{fmt(median_of(rs, 'publishes_per_s'))} | {loss_cell(rs)} | "
                f"{ratio(s_top, v) if p != 'ssehub' else '-'} |"
            )
        out.append("")

    out.extend(tokens_section(rows))
    out.extend(catchup_section(rows))
    out.extend(matchers_section(rows))
    out.extend(tls_section(rows))

    failed = [r for r in rows if r.get("failed")]
    if failed:
        out.append("## Runs that failed")
        out.append("")
        for r in failed:
            out.append(f"- {r['peer']} {r['workload']}")
        out.append("")

    if a.plots:
        made = plots(a.plots, fan, fan_ns, fan_peers, lat, lat_ns, lat_peers)
        if made:
            out.append("## Plots")
            out.append("")
            for title, path in made:
                out.append(f"![{title}]({path})")
                out.append("")

    if a.notes and os.path.exists(a.notes):
        out.append(open(a.notes).read().rstrip())
        out.append("")

    out.append("## Machine")
    out.append("")
    out.append("```")
    out.append(machine.rstrip())
    out.append("```")
    out.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {a.out}")


def plots(directory, fan, fan_ns, fan_peers, lat, lat_ns, lat_peers):
    import os

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots")
        return []
    os.makedirs(directory, exist_ok=True)
    made = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in fan_peers:
        xs = [n for n in fan_ns if (p, n) in fan]
        ys = [median_of(fan[(p, n)], "deliveries_per_s") for n in xs]
        ax.plot(xs, ys, marker="o", label=PEER_NAMES.get(p, p))
    ax.set_xlabel("subscribers")
    ax.set_ylabel("deliveries / s")
    ax.set_title("Fan-out throughput, one topic, publishers saturating")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path = os.path.join(directory, "throughput.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    # BENCHMARKS.md sits in the repository root, where bench/run runs this script.
    made.append(("throughput vs subscribers", os.path.relpath(path)))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in lat_peers:
        xs = [n for n in lat_ns if (p, n) in lat]
        ys = [us_to_ms(median_of(lat[(p, n)], "latency_us.p99")) for n in xs]
        ax.plot(xs, ys, marker="o", label=PEER_NAMES.get(p, p))
    ax.axhline(10, linestyle="--", color="grey", linewidth=1, label="ssehub target at 5,000 (10 ms)")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers")
    ax.set_ylabel("p99 publish-to-receive latency (ms, log)")
    ax.set_title("p99 latency at 100 publishes/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path2 = os.path.join(directory, "latency_p99.png")
    fig.tight_layout()
    fig.savefig(path2, dpi=110)
    plt.close(fig)
    made.append(("p99 latency vs subscribers", os.path.relpath(path2)))
    return made


if __name__ == "__main__":
    main()
