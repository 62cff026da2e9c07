/* librettod's volume table: which application leases own which ext4 image, exclusively (direct) or through libretto-fsd (indirect). */
#include "librettod/librettod.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/kv.h"
#include "common/volimg.h"
#include "libretto/ctl.h"
#include "librettod/fsd_sup.h"

/* Bounds that keep one local user from growing the table without limit. */
#define VOLUME_MAX 256              /* volumes in use at once */
#define VOLUME_MAX_USERS 64         /* leases sharing one indirect volume */
#define VOLUME_MOUNT_MAX 256        /* bytes of a mount point, NUL included */

/* One lease using a volume: its app id, and its fsd session if indirect. */
struct volume_user {
	unsigned app;
	char name[PROTO_NAME_MAX];
	pid_t pid;
	char mount[VOLUME_MOUNT_MAX];
	uint64_t session;           /* indirect only */
};

/*
 * One image in use.  lock_fd is librettod's own open file description of
 * the image, with an OFD write lock on byte 0 for as long as the entry
 * lives: another librettod, `libretto volume check` or a second tool that
 * honours the lock sees the image busy.  A direct volume has exactly one
 * user; an indirect one any number, all through fsd.
 */
struct volume {
	char image[PATH_MAX];
	dev_t dev;
	ino_t ino;
	bool indirect;
	int lock_fd;
	int nusers;
	struct volume_user users[VOLUME_MAX_USERS];
	struct volume *next;
};

static struct volume *volumes;
static unsigned nvolumes;

/* A reply of at most one line of error text and errno=N, as ctl.h says. */
static void volume_reply_err(int fd, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void volume_reply_err(int fd, int errnum, const char *fmt, ...)
{
	char out[1200];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = ld_err_text(out, sizeof(out), errnum, fmt, ap);
	va_end(ap);
	ctl_send(fd, out, n, NULL, 0);
}

static struct volume *volume_find(dev_t dev, ino_t ino)
{
	for (struct volume *v = volumes; v; v = v->next)
		if (v->dev == dev && v->ino == ino)
			return v;
	return NULL;
}

/*
 * Characters LIBRETTO_VOLUMES and the control protocol can carry in an
 * image path or a mount point: the environment entry separates keys with
 * ',' and entries with ';', and the protocol splits at spaces.
 */
static bool volume_path_chars_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == ',' || *s == ';' || *s == '=' || *s == 0x7f)
			return false;
	return true;
}

/*
 * A mount point as the runtime expects it: absolute, not "/", no trailing
 * slash, no empty, "." or ".." component.  0 or -EINVAL with why.
 */
static int volume_mount_check(const char *m, char *why, size_t len)
{
	size_t n = strlen(m);

	if (m[0] != '/' || n < 2) {
		snprintf(why, len, "mount point '%s' must be an absolute path other than /", m);
		return -EINVAL;
	}
	if (n >= VOLUME_MOUNT_MAX) {
		snprintf(why, len, "mount point is longer than %d bytes", VOLUME_MOUNT_MAX - 1);
		return -EINVAL;
	}
	if (!volume_path_chars_ok(m)) {
		snprintf(why, len, "mount point '%s' holds a space, control character, ',', ';' "
			 "or '=', which LIBRETTO_VOLUMES cannot carry", m);
		return -EINVAL;
	}
	for (const char *p = m; *p; ) {
		const char *c = p + 1, *e = strchr(c, '/');
		size_t cl = e ? (size_t)(e - c) : strlen(c);

		if (cl == 0 || (cl == 1 && c[0] == '.') || (cl == 2 && c[0] == '.' && c[1] == '.')) {
			snprintf(why, len, "mount point '%s' must be a plain absolute path (no trailing "
				 "slash, '//', '.' or '..')", m);
			return -EINVAL;
		}
		p = c + cl;
	}
	return 0;
}

/* Whether mount a lies under mount b or is b (component-wise). */
static bool volume_mount_within(const char *a, const char *b)
{
	size_t n = strlen(b);

	return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* Supplementary groups of pid from /proc; false when unreadable. */
static bool volume_pid_in_group(pid_t pid, gid_t gid)
{
	char path[64], line[4096];
	bool yes = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		for (char *p = line + 7, *end;; p = end) {
			unsigned long g = strtoul(p, &end, 10);

			if (end == p)
				break;
			if ((gid_t)g == gid) {
				yes = true;
				break;
			}
		}
		break;
	}
	fclose(f);
	return yes;
}

/*
 * librettod runs as root and opens the image for its client: the client
 * must be allowed to read and write it itself (the classic owner, group,
 * other bits; ACLs are not consulted, which can only refuse more).
 */
