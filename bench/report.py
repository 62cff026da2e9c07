#!/usr/bin/env python3
"""Benchmark report: reads DIR/results.csv (+ latency.csv, machine.txt, commands.txt), writes DIR/report.md and PNG plots, prints the summary table."""
import csv
import os
import statistics
import subprocess
import sys

CONFIGS = ("linux", "direct", "indirect")
NA_INDIRECT = "n/a (network server not implemented)"


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


def main():
    out = sys.argv[1]
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    lat = []
    if os.path.exists(os.path.join(out, "latency.csv")):
        lat = list(csv.DictReader(open(os.path.join(out, "latency.csv"))))
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

    summary = []  # (workload, unit, linux_med, direct_med, ratio)
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
              "10.42.0.254); **direct** = the same program under `libretto run --mode direct`; "
              "**indirect** = %s.  Clients run in netns *-peer on the same 2-core machine, so client "
              "and server share the CPUs.  nginx runs as a single process (`master_process off; "
              "daemon off;`) in both configurations: its forked workers are not supported under "
              "libretto yet (docs/compatibility.md).  Median of the runs; spread = (max - min) / "
              "median; ratio = direct / linux of the medians (higher is better for every row; latency percentiles are in the tables).\n" % NA_INDIRECT)

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
            if c == "indirect" or not cr:
                md.append("| %s | 0 | %s | | | | | | |" % (c, NA_INDIRECT if c == "indirect" else "not run"))
                continue
            vals = [fnum(r["value"]) for r in cr]
            good = [v for v in vals if v is not None]
            m = med(good)
            meds[c] = m
            spread = "%.0f%%" % (100 * (max(good) - min(good)) / m) if good and m else "—"
            rng = "%s .. %s" % (human(min(good), unit), human(max(good), unit)) if good else "—"
            p50 = med([fnum(r["p50_us"]) for r in cr])
            p99 = med([fnum(r["p99_us"]) for r in cr])
            cpu = med([fnum(r["cpu_s"]) for r in cr])
            rss = max([fnum(r["rss_kib"]) or 0 for r in cr])
            failed = len(vals) - len(good)
            md.append("| %s | %d%s | %s | %s | %s | %s | %s | %s | %d |"
                      % (c, len(good), " (%d failed)" % failed if failed else "", human(m, unit), rng,
                         spread, "%.0f" % p50 if p50 is not None else "—",
                         "%.0f" % p99 if p99 is not None else "—",
                         "%.2f" % cpu if cpu is not None else "—", rss))
        lm, dm = meds.get("linux"), meds.get("direct")
        ratio = dm / lm if lm and dm is not None else None
        md.append("")
        md.append("Ratio direct/linux: **%s**; indirect/linux: n/a.\n"
                  % ("%.2f" % ratio if ratio is not None else "—"))
        if w == "latency" and lat:
            md.append("| config | p50 us | p99 us | p99.9 us |")
            md.append("|---|---|---|---|")
            for c in ("linux", "direct"):
                lr = [r for r in lat if r["config"] == c]
                if lr:
                    md.append("| %s | %s | %s | %s |" % (c, *["%.0f" % (med([fnum(r[k]) for r in lr]) or 0)
                                                            for k in ("p50_us", "p99_us", "p999_us")]))
            md.append("| indirect | %s | | |\n" % NA_INDIRECT)
        summary.append((w, unit, lm, dm, ratio))

    md.append("## Summary\n")
    md.append("| workload | linux | direct | indirect | direct/linux |")
    md.append("|---|---|---|---|---|")
    for w, unit, lm, dm, ratio in summary:
        md.append("| %s | %s | %s | n/a | %s |" % (w, human(lm, unit), human(dm, unit),
                                                    "%.2f" % ratio if ratio is not None else "—"))
    md.append("\nPlots: `throughput_reqs.png`, `throughput_bits.png` (medians, linux vs direct), "
              "`ratio.png` (direct/linux per workload).\n")
    md.append("## Commands\n")
    md.append("Servers run in the configuration's namespace (linux) or under "
              "`libretto run --mode direct --name b-NAME --ip 10.42.0.4x --` (direct); "
              "clients in the peer namespace.\n")
    md.append("```")
    md.extend(cmds)
    md.append("```")
    open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")

    plots(out, summary)

    # The summary table on stdout.
    print("%-20s %18s %18s %10s %8s" % ("workload", "linux", "direct", "indirect", "ratio"))
    for w, unit, lm, dm, ratio in summary:
        print("%-20s %18s %18s %10s %8s" % (w, human(lm, unit), human(dm, unit), "n/a",
                                            "%.2f" % ratio if ratio is not None else "-"))
    print("(indirect: %s)" % NA_INDIRECT)
    print("report: %s" % os.path.join(out, "report.md"))


def plots(out, summary):
    """Bar charts with gnuplot; a missing gnuplot is reported, not fatal."""
    dat = os.path.join(out, "plot_data.txt")
    with open(dat, "w") as f:
        f.write("# workload unit linux direct ratio\n")
        for w, unit, lm, dm, ratio in summary:
            f.write("%s %s %s %s %s\n" % (w, unit.replace("/", "_"), lm if lm is not None else "NaN",
                                          dm if dm is not None else "NaN",
                                          ratio if ratio is not None else "NaN"))
    script = """
set terminal pngcairo size 1100,500 noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -35
set grid ytics
set key top right
""".format(o=out, d=dat)
    if any(u == "req/s" for _, u, _, _, _ in summary):
        script += """
set output '{o}/throughput_reqs.png'
set title 'Request rate, median of runs (req/s; indirect: n/a)'
set ylabel 'req/s'
plot '< grep " req_s " {d}' using 3:xtic(1) title 'linux', '' using 4 title 'direct'
""".format(o=out, d=dat)
    if any(u == "bit/s" for _, u, _, _, _ in summary):
        script += """
set output '{o}/throughput_bits.png'
set title 'iperf3 throughput, median of runs (Gbit/s; indirect: n/a)'
set ylabel 'Gbit/s'
plot '< grep " bit_s " {d}' using ($3/1e9):xtic(1) title 'linux', '' using ($4/1e9) title 'direct'
""".format(o=out, d=dat)
    script += """
set output '{o}/ratio.png'
set title 'direct / linux (1.0 = parity)'
set ylabel 'ratio'
set yrange [0:1.1<*]
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb 'black'
plot '< grep -v "^#" {d}' using 5:xtic(1) title 'direct/linux'
""".format(o=out, d=dat)
    try:
        r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, timeout=60)
        if r.returncode != 0:
            sys.stderr.write("bench: gnuplot failed: %s\n" % r.stderr.strip())
    except (OSError, subprocess.TimeoutExpired) as e:
        sys.stderr.write("bench: no plots (gnuplot: %s)\n" % e)


if __name__ == "__main__":
    main()
