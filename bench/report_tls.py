"""The "TLS and HTTP/2" section of BENCHMARKS.md (issue 22), from the tls-* workloads of
bench/run: ssehub and nginx + nchan serving the same certificate, side by side.

Each group of workloads (idle, fan-out, ramp, latency) shows its newest run only (bench/run
--only tls-idle and the others are run one at a time), and names it.
"""

import statistics

from report import PEER_NAMES, fmt, fmt_ms, gen_pct, group, loss_cell, median_of, newest_run, pct, ratio, us_to_ms, window

TLS_TITLE = "## TLS and HTTP/2 (issue 22)"

# Workload groups: bench/run --only NAME runs the workloads listed.
GROUPS = {
    "tls-idle": ("tls-idle-h1", "tls-idle-h2", "tls-idle-h2x10"),
    "tls-fanout": ("tls-fanout", "tls-fanout-h2"),
    "tls-ramp": ("tls-ramp", "tls-ramp-x25519"),
    "tls-latency": ("tls-latency", "tls-latency-plain"),
}

TLS_PEERS = ("ssehub", "nchan")


def over(v, target, unit=" KiB"):
    """A figure with its target: bold and the target when over it."""
    if v is None:
        return "n/a"
    s = f"{v:.2f}{unit}"
    return f"**{s}** (target <= {target:g}{unit})" if v > target else f"{s} (target <= {target:g}{unit})"


def measured(out, rows, default_cmd):
    rep = rows[0]
    run = rep.get("run", "")
    if run:
        out.append(f"Measured {run} by `{rep.get('command', default_cmd)}`.")
    else:
        out.append("Measured in the full run of this page.")
    out.append("")


def single(g, peer):
    """The rows of one peer in a workload group keyed (peer, subscribers)."""
    return next((rs for (p, _), rs in g.items() if p == peer), [])


def tls_info(rs):
    """Negotiated parameters of the newest row with them."""
    for r in reversed(rs):
        t = r.get("tls")
        if t:
            return t
    return {}


def idle_part(rows):
    out = ["### Idle TLS subscribers: RSS growth per connection and stream", ""]
    out.append(
        "Subscribers opened as fast as the server takes them (256 handshakes in flight, from "
        "127.0.0.2-5), then left idle (3 s; 1 s with `--quick`); the server's VmRSS growth over its RSS before the first "
        "connection (nginx: its worker), per subscription and per connection. One fresh process "
        "per row. *Each further stream* is (per connection at 10 streams - per connection at one "
        "stream) / 9. Targets are ssehub's (issue 22); the plain-HTTP figure (<= 1.5 KiB) is in "
        "the idle section above."
    )
    out.append("")
    measured(out, rows, "bench/run --only tls-idle")
    h1 = group(rows, "tls-idle-h1")
    h2 = group(rows, "tls-idle-h2")
    hx = group(rows, "tls-idle-h2x10")
    out.append("| case | ssehub | nginx + nchan | ssehub/nchan | ssehub connected | nchan connected | ssehub RSS before -> after |")
    out.append("|---|---|---|---|---|---|---|")

    def row(label, g, key, target):
        s, n = single(g, "ssehub"), single(g, "nchan")
        sv, nv = median_of(s, key), median_of(n, key)
        out.append(
            f"| {label} | {over(sv, target) if target else fmt(sv, ' KiB')} | {fmt(nv, ' KiB')} | {ratio(sv, nv)} | "
            f"{fmt(median_of(s, 'still_open'))} | {fmt(median_of(n, 'still_open'))} | "
            f"{fmt(median_of(s, 'rss_baseline_kib'))} -> {fmt(median_of(s, 'rss_kib'))} KiB |"
        )

    if h1:
        n = max(k[1] for k in h1)
        row(f"HTTP/1.1, {n:,} subscribers, per subscriber", h1, "kib_per_subscriber", 8)
    if h2:
        n = max(k[1] for k in h2)
        row(f"HTTP/2, {n:,} connections x 1 stream, per connection", h2, "kib_per_connection", 11)
    if hx:
        n = max(k[1] for k in hx)
        row(f"HTTP/2, {n // 10:,} connections x 10 streams, per connection", hx, "kib_per_connection", None)
        row(f"HTTP/2, {n // 10:,} connections x 10 streams, per stream", hx, "kib_per_subscriber", None)
    if h2 and hx:
        cells = []
        for p in TLS_PEERS:
            one = median_of(single(h2, p), "kib_per_connection")
            ten = median_of(single(hx, p), "kib_per_connection")
            cells.append(None if one is None or ten is None else (ten - one) / 9)
        s, n = cells
        out.append(f"| HTTP/2, each further stream on a connection | {over(s, 2)} | {fmt(n, ' KiB')} | {ratio(s, n)} | | | |")
    out.append("")
    out.append("Ratios are ssehub/nchan (lower is better).")
    out.append("")
    return out