static bool volume_client_may_use(int fd, const struct stat *st)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	mode_t need;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	if (cr.uid == 0)
		return true;
	if (st->st_uid == cr.uid)
		need = S_IRUSR | S_IWUSR;
	else if (st->st_gid == cr.gid || volume_pid_in_group(cr.pid, st->st_gid))
		need = S_IRGRP | S_IWGRP;
	else
		need = S_IROTH | S_IWOTH;
	return (st->st_mode & need) == need;
}

/*
 * Open the image for a new volume entry: a regular file or block device,
 * an ext4 with 4 KiB blocks, not on a loop device, not locked by anyone,
 * allowed to the client.  Returns the locked descriptor, or -errno with a
 * sentence in why.
 */
static int volume_open_image(int client, const char *image, struct stat *st, char *why,
			     size_t len)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	char loopdev[64];
	struct stat st2;
	int fd, err, flags = O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK;

	if (stat(image, st) < 0) {
		err = errno;
		snprintf(why, len, "%s: %s", image, strerror(err));
		return -err;
	}
	if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
		snprintf(why, len, "%s is neither a regular file nor a block device", image);
		return -EINVAL;
	}
	if (!volume_client_may_use(client, st)) {
		snprintf(why, len, "%s: you may not read and write it (librettod opens it for you "
			 "only if you could yourself)", image);
		return -EACCES;
	}
	/* A block device opened O_EXCL is refused while the kernel mounts it. */
	if (S_ISBLK(st->st_mode))
		flags |= O_EXCL;
	fd = open(image, flags);
	if (fd < 0) {
		err = errno;
		if (err == EBUSY)
			snprintf(why, len, "volume %s is in use by the kernel (mounted?)", image);
		else
			snprintf(why, len, "cannot open %s: %s", image, strerror(err));
		return -err;
	}
	if (fstat(fd, &st2) < 0 || st2.st_dev != st->st_dev || st2.st_ino != st->st_ino ||
	    (st2.st_mode & S_IFMT) != (st->st_mode & S_IFMT)) {
		snprintf(why, len, "%s changed while librettod opened it; try again", image);
		close(fd);
		return -EAGAIN;
	}
	/* Back to blocking I/O for the reads below. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (S_ISREG(st->st_mode) && volimg_on_loop(st->st_dev, st->st_ino, loopdev,
						   sizeof(loopdev))) {
		snprintf(why, len, "volume %s is in use by the kernel: it is attached to %s "
			 "(unmount it and `losetup -d %s` first)", image, loopdev, loopdev);
		close(fd);
		return -EBUSY;
	}
	err = volimg_check(fd, image, NULL, why, len);
	if (err) {
		close(fd);
		return err;
	}
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		err = errno;
		if (err == EAGAIN || err == EACCES) {
			snprintf(why, len, "volume %s is in use: locked by another process", image);
			err = EBUSY;
		} else {
			snprintf(why, len, "cannot lock %s: %s", image, strerror(err));
		}
		close(fd);
		return -err;
	}
	/*
	 * Byte 1 is the runtime's own lock (docs/storage.md): held while a
	 * process has the volume mounted.  Someone may hold it with no
	 * librettod lock on byte 0, for example an application that outlived
	 * the librettod which leased it the image.
	 */
	fl.l_type = F_WRLCK;
	fl.l_start = 1;
	fl.l_len = 1;
	if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
		snprintf(why, len, "volume %s is in use: locked by another process", image);
		close(fd);
		return -EBUSY;
	}
	return fd;
}

static void volume_free(struct volume *v)
{
	struct volume **pp;

	for (pp = &volumes; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	}
	/* Closing librettod's description drops its OFD lock on byte 0. */
	if (v->lock_fd >= 0)
		close(v->lock_fd);
	nvolumes--;
	free(v);
}

static void volume_user_drop(struct volume *v, int i)
{
	v->users[i] = v->users[v->nusers - 1];
	v->nusers--;
}

/* "volume IMAGE is in use by app N (name, pid P)" for a direct owner. */
static void volume_busy_text(const struct volume *v, char *why, size_t len)
{
	if (v->indirect)
		snprintf(why, len, "volume %s is in use: served by libretto-fsd (--storage "
			 "indirect) to %d application%s", v->image, v->nusers,
			 v->nusers == 1 ? "" : "s");
	else
		snprintf(why, len, "volume %s is in use by app %u (%s, pid %d)", v->image,
			 v->users[0].app, v->users[0].name, (int)v->users[0].pid);
}

/*
 * The lease's mount points must not overlap: the runtime resolves a path to
 * exactly one volume.  0, or -EBUSY (the same image twice) / -EINVAL.
 */
