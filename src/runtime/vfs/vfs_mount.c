/* The runtime's volumes: LIBRETTO_VOLUMES, lazy attach, resolution, the virtual cwd, fork/exec/exit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipx/real.h"
#include "vfs/vfs_mount.h"

/* ipx_fd.c; weak so the mount table links without the interposition layer. */
extern int ipx_private_add(int fd) __attribute__((weak));
extern int ipx_private_move(int fd, bool cloexec) __attribute__((weak));
extern long ipx_private_base(void) __attribute__((weak));
extern char **environ;

struct vfs_mount vfs_mounts[VFS_MAX_MOUNTS];
int vfs_nmounts;
atomic_bool vfs_inited;

static _Atomic mode_t vfs_mask;

/*
 * The virtual cwd: set while the program's cwd is a volume directory (the
 * kernel's cwd is left where it was; a chdir to a kernel path clears it).
 * It holds an open reference on ino.  Read under the read lock by every
 * relative path call, written by chdir/fchdir.
 */
static struct {
	pthread_rwlock_t lock;
	bool set;
	struct vfs_mount *m;
	unsigned gen;
	vol_ino_t ino;
	char path[PATH_MAX];
} vfs_cwd = { .lock = PTHREAD_RWLOCK_INITIALIZER };

/*
 * A virtual cwd cannot be handed to an exec'd image through the kernel;
 * shells export PWD, so a new image whose PWD is inside a volume starts
 * there (adopted at the first call that needs the cwd).
 */
static char *vfs_pwd_pending;
static atomic_bool vfs_pwd_flag;

static void vfs_fork_prepare(void);
static void vfs_fork_parent(void);
static void vfs_fork_child(void);

static struct vfs_mount *vfs_match(const char *abs, const char **rest);
static void vfs_fds_adopt(const char *env);

/*
 * The entry text with its fd= key set to fd (a new string), or NULL.  The
 * keys are comma separated; fd= is the direct entry's only descriptor.
 */
static char *vfs_entry_with_fd(const char *entry, int fd)
{
	size_t n = strlen(entry), cap = n + 16;
	const char *p = entry, *e;
	char *out = malloc(cap), *o = out;
	bool first = true;

	if (out == NULL)
		return NULL;
	while (*p != '\0') {
		e = strchr(p, ',');
		if (e == NULL)
			e = p + strlen(p);
		if (!first)
			*o++ = ',';
		first = false;
		if (e - p >= 3 && strncmp(p, "fd=", 3) == 0) {
			o += snprintf(o, (size_t)(out + cap - o), "fd=%d", fd);
		} else {
			memcpy(o, p, (size_t)(e - p));
			o += e - p;
		}
		p = *e ? e + 1 : e;
	}
	*o = '\0';
	return out;
}

/*
 * A direct entry's image descriptor is the runtime's: moved to a high
 * private number (out of the way of the small numbers a shell's `exec
 * 3<file` wants; still inheritable, since an exec'd image attaches the
 * volume from it), and the entry text says the new number.  The program
 * cannot reach it any more (dup, read, mmap...: EBADF).  Returns false
 * when the descriptor is not open (the attach will say so).
 */
static bool vfs_take_image_fd(struct vfs_mount *m)
{
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	int nfd;
	char *ne;

	if (m->e.fd < 0 || rf(m->e.fd, F_GETFD) < 0)
		return false;
	/* High already (moved by the image before an exec): stays. */
	if (ipx_private_move == NULL || ipx_private_base == NULL ||
	    (ipx_private_base() > 0 && m->e.fd >= ipx_private_base())) {
		if (ipx_private_add != NULL)
			(void)ipx_private_add(m->e.fd);
		return true;
	}
	nfd = ipx_private_move(m->e.fd, false);
	if (nfd != m->e.fd && (ne = vfs_entry_with_fd(m->entry, nfd)) != NULL) {
		free(m->entry);
		m->entry = ne;
	}
	m->e.fd = nfd;
	return true;
}

static struct vfs_mount *vfs_add(const char *text, size_t len)
{
	struct vfs_mount *m;
	const char *why;
	int i;

