"""The benchmark's report: one Markdown table a run, and the ratios quoted from it."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def fmt(v: Any, f: str = "{:,.0f}") -> str:
    return "—" if v is None else f.format(v)


def ratios(rows: list[dict[str, Any]]) -> str:
    """invsync's committed/s against the passthrough and Quix Streams (and a baseline
    build), and its CPU s and peak RSS against Quix's (lower is better)."""
    by = {r["code"]: r for r in rows}
    lines = []
    for mine, peer, what in (
        *((m, p, "eps_commit") for m in ("d", "e", "z") for p in ("a", "q")),
        ("d", "z", "eps_commit"),
        *((m, "q", w) for m in ("d", "e") for w in ("cpu_s", "rss_mb")),
    ):
        x = by.get(mine, {}).get(what)
        y = by.get(peer, {}).get(what)
        if x and y:
            lines.append(f"{LABELS[what]} ({mine})/({peer}) = {x / y:.2f}")
    return "".join(f"- {line}\n" for line in lines)


LABELS = {"eps_commit": "committed/s", "cpu_s": "CPU s", "rss_mb": "peak RSS"}


def render(args: argparse.Namespace, run_id: str, rows: list[dict[str, Any]]) -> str:
    """The run's header, table and ratios (Markdown)."""
    hdr = (
        f"Run {run_id}: {args.events:,} events, {args.keys:,} keys (Zipf s=1.1), "
        f"{args.partitions} partitions, broker {args.bootstrap}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}; latency phase {args.latency_rate}/s for "
        f"{args.latency_seconds}s\n\n"
    )
    table = (
        "| contender | committed/s | processed/s | CPU s | RSS MB | p50 ms | p99 ms | "
        "live committed lag max | live commit stall s | out/in | startup s | "
        "load avg before → during | note |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
    )
    for r in rows:
        table += (
            f"| ({r['code']}) {r['name']} | {fmt(r.get('eps_commit'))} | "
            f"{fmt(r.get('eps_processed'))} | {fmt(r.get('cpu_s'), '{:.1f}')} | "
            f"{fmt(r.get('rss_mb'), '{:.0f}')} | {fmt(r.get('p50'), '{:.1f}')} | "
            f"{fmt(r.get('p99'), '{:.1f}')} | {fmt(r.get('live_lag'))} | "
            f"{fmt(r.get('live_stall_s'), '{:.1f}')} | {fmt(r.get('out_ratio'), '{:.3f}')} | "
            f"{fmt(r.get('startup_s'), '{:.1f}')} | {r.get('load_before')} → "
            f"{r.get('load_during')} | {r.get('error', '')} {r.get('verify', '')} |\n"
        )
    for var in ("BENCH_FAUST_CONF", "BENCH_DESIGN", "BENCH_SEND", "BENCH_SPINNER", "BENCH_UVLOOP"):
        if os.environ.get(var):
            hdr += f"{var}={os.environ[var]}\n\n"
    if args.worker_env:
        hdr += f"invsync worker env: {' '.join(args.worker_env)}\n\n"
    if args.profile:
        hdr += "(workers ran under py-spy: throughput is lower than unprofiled)\n\n"
    return hdr + table + "\n" + ratios(rows)
