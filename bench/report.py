#!/usr/bin/env python3
"""Benchmark report: reads DIR/results.csv (+ latency.csv, machine.txt, commands.txt), writes DIR/report.md and PNG plots, prints the summary table."""
import csv
import os
import statistics
import subprocess
import sys

CONFIGS = ("linux", "direct", "indirect")


def fnum(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def human(v, unit):
    if v is None:
        return "—"
    if unit == "bit/s":
        return "%.2f Gbit/s" % (v / 1e9) if v >= 1e9 else "%.0f Mbit/s" % (v / 1e6)
    return "%.0f %s" % (v, unit)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio_of(a, b):
    """a / b of two medians, None when either is missing."""
    return a / b if a is not None and b else None


def fmt_ratio(x, none="—"):
    return "%.2f" % x if x is not None else none


def read_csv(out, name):
    path = os.path.join(out, name)
    return list(csv.DictReader(open(path))) if os.path.exists(path) else []


def main():
    out = sys.argv[1]
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    lat = read_csv(out, "latency.csv")
    # netd's share of the indirect rows' cpu_s and rss_kib, and why rows failed.
    netd = read_csv(out, "netd.csv")
    failures = read_csv(out, "failures.csv")
    machine = {}
    if os.path.exists(os.path.join(out, "machine.txt")):
        for line in open(os.path.join(out, "machine.txt")):
            k, _, v = line.rstrip("\n").partition("=")
            machine[k] = v
    cmds = []
    if os.path.exists(os.path.join(out, "commands.txt")):
        cmds = [l.rstrip("\n") for l in open(os.path.join(out, "commands.txt")) if l.strip()]

    workloads = []
    for r in rows:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])

    summary = []  # (workload, unit, {config: median}, {config: ratio to linux})
    md = []
    md.append("# Benchmark report\n")
    md.append("Machine: %s CPUs, %s, %s; date %s; mode %s, %s runs per configuration, %s s per load."
              % (machine.get("nproc", "?"), machine.get("kernel", "?"), machine.get("cpu", "?"),
                 machine.get("date", "?"), machine.get("mode", "?"), machine.get("runs", "?"),
                 machine.get("duration_s", "?")))
    md.append("Versions: nginx %s, redis %s, memcached %s, iperf3 %s.  Elapsed: %s s.\n"
              % (machine.get("nginx", "?"), machine.get("redis", "?"), machine.get("memcached", "?"),
                 machine.get("iperf3", "?"), machine.get("elapsed_s", "?")))
    if machine.get("others"):
        md.append("**Warning:** other applications ran under libretto during the benchmark: %s.\n"
                  % machine["others"])
    md.append("Configurations: **linux** = the program on the kernel stack (netns *-linux, "
              "10.42.0.254); **direct** = the same program under `libretto run --mode direct` (its "
              "own VF); **indirect** = the same program under `libretto run --mode indirect --ip "
              "10.42.0.4x/5x` (its own IP, its frames through the network server libretto-netd on "
              "the PF).  Clients run in netns *-peer on the same machine, so client, server and "
              "netd share the CPUs.  nginx runs as a single process (`master_process off; "
              "daemon off;`) in every configuration: under libretto its forked workers reach the "
              "stack through the owner's relay thread (docs/runtime.md \"Fork\"), which this "
              "benchmark does not mean to measure.  Median of the runs; spread = (max - min) / "
              "median; ratios = direct / linux and indirect / linux of the medians (higher is "
              "better for every row; latency percentiles are in the tables).  **For indirect, CPU s "
              "and RSS KiB are the server's plus libretto-netd's** (netd's CPU time over the load, "
              "its VmRSS after it; netd's share is given below each table and in netd.csv; the "
              "ring region both map is counted twice in the RSS sum).  A failed run has no value "
              "and its reason is listed; no number stands in for it.\n")
    # The storage group (bench/storage.sh, issue 8): the same columns, other meanings.
    if any(w.startswith("fio_") for w in workloads):
        md.append("Storage rows (fio_*, bench/storage.sh): **linux** = fio on the kernel's ext4 "
                  "over a loop mount (`mount -o loop`) of the image; **direct** = fio under "
                  "`libretto run --volume IMAGE:MNT` on the same image file (ext4 in fio's own "
                  "process); **indirect** = the same with `--storage indirect` (libretto-fsd runs "
                  "the ext4; CPU s adds fsd's over the job).  %s per file, each job bounded to %s s, "
                  "a fresh image per configuration and run, the page cache dropped before every "
                  "job.  Our runtime and fsd read and write the image through the host's page "
                  "cache (no O_DIRECT), as the kernel's loop device does, so these compare "
                  "file-system code paths over a cached image file, not the disk.  CPU s is the "
                  "whole fio process's (every thread); RSS KiB its peak.\n"
                  % (machine.get("storage_size", "?"), machine.get("storage_runtime_s", "?")))

    for w in workloads:
        wr = [r for r in rows if r["workload"] == w]
        unit = wr[0]["unit"]
        md.append("## %s\n" % w)
        md.append("| config | runs | median %s | min .. max | spread | p50 us | p99 us | CPU s | RSS KiB |"
                  % unit)
        md.append("|---|---|---|---|---|---|---|---|---|")
        meds = {}
        for c in CONFIGS:
            cr = [r for r in wr if r["config"] == c]
            if not cr:
                md.append("| %s | 0 | not run | | | | | | |" % c)
                continue
            vals = [fnum(r["value"]) for r in cr]
            good = [v for v in vals if v is not None]
            if not good:
                md.append("| %s | 0 (%d failed) | failed | | | | | | |" % (c, len(vals)))
                meds[c] = None
                continue
            m = med(good)
            meds[c] = m
            # Only runs with a value count for CPU and RSS.
            cr = [r for r in cr if fnum(r["value"]) is not None]
            spread = "%.0f%%" % (100 * (max(good) - min(good)) / m) if good and m else "—"
            rng = "%s .. %s" % (human(min(good), unit), human(max(good), unit)) if good else "—"
            p50 = med([fnum(r["p50_us"]) for r in cr])
            p99 = med([fnum(r["p99_us"]) for r in cr])
            cpu = med([fnum(r["cpu_s"]) for r in cr])
            rss = max([fnum(r["rss_kib"]) or 0 for r in cr])
            cpu_missing = sum(1 for r in cr if fnum(r["cpu_s"]) is None)
            failed = len(vals) - len(good)
            md.append("| %s | %d%s | %s | %s | %s | %s | %s | %s | %d |"
                      % (c, len(good), " (%d failed)" % failed if failed else "", human(m, unit), rng,
                         spread, "%.0f" % p50 if p50 is not None else "—",
                         "%.0f" % p99 if p99 is not None else "—",
                         ("%.2f" % cpu if cpu is not None else "—")
                         + (" (%d NA)" % cpu_missing if cpu_missing else ""), rss))
        lm = meds.get("linux")
        ratios = {c: ratio_of(meds.get(c), lm) for c in ("direct", "indirect")}
        md.append("")
        md.append("Ratio direct/linux: **%s**; indirect/linux: **%s**.\n"
                  % (fmt_ratio(ratios["direct"]), fmt_ratio(ratios["indirect"])))
        nr = [r for r in netd if r["workload"] == w]
        if nr:
            ncpu = med([fnum(r["netd_cpu_s"]) for r in nr])
            nrss = max([fnum(r["netd_rss_kib"]) or 0 for r in nr])
            # Shared memory (rings, UMEM) that netd has resident; the part it shares with the
            # server is in both processes' VmRSS.
            nshm = max([fnum(r.get("netd_shmem_kib")) or 0 for r in nr])
            md.append("Of the indirect CPU s and RSS KiB, libretto-netd's: CPU %s s (median), "
                      "RSS %d KiB (max%s).\n"
                      % ("%.2f" % ncpu if ncpu is not None else "—", nrss,
                         ", of which %d KiB shared memory" % nshm if nshm else ""))
        fr = [r for r in failures if r["workload"] == w]
        if fr:
            md.append("Failed runs:\n")
            for r in fr:
                md.append("* %s run %s: %s" % (r["config"], r["run"], r["reason"]))
            md.append("")
        if w == "latency" and lat:
            md.append("| config | p50 us | p99 us | p99.9 us |")
            md.append("|---|---|---|---|")
            for c in CONFIGS:
                lr = [r for r in lat if r["config"] == c and fnum(r["p50_us"]) is not None]
                if lr:
                    md.append("| %s | %s | %s | %s |" % (c, *[
                        "%.0f" % m if m is not None else "—"
                        for m in (med([fnum(r[k]) for r in lr]) for k in ("p50_us", "p99_us", "p999_us"))]))
                else:
                    md.append("| %s | — | — | — |" % c)
            md.append("")
        summary.append((w, unit, meds, ratios))

    md.append("## Summary\n")
    md.append("| workload | linux | direct | indirect | direct/linux | indirect/linux |")
    md.append("|---|---|---|---|---|---|")
    for w, unit, meds, ratios in summary:
        md.append("| %s | %s | %s | %s | %s | %s |"
                  % (w, *[human(meds.get(c), unit) for c in CONFIGS],
                     fmt_ratio(ratios["direct"]), fmt_ratio(ratios["indirect"])))
    if failures:
        md.append("\n%d failed run(s), listed under their workloads; \"—\" = no successful run."
                  % len(failures))
    md.append("\nPlots: `throughput_reqs.png`, `throughput_bits.png` (medians, linux, direct and "
              "indirect), `ratio.png` (direct/linux and indirect/linux per workload).\n")
    md.append("## Commands\n")
    md.append("Servers run in the configuration's namespace (linux) or under "
              "`libretto run --mode direct --name b-NAME --ip 10.42.0.4x --` (direct, 10.42.0.40-45) "
              "or `libretto run --mode indirect --name b-NAME --ip 10.42.0.4x --` (indirect, "
              "10.42.0.46-51); clients in the peer namespace.\n")
    md.append("```")
    md.extend(cmds)
    md.append("```")
    open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")

    plots(out, summary)

    # The summary table on stdout.
    print("%-20s %16s %16s %16s %8s %8s" % ("workload", "linux", "direct", "indirect", "dir/lin",
                                             "ind/lin"))
    for w, unit, meds, ratios in summary:
        print("%-20s %16s %16s %16s %8s %8s"
              % (w, *[human(meds.get(c), unit).replace("—", "-") for c in CONFIGS],
                 fmt_ratio(ratios["direct"], "-"), fmt_ratio(ratios["indirect"], "-")))
    if failures:
        print("%d failed run(s): see report.md ('-' = no successful run)" % len(failures))
    print("report: %s" % os.path.join(out, "report.md"))