	if (len == 0)
		return NULL;
	if (vfs_nmounts == VFS_MAX_MOUNTS) {
		fprintf(stderr, "libretto: %s: more than %d volumes, the rest are left out\n",
			VFS_ENV, VFS_MAX_MOUNTS);
		return NULL;
	}
	m = &vfs_mounts[vfs_nmounts];
	if (vfs_entry_parse(text, len, &m->e, &why) < 0) {
		fprintf(stderr, "libretto: %s: entry \"%.*s\" left out: %s\n", VFS_ENV,
			(int)len, text, why);
		return NULL;
	}
	for (i = 0; i < vfs_nmounts; i++) {
		if (strcmp(vfs_mounts[i].e.mount, m->e.mount) == 0) {
			fprintf(stderr, "libretto: %s: %s is mounted twice, the second is left out\n",
				VFS_ENV, m->e.mount);
			return NULL;
		}
	}
	m->entry = strndup(text, len);
	if (m->entry == NULL)
		return NULL;
	/*
	 * The image descriptor must outlive the program's closefrom() and
	 * dup2(), as the lease's do, and stay out of its reach: private (it
	 * stays open across exec, where the next image needs it).
	 */
	if (m->e.storage == VFS_DIRECT)
		(void)vfs_take_image_fd(m);
	m->mlen = strlen(m->e.mount);
	pthread_mutex_init(&m->lock, NULL);
	atomic_init(&m->state, VFS_M_IDLE);
	vfs_nmounts++;
	return m;
}

/*
 * Put value in the environment as VFS_ENV's.  The entry of environ is
 * replaced in place rather than with setenv(): a shell (bash) brings its
 * own setenv, which does nothing before its main() has run, and reads
 * environ there.
 */
static void vfs_env_replace(const char *value)
{
	size_t kl = strlen(VFS_ENV), vl = strlen(value);
	char *e;

	for (char **p = environ; p != NULL && *p != NULL; p++) {
		if (strncmp(*p, VFS_ENV, kl) != 0 || (*p)[kl] != '=')
			continue;
		e = malloc(kl + 1 + vl + 1);
		if (e == NULL)
			return;
		memcpy(e, VFS_ENV "=", kl + 1);
		memcpy(e + kl + 1, value, vl + 1);
		*p = e;	/* the old text belongs to whoever made environ: left alone */
		return;
	}
}

static void vfs_load(void)
{
	const char *env = getenv(VFS_ENV), *p, *s;
	mode_t um;

	real_init();
	/* Read the umask the only way there is: set and restore.  We are in
	 * the constructor (or the first wrapper), before the program's threads. */
	um = umask(022);
	umask(um);
	atomic_store(&vfs_mask, um);
	if (env != NULL) {
		/* The variable again, with the entries' moved descriptors, for
		 * the images this process execs (and its forked children's). */
		size_t cap = strlen(env) + 1 + VFS_MAX_MOUNTS * 16, o = 0;
		char *ne = malloc(cap);
		bool moved = false;

		for (p = env; *p != '\0';) {
			struct vfs_mount *m;
			const char *t;
			size_t tl;

			s = strchr(p, ';');
			if (s == NULL)
				s = p + strlen(p);
			m = vfs_add(p, (size_t)(s - p));
			t = m != NULL ? m->entry : p;
			tl = m != NULL ? strlen(m->entry) : (size_t)(s - p);
			if (m != NULL && (tl != (size_t)(s - p) || memcmp(t, p, tl) != 0))
				moved = true;
			if (ne != NULL && o + tl + 2 <= cap) {
				if (o > 0)
					ne[o++] = ';';
				memcpy(ne + o, t, tl);
				o += tl;
			} else {
				moved = false;
				free(ne);
				ne = NULL;
			}
			p = *s ? s + 1 : s;
		}
		if (ne != NULL) {
			ne[o] = '\0';
			if (moved)
				vfs_env_replace(ne);
			free(ne);
		}
	}
	if (vfs_nmounts > 0) {
		/* Our exec wrapper's hand-over first, else the shell's PWD. */
		const char *pwd = getenv(VFS_CWD_ENV);
		char *own = NULL;

		if (pwd != NULL) {
			own = strdup(pwd);
			unsetenv(VFS_CWD_ENV);
			pwd = own;
		} else {
			pwd = getenv("PWD");
		}
		char norm[PATH_MAX];
		const char *rest;

		pthread_atfork(vfs_fork_prepare, vfs_fork_parent, vfs_fork_child);
		/* The volume hides whatever the host has at the mount point, so
		 * a PWD there means the volume's directory in any case. */
		if (pwd != NULL && pwd[0] == '/' &&
		    vfs_path_normalize(NULL, pwd, norm, sizeof(norm)) > 0 &&
		    vfs_match(norm, &rest) != NULL) {
			vfs_pwd_pending = strdup(norm);
			if (vfs_pwd_pending != NULL)
				atomic_store(&vfs_pwd_flag, true);
		}
		free(own);
		if (getenv(VFS_FDS_ENV) != NULL) {
			char *fds = strdup(getenv(VFS_FDS_ENV));

			unsetenv(VFS_FDS_ENV);
			vfs_fds_adopt(fds);
			free(fds);
		}
	}
	atomic_store_explicit(&vfs_inited, true, memory_order_release);
	if (ipx_vfork_setup != NULL)
		ipx_vfork_setup();
}