static int volume_lease_conflict(unsigned app, dev_t dev, ino_t ino, const char *mount,
				 char *why, size_t len)
{
	for (struct volume *v = volumes; v; v = v->next) {
		for (int i = 0; i < v->nusers; i++) {
			const char *m = v->users[i].mount;

			if (v->users[i].app != app)
				continue;
			if (v->dev == dev && v->ino == ino) {
				snprintf(why, len, "volume %s is already attached to this application "
					 "at %s", v->image, m);
				return -EBUSY;
			}
			if (volume_mount_within(mount, m) || volume_mount_within(m, mount)) {
				snprintf(why, len, "mount point %s overlaps %s, where this application "
					 "has volume %s", mount, m, v->image);
				return -EINVAL;
			}
		}
	}
	return 0;
}

void volume_cmd(int fd, unsigned app, const char *name, pid_t pid, const struct kv *req)
{
	const char *image = kv_get(req, "image"), *mount = kv_get(req, "mount");
	const char *storage = kv_get(req, "storage");
	char real[PATH_MAX], why[PATH_MAX + 256], out[4096];
	int sfds[CTL_MAX_FDS], nsfds = 0, err, app_fd;
	struct volume *v;
	struct volume_user *u;
	struct kv_buf b;
	struct stat st;
	bool indirect, fresh = false;

	if (!app) {
		volume_reply_err(fd, EINVAL, "volume is sent on a lease connection, after register");
		return;
	}
	if (!image || !*image || !mount || !storage) {
		volume_reply_err(fd, EINVAL, "volume needs image=, mount= and storage=");
		return;
	}
	if (strcmp(storage, "direct") != 0 && strcmp(storage, "indirect") != 0) {
		volume_reply_err(fd, EINVAL, "storage=%.40s: direct or indirect", storage);
		return;
	}
	indirect = storage[0] == 'i';
	if (image[0] != '/') {
		volume_reply_err(fd, EINVAL, "image=%.200s must be an absolute path", image);
		return;
	}
	if (volume_mount_check(mount, why, sizeof(why)) < 0) {
		volume_reply_err(fd, EINVAL, "%s", why);
		return;
	}
	if (!realpath(image, real)) {
		err = errno;
		volume_reply_err(fd, err, "%.200s: %s", image, strerror(err));
		return;
	}
	if (!volume_path_chars_ok(real)) {
		volume_reply_err(fd, EINVAL, "image path %.200s holds a space, control character, "
				 "',', ';' or '=', which LIBRETTO_VOLUMES cannot carry", real);
		return;
	}
	if (stat(real, &st) < 0) {
		err = errno;
		volume_reply_err(fd, err, "%s: %s", real, strerror(err));
		return;
	}
	err = volume_lease_conflict(app, st.st_dev, st.st_ino, mount, why, sizeof(why));
	if (err) {
		volume_reply_err(fd, -err, "%s", why);
		return;
	}

	v = volume_find(st.st_dev, st.st_ino);
	if (v) {
		if (!v->indirect || !indirect) {
			volume_busy_text(v, why, sizeof(why));
			volume_reply_err(fd, EBUSY, "%s", why);
			return;
		}
		if (v->nusers >= VOLUME_MAX_USERS) {
			volume_reply_err(fd, EBUSY, "volume %s already serves %d applications, the "
					 "most librettod allows", v->image, VOLUME_MAX_USERS);
			return;
		}
		/* The client must be allowed the image as much as the first one. */
		if (!volume_client_may_use(fd, &st)) {
			volume_reply_err(fd, EACCES, "%s: you may not read and write it", real);
			return;
		}
	} else {
		/*
		 * fsd may serve a volume librettod's table does not list (one it
		 * adopted): indirect requests share it, direct ones may not.
		 */
		if (!indirect && fsd_sup_serves(st.st_dev, st.st_ino)) {
			volume_reply_err(fd, EBUSY, "volume %s is in use: served by libretto-fsd",
					 real);
			return;
		}
		if (nvolumes >= VOLUME_MAX) {
			volume_reply_err(fd, ENFILE, "librettod has %d volumes in use, its limit",
					 VOLUME_MAX);
			return;
		}
		v = calloc(1, sizeof(*v));
		if (!v) {
			volume_reply_err(fd, ENOMEM, "out of memory");
			return;
		}
		v->lock_fd = volume_open_image(fd, real, &st, why, sizeof(why));
		if (v->lock_fd < 0) {
			err = -v->lock_fd;
			free(v);
			volume_reply_err(fd, err, "%s", why);
			return;
		}
		snprintf(v->image, sizeof(v->image), "%s", real);
		v->dev = st.st_dev;
		v->ino = st.st_ino;
		v->indirect = indirect;
		v->next = volumes;
		volumes = v;
		nvolumes++;
		fresh = true;
	}

	u = &v->users[v->nusers];
	memset(u, 0, sizeof(*u));
	u->app = app;
	u->pid = pid;
	snprintf(u->name, sizeof(u->name), "%s", name ? name : "?");
	snprintf(u->mount, sizeof(u->mount), "%s", mount);
	kv_buf_init(&b, out, sizeof(out));

	if (indirect) {
		nsfds = CTL_MAX_FDS;
		why[0] = '\0';
		err = fsd_sup_session_open(v->lock_fd, v->image, mount, pid, &b, sfds, &nsfds,
					   &u->session, why, sizeof(why));
		if (err) {
			if (fresh)
				volume_free(v);
			volume_reply_err(fd, -err, "%s", why[0] ? why : strerror(-err));
			return;
		}
	} else {
		/*
		 * A description of its own for the application, so that nothing
		 * it does with its descriptor (closing, unlocking) touches
		 * librettod's lock; the same file by construction.
		 */
		char self[64];

		snprintf(self, sizeof(self), "/proc/self/fd/%d", v->lock_fd);
		app_fd = open(self, O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (app_fd < 0) {
			err = errno;
			if (fresh)
				volume_free(v);
			volume_reply_err(fd, err, "cannot reopen %s: %s", real, strerror(err));
			return;
		}
		sfds[0] = app_fd;
		nsfds = 1;
		kv_buf_add(&b, '\n', "fds", "image");
	}
	kv_buf_add(&b, '\n', "errno", "0");
	v->nusers++;
	if (!kv_buf_ok(&b) || ctl_send(fd, out, b.len, sfds, nsfds) < 0) {
		ld_log("volume %s: the reply to app=%u could not be delivered", v->image, app);
		v->nusers--;
		if (indirect)
			fsd_sup_session_close(u->session);
		if (v->nusers == 0)
			volume_free(v);
	} else {
		ld_log("volume app=%u name=%s pid=%d image=%s mount=%s storage=%s%s", app, u->name,
		       (int)pid, v->image, mount, storage, fresh ? "" : " (shared)");
	}
	for (int i = 0; i < nsfds; i++)
		close(sfds[i]);
}

void volume_release(unsigned app)
{
	struct volume *v = volumes, *next;

	for (; v; v = next) {
		next = v->next;
		for (int i = v->nusers - 1; i >= 0; i--) {
			if (v->users[i].app != app)
				continue;
			ld_log("volume release app=%u image=%s mount=%s", app, v->image,
			       v->users[i].mount);
			if (v->indirect)
				fsd_sup_session_close(v->users[i].session);
			volume_user_drop(v, i);
		}
		if (v->nusers == 0)
			volume_free(v);
	}
}

/*
 * Append one comma-separated field of every user of v, as `key=a,b,c `:
 * names and mount points hold no ',' or space (checked on the way in).
 */
static void volume_list_field(struct kv_buf *b, const struct volume *v, const char *key)
{
	char item[VOLUME_MOUNT_MAX + 24];

	kv_buf_raw(b, key);
	kv_buf_raw(b, "=");
	for (int i = 0; i < v->nusers; i++) {
		const struct volume_user *u = &v->users[i];

		if (key[0] == 'a')
			snprintf(item, sizeof(item), "%s%u", i ? "," : "", u->app);
		else if (key[0] == 'n')
			snprintf(item, sizeof(item), "%s%s", i ? "," : "", u->name);
		else if (key[0] == 'p')
			snprintf(item, sizeof(item), "%s%d", i ? "," : "", (int)u->pid);
		else
			snprintf(item, sizeof(item), "%s%s", i ? "," : "", u->mount);
		kv_buf_raw(b, item);
	}
	kv_buf_raw(b, " ");
}

void volume_list(int fd)
{
	static char out[CTL_MSG_MAX];
	struct kv_buf b;

	kv_buf_init(&b, out, sizeof(out));
	kv_buf_add(&b, '\n', "volumes", "%u", nvolumes);
	for (struct volume *v = volumes; v; v = v->next) {
		kv_buf_add(&b, ' ', "volume", "%u:%u:%lu", major(v->dev), minor(v->dev),
			   (unsigned long)v->ino);
		kv_buf_add(&b, ' ', "storage", "%s", v->indirect ? "indirect" : "direct");
		volume_list_field(&b, v, "apps");
		volume_list_field(&b, v, "names");
		volume_list_field(&b, v, "pids");
		volume_list_field(&b, v, "mounts");
		kv_buf_add(&b, '\n', "image", "%s", v->image);
	}
	kv_buf_add(&b, '\n', "errno", "0");
	if (!kv_buf_ok(&b)) {
		volume_reply_err(fd, EMSGSIZE, "the volumes reply does not fit in one message");
		return;
	}
	ctl_send(fd, out, b.len, NULL, 0);
}

void volume_status(struct kv_buf *b)
{
	kv_buf_add(b, '\n', "volumes", "%u", nvolumes);
}
