/* `libretto volume`: make, check and list the ext4 images programs use as volumes (`run --volume`). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/kv.h"
#include "common/volimg.h"
#include "libretto/ctl.h"

/*
 * The smallest volume: ext4 gets a journal only from 2048 blocks of
 * 4 KiB on, and a volume without a journal could not recover from a
 * crash.  The largest: what ext4 with 4 KiB blocks and 64-bit block
 * numbers holds comfortably, and past what any test machine stores.
 */
#define VOLUME_MIN_SIZE (8ull << 20)
#define VOLUME_MAX_SIZE (1ull << 50)
#define VOLUME_CTL_TIMEOUT_MS 10000
#define VOLUME_LS_MAX_USERS 64

const char cmd_volume_usage[] =
	"usage: libretto volume create IMAGE --size N[K|M|G|T] [--force]\n"
	"       libretto volume check IMAGE\n"
	"       libretto volume ls [--json]\n"
	"\n"
	"A volume is an image file (or block device) holding ext4 with 4096-byte\n"
	"blocks.  `libretto run --volume IMAGE[:MOUNTPOINT] -- CMD` gives it to\n"
	"CMD, whose file calls under MOUNTPOINT (default /data) then go to an\n"
	"ext4 running inside CMD's own process (--storage direct) or in the\n"
	"storage server libretto-fsd (--storage indirect).  See docs/storage.md.\n"
	"\n"
	"  create  make a sparse image file of N bytes (suffixes K, M, G, T: powers\n"
	"          of 1024; at least 8M; a multiple of 4096) with mke2fs\n"
	"  check   replay the journal if the image needs it, then e2fsck -fn: exit\n"
	"          status 0 clean, 1 problems (or in use: refused)\n"
	"  ls      the volumes programs use now, as librettod sees them\n"
	"\n"
	"`libretto volume COMMAND --help` tells more about each.\n";

static const char volume_create_usage[] =
	"usage: libretto volume create IMAGE --size N[K|M|G|T] [--force]\n"
	"\n"
	"Make IMAGE a new ext4 volume of N bytes: a sparse file (only what ext4\n"
	"writes takes disk space), formatted by\n"
	"  mke2fs -q -F -t ext4 -b 4096 -O ^inline_data,^metadata_csum_seed\n"
	"         -E lazy_itable_init=0,lazy_journal_init=0 IMAGE BLOCKS\n"
	"A new file gets mode 0600 and the caller as owner, as does the root\n"
	"directory of the file system.\n"
	"\n"
	"  --size N    K, M, G, T are powers of 1024 (1G = 1073741824 bytes);\n"
	"              no suffix means bytes.  At least 8M (ext4 has a journal\n"
	"              from there on), a multiple of 4096\n"
	"  --force     overwrite IMAGE if it exists and is not empty (its data is\n"
	"              lost).  An image in use is refused all the same\n"
	"\n"
	"Block devices are not formatted by this command: run the mke2fs line\n"
	"above on the device yourself.\n";

static const char volume_check_usage[] =
	"usage: libretto volume check IMAGE\n"
	"\n"
	"Check IMAGE's file system: if its journal holds transactions a crash left\n"
	"behind, replay them first (e2fsck -y -E journal_only: the recovery the\n"
	"next mount would do), then run e2fsck -fn, which changes nothing, and\n"
	"pass its report through.  Exit status 0: clean; 1: e2fsck found\n"
	"problems, or IMAGE cannot be checked now.\n"
	"\n"
	"Refused while IMAGE is in use: leased to a program by librettod (asked\n"
	"when it runs), locked by another process (librettod, a program's\n"
	"runtime or another check hold an OFD lock on its first bytes), or\n"
	"attached to a loop device.  To repair what -fn reports: e2fsck -fy IMAGE,\n"
	"while no program uses it.\n";