/* Not pthread_once: a wrapper called from inside the load (the
 * allocator opening a file) must not wait for the load; vfs_active() says
 * "no volumes" until it is done. */
void vfs_init(void)
{
	static atomic_int state;
	int exp = 0;

	if (atomic_compare_exchange_strong(&state, &exp, 1))
		vfs_load();
}

mode_t vfs_umask(void)
{
	return atomic_load(&vfs_mask);
}

void vfs_umask_set(mode_t m)
{
	atomic_store(&vfs_mask, m & 0777);
}

void vfs_cred(struct vol_cred *c)
{
	gid_t g[16];
	int n;

	/* Linux checks file access with the filesystem ids, which follow the
	 * effective ids unless the program set them apart (setfsuid, as file
	 * servers do); -1 changes nothing and returns the current one. */
	c->uid = (uint32_t)setfsuid((uid_t)-1);
	c->gid = (uint32_t)setfsgid((gid_t)-1);
	n = getgroups(16, g);
	if (n < 0)
		n = 0;	/* more than 16: the primary group still counts */
	c->ngroups = (uint32_t)n;
	for (int i = 0; i < n; i++)
		c->groups[i] = g[i];
}

static int vfs_attach(struct vfs_mount *m)
{
	const struct vfs_ops *ops;
	void *b = NULL;
	int err;

	if (m->e.storage == VFS_DIRECT) {
		ops = &vfs_direct_ops;
		err = vfs_direct_attach(m->e.fd, m->e.mount, &b);
	} else {
		ops = &vfs_fsd_ops;
		err = vfs_fsd_attach(m->entry, &b);
	}
	if (err < 0)
		return err;
	m->ops = ops;
	m->b = b;
	m->pid = getpid();
	atomic_store(&m->nfiles, 0);	/* files of an older attach are dead */
	atomic_fetch_add(&m->gen, 1);
	atomic_store(&m->state, VFS_M_ATTACHED);
	return 0;
}

/* Only direct storage is ever INHERITED: an indirect volume is shared with forked children. */
static void vfs_inherit_warn(struct vfs_mount *m)
{
	if (!atomic_exchange(&m->inherit_warned, true))
		fprintf(stderr, "libretto: %s: this process was forked from the one that mounted the "
			"volume; direct storage belongs to the parent process: calls on its open files "
			"fail with EIO (--storage indirect shares it)\n", m->e.mount);
}

int vfs_mount_get(struct vfs_mount *m, const struct vfs_ops **ops, void **b, unsigned *gen)
{
	int err = 0;

	if (atomic_load_explicit(&m->state, memory_order_acquire) != VFS_M_ATTACHED) {
		pthread_mutex_lock(&m->lock);
		/*
		 * A fork()ed child may mount the volume itself, for new
		 * files: the attach fails with EBUSY while the parent holds it.
		 */
		if (atomic_load(&m->state) != VFS_M_ATTACHED)
			err = vfs_attach(m);
		pthread_mutex_unlock(&m->lock);
		if (err < 0)
			return err;
		/* A direct volume is committed at a terminating signal too. */
		if (m->e.storage == VFS_DIRECT && ipx_sig_exit_arm != NULL)
			ipx_sig_exit_arm(vfs_exit_signal);
	}
	*ops = m->ops;
	*b = m->b;
	*gen = atomic_load(&m->gen);
	return 0;
}

bool vfs_mount_valid(struct vfs_mount *m, unsigned gen)
{
	int st = atomic_load_explicit(&m->state, memory_order_acquire);

	if (st == VFS_M_ATTACHED && atomic_load(&m->gen) == gen)
		return true;
	if (st == VFS_M_INHERITED)
		vfs_inherit_warn(m);
	return false;
}

