/* Shared helpers of the file-behaviour suite (see ft.h). */
#include "ft.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>

const char *ft_dir;

void ft_init(int argc, char **argv, unsigned seconds)
{
	static char dir[1024];
	size_t n;

	if (argc < 2 || !argv[1][0] || strlen(argv[1]) >= sizeof(dir)) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		exit(2);
	}
	strcpy(dir, argv[1]);
	n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		dir[--n] = 0;
	ft_dir = dir;
	umask(022);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "%s: mkdir %s: %s\n", argv[0], dir, strerror(errno));
		exit(2);
	}
	/* The directory must be searchable by the unprivileged uid some programs switch to. */
	chmod(dir, 0755);
	alarm(seconds);
}

const char *ft_path(const char *name)
{
	static char buf[8][4200];
	static int slot;
	char *b = buf[slot++ & 7];

	snprintf(b, sizeof(buf[0]), "%s/%s", ft_dir, name);
	return b;
}

const char *ft_yn(int v)
{
	return v ? "yes" : "no";
}

void ft_pattern(uint8_t *buf, size_t n, uint64_t off, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t x = off + i;
		buf[i] = (uint8_t)((x * (131 + 2 * seed)) ^ (x >> 9) ^ (x >> 17) ^ seed);
	}
}

int ft_make_file(const char *path, size_t n, unsigned seed)
{
	uint8_t buf[8192];
	size_t done = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -errno;
	while (done < n) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		ssize_t w;

		ft_pattern(buf, k, done, seed);
		w = write(fd, buf, k);
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			close(fd);
			return -e;
		}
		done += (size_t)w;
	}
	if (close(fd) < 0)
		return -errno;
	return 0;
}

void ft_show_fd(const char *step, int fd)
{
	uint8_t buf[8192];
	uint64_t h = FT_FNV_INIT;
	long long total = 0;
	ssize_t r;

	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		h = ft_fnv(h, buf, (size_t)r);
		total += r;
	}
	if (r < 0)
		ft_say("%s: read -1 %s after %lld", step, ft_errname(errno), total);
	else
		ft_say("%s: size=%lld fnv=%016llx", step, total, (unsigned long long)h);
}

void ft_show_file(const char *step, const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		ft_say("%s: open -1 %s", step, ft_errname(errno));
		return;
	}
	ft_show_fd(step, fd);
	close(fd);
}

const char *ft_type(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "file";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "symlink";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	}
	return "unknown";
}

void ft_show_stat(const char *step, const char *path, int nofollow)
{
	struct stat st;
	int r = nofollow ? lstat(path, &st) : stat(path, &st);

	if (r < 0) {
		ft_say("%s: -1 %s", step, ft_errname(errno));
		return;
	}
	/* A directory's size is file-system specific (tmpfs counts entries). */
	if (S_ISDIR(st.st_mode))
		ft_say("%s: mode=%04o type=dir nlink=%lu uid=%u gid=%u", step,
		       (unsigned)(st.st_mode & 07777), (unsigned long)st.st_nlink,
		       (unsigned)st.st_uid, (unsigned)st.st_gid);
	else
		ft_say("%s: mode=%04o type=%s nlink=%lu size=%lld uid=%u gid=%u", step,
		       (unsigned)(st.st_mode & 07777), ft_type(st.st_mode),
		       (unsigned long)st.st_nlink, (long long)st.st_size,
		       (unsigned)st.st_uid, (unsigned)st.st_gid);
}

static int ft_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *ft_dtype(unsigned char t)
{
	switch (t) {
	case DT_REG: return "file";
	case DT_DIR: return "dir";
	case DT_LNK: return "symlink";
	case DT_FIFO: return "fifo";
	case DT_UNKNOWN: return "unknown";
	}
	return "other";
}

void ft_show_dir(const char *step, const char *path)
{
	char *names[256];
	size_t n = 0, len = 0;
	char line[8192];
	struct dirent *d;
	DIR *dp = opendir(path);

	if (!dp) {
		ft_say("%s: opendir -1 %s", step, ft_errname(errno));
		return;
	}
	while ((d = readdir(dp)) && n < 256) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		if (asprintf(&names[n], "%s/%s", d->d_name, ft_dtype(d->d_type)) < 0)
			break;
		n++;
	}
	closedir(dp);
	qsort(names, n, sizeof(names[0]), ft_cmp_str);
	line[0] = 0;
	for (size_t i = 0; i < n; i++) {
		len += snprintf(line + len, len < sizeof(line) ? sizeof(line) - len : 0, " %s", names[i]);
		free(names[i]);
	}
	ft_say("%s:%s", step, n ? line : " (empty)");
}