static const char volume_ls_usage[] =
	"usage: libretto volume ls [--json]\n"
	"\n"
	"List the volumes librettod has handed to programs now:\n"
	"  IMAGE     the image's real path\n"
	"  STORAGE   direct (one program runs its ext4 in its own process) or\n"
	"            indirect (libretto-fsd serves it to every program listed)\n"
	"  APPS      the programs using it: NAME(id N, pid P) at MOUNTPOINT\n"
	"\n"
	"With no volume in use, prints the header and \"(no volumes)\".\n";

/*
 * A size with an optional K, M, G or T suffix (powers of 1024, optionally
 * followed by "iB" or "B"), in bytes.  0 or -EINVAL.
 */
static int volume_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGT";
	unsigned long long v;
	const char *u;
	char *end;

	if (!*s || !strchr("0123456789", *s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end) {
		u = strchr(units, *end >= 'a' ? *end - 32 : *end);
		if (!u || !*u)
			return -EINVAL;
		if (strcmp(end + 1, "") != 0 && strcmp(end + 1, "B") != 0 &&
		    strcmp(end + 1, "iB") != 0)
			return -EINVAL;
		for (int i = 0; i <= (int)(u - units); i++) {
			if (v > UINT64_MAX / 1024)
				return -EINVAL;
			v *= 1024;
		}
	}
	*out = v;
	return 0;
}

/* A size for people: "512 MiB", "1.5 GiB". */
static void volume_fmt_size(uint64_t n, char *out, size_t cap)
{
	static const char *const u[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	int i = 0;

	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, cap, "%" PRIu64 " bytes", n);
	else if (v == (double)(uint64_t)v)
		snprintf(out, cap, "%.0f %s", v, u[i]);
	else
		snprintf(out, cap, "%.1f %s", v, u[i]);
}

/*
 * librettod's `volumes` reply in reply (cap bytes).  1 when it answered,
 * 0 when it is not running, -errno (with a message) otherwise.
 */
static int volume_ask_daemon(char *reply, size_t cap)
{
	int fd = cli_ctl_open(true), n, err;

	if (fd == -ENOENT || fd == -ECONNREFUSED)
		return 0;
	if (fd < 0) {
		cli_err("cannot connect to librettod at %s: %s", ctl_path(), strerror(-fd));
		return fd;
	}
	n = cli_ctl_call(fd, "volumes\n", reply, cap, NULL, NULL, VOLUME_CTL_TIMEOUT_MS);
	close(fd);
	if (n < 0) {
		cli_err("librettod did not answer `volumes`: %s", strerror(-n));
		return n;
	}
	err = cli_reply_errno(reply);
	if (err) {
		char msg[512] = "malformed reply";

		cli_reply_get(reply, "error", msg, sizeof(msg));
		cli_err("librettod refused `volumes`: %s", msg);
		return err > 0 ? -err : -EPROTO;
	}
	return 1;
}

/* One line of the `volumes` reply, split into its fields (in place). */
struct volume_rec {
	char *id, *storage, *apps, *names, *pids, *mounts, *image;
};

/* Parse one "volume=... image=..." line; false if it is not one. */
static bool volume_rec_parse(char *line, struct volume_rec *r)
{
	char *save = NULL, *tok;

	memset(r, 0, sizeof(*r));
	for (char *p = line; (tok = strtok_r(p, " ", &save)); p = NULL) {
		char *eq = strchr(tok, '=');

		if (!eq)
			continue;
		*eq++ = '\0';
		if (!strcmp(tok, "volume"))
			r->id = eq;
		else if (!strcmp(tok, "storage"))
			r->storage = eq;
		else if (!strcmp(tok, "apps"))
			r->apps = eq;
		else if (!strcmp(tok, "names"))
			r->names = eq;
		else if (!strcmp(tok, "pids"))
			r->pids = eq;
		else if (!strcmp(tok, "mounts"))
			r->mounts = eq;
		else if (!strcmp(tok, "image"))
			r->image = eq;
	}
	return r->id && r->storage && r->image;
}