/* The mount that holds the normalized absolute path abs, or NULL; *rest the part inside. */
static struct vfs_mount *vfs_match(const char *abs, const char **rest)
{
	for (int i = 0; i < vfs_nmounts; i++) {
		const char *r = vfs_path_under(abs, vfs_mounts[i].e.mount, vfs_mounts[i].mlen);

		if (r != NULL) {
			*rest = r;
			return &vfs_mounts[i];
		}
	}
	return NULL;
}

/* loc->buf holds an absolute path: find its place. */
static int vfs_place(struct vfs_loc *loc, const char *orig, int dirfd, bool rewritten)
{
	const char *rest;

	loc->abs_ok = 1;
	loc->m = vfs_match(loc->buf, &rest);
	if (loc->m == NULL) {
		loc->kdirfd = rewritten ? AT_FDCWD : dirfd;
		loc->kpath = rewritten ? loc->buf : orig;
		return 0;
	}
	loc->dir = VOL_ROOT_INO;
	loc->rel = rest[0] == '\0' ? "/" : rest;
	return 1;
}

/* Enter the PWD the image was started in (see vfs_pwd_pending), once. */
static void vfs_pwd_adopt(void)
{
	struct vfs_mount *m;
	const struct vfs_ops *ops;
	const char *rest;
	struct vol_cred cred;
	vol_ino_t ino;
	unsigned gen;
	void *b;
	char *p;

	if (!atomic_exchange(&vfs_pwd_flag, false))
		return;
	p = vfs_pwd_pending;
	vfs_pwd_pending = NULL;
	m = vfs_match(p, &rest);
	if (m != NULL && vfs_mount_get(m, &ops, &b, &gen) == 0) {
		vfs_cred(&cred);
		if (ops->open(b, VOL_ROOT_INO, rest[0] ? rest : "/", O_RDONLY | O_DIRECTORY, 0, &cred,
			      &ino) == 0)
			vfs_cwd_set(m, gen, ino, p);
	}
	free(p);
}

static inline void vfs_pwd_check(void)
{
	if (__builtin_expect(atomic_load_explicit(&vfs_pwd_flag, memory_order_relaxed), 0))
		vfs_pwd_adopt();
}

/*
 * The virtual cwd's inode belongs to an attach that is gone (fork released
 * the volume, or an exec failed after the detach): open its path again in
 * the current one.  Returns 0, or -errno (the cwd stays as it was: calls
 * relative to it fail with that error).
 */
static int vfs_cwd_refresh(void)
{
	char path[PATH_MAX];
	const struct vfs_ops *ops;
	struct vol_cred cred;
	struct vfs_mount *m;
	const char *rest;
	vol_ino_t ino;
	unsigned gen;
	void *b;
	int err;

	/* The attach may do file calls of its own: no cwd lock held over it. */
	pthread_rwlock_rdlock(&vfs_cwd.lock);
	m = vfs_cwd.m;
	if (!vfs_cwd.set || (atomic_load(&m->state) == VFS_M_ATTACHED &&
			     atomic_load(&m->gen) == vfs_cwd.gen)) {
		pthread_rwlock_unlock(&vfs_cwd.lock);
		return 0;
	}
	memcpy(path, vfs_cwd.path, sizeof(path));
	pthread_rwlock_unlock(&vfs_cwd.lock);
	if (atomic_load(&m->state) == VFS_M_INHERITED) {
		vfs_inherit_warn(m);
		return -EIO;
	}
	err = vfs_mount_get(m, &ops, &b, &gen);
	if (err < 0)
		return err;
	rest = vfs_path_under(path, m->e.mount, m->mlen);
	vfs_cred(&cred);
	err = ops->open(b, VOL_ROOT_INO, rest && rest[0] ? rest : "/", O_RDONLY | O_DIRECTORY, 0,
			&cred, &ino);
	if (err < 0)
		return err;
	pthread_rwlock_wrlock(&vfs_cwd.lock);
	if (vfs_cwd.set && vfs_cwd.m == m && strcmp(vfs_cwd.path, path) == 0) {
		vfs_cwd.ino = ino;
		vfs_cwd.gen = gen;
		ino = 0;
	}
	pthread_rwlock_unlock(&vfs_cwd.lock);
	if (ino != 0)
		(void)ops->release(b, ino);	/* the cwd changed meanwhile */
	return 0;
}

