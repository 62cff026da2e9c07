/* librettod's event log: one timestamped line per event on stderr. */
#include "librettod/librettod.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

/*
 * Under --daemon, stderr is the log file opened with O_APPEND, so each line
 * written by one fprintf() lands whole even if another process appends.
 * The timestamp is UTC with milliseconds, sortable as text.
 */
void ld_log(const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32], line[1024];
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ldZ librettod: %s\n", stamp, ts.tv_nsec / 1000000, line);
	fflush(stderr);
}