/*
 * The next record of a `volumes` reply that parses into *r, false at the
 * end.  *cur walks the reply, which is cut into lines in place; lines that
 * are not records are passed over.
 */
static bool volume_rec_next(char **cur, struct volume_rec *r)
{
	while (*cur != NULL && **cur != '\0') {
		char *line = *cur, *eol = strchr(line, '\n');

		if (eol)
			*eol = '\0';
		*cur = eol ? eol + 1 : NULL;
		if (volume_rec_parse(line, r))
			return true;
	}
	return false;
}

/* Field i of a comma-separated list, copied into out ("" when missing). */
static void volume_list_item(const char *list, int i, char *out, size_t cap)
{
	const char *p = list ? list : "";

	for (; i > 0 && p; i--) {
		p = strchr(p, ',');
		if (p)
			p++;
	}
	if (!p || !*p) {
		snprintf(out, cap, "%s", "");
		return;
	}
	snprintf(out, cap, "%.*s", (int)strcspn(p, ","), p);
}

static int volume_nusers(const struct volume_rec *r)
{
	int n = 0;

	if (!r->apps || !*r->apps)
		return 0;
	for (const char *p = r->apps; p; p = strchr(p + 1, ','))
		n++;
	return n;
}

/* User i of a record, gathered from its parallel comma-separated lists. */
struct volume_user {
	char id[32], name[128], pid[32], mount[PATH_MAX];
};

static void volume_user_get(const struct volume_rec *r, int i, struct volume_user *u)
{
	volume_list_item(r->apps, i, u->id, sizeof(u->id));
	volume_list_item(r->names, i, u->name, sizeof(u->name));
	volume_list_item(r->pids, i, u->pid, sizeof(u->pid));
	volume_list_item(r->mounts, i, u->mount, sizeof(u->mount));
}

/*
 * Whether librettod has the file (dev, ino) leased now; who (one
 * sentence) says to whom.  1 yes, 0 no or librettod not running, -errno.
 */
static int volume_daemon_holds(dev_t dev, ino_t ino, char *who, size_t cap)
{
	static char reply[CTL_MSG_MAX];
	struct volume_user u;
	struct volume_rec r;
	char want[64], *cur = reply;
	int err = volume_ask_daemon(reply, sizeof(reply));

	if (err <= 0)
		return err;
	snprintf(want, sizeof(want), "%u:%u:%lu", major(dev), minor(dev), (unsigned long)ino);
	while (volume_rec_next(&cur, &r)) {
		if (strcmp(r.id, want) != 0)
			continue;
		volume_user_get(&r, 0, &u);
		if (!strcmp(r.storage, "indirect"))
			snprintf(who, cap, "served by libretto-fsd (--storage indirect) to %d "
				 "application%s, the first %s (app %s, pid %s)", volume_nusers(&r),
				 volume_nusers(&r) == 1 ? "" : "s", u.name, u.id, u.pid);
		else
			snprintf(who, cap, "in use by app %s (%s, pid %s)", u.id, u.name, u.pid);
		return 1;
	}
	return 0;
}

/*
 * Whether the image is free to format or check: not leased by librettod,
 * not on a loop device, and the OFD write lock on bytes 0 and 1 (the ones
 * librettod and the runtime hold) taken on fd, where it stays until fd is
 * closed.  0, or 1 with the reason printed.
 */
static int volume_claim(int fd, const char *image, const struct stat *st)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 2 };
	char who[512], loopdev[64];
	int r;

	r = volume_daemon_holds(st->st_dev, st->st_ino, who, sizeof(who));
	if (r < 0)
		return 1;
	if (r > 0) {
		cli_err("volume %s is %s", image, who);
		return 1;
	}
	if (S_ISREG(st->st_mode) && volimg_on_loop(st->st_dev, st->st_ino, loopdev,
						   sizeof(loopdev))) {
		cli_err("volume %s is in use by the kernel: it is attached to %s (unmount it and "
			"`losetup -d %s` first)", image, loopdev, loopdev);
		return 1;
	}
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		if (errno == EAGAIN || errno == EACCES)
			cli_err("volume %s is in use: locked by another process", image);
		else
			cli_err("cannot lock %s: %s", image, strerror(errno));
		return 1;
	}
	return 0;
}