/* path without trailing slashes and "/." (kept: "." for a path of dots and slashes). */
static const char *vfs_strip(const char *path, char *buf)
{
	size_t len = strlen(path);

	if (len == 0 || (path[len - 1] != '/' && !(len >= 2 && path[len - 1] == '.' &&
						  path[len - 2] == '/')))
		return path;
	memcpy(buf, path, len + 1);
	while (len > 1) {
		if (buf[len - 1] == '/')
			len--;
		else if (len >= 2 && buf[len - 1] == '.' && buf[len - 2] == '/')
			len -= 2;
		else
			break;
		buf[len] = '\0';
	}
	if (len == 0 || (len == 1 && buf[0] == '/'))
		return ".";
	return buf;
}

int vfs_resolve(int dirfd, const struct vfs_dir *dir, const char *path, struct vfs_loc *loc)
{
	int r;

	loc->m = NULL;
	loc->abs_ok = 0;
	loc->kdirfd = dirfd;
	loc->kpath = path;
	if (path == NULL)
		return -EFAULT;
	if (path[0] == '\0')
		return -ENOENT;
	if (strnlen(path, PATH_MAX) >= PATH_MAX)
		return -ENAMETOOLONG;
	loc->want_dir = vfs_path_wants_dir(path);
	loc->last_dot = (char)vfs_path_last_dot(path);
	if (path[0] == '/') {
		r = vfs_path_normalize(NULL, path, loc->buf, sizeof(loc->buf));
		if (r < 0)
			return r;
		/* "/data/../etc": the kernel must not walk through the mount
		 * point (absent or another directory there): the folded path. */
		return vfs_place(loc, path, dirfd, vfs_path_has_dotdot(path));
	}
	if (dir != NULL) {
		/* Relative to a volume directory (an open one). */
		if (!vfs_path_has_dotdot(path)) {
			loc->m = dir->m;
			loc->dir = dir->ino;
			loc->rel = vfs_strip(path, loc->relbuf);
			return 1;
		}
		if (dir->path == NULL)
			return -ENOENT;
		r = vfs_path_normalize(dir->path, path, loc->buf, sizeof(loc->buf));
		if (r < 0)
			return r;
		return vfs_place(loc, path, dirfd, true);
	}
	if (dirfd != AT_FDCWD)
		return 0;	/* relative to a kernel directory: the kernel's */
	vfs_pwd_check();
	pthread_rwlock_rdlock(&vfs_cwd.lock);
	if (vfs_cwd.set && (atomic_load(&vfs_cwd.m->state) != VFS_M_ATTACHED ||
			    atomic_load(&vfs_cwd.m->gen) != vfs_cwd.gen)) {
		pthread_rwlock_unlock(&vfs_cwd.lock);
		r = vfs_cwd_refresh();
		if (r < 0 && !vfs_path_has_dotdot(path))
			return r;
		pthread_rwlock_rdlock(&vfs_cwd.lock);
	}
	if (vfs_cwd.set) {
		if (!vfs_path_has_dotdot(path)) {
			loc->m = vfs_cwd.m;
			loc->dir = vfs_cwd.ino;
			loc->rel = vfs_strip(path, loc->relbuf);
			pthread_rwlock_unlock(&vfs_cwd.lock);
			return 1;
		}
		r = vfs_path_normalize(vfs_cwd.path, path, loc->buf, sizeof(loc->buf));
		pthread_rwlock_unlock(&vfs_cwd.lock);
		if (r < 0)
			return r;
		return vfs_place(loc, path, dirfd, true);
	}
	pthread_rwlock_unlock(&vfs_cwd.lock);
	/*
	 * Relative to the kernel cwd: only a path that climbs into a mount
	 * point ("../data/x" from /home, "data/x" from /) is ours.  The cwd
	 * is asked each time (a syscall, and only with volumes configured):
	 * glibc changes it internally too (nftw's FTW_CHDIR).
	 */
	{
		char cwd[PATH_MAX];

		if (real.getcwd(cwd, sizeof(cwd)) == NULL)
			return 0;
		r = vfs_path_normalize(cwd, path, loc->buf, sizeof(loc->buf));
		if (r < 0)
			return 0;	/* too long for us: the kernel decides */
		r = vfs_place(loc, path, dirfd, false);
		return r;
	}
}

const char *vfs_loc_abs(struct vfs_loc *loc, const struct vfs_dir *dir)
{
	const char *base = NULL;
	char tmp[PATH_MAX];

	if (loc->abs_ok)
		return loc->buf;
	if (dir != NULL) {
		base = dir->path;
	} else {
		pthread_rwlock_rdlock(&vfs_cwd.lock);
		if (vfs_cwd.set) {
			snprintf(tmp, sizeof(tmp), "%s", vfs_cwd.path);
			base = tmp;
		}
		pthread_rwlock_unlock(&vfs_cwd.lock);
	}
	if (base == NULL || vfs_path_normalize(base, loc->rel, loc->buf, sizeof(loc->buf)) < 0)
		return NULL;
	loc->abs_ok = 1;
	return loc->buf;
}

