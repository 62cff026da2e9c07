/* File behaviour: opendir/readdir over 1000 entries (each seen once), rewinddir, d_type, and unlinking while the walk runs. */
#include "ft.h"

#include <dirent.h>

#define N 1000

static int count_entries(const char *step, int unlink_during)
{
	static unsigned char seen[N];
	int dups = 0, others = 0, n = 0, dots = 0, removed = 0;
	struct dirent *d;
	DIR *dp;

	memset(seen, 0, sizeof(seen));
	dp = opendir(ft_path("many"));
	if (!dp) {
		ft_say("%s: opendir -1 %s", step, ft_errname(errno));
		return -1;
	}
	errno = 0;
	while ((d = readdir(dp))) {
		int i;

		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) {
			dots++;
			continue;
		}
		if (sscanf(d->d_name, "entry-%d", &i) != 1 || i < 0 || i >= N) {
			others++;
			continue;
		}
		if (seen[i]++)
			dups++;
		n++;
		if (d->d_type != DT_REG && d->d_type != DT_DIR)
			others++;
		/* Unlink this entry and one far ahead of the walk: POSIX leaves
		 * it open whether the far one is still returned, so only the
		 * entries never unlinked are counted below. */
		if (unlink_during && i % 2 == 0) {
			char name[32];

			snprintf(name, sizeof(name), "many/entry-%d", i);
			removed += unlink(ft_path(name)) == 0;
		}
		errno = 0;
	}
	ft_say("%s: readdir ended with errno %s", step, errno ? ft_errname(errno) : "0");
	if (unlink_during) {
		int odd_missing = 0;

		for (int i = 1; i < N; i += 2)
			odd_missing += !seen[i];
		ft_say("%s: dots=%d duplicates=%d unknown=%d odd entries missed=%d removed=%d", step,
		       dots, dups, others, odd_missing, removed);
	} else {
		int missing = 0;

		for (int i = 0; i < N; i++)
			missing += !seen[i];
		ft_say("%s: entries=%d dots=%d duplicates=%d unknown=%d missing=%d", step, n, dots,
		       dups, others, missing);
	}
	closedir(dp);
	return 0;
}

int main(int argc, char **argv)
{
	struct dirent *d;
	char name[64];
	long pos = -1;
	int ndirs = 0, nfiles = 0, n;
	DIR *dp;

	ft_init(argc, argv, 120);
	ft_ok("mkdir many", mkdir(ft_path("many"), 0755));
	ft_show_dir("list empty dir", ft_path("many"));
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "many/entry-%d", i);
		if (i % 100 == 7) {
			if (mkdir(ft_path(name), 0755) < 0)
				ft_say("mkdir %s: -1 %s", name, ft_errname(errno));
			continue;
		}
		if (ft_make_file(ft_path(name), (size_t)(i % 5), (unsigned)i) < 0)
			ft_say("create %s failed", name);
	}
	ft_say("created %d entries", N);
	count_entries("walk 1", 0);
	count_entries("walk 2", 0);

	/* d_type per entry; rewinddir gives the same entries again; telldir/seekdir return to a position. */
	dp = opendir(ft_path("many"));
	while ((d = readdir(dp))) {
		if (!strncmp(d->d_name, "entry-", 6)) {
			ndirs += d->d_type == DT_DIR;
			nfiles += d->d_type == DT_REG;
		}
	}
	ft_say("d_type: dirs=%d files=%d", ndirs, nfiles);
	rewinddir(dp);
	n = 0;
	while ((d = readdir(dp))) {
		n++;
		if (n == 500)
			pos = telldir(dp);
	}
	ft_say("after rewinddir: %d entries with dots", n);
	if (pos >= 0) {
		char first[256];

		seekdir(dp, pos);
		d = readdir(dp);
		snprintf(first, sizeof(first), "%s", d ? d->d_name : "");
		seekdir(dp, pos);
		d = readdir(dp);
		ft_say("seekdir to telldir twice gives the same entry: %s",
		       ft_yn(d && first[0] && !strcmp(first, d->d_name)));
	}
	closedir(dp);

	/* Many short walks, as cp -r and find make them: the end of a stream
	 * must leave errno as the caller set it (gnulib's savedir sets 0 and
	 * takes any change for an error); a volume call answered quickly once
	 * leaked EAGAIN there. */
	ft_ok("mkdir small", mkdir(ft_path("small"), 0755));
	ft_make_file(ft_path("small/a"), 1, 1);
	ft_make_file(ft_path("small/b"), 2, 2);
	n = 0;
	for (int round = 0; round < 400; round++) {
		int seen = 0;

		dp = opendir(ft_path("small"));
		if (!dp)
			break;
		errno = 0;
		while (readdir(dp))
			seen++;
		n += errno != 0 || seen != 4;
		closedir(dp);
	}
	ft_say("400 walks of a small directory: %d ended with errno set or wrong entries", n);

	ft_ok("rmdir many (not empty)", rmdir(ft_path("many")));
	count_entries("walk unlinking even files", 1);
	/* Directories are kept (unlink fails with EISDIR), so count what is left. */
	n = 0;
	dp = opendir(ft_path("many"));
	while ((d = readdir(dp)))
		n += d->d_name[0] != '.';
	closedir(dp);
	ft_say("left after the unlinking walk: %d", n);
	count_entries("walk 3", 0);

	/* Empty the directory and remove it. */
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "many/entry-%d", i);
		if (unlink(ft_path(name)) < 0 && errno == EISDIR)
			rmdir(ft_path(name));
	}
	ft_show_dir("list after emptying", ft_path("many"));
	ft_ok("rmdir many", rmdir(ft_path("many")));
	ft_ok("opendir removed dir", opendir(ft_path("many")) ? 0 : -1);
	ft_ok("opendir a file", (ft_make_file(ft_path("file"), 1, 1), opendir(ft_path("file"))) ? 0 : -1);
	return 0;
}