def fanout_part(rows):
    out = ["### TLS fan-out: deliveries/s, one topic, publishers saturating", ""]
    out.append(
        "The fan-out workload over TLS: N subscribers on one topic (from 127.0.0.2-5), 4 TLS "
        f"keep-alive publisher connections posting as fast as answered, a {window(rows)} s window after a "
        "warm-up, loss counted after the backlog drains. *Server CPU per delivery* is the server "
        "process's CPU time in the window over the deliveries in it. Target (issue 22): ssehub "
        ">= 3x nchan's TLS rate over HTTP/1.1, 0 lost."
    )
    out.append("")
    measured(out, rows, "bench/run --only tls-fanout")
    out.append("| case | peer | deliveries/s | ssehub/nchan | lost / expected | server CPU | server CPU per delivery | generator CPU | other CPU |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for w, label in (("tls-fanout", "HTTP/1.1"), ("tls-fanout-h2", "HTTP/2, 10 streams per connection")):
        g = group(rows, w)
        if not g:
            continue
        n = max(k[1] for k in g)
        nchan = median_of(single(g, "nchan"), "deliveries_per_s")
        for p in TLS_PEERS:
            rs = single(g, p)
            if not rs:
                continue
            d = median_of(rs, "deliveries_per_s")
            cpu = median_of(rs, "server_cpu_pct")
            per = None if not d or cpu is None else cpu / 100 / d * 1e9
            note = ""
            if p == "ssehub" and w == "tls-fanout" and d and nchan:
                note = " (target >= 3.00x)" if d / nchan >= 3 else " (**under the 3x target**)"
            out.append(
                f"| {label}, {n:,} subscribers | {PEER_NAMES.get(p, p)} | {fmt(d)} | "
                f"{ratio(d, nchan) + note if p == 'ssehub' else '-'} | {loss_cell(rs)} | {pct(cpu)} | "
                f"{'n/a' if per is None else f'{per:,.0f} ns'} | "
                f"{gen_pct(median_of(rs, 'generator_cpu_pct'))} | {pct(median_of(rs, 'other_cpu_pct'))} |"
            )
    out.append("")
    return out


def ramp_part(rows):
    out = ["### TLS handshake ramp: new TLS connections/s", ""]
    out.append(
        "N TLS HTTP/1.1 subscriptions opened as fast as the server takes them (256 in flight, "
        "from 127.0.0.2-5), each a new TCP connection and TLS 1.3 handshake against the ECDSA "
        "P-256 certificate, then a subscribe; the rate is subscriptions with their response head "
        "per second of the ramp. Resumption on: the client keeps the session tickets the server "
        "sends and resumes with one where it has it (PSK with a fresh key exchange), so the first "
        "handshakes of a run are full ones. The client offers the browsers' groups "
        "(X25519MLKEM768, X25519, P-256) or X25519 alone; the table shows what was negotiated. "
        "*Server CPU / handshake* is the server's CPU time during the ramp per connection; on "
        "loopback the kernel's half of TCP runs on the generator's core, and the generator's "
        "own TLS client work (its ML-KEM and ECDSA verification) is there too: its CPU next to "
        "the ramp's wall time says whether it set the pace."
    )
    out.append("")
    measured(out, rows, "bench/run --only tls-ramp")
    out.append("| client offers | peer | negotiated | connections/s | ssehub/nchan | full / resumed handshakes | server CPU / handshake | generator CPU / ramp | cores busy (server / generator) | connected |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for w, label in (("tls-ramp", "X25519MLKEM768, X25519, P-256"), ("tls-ramp-x25519", "X25519")):
        g = group(rows, w)
        if not g:
            continue
        nchan = median_of(single(g, "nchan"), "ramp_per_s")
        for p in TLS_PEERS:
            rs = single(g, p)
            if not rs:
                continue
            t = tls_info(rs)
            v = median_of(rs, "ramp_per_s")
            cores = [r.get("ramp_cores_busy_pct") for r in rs]
            cores = [c for c in cores if c and len(c) == 2 and None not in c]
            busy = f"{median_of([{'v': c[0]} for c in cores], 'v'):.0f} % / {median_of([{'v': c[1]} for c in cores], 'v'):.0f} %" if cores else "n/a"
            us = median_of(rs, "ramp_server_us_per_handshake")
            out.append(
                f"| {label} | {PEER_NAMES.get(p, p)} | {t.get('version', '?')}, {t.get('group', '?')} | {fmt(v)} | "
                f"{ratio(v, nchan) if p == 'ssehub' else '-'} | "
                f"{fmt(median_of(rs, 'tls.handshakes_full'))} / {fmt(median_of(rs, 'tls.handshakes_resumed'))} | "
                f"{'n/a' if us is None else f'{us:.0f} µs'} | "
                f"{fmt(median_of(rs, 'ramp_generator_cpu_s'))} s / {fmt(median_of(rs, 'ramp_s'))} s | {busy} | "
                f"{fmt(median_of(rs, 'connected'))} |"
            )
    out.append("")
    return out


def latency_part(rows):
    out = ["### TLS latency: publish to receive, 100 publishes/s", ""]
    out.append(
        "The latency workload (2 publishers, 100 publishes/s in total, each stamped with its "
        "scheduled time) to N subscribers from 127.0.0.2-5, over TLS (publishers too) and over "
        "plain HTTP, each peer fresh for each, in the same run. Target (issue 22): ssehub's TLS "
        "p99 within 1.5x of its plain-HTTP p99."
    )
    out.append("")
    measured(out, rows, "bench/run --only tls-latency")
    tls, plain = group(rows, "tls-latency"), group(rows, "tls-latency-plain")
    out.append("| peer | subscribers | transport | p50 | p99 | max | lost / expected | TLS p99 / plain p99 | server CPU |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for p in TLS_PEERS:
        t, pl = single(tls, p), single(plain, p)
        tp99, pp99 = median_of(t, "latency_us.p99"), median_of(pl, "latency_us.p99")
        for rs, name in ((t, "TLS 1.3, HTTP/1.1"), (pl, "plain HTTP/1.1")):
            if not rs:
                continue
            cell = "-"
            if rs is t and tp99 is not None and pp99:
                r = tp99 / pp99
                cell = f"{r:.2f}x"
                if p == "ssehub":
                    cell += " (target <= 1.5x)" if r <= 1.5 else " (**over the 1.5x target**)"
            # A peer that could not take 100 publishes/s falls behind its schedule: its latency
            # grows with the run (as in the latency section above).
            taken, rate = median_of(rs, "publishes_per_s"), median_of(rs, "rate")
            if taken is not None and rate and taken < 0.95 * rate:
                name += f" (overloaded: {taken:.0f} publishes/s taken)"
            out.append(
                f"| {PEER_NAMES.get(p, p)} | {fmt(median_of(rs, 'subscribers'))} | {name} | "
                f"{fmt_ms(us_to_ms(median_of(rs, 'latency_us.p50')))} | {fmt_ms(us_to_ms(tp99 if rs is t else pp99))} | "
                f"{fmt_ms(us_to_ms(median_of(rs, 'latency_us.max')))} | {loss_cell(rs)} | {cell} | "
                f"{pct(median_of(rs, 'server_cpu_pct'))} |"
            )
    out.append("")
    pairs = latency_pairs(rows, "ssehub")
    if len(pairs) > 1:
        ratios = [t / pl for t, pl in pairs]
        out.append(
            f"Medians of {len(single(tls, 'ssehub'))} runs over TLS and "
            f"{len(single(plain, 'ssehub'))} over plain HTTP, run in interleaved "
            f"pairs (fresh hub for each). ssehub's TLS p99 / plain p99 per pair, in run order: "
            + ", ".join(f"{r:.2f}x" for r in ratios)
            + f" (median {statistics.median(ratios):.2f}x)."
        )
        out.append("")
    return out


def latency_pairs(rows, peer):
    """(TLS p99, plain p99) of each TLS run of `peer` followed by its plain run, in run order."""
    pairs, tls = [], None
    for r in rows:
        if r.get("peer") != peer or r.get("failed"):
            continue
        if r.get("workload") == "tls-latency":
            tls = r
        elif r.get("workload") == "tls-latency-plain" and tls is not None:
            t, pl = median_of([tls], "latency_us.p99"), median_of([r], "latency_us.p99")
            if t is not None and pl:
                pairs.append((t, pl))
            tls = None
    return pairs


def tls_section(rows):
    """Lines of the TLS and HTTP/2 section, or [] when no tls-* workload ran."""
    parts = []
    for name, part in (("tls-idle", idle_part), ("tls-fanout", fanout_part), ("tls-ramp", ramp_part), ("tls-latency", latency_part)):
        mine = [r for r in rows if r.get("workload") in GROUPS[name]]
        if mine:
            parts.extend(part(newest_run(mine)))
    if not parts:
        return []
    out = [TLS_TITLE, ""]
    out.append(
        "ssehub (`serve --tls-cert --tls-key`, the in-memory hub) and nginx + nchan (`listen ssl "
        "http2`, `ssl_protocols TLSv1.3`, `ssl_session_cache shared:SSL:10m`, "
        "`ssl_session_tickets on`) serve the same self-signed ECDSA P-256 certificate made by the "
        "run; the generator speaks TLS 1.3 only with rustls (aws-lc-rs provider), trusts that "
        "certificate, sends SNI `localhost`, keeps session tickets for resumption, and speaks "
        "HTTP/2 (the `h2` crate, ALPN `h2`) with several subscription streams per connection "
        "where a row says so. Pinning, fresh processes and CPU columns as above; medians over "
        "the repetitions. Failed or refused measurements appear under *Runs that failed*."
    )
    out.append("")
    out.extend(parts)
    return out