def plots(out, summary):
    """Bar charts with gnuplot, one gnuplot per chart so that one failing does not lose the others;
    a missing gnuplot is reported, not fatal.  A series without any value (a configuration that
    failed on every row of the chart) is left out and named in the title, since gnuplot refuses a
    histogram column of nothing but NaN."""
    dat = os.path.join(out, "plot_data.txt")
    with open(dat, "w") as f:
        f.write("# workload unit linux direct indirect direct/linux indirect/linux\n")
        for w, unit, meds, ratios in summary:
            vals = [meds.get(c) for c in CONFIGS] + [ratios["direct"], ratios["indirect"]]
            f.write("%s %s %s\n" % (w, unit.replace("/", "_"),
                                    " ".join("NaN" if v is None else repr(v) for v in vals)))
    head = """
set terminal pngcairo size 1100,500 noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -35
set grid ytics
set key top right
"""
    # (file, title, ylabel, units selected or None for all, [(column, title, value of a row)], extra)
    charts = [
        ("throughput_reqs.png", "Request rate, median of runs (req/s)", "req/s", "req/s",
         [(3 + i, c, (lambda c: lambda s: s[2].get(c))(c)) for i, c in enumerate(CONFIGS)], "", ""),
        ("throughput_bits.png", "iperf3 throughput, median of runs (Gbit/s)", "Gbit/s", "bit/s",
         [(3 + i, c, (lambda c: lambda s: s[2].get(c))(c)) for i, c in enumerate(CONFIGS)], "", "/1e9"),
        ("ratio.png", "direct / linux and indirect / linux (1.0 = parity)", "ratio", None,
         [(6, "direct/linux", lambda s: s[3]["direct"]), (7, "indirect/linux", lambda s: s[3]["indirect"])],
         "set yrange [0:1.1<*]\nset arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb 'black'\n",
         ""),
    ]
    for name, title, ylabel, unit, series, extra, scale in charts:
        sel = [s for s in summary if unit is None or s[1] == unit]
        if not sel:
            continue
        have = [(col, t) for col, t, get in series if any(get(s) is not None for s in sel)]
        missing = [t for col, t, get in series if all(get(s) is None for s in sel)]
        if not have:
            sys.stderr.write("bench: no %s (no values)\n" % name)
            continue
        src = "< grep -v '^#' %s" % dat if unit is None else "< grep ' %s ' %s" % (unit.replace("/", "_"), dat)
        parts = []
        for k, (col, t) in enumerate(have):
            using = "($%d%s)" % (col, scale) if scale else "%d" % col
            parts.append("%s using %s%s title '%s'" % ('"%s"' % src if k == 0 else "''", using,
                                                      ":xtic(1)" if k == 0 else "", t))
        script = head + extra + "set output '%s'\nset title '%s%s'\nset ylabel '%s'\nplot %s\n" % (
            os.path.join(out, name), title, " (no data: %s)" % ", ".join(missing) if missing else "",
            ylabel, ", ".join(parts))
        try:
            r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, timeout=60)
            if r.returncode != 0:
                sys.stderr.write("bench: gnuplot failed on %s: %s\n" % (name, r.stderr.strip()))
        except (OSError, subprocess.TimeoutExpired) as e:
            sys.stderr.write("bench: no plots (gnuplot: %s)\n" % e)
            return


if __name__ == "__main__":
    main()