static int volume_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *size_arg = NULL, *image;
	const char *mkfs[16];
	char blocks[32], human[32];
	bool force = false, existed;
	struct stat st;
	uint64_t size;
	int c, fd, rc, i = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":s:fh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			size_arg = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			fputs(volume_create_usage, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("volume create", c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_err("volume create", "name the image: libretto volume create "
				     "IMAGE --size N");
	if (optind + 1 < argc)
		return cli_usage_err("volume create", "unexpected argument '%s'", argv[optind + 1]);
	image = argv[optind];
	if (!size_arg)
		return cli_usage_err("volume create", "--size is needed, e.g. --size 1G");
	if (volume_parse_size(size_arg, &size) < 0)
		return cli_usage_err("volume create", "--size wants a number with an optional K, "
				     "M, G or T, like 512M or 2G, not '%s'", size_arg);
	if (size < VOLUME_MIN_SIZE || size > VOLUME_MAX_SIZE)
		return cli_usage_err("volume create", "--size %s is out of range: at least 8M "
				     "(ext4 needs that for its journal), at most 1024T", size_arg);
	if (size % VOLIMG_BLOCK_SIZE)
		return cli_usage_err("volume create", "--size %s is not a multiple of 4096 bytes "
				     "(the block size)", size_arg);

	existed = lstat(image, &st) == 0;
	if (existed) {
		if (S_ISBLK(st.st_mode)) {
			cli_err("%s is a block device; `volume create` makes image files.  Format "
				"the device yourself: mke2fs -t ext4 -b 4096 -O "
				"^inline_data,^metadata_csum_seed -E "
				"lazy_itable_init=0,lazy_journal_init=0 %s", image, image);
			return CLI_EXIT_FAIL;
		}
		if (!S_ISREG(st.st_mode)) {
			cli_err("%s exists and is not a regular file", image);
			return CLI_EXIT_FAIL;
		}
		if (st.st_size > 0 && !force) {
			cli_err("%s exists and is not empty (%jd bytes): --force overwrites it, and "
				"what it holds is lost", image, (intmax_t)st.st_size);
			return CLI_EXIT_FAIL;
		}
	} else if (errno != ENOENT) {
		cli_err("%s: %s", image, strerror(errno));
		return CLI_EXIT_FAIL;
	}

	fd = open(image, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		cli_err("cannot create %s: %s", image, strerror(errno));
		return CLI_EXIT_FAIL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		cli_err("%s is not a regular file", image);
		close(fd);
		return CLI_EXIT_FAIL;
	}
	if (volume_claim(fd, image, &st)) {
		close(fd);
		if (!existed)
			unlink(image);
		return CLI_EXIT_FAIL;
	}
	/* Truncating to 0 first discards every old block: the file is all holes. */
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0) {
		cli_err("cannot make %s %" PRIu64 " bytes long: %s", image, size,
			errno == EFBIG ? "the file system it is on does not allow a file that large" :
			strerror(errno));
		close(fd);
		if (!existed)
			unlink(image);
		else
			cli_err("%s is left empty", image);
		return CLI_EXIT_FAIL;
	}

	snprintf(blocks, sizeof(blocks), "%" PRIu64, size / VOLIMG_BLOCK_SIZE);
	mkfs[i++] = "mke2fs";
	mkfs[i++] = "-q";
	mkfs[i++] = "-F";
	mkfs[i++] = "-t";
	mkfs[i++] = "ext4";
	mkfs[i++] = "-b";
	mkfs[i++] = "4096";
	mkfs[i++] = "-O";
	mkfs[i++] = "^inline_data,^metadata_csum_seed";
	mkfs[i++] = "-E";
	mkfs[i++] = "lazy_itable_init=0,lazy_journal_init=0";
	mkfs[i++] = image;
	mkfs[i++] = blocks;
	mkfs[i] = NULL;
	/* The lock on fd stays held while mke2fs writes: nobody leases it half made. */
	rc = cli_spawn(NULL, mkfs, CLI_SPAWN_REPORT);
	if (rc == 0) {
		bool recover;
		char why[PATH_MAX + 200];

		/* What mke2fs made must be what librettod accepts. */
		if (volimg_check(fd, image, &recover, why, sizeof(why)) < 0) {
			cli_err("mke2fs did not make a volume: %s", why);
			rc = 1;
		}
	}
	close(fd);
	if (rc != 0) {
		if (!existed)
			unlink(image);
		else if (truncate(image, 0) == 0)
			cli_err("%s is left empty", image);
		return CLI_EXIT_FAIL;
	}
	volume_fmt_size(size, human, sizeof(human));
	printf("%s: ext4 volume of %s (4096-byte blocks)\n", image, human);
	return CLI_EXIT_OK;
}