/*
 * Make (m, gen, ino, abs) the cwd, or none when set is false, and give the
 * old cwd's inode reference back after the lock is dropped, so that the
 * backend's release never runs under it.
 */
static void vfs_cwd_replace(bool set, struct vfs_mount *m, unsigned gen, vol_ino_t ino,
			    const char *abs)
{
	struct vfs_mount *om;
	vol_ino_t oino;
	unsigned ogen;
	bool had;

	pthread_rwlock_wrlock(&vfs_cwd.lock);
	had = vfs_cwd.set;
	om = vfs_cwd.m;
	oino = vfs_cwd.ino;
	ogen = vfs_cwd.gen;
	vfs_cwd.set = set;
	if (set) {
		vfs_cwd.m = m;
		vfs_cwd.gen = gen;
		vfs_cwd.ino = ino;
		snprintf(vfs_cwd.path, sizeof(vfs_cwd.path), "%s", abs);
	}
	pthread_rwlock_unlock(&vfs_cwd.lock);
	if (had && vfs_mount_valid(om, ogen))
		(void)om->ops->release(om->b, oino);
}

void vfs_cwd_set(struct vfs_mount *m, unsigned gen, vol_ino_t ino, const char *abs)
{
	vfs_cwd_replace(true, m, gen, ino, abs);
}

void vfs_cwd_clear(void)
{
	if (vfs_nmounts == 0)
		return;
	/* A chdir away before the PWD was adopted: it no longer applies. */
	atomic_store(&vfs_pwd_flag, false);
	vfs_cwd_replace(false, NULL, 0, 0, NULL);
}

int vfs_cwd_get(char *buf, size_t n)
{
	int r = 0;

	if (vfs_nmounts == 0)
		return 0;
	vfs_pwd_check();
	pthread_rwlock_rdlock(&vfs_cwd.lock);
	if (vfs_cwd.set) {
		size_t len = strlen(vfs_cwd.path);

		if (len + 1 > n) {
			r = -ERANGE;
		} else {
			memcpy(buf, vfs_cwd.path, len + 1);
			r = 1;
		}
	}
	pthread_rwlock_unlock(&vfs_cwd.lock);
	return r;
}

/* The virtual cwd's reference on m goes back (exit, exec); the cwd is kept by path. */
static void vfs_cwd_give_back(struct vfs_mount *m)
{
	vol_ino_t ino = 0;

	pthread_rwlock_wrlock(&vfs_cwd.lock);
	if (vfs_cwd.set && vfs_cwd.m == m && atomic_load(&m->gen) == vfs_cwd.gen) {
		ino = vfs_cwd.ino;
		vfs_cwd.gen--;	/* stale: a failed exec re-opens it by path */
	}
	pthread_rwlock_unlock(&vfs_cwd.lock);
	if (ino != 0)
		(void)m->ops->release(m->b, ino);
}

/* Detach every volume this very process attached (not a vfork child's view of its parent's). */
static void vfs_detach_all(bool at_exit)
{
	pid_t me = getpid();

	for (int i = 0; i < vfs_nmounts; i++) {
		struct vfs_mount *m = &vfs_mounts[i];
		int err;

		pthread_mutex_lock(&m->lock);
		if (atomic_load(&m->state) == VFS_M_ATTACHED && m->pid == me &&
		    m->e.storage == VFS_INDIRECT && !at_exit) {
			/*
			 * exec: the files' references went into the new image's
			 * environment (vfs_before_exec), and the volume stays
			 * attached, so a failed exec changes nothing.  The cwd
			 * goes by path (LIBRETTO_CWD): its reference back now,
			 * re-opened by path if the exec fails.
			 */
			vfs_cwd_give_back(m);
		} else if (atomic_load(&m->state) == VFS_M_ATTACHED && m->pid == me) {
			/*
			 * fsd counts open references per session, which forked
			 * children share: this process's go back at its exit.
			 * Direct storage: the unmount drops them all at once.
			 */
			if (m->e.storage == VFS_INDIRECT) {
				if (ipx_vfile_release_mount != NULL)
					ipx_vfile_release_mount(m, at_exit);
				vfs_cwd_give_back(m);
			}
			/* Files opened before see a new generation: EIO, as documented. */
			atomic_store(&m->state, VFS_M_IDLE);
			atomic_fetch_add(&m->gen, 1);
			err = m->ops->detach(m->b);
			if (err < 0)
				fprintf(stderr, "libretto: %s: detaching the volume %s%s failed: %s\n",
					m->e.mount, m->e.image, at_exit ? " at exit" : " before exec",
					strerror(-err));
			m->b = NULL;
		}
		pthread_mutex_unlock(&m->lock);
	}
}

