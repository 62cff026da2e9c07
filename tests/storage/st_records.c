/* The crash tests' writer and checker: fsync'ed, self-checking records, each acknowledged on stdout only after its fsync. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Usage:
 *   st_records write DIR SECONDS   create DIR, append records to DIR/f0..f2
 *                                  until SECONDS pass (or a signal); after
 *                                  the fsync (or fdatasync) of record N,
 *                                  print "N" on stdout (unbuffered)
 *   st_records check DIR OUT       read DIR/f0..f2, print the ids of every
 *                                  complete, intact record to OUT (one a
 *                                  line) and a summary on stdout; a torn
 *                                  record after the last intact one is
 *                                  allowed (it was never acknowledged)
 *   st_records meta DIR SECONDS    the atomic-replace pattern: write a record
 *                                  to DIR/tmp.N, fsync it, rename it over
 *                                  DIR/m<N % 50>, fsync DIR, print "N"
 *   st_records check-meta DIR ACKS every DIR/m<k> holds one intact record,
 *                                  not older than the newest acknowledged
 *                                  (ACKS: the ids printed by meta) for k;
 *                                  exit 1 otherwise
 *   st_records hold FILE           write FILE, fsync it, print "ready",
 *                                  wait for EOF on stdin (bounded: 120 s)
 *
 * A record is "REC <id> <len> <fnv64 hex>\n" + len payload bytes + "\n";
 * the payload is a function of the id, so a record made of stale or
 * misplaced blocks fails its checksum.  Record sizes vary from 1 byte to
 * 40 KiB so that records straddle blocks and extents grow.
 */

#define NFILES 3
#define MAXLEN 40960

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static size_t rec_len(unsigned id)
{
	/* Mostly small records, every 7th a large one. */
	return id % 7 == 3 ? 4096 + (id * 7919u) % (MAXLEN - 4096) : 1 + (id * 131u) % 600;
}

static void rec_payload(uint8_t *p, size_t n, unsigned id)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)('a' + (i * 7 + id) % 26);
}

static int write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int cmd_write(const char *dir, int seconds)
{
	static uint8_t buf[MAXLEN + 128];
	int fds[NFILES];
	char path[4200];
	time_t end = time(NULL) + seconds;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "st_records: mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	for (int i = 0; i < NFILES; i++) {
		snprintf(path, sizeof(path), "%s/f%d", dir, i);
		fds[i] = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fds[i] < 0) {
			fprintf(stderr, "st_records: open %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	/* The new files' names must survive a crash too. */
	{
		int d = open(dir, O_RDONLY | O_DIRECTORY);
		if (d < 0 || fsync(d) < 0) {
			fprintf(stderr, "st_records: fsync %s: %s\n", dir, strerror(errno));
			return 1;
		}
		close(d);
	}
	for (unsigned id = 1; time(NULL) < end; id++) {
		size_t len = rec_len(id);
		int h = snprintf((char *)buf, 64, "REC %u %zu ", id, len);
		int fd = fds[id % NFILES];
		uint8_t *payload = buf + 128;

		rec_payload(payload, len, id);
		h += snprintf((char *)buf + h, 64, "%016llx\n", (unsigned long long)fnv(payload, len));
		memmove(buf + h, payload, len);
		buf[h + len] = '\n';
		if (write_all(fd, buf, (size_t)h + len + 1) < 0) {
			fprintf(stderr, "st_records: write record %u: %s\n", id, strerror(errno));
			return 1;
		}
		if ((id % 2 ? fsync(fd) : fdatasync(fd)) < 0) {
			fprintf(stderr, "st_records: fsync record %u: %s\n", id, strerror(errno));
			return 1;
		}
		printf("%u\n", id);
		fflush(stdout);
	}
	return 0;
}

static int cmd_check(const char *dir, const char *outpath)
{
	static char buf[MAXLEN + 256];
	FILE *out = fopen(outpath, "w");
	long good = 0, torn = 0, bad = 0;
	char path[4200];

	if (!out) {
		fprintf(stderr, "st_records: %s: %s\n", outpath, strerror(errno));
		return 1;
	}
	for (int i = 0; i < NFILES; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/f%d", dir, i);
		f = fopen(path, "r");
		if (!f) {
			printf("%s: %s\n", path, strerror(errno));
			bad++;
			continue;
		}
		for (;;) {
			unsigned id;
			size_t len;
			unsigned long long sum;
			long at = ftell(f);

			if (!fgets(buf, sizeof(buf), f))
				break;
			if (sscanf(buf, "REC %u %zu %llx", &id, &len, &sum) != 3 || len > MAXLEN ||
			    len != rec_len(id)) {
				/* Anything but a record header after the intact records: a torn tail. */
				torn++;
				break;
			}
			if (fread(buf, 1, len + 1, f) != len + 1) {
				torn++;
				break;
			}
			{
				static uint8_t want[MAXLEN];
				rec_payload(want, len, id);
				if (buf[len] != '\n' || fnv((uint8_t *)buf, len) != sum ||
				    memcmp(buf, want, len)) {
					/* Not acknowledged unless the script says so: a tail
					 * written but never fsync'ed may hold anything. */
					printf("%s: record %u at %ld does not check: the tail ends here\n",
					       path, id, at);
					torn++;
					break;
				}
			}
			fprintf(out, "%u\n", id);
			good++;
		}
		fclose(f);
	}
	fclose(out);
	printf("intact=%ld torn_tails=%ld corrupt=%ld\n", good, torn, bad);
	return bad ? 1 : 0;
}

#define SLOTS 50

/* Format record id into buf (header + payload + newline); returns its length. */
static size_t rec_format(uint8_t *buf, unsigned id)
{
	size_t len = rec_len(id);
	uint8_t *payload = buf + 128;
	int h = snprintf((char *)buf, 64, "REC %u %zu ", id, len);

	rec_payload(payload, len, id);
	h += snprintf((char *)buf + h, 64, "%016llx\n", (unsigned long long)fnv(payload, len));
	memmove(buf + h, payload, len);
	buf[h + len] = '\n';
	return (size_t)h + len + 1;
}

static int cmd_meta(const char *dir, int seconds)
{
	static uint8_t buf[MAXLEN + 128];
	char tmp[4200], dst[4200];
	time_t end = time(NULL) + seconds;
	int dfd;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "st_records: mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0) {
		fprintf(stderr, "st_records: open %s: %s\n", dir, strerror(errno));
		return 1;
	}
	for (unsigned id = 1; time(NULL) < end; id++) {
		size_t n = rec_format(buf, id);
		int fd;

		snprintf(tmp, sizeof(tmp), "%s/tmp.%u", dir, id);
		snprintf(dst, sizeof(dst), "%s/m%u", dir, id % SLOTS);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0 || write_all(fd, buf, n) < 0 || fsync(fd) < 0 || close(fd) < 0 ||
		    rename(tmp, dst) < 0 || fsync(dfd) < 0) {
			fprintf(stderr, "st_records: meta %u: %s\n", id, strerror(errno));
			return 1;
		}
		printf("%u\n", id);
		fflush(stdout);
	}
	return 0;
}