static int volume_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *replay[8], *check[8];
	char real[PATH_MAX], why[PATH_MAX + 200];
	bool recover = false;
	struct stat st;
	int c, fd, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(volume_check_usage, stdout);
			return CLI_EXIT_OK;
		}
		return cli_bad_option("volume check", c, argv);
	}
	if (optind >= argc)
		return cli_usage_err("volume check", "name the image: libretto volume check IMAGE");
	if (optind + 1 < argc)
		return cli_usage_err("volume check", "unexpected argument '%s'", argv[optind + 1]);
	if (!realpath(argv[optind], real)) {
		cli_err("%s: %s", argv[optind], strerror(errno));
		return CLI_EXIT_FAIL;
	}
	/* A block device opened O_EXCL is refused while the kernel mounts it. */
	fd = open(real, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
		  (stat(real, &st) == 0 && S_ISBLK(st.st_mode) ? O_EXCL : 0));
	if (fd < 0) {
		if (errno == EBUSY)
			cli_err("volume %s is in use by the kernel (mounted?)", real);
		else
			cli_err("cannot open %s: %s", real, strerror(errno));
		return CLI_EXIT_FAIL;
	}
	if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		cli_err("%s is neither a regular file nor a block device", real);
		close(fd);
		return CLI_EXIT_FAIL;
	}
	/* Claim first: the superblock (needs_recovery) is only worth reading
	 * once no program or libretto-fsd has the volume mounted. */
	if (volume_claim(fd, real, &st)) {
		close(fd);
		return CLI_EXIT_FAIL;
	}
	if (volimg_check(fd, real, &recover, why, sizeof(why)) < 0) {
		cli_err("%s", why);
		close(fd);
		return CLI_EXIT_FAIL;
	}
	if (recover) {
		replay[0] = "e2fsck";
		replay[1] = "-y";
		replay[2] = "-E";
		replay[3] = "journal_only";
		replay[4] = real;
		replay[5] = NULL;
		fprintf(stderr, "%s: %s: the journal needs recovery (an unclean stop): replaying "
			"it\n", cli_prog, real);
		fflush(stderr);
		rc = cli_spawn(NULL, replay, 0);
		/* e2fsck: 0 nothing done, 1 the file system was changed (replayed). */
		if (rc != 0 && rc != 1) {
			cli_err("%s: replaying the journal failed (e2fsck exit status %d)", real, rc);
			close(fd);
			return CLI_EXIT_FAIL;
		}
	}
	check[0] = "e2fsck";
	check[1] = "-fn";
	check[2] = real;
	check[3] = NULL;
	fflush(stdout);
	rc = cli_spawn(NULL, check, 0);
	close(fd);
	if (rc < 0) {
		cli_err("cannot run e2fsck: %s (scripts/deps.sh build installs e2fsprogs)",
			strerror(-rc));
		return CLI_EXIT_FAIL;
	}
	if (rc != 0) {
		cli_err("%s: e2fsck -fn found problems (exit status %d); repair with `e2fsck -fy "
			"%s` while no program uses it", real, rc, real);
		return CLI_EXIT_FAIL;
	}
	printf("%s: clean%s\n", real, recover ? " (after replaying the journal)" : "");
	return CLI_EXIT_OK;
}

