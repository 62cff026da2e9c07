-- wrk script of the benchmark runner: one machine-readable summary line at the end (rate and latency percentiles in microseconds).
done = function(summary, latency, requests)
	local e = summary.errors
	local errs = e.connect + e.read + e.write + e.status + e.timeout
	local rps = 0
	if summary.duration > 0 then
		rps = summary.requests / (summary.duration / 1e6)
	end
	io.write(string.format("BENCH rps=%.1f p50_us=%d p99_us=%d p999_us=%d requests=%d errors=%d\n",
		rps, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
		summary.requests, errs))
end