const char *vfs_exec_cwd_env(void)
{
	static char env[sizeof(VFS_CWD_ENV) + PATH_MAX];
	const char *r = NULL;

	if (vfs_nmounts == 0)
		return NULL;
	pthread_rwlock_rdlock(&vfs_cwd.lock);
	if (vfs_cwd.set) {
		snprintf(env, sizeof(env), "%s=%s", VFS_CWD_ENV, vfs_cwd.path);
		r = env;
	}
	pthread_rwlock_unlock(&vfs_cwd.lock);
	return r;
}

static const char *vfs_fds_env;

const char *vfs_exec_fds_env(void)
{
	return vfs_fds_env;
}

void vfs_before_exec(void)
{
	if (vfs_nmounts == 0)
		return;
	if (ipx_vfile_flush_all != NULL)
		ipx_vfile_flush_all();
	/* Before the detach, which gives back every reference not handed over. */
	vfs_fds_env = ipx_vfile_exec_env != NULL ? ipx_vfile_exec_env() : NULL;
	vfs_detach_all(false);
}

/*
 * The descriptions the image before the exec handed over (VFS_FDS_ENV):
 * their mounts are attached now, in the constructor, so that the
 * descriptors work from the first call.
 */
static void vfs_fds_adopt(const char *env)
{
	const char *p = env;

	while (p != NULL && *p != '\0') {
		const struct vfs_ops *ops;
		char *end;
		long i = strtol(p, &end, 10);
		unsigned gen;
		void *b;

		if (end != p && *end == ',' && i >= 0 && i < vfs_nmounts &&
		    vfs_mounts[i].e.storage == VFS_INDIRECT &&
		    vfs_mount_get(&vfs_mounts[i], &ops, &b, &gen) == 0 && ipx_vfile_adopt != NULL)
			ipx_vfile_adopt(&vfs_mounts[i], ops, b, gen, p);
		/* A description that cannot be adopted keeps its reference in
		 * fsd until the session ends (docs/storage.md). */
		p = strchr(p, ';');
		if (p != NULL)
			p++;
	}
}

void vfs_exit(void)
{
	if (vfs_nmounts == 0)
		return;
	/* stdio flushes its streams after the libraries' destructors: ours
	 * must reach the volume before it goes. */
	if (ipx_vfile_flush_all != NULL)
		ipx_vfile_flush_all();
	vfs_detach_all(true);
}

/*
 * fork() of a process that holds a volume without an open file in it (a
 * shell whose cwd is in the volume, about to run `ls`): direct storage
 * serves one process at a time, so the parent lets go of the volume here
 * (commit, unmount) and re-attaches at its next call, and the child, or
 * the image it execs, can mount it meanwhile.  With open files the parent
 * keeps it and the child's inherited files fail (EIO).  The virtual cwd
 * is kept by path and re-opened after a re-attach.
 */
static void vfs_fork_release(void)
{
	pid_t me = getpid();

	for (int i = 0; i < vfs_nmounts; i++) {
		struct vfs_mount *m = &vfs_mounts[i];

		pthread_mutex_lock(&m->lock);
		if (m->e.storage == VFS_DIRECT && atomic_load(&m->state) == VFS_M_ATTACHED &&
		    m->pid == me && atomic_load(&m->nfiles) == 0) {
			atomic_store(&m->state, VFS_M_IDLE);
			atomic_fetch_add(&m->gen, 1);
			(void)m->ops->detach(m->b);
			m->b = NULL;
		}
		pthread_mutex_unlock(&m->lock);
	}
}

/*
 * A terminating signal without a handler of the program's (SIGTERM,
 * SIGINT, SIGHUP, SIGQUIT; ipx_signal.c): commit and unmount the direct
 * volumes this process attached, so that the image is clean without a
 * journal replay, when that needs no waiting: the attach lock is taken
 * with trylock, and the volume must not be in use on this thread (the
 * signal may have interrupted a call inside it) nor, after a short bounded
 * wait, on another (vfs_direct_quiesce).  Otherwise the journal recovers
 * what was committed.  Runs in the signal handler; the process ends after.
 */