static void volume_ls_json(char *reply)
{
	struct volume_user u;
	struct volume_rec r;
	bool first = true;
	char *cur = reply;

	printf("{\"volumes\":[");
	while (volume_rec_next(&cur, &r)) {
		int n;

		printf("%s{\"image\":", first ? "" : ",");
		cli_json_str(stdout, r.image);
		printf(",\"storage\":");
		cli_json_str(stdout, r.storage);
		printf(",\"apps\":[");
		n = volume_nusers(&r);
		for (int i = 0; i < n && i < VOLUME_LS_MAX_USERS; i++) {
			volume_user_get(&r, i, &u);
			printf("%s{\"id\":%ld,\"name\":", i ? "," : "", strtol(u.id, NULL, 10));
			cli_json_str(stdout, u.name);
			printf(",\"pid\":%ld,\"mount\":", strtol(u.pid, NULL, 10));
			cli_json_str(stdout, u.mount);
			printf("}");
		}
		printf("]}");
		first = false;
	}
	printf("]}\n");
}

static int volume_ls(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	struct volume_user u;
	struct volume_rec rec;
	bool json, any = false;
	char *cur = reply;
	int r;

	r = cli_json_opts("volume ls", volume_ls_usage, argc, argv, &json);
	if (r >= 0)
		return r;
	r = volume_ask_daemon(reply, sizeof(reply));
	if (r == 0) {
		cli_err("librettod is not running: run `libretto up` first");
		return CLI_EXIT_FAIL;
	}
	if (r < 0)
		return CLI_EXIT_FAIL;
	if (json) {
		volume_ls_json(reply);
		return CLI_EXIT_OK;
	}
	printf("%-40s %-9s %s\n", "IMAGE", "STORAGE", "APPS");
	while (volume_rec_next(&cur, &rec)) {
		int n = volume_nusers(&rec);

		printf("%-40s %-9s ", rec.image, rec.storage);
		for (int i = 0; i < n && i < VOLUME_LS_MAX_USERS; i++) {
			volume_user_get(&rec, i, &u);
			printf("%s%s(id %s, pid %s) at %s", i ? ", " : "", u.name, u.id, u.pid,
			       u.mount);
		}
		printf("\n");
		any = true;
	}
	if (!any)
		printf("(no volumes)\n");
	return CLI_EXIT_OK;
}

/* The subcommands, as `libretto help volume NAME` finds them. */
static const struct cli_cmd volume_cmds[] = {
	{ "create", volume_create, "make an image", volume_create_usage },
	{ "check", volume_check, "check an image's file system", volume_check_usage },
	{ "ls", volume_ls, "the volumes in use", volume_ls_usage },
};
#define VOLUME_NCMDS (sizeof(volume_cmds) / sizeof(volume_cmds[0]))

int volume_help(const char *name)
{
	if (!name) {
		fputs(cmd_volume_usage, stdout);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < VOLUME_NCMDS; i++) {
		if (!strcmp(volume_cmds[i].name, name)) {
			fputs(volume_cmds[i].usage, stdout);
			return CLI_EXIT_OK;
		}
	}
	cli_err("unknown volume command '%s' (create, check or ls); see `libretto help volume`",
		name);
	return CLI_EXIT_USAGE;
}

int cmd_volume(int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_err("volume", "name a subcommand: create, check or ls");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		return volume_help(argc > 2 ? argv[2] : NULL);
	for (size_t i = 0; i < VOLUME_NCMDS; i++)
		if (!strcmp(volume_cmds[i].name, argv[1]))
			return volume_cmds[i].fn(argc - 1, argv + 1);
	return cli_usage_err("volume", "unknown subcommand '%s' (create, check or ls)", argv[1]);
}
