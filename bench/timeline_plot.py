#!/usr/bin/env python3
"""Timeline plot: DIR/timeline.csv and DIR/event.txt to DIR/timeline.png (gnuplot), and a short text summary of the gap around the event."""
import os
import subprocess
import sys


def main():
    out, config = sys.argv[1], sys.argv[2]
    start = None
    rows = []
    for line in open(os.path.join(out, "timeline.csv")):
        if line.startswith("# client_start_wall="):
            start = float(line.split("=", 1)[1])
        elif line[0].isdigit():
            t, n, rate, err = line.strip().split(",")
            rows.append((float(t), int(n), int(rate), int(err)))
    ev = {}
    for line in open(os.path.join(out, "event.txt")):
        k, _, v = line.rstrip("\n").partition("=")
        ev[k] = v
    # The event's time on the client's clock (both clocks are the same host's).
    at = float(ev.get("event_wall", 0)) - start if start else float(ev.get("event_at_s", 0))
    total = sum(r[1] for r in rows)
    zero = [r[0] for r in rows if r[1] == 0 and r[0] >= at - 0.1]
    before = [r[2] for r in rows if 0.5 <= r[0] < at]
    mean_before = sum(before) / len(before) if before else 0
    # Recovery: the first bucket at or after the event at >= 80 % of the mean before it.
    rec = next((r[0] for r in rows if r[0] > at and mean_before and r[2] >= 0.8 * mean_before), None)
    summary = ("config %s; %d requests; mean before the event %.0f req/s; event at %.2f s (%s, status %s); "
               "%d empty 100 ms buckets after it; back to >= 80%% at %s s\n"
               % (config, total, mean_before, at, ev.get("event", "?"), ev.get("event_status", "?"),
                  len(zero), "%.1f" % rec if rec is not None else "never"))
    open(os.path.join(out, "summary.txt"), "w").write(summary)
    sys.stdout.write(summary)
    script = """
set terminal pngcairo size 1000,450 noenhanced
set output '{o}/timeline.png'
set datafile separator ','
set title 'Requests completed per 100 ms ({c}; event: {e})'
set xlabel 'time (s)'
set ylabel 'req/s'
set grid
set yrange [0:*]
set arrow from {a},graph 0 to {a},graph 1 nohead lc rgb 'red' dt 2
set label 'event' at {a},graph 0.95 left offset 0.5,0 tc rgb 'red'
plot '{o}/timeline.csv' every ::1 using 1:3 with steps lw 2 title 'req/s (100 ms buckets)'
""".format(o=out, c=config, e=ev.get("event", "?").replace("'", ""), a=at)
    try:
        r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, timeout=60)
        if r.returncode != 0:
            sys.stderr.write("bench: gnuplot failed: %s\n" % r.stderr.strip())
    except (OSError, subprocess.TimeoutExpired) as e:
        sys.stderr.write("bench: no plot (gnuplot: %s)\n" % e)
    print("timeline: %s" % os.path.join(out, "timeline.csv"))


if __name__ == "__main__":
    main()