void vfs_exit_signal(void)
{
	pid_t me = getpid();

	for (int i = 0; i < vfs_nmounts; i++) {
		struct vfs_mount *m = &vfs_mounts[i];

		if (m->e.storage != VFS_DIRECT || atomic_load(&m->state) != VFS_M_ATTACHED ||
		    m->pid != me)
			continue;
		if (pthread_mutex_trylock(&m->lock) != 0)
			continue;
		if (atomic_load(&m->state) == VFS_M_ATTACHED && m->pid == me &&
		    vfs_direct_quiesce(m->b) == 0) {
			atomic_store(&m->state, VFS_M_IDLE);
			atomic_fetch_add(&m->gen, 1);
			(void)vfs_direct_detach_dying(m->b);
			m->b = NULL;
			/* Kept locked: another thread must not mount the
			 * volume again before the process ends. */
			continue;
		}
		pthread_mutex_unlock(&m->lock);
	}
}

void vfs_exit_now(void)
{
	if (vfs_nmounts != 0)
		vfs_detach_all(true);
}

/* The child's reference on the virtual cwd was taken (indirect storage). */
static bool vfs_cwd_fork_held;

/*
 * fork() while another thread attaches would give the child a locked
 * mutex.  Indirect storage: the child shares the session, and takes its
 * own open references (of its files, ipx_vfile_fork_prepare, and of the
 * cwd) here, in the parent, before the fork: taken in the child they
 * could come after the parent dropped the last one.
 */
static void vfs_fork_prepare(void)
{
	vfs_fork_release();
	for (int i = 0; i < vfs_nmounts; i++)
		pthread_mutex_lock(&vfs_mounts[i].lock);
	if (ipx_vfile_fork_prepare != NULL)
		ipx_vfile_fork_prepare();
	pthread_rwlock_wrlock(&vfs_cwd.lock);
	vfs_cwd_fork_held = false;
	if (vfs_cwd.set && vfs_cwd.m->e.storage == VFS_INDIRECT &&
	    atomic_load(&vfs_cwd.m->state) == VFS_M_ATTACHED &&
	    atomic_load(&vfs_cwd.m->gen) == vfs_cwd.gen)
		vfs_cwd_fork_held = vfs_cwd.m->ops->hold(vfs_cwd.m->b, vfs_cwd.ino) == 0;
}

static void vfs_fork_parent(void)
{
	pthread_rwlock_unlock(&vfs_cwd.lock);
	if (ipx_vfile_fork_parent != NULL)
		ipx_vfile_fork_parent();
	for (int i = vfs_nmounts - 1; i >= 0; i--)
		pthread_mutex_unlock(&vfs_mounts[i].lock);
}

/*
 * Direct storage: the child has a copy of the parent's volume state in
 * memory, but the parent goes on changing the image: the copy must never
 * be used, nor unmounted at the child's exit.  Its open files see the
 * INHERITED state (EIO); a new path call tries a fresh attach, which fails
 * with EBUSY while the parent holds the volume.
 *
 * Indirect storage: the session (region, doorbell) is shared, fsd serves
 * any process that maps it (request ids carry the pid), so the child goes
 * on with the parent's attach as its own: its files and cwd hold the
 * references prepare took, and its exit or exec gives them back.
 */
static void vfs_fork_child(void)
{
	if (vfs_cwd.set && vfs_cwd.m->e.storage == VFS_INDIRECT && !vfs_cwd_fork_held)
		vfs_cwd.gen--;	/* no reference of ours: re-opened by path at its next use */
	vfs_cwd_fork_held = false;
	pthread_rwlock_unlock(&vfs_cwd.lock);
	pthread_rwlock_init(&vfs_cwd.lock, NULL);
	if (ipx_vfile_fork_child != NULL)
		ipx_vfile_fork_child();
	for (int i = vfs_nmounts - 1; i >= 0; i--) {
		struct vfs_mount *m = &vfs_mounts[i];

		if (atomic_load(&m->state) == VFS_M_ATTACHED && m->e.storage == VFS_INDIRECT) {
			m->pid = getpid();
		} else if (atomic_load(&m->state) == VFS_M_ATTACHED) {
			atomic_store(&m->state, VFS_M_INHERITED);
			m->b = NULL;
		}
		pthread_mutex_unlock(&m->lock);
		pthread_mutex_init(&m->lock, NULL);
	}
}