static int cmd_check_meta(const char *dir, const char *ackpath)
{
	static char buf[MAXLEN + 256];
	unsigned newest[SLOTS] = { 0 }, id;
	int bad = 0, present = 0;
	FILE *acks = fopen(ackpath, "r");
	char path[4200];

	if (!acks) {
		fprintf(stderr, "st_records: %s: %s\n", ackpath, strerror(errno));
		return 2;
	}
	while (fscanf(acks, "%u", &id) == 1)
		if (id > newest[id % SLOTS])
			newest[id % SLOTS] = id;
	fclose(acks);
	for (unsigned k = 0; k < SLOTS; k++) {
		unsigned long long sum;
		size_t len;
		FILE *f;

		snprintf(path, sizeof(path), "%s/m%u", dir, k);
		f = fopen(path, "r");
		if (!f) {
			if (newest[k]) {
				printf("m%u: %s, but record %u was acknowledged\n", k, strerror(errno), newest[k]);
				bad++;
			}
			continue;
		}
		present++;
		if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "REC %u %zu %llx", &id, &len, &sum) != 3 ||
		    len != rec_len(id) || id % SLOTS != k || fread(buf, 1, len + 1, f) != len + 1 ||
		    buf[len] != '\n' || fnv((uint8_t *)buf, len) != sum || fgetc(f) != EOF) {
			printf("m%u: not one intact record (a torn or mixed replace)\n", k);
			bad++;
		} else if (id < newest[k]) {
			printf("m%u: holds record %u, older than the acknowledged %u\n", k, id, newest[k]);
			bad++;
		}
		fclose(f);
	}
	printf("slots=%d intact_and_current=%d bad=%d\n", present, present - bad, bad);
	return bad ? 1 : 0;
}

static int cmd_hold(const char *file)
{
	char c;
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write_all(fd, "held\n", 5) < 0 || fsync(fd) < 0) {
		fprintf(stderr, "st_records: %s: %s\n", file, strerror(errno));
		return 1;
	}
	close(fd);
	printf("ready\n");
	fflush(stdout);
	alarm(120);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "write"))
		return cmd_write(argv[2], atoi(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "check"))
		return cmd_check(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "meta"))
		return cmd_meta(argv[2], atoi(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "check-meta"))
		return cmd_check_meta(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "hold"))
		return cmd_hold(argv[2]);
	fprintf(stderr, "usage: st_records write|meta DIR SECONDS | check DIR OUT | check-meta DIR ACKS | hold FILE\n");
	return 2;
}
