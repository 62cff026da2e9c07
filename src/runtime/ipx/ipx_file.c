/* Volume files: the IPX_VFILE descriptor, open, read/write at offsets, seek, stat, sync, locks, ioctl, mmap, sendfile. */
/* Our definitions must keep their own names: with 64-bit file offsets
 * requested, glibc's headers would rename them to *64. */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifndef ST_VALID
#define ST_VALID 0x0020	/* kernel-internal: statfs says f_flags is valid */
#endif
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/fs.h>

#include "ipx/ipx_file.h"

/* Per mount, the O_PATH descriptor every volume descriptor is a dup of
 * (private, close-on-exec); fd + 1, 0 when not made yet. */
static atomic_int vf_tmpl[VFS_MAX_MOUNTS];
/* Some POSIX lock was taken in this process: closes must drop them. */
static atomic_bool vf_any_posix;

#define VF_STATUS_FLAGS (O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME)
/* Fixed at open (F_SETFL cannot change them, as on Linux): every write is
 * followed by the backend's fsync (O_SYNC) or fdatasync (O_DSYNC alone).
 * O_SYNC holds O_DSYNC's bit too. */
#define VF_SYNC_FLAGS (O_SYNC | O_DSYNC)

/* Lock owners: see vf_owner_posix. */
#define VF_OWNER_PID (1ULL << 63)
static uint64_t vf_owner_posix(void);

/*
 * A new description's OFD lock owner: the creating pid (22 bits) and a
 * counter, even (flock's is | 1), below 2^47 as fsd.h asks.  Not its
 * address: a forked child, which shares the session, could allocate a new
 * description where its parent has a live one.
 */
static uint64_t vf_owner_new(void)
{
	static atomic_uint_fast32_t n;
	uint64_t c = (atomic_fetch_add(&n, 1) + 1) & 0x7fffff;

	return ((uint64_t)((uint32_t)getpid() & 0x3fffff) << 24) | (c << 1);
}

/*
 * Every live open file description of this process, so that fork can take
 * the child's references and exit/exec can give this process's back
 * (indirect storage: fsd counts references per session, which a forked
 * child shares).  The lock is a leaf: nothing else is taken under it, and
 * fork holds it from prepare to parent/child (taken after ipx_lock, whose
 * fork handler runs first).
 */
static pthread_mutex_t vf_all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ipx_vfile *vf_all;

static void vf_all_add(struct ipx_vfile *vf)
{
	pthread_mutex_lock(&vf_all_lock);
	vf->all_prev = NULL;
	vf->all_next = vf_all;
	if (vf_all != NULL)
		vf_all->all_prev = vf;
	vf_all = vf;
	pthread_mutex_unlock(&vf_all_lock);
}

/* Under vf_all_lock. */
static void vf_all_del_locked(struct ipx_vfile *vf)
{
	if (vf->all_prev != NULL)
		vf->all_prev->all_next = vf->all_next;
	else if (vf_all == vf)
		vf_all = vf->all_next;
	if (vf->all_next != NULL)
		vf->all_next->all_prev = vf->all_prev;
	vf->all_next = vf->all_prev = NULL;
}

/* ------------------------------------------------------------------ */
/* Shared offsets */

/*
 * Linux shares a file offset between the processes that share an open
 * file description (fork, and descriptors kept across exec): a shell's
 * `{ echo a; /bin/echo b; echo c; } > f` writes the three lines one after
 * the other.  Our description is memory of each process, so for indirect
 * storage (where a forked child and an exec'd image use the parent's
 * files) the offset lives in a table of slots in a memfd that the process
 * tree maps: made by the first process that opens an indirect file,
 * inherited by fork, passed to exec'd images with the descriptions
 * (VFS_FDS_ENV).  A slot counts the processes whose description uses it
 * (taken at open, fork and adoption, dropped when a process's description
 * goes); the last one frees it.  Each process serializes its own users
 * with vf->lock, as Linux's f_pos lock; processes that use one description
 * at the same instant are not serialized with each other (their calls are
 * each atomic on the volume, the offset is the last one's).
 * Without the table (memfd refused), the offset is the description's own:
 * copied at fork.
 */
struct ipx_vpos {
	atomic_uint refs;
	uint32_t pad;
	_Atomic uint64_t off;
};

#define VF_POS_SLOTS 65536
static struct ipx_vpos *vf_pos_tab;
static int vf_pos_fd = -1;
static pthread_mutex_t vf_pos_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t vf_off_get(struct ipx_vfile *vf)
{
	return vf->pos ? atomic_load(&vf->pos->off) : vf->off;
}

static void vf_off_set(struct ipx_vfile *vf, uint64_t v)
{
	if (vf->pos)
		atomic_store(&vf->pos->off, v);
	else
		vf->off = v;
}

/* Map the table at fd (ours: made here, or handed over by exec).  Under vf_pos_lock. */
static int vf_pos_map(int fd)
{
	void *p;

	/* The descriptor is (or is about to be) private: our own call. */
	ipx_rt_enter();
	p = mmap(NULL, VF_POS_SLOTS * sizeof(struct ipx_vpos), PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	ipx_rt_leave();

	if (p == MAP_FAILED)
		return -errno;
	vf_pos_tab = p;
	vf_pos_fd = fd;
	/* Private: programs that close what they inherited keep it. */
	(void)ipx_private_add(fd);
	return 0;
}

/* A free slot with one reference, at offset 0; NULL without a table. */
static struct ipx_vpos *vf_pos_new(void)
{
	static atomic_uint hint;
	unsigned start;

	pthread_mutex_lock(&vf_pos_lock);
	if (vf_pos_tab == NULL) {
		int fd = memfd_create("libretto-offsets", MFD_CLOEXEC), pfd = -1;

		/* Moved up among the runtime's private descriptors: the
		 * program's numbers stay free (a shell's `exec 3<file`). */
		if (fd >= 0 && ftruncate(fd, VF_POS_SLOTS * sizeof(struct ipx_vpos)) == 0)
			pfd = ipx_private_dup(fd);
		if (fd >= 0)
			real.close(fd);
		if (pfd >= 0 && vf_pos_map(pfd) < 0) {
			ipx_private_del(pfd);
			real.close(pfd);
		}
	}
	pthread_mutex_unlock(&vf_pos_lock);
	if (vf_pos_tab == NULL)
		return NULL;
	start = atomic_fetch_add(&hint, 1);
	for (unsigned i = 0; i < VF_POS_SLOTS; i++) {
		struct ipx_vpos *p = &vf_pos_tab[(start + i) % VF_POS_SLOTS];
		unsigned zero = 0;

		if (atomic_load_explicit(&p->refs, memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_strong(&p->refs, &zero, 1)) {
			atomic_store(&p->off, 0);
			return p;
		}
	}
	return NULL;	/* 65536 descriptions open in the tree: private offsets */
}

static void vf_pos_put(struct ipx_vfile *vf)
{
	if (vf->pos != NULL)
		atomic_fetch_sub(&vf->pos->refs, 1);
}

/* ------------------------------------------------------------------ */
/* Descriptors */

struct ipx_file *ipx_vfile_get(int fd)
{
	struct ipx_file *f;

	if (fdtab_peek(fd) == NULL)
		return NULL;
	f = ipx_get_raw(fd);
	if (f != NULL && f->kind != IPX_VFILE) {
		ipx_put(f);
		f = NULL;
	}
	return f;
}

struct ipx_file *ipx_vfile_app(int fd)
{
	void *o = fdtab_peek(fd);
	struct ipx_file *f;

	if (o == NULL)
		return NULL;
	if (o == &ipx_private)
		return ipx_priv_ok() ? NULL : IPX_VF_PRIVATE;
	f = ipx_get_raw(fd);
	if (f == &ipx_private) {
		ipx_put(f);
		return ipx_priv_ok() ? NULL : IPX_VF_PRIVATE;
	}
	if (f != NULL && f->kind != IPX_VFILE) {
		ipx_put(f);
		f = NULL;
	}
	return f;
}

int ipx_vfile_check(struct ipx_vfile *vf)
{
	return vfs_mount_valid(vf->m, vf->gen) ? 0 : -EIO;
}

static int vf_template(struct vfs_mount *m)
{
	int i = (int)(m - vfs_mounts), fd, pfd, exp = 0;
	const char *p = m->e.image[0] ? m->e.image : "/";

	fd = atomic_load(&vf_tmpl[i]);
	if (fd > 0)
		return fd - 1;
	fd = real.openat(AT_FDCWD, p, O_PATH | O_CLOEXEC, 0);
	if (fd < 0 && m->e.image[0] != '\0')
		fd = real.openat(AT_FDCWD, "/", O_PATH | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	pfd = ipx_private_dup(fd);
	real.close(fd);
	if (pfd < 0)
		return -EMFILE;
	if (!atomic_compare_exchange_strong(&vf_tmpl[i], &exp, pfd + 1)) {
		ipx_private_del(pfd);
		real.close(pfd);
		return exp - 1;
	}
	return pfd;
}

/* A new descriptor naming vf (takes over vf on success). */
static int vf_install(struct ipx_vfile *vf, bool cloexec)
{
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	struct ipx_file *f;
	int t, fd, err;

	t = vf_template(vf->m);
	if (t < 0)
		return t;
	fd = rf(t, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 0L);
	if (fd < 0)
		return -errno;
	f = ipx_file_new(IPX_VFILE);
	if (f == NULL) {
		real.close(fd);
		return -ENOMEM;
	}
	f->vf = vf;
	atomic_fetch_add(&vf->m->nfiles, 1);
	/* Listed before the descriptor exists: a fork from another thread
	 * must not give the child a descriptor without its reference. */
	vf_all_add(vf);
	err = ipx_attach(f, fd);
	if (err < 0) {
		f->vf = NULL;	/* the caller still owns vf */
		pthread_mutex_lock(&vf_all_lock);
		vf_all_del_locked(vf);
		pthread_mutex_unlock(&vf_all_lock);
		atomic_fetch_sub(&vf->m->nfiles, 1);
		ipx_put(f);
		real.close(fd);
		return err;
	}
	ipx_put(f);
	return fd;
}

static void vf_destroy(struct ipx_vfile *vf)
{
	pthread_mutex_destroy(&vf->lock);
	free(vf->path);
	free(vf);
}

void ipx_vfile_free(struct ipx_file *f)
{
	struct ipx_vfile *vf = f->vf;

	bool live;

	if (vf == NULL)
		return;
	pthread_mutex_lock(&vf_all_lock);
	vf_all_del_locked(vf);
	live = !vf->given_back && ipx_vfile_check(vf) == 0;
	pthread_mutex_unlock(&vf_all_lock);
	if (live) {
		if (atomic_load(&vf->ofd_locked)) {
			(void)vf->ops->unlock_owner(vf->b, vf->ino, vf->lk_owner);
			(void)vf->ops->unlock_owner(vf->b, vf->ino, vf->lk_owner | 1);
		}
		(void)vf->ops->release(vf->b, vf->ino);
		vf_pos_put(vf);
		atomic_fetch_sub(&vf->m->nfiles, 1);
	}
	vf_destroy(vf);
}

/*
 * fork (vfs_mount.h): one more open reference of each live indirect
 * description, for the child.  If fork then fails, these references stay
 * with the session until the lease ends (the fork handlers cannot tell a
 * failed fork from a successful one).
 */
void ipx_vfile_fork_prepare(void)
{
	pthread_mutex_lock(&vf_all_lock);
	for (struct ipx_vfile *vf = vf_all; vf != NULL; vf = vf->all_next) {
		vf->fork_held = false;
		if (vf->m->e.storage == VFS_INDIRECT && !vf->given_back && ipx_vfile_check(vf) == 0)
			vf->fork_held = vf->ops->hold(vf->b, vf->ino) == 0;
		if (vf->fork_held && vf->pos != NULL)
			atomic_fetch_add(&vf->pos->refs, 1);
	}
}

void ipx_vfile_fork_parent(void)
{
	pthread_mutex_unlock(&vf_all_lock);
}

/*
 * The child's copies are its own descriptions now: indirect ones hold the
 * reference prepare took (one whose hold failed is dead here: EIO, and its
 * close gives nothing back).  Offsets are copies, not shared with the
 * parent (docs/storage.md).  OFD and flock locks taken through an
 * inherited description stay the parent's to drop: the child's close of
 * its copy leaves them (Linux drops them at the last close of the shared
 * description, in whichever process).  Locks another thread held at the
 * fork are made usable: that thread does not exist here.
 */
void ipx_vfile_fork_child(void)
{
	pthread_mutex_init(&vf_all_lock, NULL);
	pthread_mutex_init(&vf_pos_lock, NULL);
	for (struct ipx_vfile *vf = vf_all; vf != NULL; vf = vf->all_next) {
		pthread_mutex_init(&vf->lock, NULL);
		if (vf->m->e.storage != VFS_INDIRECT)
			continue;
		atomic_store(&vf->ofd_locked, false);
		if (!vf->fork_held)
			vf->given_back = true;
		vf->fork_held = false;
	}
	ipx_vfile_stdio_fork_child();
}

/*
 * exec (vfs_mount.h): every indirect description of this process goes
 * into the environment (VFS_FDS_ENV) with its open reference: the new
 * image adopts the ones whose descriptors survive the exec (no
 * FD_CLOEXEC) on the same numbers, and gives back the others' references
 * at once (an entry without descriptors).  Nothing changes here, so a
 * failed exec leaves every file usable.  One entry per description, ';'
 * separated:
 *     mount-index,ino,offset,flags,dir,lock-owner,offsets-fd,slot,[fd[.fd...]]
 * A static buffer (the exec path does not allocate); references of
 * descriptions that do not fit (about a thousand) stay with the session.
 */
#define VF_EXEC_MAX 1024
static char vf_exec_env[sizeof(VFS_FDS_ENV) + 65536];

const char *ipx_vfile_exec_env(void)
{
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	static struct { int fd; struct ipx_vfile *vf; } v[VF_EXEC_MAX];
	size_t cap = sizeof(vf_exec_env), len;
	int lim = fdtab_limit(), n = 0, entries = 0;

	len = (size_t)snprintf(vf_exec_env, cap, "%s=", VFS_FDS_ENV);
	/* The descriptors that survive the exec, and their descriptions. */
	for (int fd = 0; fd < lim && n < VF_EXEC_MAX; fd++) {
		struct ipx_file *f = ipx_vfile_get(fd);
		int fl;

		if (f == NULL)
			continue;
		fl = rf(fd, F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC) && f->vf->m->e.storage == VFS_INDIRECT) {
			v[n].fd = fd;
			v[n++].vf = f->vf;
		}
		ipx_put(f);
	}
	pthread_mutex_lock(&vf_all_lock);
	for (struct ipx_vfile *vf = vf_all; vf != NULL; vf = vf->all_next) {
		char ent[256];
		size_t el;
		const char *sep = "";

		if (vf->m->e.storage != VFS_INDIRECT || vf->given_back || ipx_vfile_check(vf) < 0)
			continue;
		el = (size_t)snprintf(ent, sizeof(ent), "%s%d,%u,%llu,%d,%d,%llu,%d,%d,",
				      entries ? ";" : "", (int)(vf->m - vfs_mounts), (unsigned)vf->ino,
				      (unsigned long long)vf_off_get(vf), vf->flags, vf->dir ? 1 : 0,
				      (unsigned long long)vf->lk_owner, vf->pos ? vf_pos_fd : -1,
				      vf->pos ? (int)(vf->pos - vf_pos_tab) : -1);
		for (int k = 0; k < n && el + 16 < sizeof(ent); k++) {
			if (v[k].vf == vf) {
				el += (size_t)snprintf(ent + el, sizeof(ent) - el, "%s%d", sep, v[k].fd);
				sep = ".";
			}
		}
		if (len + el + 1 > cap)
			break;
		memcpy(vf_exec_env + len, ent, el + 1);
		len += el;
		entries++;
	}
	pthread_mutex_unlock(&vf_all_lock);
	/* The offset table goes with them (the new image makes it close-on-exec again). */
	if (entries && vf_pos_fd >= 0)
		(void)rf(vf_pos_fd, F_SETFD, 0L);
	return entries ? vf_exec_env : NULL;
}

/*
 * The new image's side (vfs_load): the descriptions handed over by the
 * image before the exec, on the same descriptor numbers (the O_PATH
 * descriptors survived the exec), each with the reference it passed.
 */
void ipx_vfile_adopt(struct vfs_mount *m, const struct vfs_ops *ops, void *b, unsigned gen,
		     const char *ent)
{
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	unsigned long long off, owner;
	struct ipx_vfile *vf;
	struct ipx_file *f;
	struct ipx_vpos *pos = NULL;
	unsigned ino;
	int flags, dir, used = 0, fd, posfd, slot;
	const char *p;
	char *end;

	if (sscanf(ent, "%*d,%u,%llu,%d,%d,%llu,%d,%d,%n", &ino, &off, &flags, &dir, &owner, &posfd,
		   &slot, &used) < 7 || used == 0)
		return;
	if (posfd >= 0 && slot >= 0 && slot < VF_POS_SLOTS) {
		pthread_mutex_lock(&vf_pos_lock);
		if (vf_pos_tab == NULL && rf(posfd, F_SETFD, (long)FD_CLOEXEC) == 0)
			(void)vf_pos_map(posfd);
		if (vf_pos_fd == posfd && vf_pos_tab != NULL)
			pos = &vf_pos_tab[slot];
		pthread_mutex_unlock(&vf_pos_lock);
	}
	vf = calloc(1, sizeof(*vf));
	f = vf ? ipx_file_new(IPX_VFILE) : NULL;
	if (f == NULL) {
		free(vf);
		(void)ops->release(b, ino);
		if (pos != NULL)
			atomic_fetch_sub(&pos->refs, 1);
		return;
	}
	vf->pos = pos;
	vf->m = m;
	vf->ops = ops;
	vf->b = b;
	vf->gen = gen;
	vf->ino = ino;
	if (pos == NULL)
		vf->off = off;	/* else the shared slot has it (and may have moved on) */
	vf->dir = dir != 0;
	vf->flags = flags & (O_ACCMODE | O_PATH | VF_STATUS_FLAGS | VF_SYNC_FLAGS);
	vf->lk_owner = owner;
	pthread_mutex_init(&vf->lock, NULL);
	f->vf = vf;
	atomic_fetch_add(&m->nfiles, 1);
	vf_all_add(vf);
	for (p = ent + used; *p != '\0' && *p != ';'; p = *end == '.' ? end + 1 : end) {
		fd = (int)strtol(p, &end, 10);
		if (end == p)
			break;
		if (fd >= 0 && rf(fd, F_GETFD) >= 0 && ipx_attach(f, fd) == 0 && fd <= 2)
			ipx_vfile_std_stream(fd, vf->flags);
	}
	/* Without a descriptor the description is closed here and now. */
	ipx_put(f);
}

/* Exit or exec (vfs_mount.h): this process's references on m go back to fsd. */
void ipx_vfile_release_mount(struct vfs_mount *m, bool at_exit)
{
	pthread_mutex_lock(&vf_all_lock);
	for (struct ipx_vfile *vf = vf_all; vf != NULL; vf = vf->all_next) {
		if (vf->m != m || vf->given_back || ipx_vfile_check(vf) < 0)
			continue;
		vf->given_back = true;
		if (atomic_load(&vf->ofd_locked)) {
			(void)vf->ops->unlock_owner(vf->b, vf->ino, vf->lk_owner);
			(void)vf->ops->unlock_owner(vf->b, vf->ino, vf->lk_owner | 1);
		}
		(void)vf->ops->release(vf->b, vf->ino);
		vf_pos_put(vf);
	}
	pthread_mutex_unlock(&vf_all_lock);
	/* An exited process holds no POSIX locks; they survive an exec (the
	 * pid stays, and so does the owner). */
	if (at_exit && atomic_load(&vf_any_posix) && m->ops != NULL && m->b != NULL)
		(void)m->ops->unlock_owner(m->b, 0, vf_owner_posix());
}

void ipx_vfile_close(struct ipx_file *f)
{
	struct ipx_vfile *vf = f->vf;

	/* POSIX: closing any descriptor of a file drops the process's locks on it. */
	if (vf != NULL && atomic_load(&vf_any_posix) && ipx_vfile_check(vf) == 0)
		(void)vf->ops->unlock_owner(vf->b, vf->ino, vf_owner_posix());
}

/* ------------------------------------------------------------------ */
/* Resolution and open */

int ipx_vpath(int dirfd, const char *path, struct ipx_vloc *vl, bool want_abs)
{
	struct ipx_file *df = NULL;
	struct vfs_dir d, *dp = NULL;
	int r;

	if (path != NULL && path[0] != '/' && dirfd != AT_FDCWD && (df = ipx_vfile_app(dirfd)) != NULL) {
		struct ipx_vfile *vf;

		if (df == IPX_VF_PRIVATE)
			return -EBADF;
		vf = df->vf;

		if (ipx_vfile_check(vf) < 0) {
			ipx_put(df);
			return -EIO;
		}
		if (!vf->dir && path[0] != '\0') {
			ipx_put(df);
			return -ENOTDIR;
		}
		d.m = vf->m;
		d.gen = vf->gen;
		d.ino = vf->ino;
		d.path = vf->path;
		dp = &d;
	}
	r = vfs_resolve(dirfd, dp, path, &vl->loc);
	if (r == 1 && want_abs)
		(void)vfs_loc_abs(&vl->loc, dp);
	if (df != NULL)
		ipx_put(df);
	if (r != 1)
		return r;
	if (dp != NULL && vl->loc.m == d.m && vl->loc.dir == d.ino) {
		/* Relative to an open directory: its backend, if still valid. */
		if (!vfs_mount_valid(d.m, d.gen))
			return -EIO;
	}
	r = vfs_mount_get(vl->loc.m, &vl->ops, &vl->b, &vl->gen);
	if (r < 0)
		return r;
	/* A virtual cwd from an older attach names an inode of another mount. */
	return 1;
}

int ipx_vfile_open(struct ipx_vloc *vl, int flags, mode_t mode)
{
	struct vol_cred cred;
	struct ipx_vfile *vf;
	struct stat st;
	vol_ino_t ino;
	int err, acc = flags & O_ACCMODE, fd;

	if ((flags & O_TMPFILE) == O_TMPFILE)
		return -EOPNOTSUPP;
	if (vl->loc.want_dir) {
		if (flags & O_CREAT)
			return -EISDIR;
		flags |= O_DIRECTORY;
	}
	vfs_cred(&cred);
	if (flags & O_CREAT)
		mode &= ~vfs_umask() & 07777;
	err = vl->ops->open(vl->b, vl->loc.dir, vl->loc.rel, flags, mode, &cred, &ino);
	/* Linux checks O_DIRECTORY before O_NOFOLLOW's refusal of a symbolic link. */
	if (err == -ELOOP && (flags & O_DIRECTORY) && (flags & O_NOFOLLOW))
		err = -ENOTDIR;
	if (err < 0)
		return err;
	err = vl->ops->getattr(vl->b, ino, &st);
	if (err == 0 && S_ISDIR(st.st_mode) && !(flags & O_PATH) && acc != O_RDONLY)
		err = -EISDIR;
	if (err < 0) {
		(void)vl->ops->release(vl->b, ino);
		return err;
	}
	vf = calloc(1, sizeof(*vf));
	if (vf == NULL) {
		(void)vl->ops->release(vl->b, ino);
		return -ENOMEM;
	}
	vf->m = vl->loc.m;
	vf->ops = vl->ops;
	vf->b = vl->b;
	vf->gen = vl->gen;
	vf->ino = ino;
	vf->dir = S_ISDIR(st.st_mode);
	pthread_mutex_init(&vf->lock, NULL);
	vf->flags = flags & (O_ACCMODE | O_PATH | VF_STATUS_FLAGS | VF_SYNC_FLAGS);
	vf->lk_owner = vf_owner_new();
	if (vf->m->e.storage == VFS_INDIRECT)
		vf->pos = vf_pos_new();
	if (vl->loc.abs_ok)
		vf->path = strdup(vl->loc.buf);
	fd = vf_install(vf, (flags & O_CLOEXEC) != 0);
	if (fd < 0) {
		(void)vl->ops->release(vl->b, ino);
		vf_pos_put(vf);
		vf_destroy(vf);
	}
	return fd;
}

int ipx_vlocate(int dirfd, const char *path, struct ipx_vloc *vl, bool want_abs)
{
	real_init();
	vl->loc.kdirfd = dirfd;
	vl->loc.kpath = path;
	if (!vfs_active())
		return 0;
	return ipx_vpath(dirfd, path, vl, want_abs);
}

int ipx_open_any(int dirfd, const char *path, int flags, mode_t mode)
{
	struct ipx_vloc vl;
	int r;

	r = ipx_vlocate(dirfd, path, &vl, true);
	if (r == 0)
		return real.openat(vl.loc.kdirfd, vl.loc.kpath, flags, mode);
	if (r == 1)
		r = ipx_vfile_open(&vl, flags, mode);
	return (int)ipx_ret(r);
}

static mode_t ipx_open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

IPX_EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = ipx_open_mode(flags, ap);
	va_end(ap);
	return ipx_open_any(AT_FDCWD, path, flags, mode);
}

IPX_EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = ipx_open_mode(flags, ap);
	va_end(ap);
	return ipx_open_any(AT_FDCWD, path, flags | O_LARGEFILE, mode);
}

IPX_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = ipx_open_mode(flags, ap);
	va_end(ap);
	return ipx_open_any(dirfd, path, flags, mode);
}

IPX_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = ipx_open_mode(flags, ap);
	va_end(ap);
	return ipx_open_any(dirfd, path, flags | O_LARGEFILE, mode);
}

IPX_EXPORT int creat(const char *path, mode_t mode)
{
	return ipx_open_any(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

IPX_EXPORT int creat64(const char *path, mode_t mode)
{
	return ipx_open_any(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_LARGEFILE, mode);
}

/* _FORTIFY_SOURCE's checked opens: O_CREAT without a mode is a bug. */
extern void __chk_fail(void) __attribute__((noreturn));

static int ipx_open_2(int dirfd, const char *path, int flags)
{
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		fprintf(stderr, "libretto: invalid open call: O_CREAT or O_TMPFILE without mode\n");
		__chk_fail();
	}
	return ipx_open_any(dirfd, path, flags, 0);
}

IPX_EXPORT int __open_2(const char *path, int flags)
{
	return ipx_open_2(AT_FDCWD, path, flags);
}

IPX_EXPORT int __open64_2(const char *path, int flags)
{
	return ipx_open_2(AT_FDCWD, path, flags | O_LARGEFILE);
}

IPX_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return ipx_open_2(dirfd, path, flags);
}

IPX_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return ipx_open_2(dirfd, path, flags | O_LARGEFILE);
}

/* ------------------------------------------------------------------ */
/* Data */

static int vf_can(struct ipx_vfile *vf, bool wr)
{
	int acc = vf->flags & O_ACCMODE;

	if (vf->flags & O_PATH)
		return -EBADF;
	if (wr ? acc == O_RDONLY : acc == O_WRONLY)
		return -EBADF;
	return 0;
}

ssize_t ipx_vfile_prw(struct ipx_vfile *vf, const struct iovec *iov, int cnt, int64_t off, bool wr)
{
	bool at_pos = off < 0, append;
	size_t total = 0, len = 0;
	uint64_t pos, end;
	ssize_t r = 0;
	char *tmp = NULL;
	int err;

	err = ipx_vfile_check(vf);
	if (err == 0)
		err = vf_can(vf, wr);
	if (err == 0 && vf->dir)
		err = wr ? -EBADF : -EISDIR;
	if (err < 0)
		return err;
	if (cnt < 0 || cnt > IOV_MAX)
		return -EINVAL;
	for (int i = 0; i < cnt; i++) {
		if (iov[i].iov_len > SSIZE_MAX - len)
			return -EINVAL;
		len += iov[i].iov_len;
	}
	if (at_pos)
		pthread_mutex_lock(&vf->lock);
	append = wr && (vf->flags & O_APPEND);
	pos = at_pos ? vf_off_get(vf) : (uint64_t)off;
	/* An appending write of several buffers goes in one piece, so it is
	 * atomic like Linux's. */
	if (append && cnt > 1 && len <= (8u << 20) && (tmp = malloc(len ? len : 1)) != NULL) {
		size_t o = 0;

		for (int i = 0; i < cnt; i++) {
			memcpy(tmp + o, iov[i].iov_base, iov[i].iov_len);
			o += iov[i].iov_len;
		}
		r = vf->ops->pwrite(vf->b, vf->ino, tmp, len, pos, VOL_APPEND, &end);
		free(tmp);
		if (r >= 0) {
			total = (size_t)r;
			pos = end;
		}
	} else {
		for (int i = 0; i < cnt; i++) {
			if (iov[i].iov_len == 0)
				continue;
			if (wr)
				r = vf->ops->pwrite(vf->b, vf->ino, iov[i].iov_base, iov[i].iov_len, pos,
						    append ? VOL_APPEND : 0, &end);
			else
				r = vf->ops->pread(vf->b, vf->ino, iov[i].iov_base, iov[i].iov_len, pos);
			if (r < 0)
				break;
			total += (size_t)r;
			pos = wr ? end : pos + (uint64_t)r;
			if ((size_t)r < iov[i].iov_len)
				break;
		}
	}
	if (at_pos) {
		if (total > 0 || (r >= 0 && append))
			vf_off_set(vf, pos);
		pthread_mutex_unlock(&vf->lock);
	}
	if (total == 0 && r < 0)
		return r;
	/* O_SYNC/O_DSYNC: durable before the write returns, as Linux's
	 * generic_write_sync; its failure is the write's. */
	if (wr && total > 0 && (vf->flags & O_DSYNC)) {
		err = vf->ops->fsync(vf->b, vf->ino, (vf->flags & (O_SYNC & ~O_DSYNC)) == 0);
		if (err < 0)
			return err;
	}
	return (ssize_t)total;
}

ssize_t ipx_vfile_rw(struct ipx_file *f, const struct iovec *iov, int cnt, bool wr)
{
	ssize_t r = ipx_vfile_prw(f->vf, iov, cnt, -1, wr);

	ipx_put(f);
	return r;
}

/* pread/pwrite/preadv/pwritev(2) and their 64/v2 names: fd may be the kernel's. */
static ssize_t ipx_prw(int fd, const struct iovec *iov, int cnt, off_t off, int flags, bool wr,
		       bool v2)
{
	struct ipx_file *f;
	ssize_t r;

	real_init();
	f = ipx_vfile_app(fd);
	if (f == IPX_VF_PRIVATE)
		return ipx_ret(-EBADF);
	if (f == NULL) {
		if (v2)
			return wr ? real.pwritev2(fd, iov, cnt, off, flags) :
				    real.preadv2(fd, iov, cnt, off, flags);
		if (cnt == 1)
			return wr ? real.pwrite(fd, iov[0].iov_base, iov[0].iov_len, off) :
				    real.pread(fd, iov[0].iov_base, iov[0].iov_len, off);
		return wr ? real.pwritev(fd, iov, cnt, off) : real.preadv(fd, iov, cnt, off);
	}
	if (off < 0 && !(v2 && off == -1))
		r = -EINVAL;
	else
		r = ipx_vfile_prw(f->vf, iov, cnt, off, wr);
	ipx_put(f);
	return ipx_ret(r);
}

IPX_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	struct iovec iov = { buf, n };

	return ipx_prw(fd, &iov, 1, off, 0, false, false);
}

IPX_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	return pread(fd, buf, n, off);
}

IPX_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return pread(fd, buf, n, off);
}

IPX_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return pread(fd, buf, n, off);
}

IPX_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	struct iovec iov = { (void *)buf, n };

	return ipx_prw(fd, &iov, 1, off, 0, true, false);
}

IPX_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

IPX_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return ipx_prw(fd, iov, cnt, off, 0, false, false);
}

IPX_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return ipx_prw(fd, iov, cnt, off, 0, false, false);
}

IPX_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return ipx_prw(fd, iov, cnt, off, 0, true, false);
}

IPX_EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return ipx_prw(fd, iov, cnt, off, 0, true, false);
}

IPX_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	return ipx_prw(fd, iov, cnt, off, flags, false, true);
}

IPX_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	return ipx_prw(fd, iov, cnt, off, flags, false, true);
}

IPX_EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	return ipx_prw(fd, iov, cnt, off, flags, true, true);
}

IPX_EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	return ipx_prw(fd, iov, cnt, off, flags, true, true);
}

static int64_t vf_lseek(struct ipx_vfile *vf, off_t off, int whence)
{
	struct stat st;
	int64_t base = 0, r;
	int err;

	err = ipx_vfile_check(vf);
	if (err < 0)
		return err;
	if (vf->flags & O_PATH)
		return -EBADF;
	pthread_mutex_lock(&vf->lock);
	if (vf->dir) {
		/* A directory's offset is its readdir cookie (getdents64's d_off). */
		if (whence == SEEK_SET && off >= 0)
			r = (int64_t)(vf->cookie = (uint64_t)off);
		else if (whence == SEEK_CUR && off == 0)
			r = (int64_t)vf->cookie;
		else
			r = -EINVAL;
		pthread_mutex_unlock(&vf->lock);
		return r;
	}
	switch (whence) {
	case SEEK_SET:
		break;
	case SEEK_CUR:
		base = (int64_t)vf_off_get(vf);
		break;
	case SEEK_END:
		err = vf->ops->getattr(vf->b, vf->ino, &st);
		if (err < 0) {
			pthread_mutex_unlock(&vf->lock);
			return err;
		}
		base = st.st_size;
		break;
	case SEEK_DATA:
	case SEEK_HOLE:
		r = off < 0 ? -ENXIO : vf->ops->seek_data(vf->b, vf->ino, (uint64_t)off, whence);
		if (r >= 0)
			vf_off_set(vf, (uint64_t)r);
		pthread_mutex_unlock(&vf->lock);
		return r;
	default:
		pthread_mutex_unlock(&vf->lock);
		return -EINVAL;
	}
	if ((off > 0 && base > INT64_MAX - off) || base + off < 0) {
		pthread_mutex_unlock(&vf->lock);
		return off > 0 ? -EOVERFLOW : -EINVAL;
	}
	vf_off_set(vf, (uint64_t)(base + off));
	r = base + off;
	pthread_mutex_unlock(&vf->lock);
	return r;
}

IPX_EXPORT off_t lseek(int fd, off_t off, int whence)
{
	struct ipx_file *f;
	int64_t r;

	real_init();
	f = ipx_vfile_app(fd);
	if (f == IPX_VF_PRIVATE)
		return (off_t)ipx_ret(-EBADF);
	if (f == NULL)
		return real.lseek(fd, off, whence);
	r = vf_lseek(f->vf, off, whence);
	ipx_put(f);
	return (off_t)ipx_ret(r);
}

IPX_EXPORT off_t lseek64(int fd, off_t off, int whence)
{
	return lseek(fd, off, whence);
}

/* getdents64(2) on a volume directory. */
IPX_EXPORT ssize_t getdents64(int fd, void *buf, size_t n)
{
	struct ipx_file *f;
	struct ipx_vfile *vf;
	ssize_t r;

	real_init();
	f = ipx_vfile_app(fd);
	if (f == IPX_VF_PRIVATE)
		return ipx_ret(-EBADF);
	if (f == NULL)
		return real.getdents64(fd, buf, n);
	vf = f->vf;
	r = ipx_vfile_check(vf);
	if (r == 0 && (vf->flags & O_PATH))
		r = -EBADF;
	if (r == 0 && !vf->dir)
		r = -ENOTDIR;
	if (r == 0) {
		pthread_mutex_lock(&vf->lock);
		r = vf->ops->readdir(vf->b, vf->ino, &vf->cookie, buf, n);
		pthread_mutex_unlock(&vf->lock);
	}
	ipx_put(f);
	return ipx_ret(r);
}

/* ------------------------------------------------------------------ */
/* Attributes through a descriptor */

int ipx_vfile_stat(struct ipx_vfile *vf, struct stat *st)
{
	int err = ipx_vfile_check(vf);

	return err < 0 ? err : vf->ops->getattr(vf->b, vf->ino, st);
}

/* Run fn on fd's volume file; false when fd is the kernel's. */
#define IPX_WITH_VFILE(fd, r, expr)                          \
	({                                                   \
		struct ipx_file *f_ = ipx_vfile_app(fd);     \
		bool ours_ = f_ != NULL;                     \
		if (f_ == IPX_VF_PRIVATE) {                  \
			(r) = -EBADF;                        \
		} else if (ours_) {                          \
			struct ipx_vfile *vf = f_->vf;       \
			(r) = (expr);                        \
			ipx_put(f_);                         \
		}                                            \
		ours_;                                       \
	})

IPX_EXPORT int fstat(int fd, struct stat *st)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, ipx_vfile_stat(vf, st)))
		return (int)ipx_ret(r);
	return real.fstat(fd, st);
}

IPX_EXPORT int fstat64(int fd, struct stat64 *st)
{
	return fstat(fd, (struct stat *)st);
}

IPX_EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	(void)ver;
	return fstat(fd, st);
}

IPX_EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	(void)ver;
	return fstat(fd, (struct stat *)st);
}

static int vf_setattr(struct ipx_vfile *vf, struct vol_setattr *sa)
{
	struct vol_cred cred;
	int err = ipx_vfile_check(vf);

	if (err < 0)
		return err;
	vfs_cred(&cred);
	return vf->ops->setattr(vf->b, vf->ino, sa, &cred);
}

IPX_EXPORT int ftruncate(int fd, off_t len)
{
	struct vol_setattr sa = { .valid = VOL_SET_SIZE };
	int r;

	real_init();
	sa.size = (uint64_t)len;
	if (IPX_WITH_VFILE(fd, r, len < 0 ? -EINVAL :
			   (vf->dir || (vf->flags & O_PATH) || (vf->flags & O_ACCMODE) == O_RDONLY) ?
			   -EINVAL : vf_setattr(vf, &sa)))
		return (int)ipx_ret(r);
	return real.ftruncate(fd, len);
}

IPX_EXPORT int ftruncate64(int fd, off_t len)
{
	return ftruncate(fd, len);
}

IPX_EXPORT int fchmod(int fd, mode_t mode)
{
	struct vol_setattr sa = { .valid = VOL_SET_MODE, .mode = mode & 07777 };
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, vf_setattr(vf, &sa)))
		return (int)ipx_ret(r);
	return real.fchmod(fd, mode);
}

IPX_EXPORT int fchown(int fd, uid_t uid, gid_t gid)
{
	struct vol_setattr sa = { .uid = uid, .gid = gid };
	int r;

	real_init();
	sa.valid = (uid != (uid_t)-1 ? VOL_SET_UID : 0) | (gid != (gid_t)-1 ? VOL_SET_GID : 0);
	if (IPX_WITH_VFILE(fd, r, sa.valid ? vf_setattr(vf, &sa) : ipx_vfile_check(vf)))
		return (int)ipx_ret(r);
	return real.fchown(fd, uid, gid);
}

void ipx_times_to_setattr(const struct timespec ts[2], struct vol_setattr *sa)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	sa->valid = VOL_SET_ATIME | VOL_SET_MTIME;
	sa->atime = now;
	sa->mtime = now;
	if (ts == NULL)
		return;
	if (ts[0].tv_nsec == UTIME_OMIT)
		sa->valid &= ~(unsigned)VOL_SET_ATIME;
	else if (ts[0].tv_nsec != UTIME_NOW)
		sa->atime = ts[0];
	if (ts[1].tv_nsec == UTIME_OMIT)
		sa->valid &= ~(unsigned)VOL_SET_MTIME;
	else if (ts[1].tv_nsec != UTIME_NOW)
		sa->mtime = ts[1];
}

static int vf_times_ok(const struct timespec ts[2])
{
	for (int i = 0; ts != NULL && i < 2; i++)
		if (ts[i].tv_nsec != UTIME_NOW && ts[i].tv_nsec != UTIME_OMIT &&
		    (ts[i].tv_nsec < 0 || ts[i].tv_nsec >= 1000000000))
			return -EINVAL;
	return 0;
}

IPX_EXPORT int futimens(int fd, const struct timespec ts[2])
{
	struct vol_setattr sa;
	int r;

	real_init();
	ipx_times_to_setattr(ts, &sa);
	if (IPX_WITH_VFILE(fd, r, vf_times_ok(ts) < 0 ? -EINVAL :
			   sa.valid ? vf_setattr(vf, &sa) : ipx_vfile_check(vf)))
		return (int)ipx_ret(r);
	return real.futimens(fd, ts);
}

IPX_EXPORT int futimes(int fd, const struct timeval tv[2])
{
	struct timespec ts[2];

	if (fdtab_peek(fd) == NULL) {
		real_init();
		return real.futimes(fd, tv);
	}
	if (tv != NULL) {
		for (int i = 0; i < 2; i++) {
			ts[i].tv_sec = tv[i].tv_sec;
			ts[i].tv_nsec = tv[i].tv_usec * 1000;
		}
	}
	return futimens(fd, tv ? ts : NULL);
}

static int vf_fsync(struct ipx_vfile *vf, bool datasync)
{
	int err = ipx_vfile_check(vf);

	return err < 0 ? err : vf->ops->fsync(vf->b, vf->ino, datasync);
}

IPX_EXPORT int fsync(int fd)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, (vf->flags & O_PATH) ? -EBADF : vf_fsync(vf, false)))
		return (int)ipx_ret(r);
	return real.fsync(fd);
}

IPX_EXPORT int fdatasync(int fd)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, (vf->flags & O_PATH) ? -EBADF : vf_fsync(vf, true)))
		return (int)ipx_ret(r);
	return real.fdatasync(fd);
}

IPX_EXPORT int syncfs(int fd)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, ipx_vfile_check(vf) < 0 ? -EIO : vf->ops->sync(vf->b, true)))
		return (int)ipx_ret(r);
	return real.syncfs(fd);
}

IPX_EXPORT int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
	int r;

	real_init();
	/* Only a wait asks for something durable: the data is fsync'ed then. */
	if (IPX_WITH_VFILE(fd, r, (off < 0 || n < 0) ? -EINVAL :
			   (flags & SYNC_FILE_RANGE_WAIT_AFTER) ? vf_fsync(vf, true) :
			   ipx_vfile_check(vf)))
		return (int)ipx_ret(r);
	return real.sync_file_range(fd, off, n, flags);
}

IPX_EXPORT int fstatfs(int fd, struct statfs *st)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, ipx_vfile_check(vf) < 0 ? -EIO : vf->ops->statfs(vf->b, st)))
		return (int)ipx_ret(r);
	return real.fstatfs(fd, st);
}

IPX_EXPORT int fstatfs64(int fd, struct statfs64 *st)
{
	return fstatfs(fd, (struct statfs *)st);
}

static void vf_statvfs(const struct statfs *s, struct statvfs *v)
{
	memset(v, 0, sizeof(*v));
	v->f_bsize = (unsigned long)s->f_bsize;
	v->f_frsize = (unsigned long)(s->f_frsize ? s->f_frsize : s->f_bsize);
	v->f_blocks = s->f_blocks;
	v->f_bfree = s->f_bfree;
	v->f_bavail = s->f_bavail;
	v->f_files = s->f_files;
	v->f_ffree = s->f_ffree;
	v->f_favail = s->f_ffree;
	memcpy(&v->f_fsid, &s->f_fsid, sizeof(v->f_fsid) < sizeof(s->f_fsid) ?
	       sizeof(v->f_fsid) : sizeof(s->f_fsid));
	v->f_namemax = (unsigned long)s->f_namelen;
	v->f_flag = (unsigned long)s->f_flags & ~(unsigned long)ST_VALID;
}

IPX_EXPORT int fstatvfs(int fd, struct statvfs *st)
{
	struct statfs s;
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, ipx_vfile_check(vf) < 0 ? -EIO : vf->ops->statfs(vf->b, &s))) {
		if (r == 0)
			vf_statvfs(&s, st);
		return (int)ipx_ret(r);
	}
	return real.fstatvfs(fd, st);
}

IPX_EXPORT int fstatvfs64(int fd, struct statvfs64 *st)
{
	return fstatvfs(fd, (struct statvfs *)st);
}

/* statvfs for path calls (ipx_file_path.c). */
void ipx_statfs_to_statvfs(const struct statfs *s, struct statvfs *v)
{
	vf_statvfs(s, v);
}

static int vf_fallocate(struct ipx_vfile *vf, int mode, off_t off, off_t len)
{
	int err = ipx_vfile_check(vf);

	if (err < 0)
		return err;
	if (off < 0 || len <= 0)
		return -EINVAL;
	if ((vf->flags & O_PATH) || (vf->flags & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	if (vf->dir)
		return -EISDIR;
	return vf->ops->fallocate(vf->b, vf->ino, mode, (uint64_t)off, (uint64_t)len);
}

IPX_EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, vf_fallocate(vf, mode, off, len)))
		return (int)ipx_ret(r);
	return real.fallocate(fd, mode, off, len);
}

IPX_EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
	return fallocate(fd, mode, off, len);
}

/* posix_fallocate returns the error number itself. */
IPX_EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, vf_fallocate(vf, 0, off, len)))
		return -r;
	return real.posix_fallocate(fd, off, len);
}

IPX_EXPORT int posix_fallocate64(int fd, off_t off, off_t len)
{
	return posix_fallocate(fd, off, len);
}

/* Advice is accepted and ignored: the volume has no page cache to steer. */
IPX_EXPORT int posix_fadvise(int fd, off_t off, off_t len, int advice)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, (advice < 0 || advice > POSIX_FADV_NOREUSE || len < 0) ? -EINVAL :
			   ipx_vfile_check(vf) < 0 ? -EBADF : 0))
		return -r;
	return real.posix_fadvise(fd, off, len, advice);
}

IPX_EXPORT int posix_fadvise64(int fd, off_t off, off_t len, int advice)
{
	return posix_fadvise(fd, off, len, advice);
}

/* ------------------------------------------------------------------ */
/* fcntl, locks, flock, ioctl (hooks called from ipx_fd.c/ipx_sock.c) */

/*
 * POSIX locks belong to the process, OFD locks to the open file
 * description.  The owner is opaque to the backend, but encoded so that it
 * could tell F_GETLK's l_pid: bit 63 set and the pid in the low bits for a
 * process, else an open file description's address (l_pid -1).
 */
static uint64_t vf_owner_posix(void)
{
	return VF_OWNER_PID | (uint64_t)(uint32_t)getpid();
}

static uint64_t vf_owner_ofd(struct ipx_vfile *vf)
{
	return vf->lk_owner;
}

/* flock locks are separate from fcntl's on Linux: a third owner space. */
static uint64_t vf_owner_flock(struct ipx_vfile *vf)
{
	return vf->lk_owner | 1;
}

/* Lock (or test) with the range made absolute; F_SETLKW sleeps and retries. */
static int vf_lock(struct ipx_vfile *vf, uint64_t owner, int cmd, bool wait, struct flock *fl,
		   bool check_access)
{
	/* The backend keeps the l_pid a lock was set with and gives it back to
	 * F_GETLK: the process's pid for POSIX locks, -1 for OFD ones (Linux). */
	pid_t lpid = (owner & VF_OWNER_PID) ? getpid() : -1;
	struct flock l = *fl;
	struct stat st;
	int err = ipx_vfile_check(vf);

	if (err < 0)
		return err;
	if (vf->flags & O_PATH)
		return -EBADF;
	if (l.l_type != F_RDLCK && l.l_type != F_WRLCK && l.l_type != F_UNLCK)
		return -EINVAL;
	if (check_access && cmd == F_SETLK && ((l.l_type == F_RDLCK && (vf->flags & O_ACCMODE) == O_WRONLY) ||
			       (l.l_type == F_WRLCK && (vf->flags & O_ACCMODE) == O_RDONLY)))
		return -EBADF;
	if (l.l_whence == SEEK_CUR) {
		pthread_mutex_lock(&vf->lock);
		l.l_start += (off_t)vf_off_get(vf);
		pthread_mutex_unlock(&vf->lock);
	} else if (l.l_whence == SEEK_END) {
		err = vf->ops->getattr(vf->b, vf->ino, &st);
		if (err < 0)
			return err;
		l.l_start += st.st_size;
	} else if (l.l_whence != SEEK_SET) {
		return -EINVAL;
	}
	l.l_whence = SEEK_SET;
	if (l.l_len < 0) {
		l.l_start += l.l_len;
		l.l_len = -l.l_len;
	}
	if (l.l_start < 0)
		return -EINVAL;
	for (unsigned long tries = 0;; tries++) {
		struct flock t = l;
		struct timespec ts = { 0, tries < 100 ? 1000000 : 10000000 };

		if (cmd == F_SETLK)
			t.l_pid = lpid;

		err = vf->ops->lock(vf->b, vf->ino, owner, cmd, &t);
		if (err != -EAGAIN || !wait) {
			if (err == 0 && cmd == F_GETLK)
				*fl = t;
			return err;
		}
		/* A signal ends the wait, as it interrupts F_SETLKW. */
		if (nanosleep(&ts, NULL) < 0 && errno == EINTR)
			return -EINTR;
		if (ipx_vfile_check(vf) < 0)
			return -EIO;
	}
}

int ipx_vfile_fcntl(struct ipx_file *f, int cmd, long arg, bool *done)
{
	struct ipx_vfile *vf = f->vf;
	struct flock *fl = (struct flock *)arg;
	int r;

	*done = true;
	switch (cmd) {
	case F_GETFL:
		pthread_mutex_lock(&vf->lock);
		r = vf->flags | O_LARGEFILE;
		pthread_mutex_unlock(&vf->lock);
		return r;
	case F_SETFL:
		if (vf->flags & O_PATH)
			return -EBADF;
		pthread_mutex_lock(&vf->lock);
		vf->flags = (vf->flags & ~VF_STATUS_FLAGS) | ((int)arg & VF_STATUS_FLAGS);
		pthread_mutex_unlock(&vf->lock);
		return 0;
	case F_GETLK:
	case F_SETLK:
	case F_SETLKW:
		if (fl == NULL)
			return -EFAULT;
		r = vf_lock(vf, vf_owner_posix(), cmd == F_GETLK ? F_GETLK : F_SETLK, cmd == F_SETLKW, fl, true);
		if (r == 0 && cmd != F_GETLK)
			atomic_store(&vf_any_posix, true);
		return r;
	case F_OFD_GETLK:
	case F_OFD_SETLK:
	case F_OFD_SETLKW:
		if (fl == NULL)
			return -EFAULT;
		if (fl->l_pid != 0)
			return -EINVAL;
		r = vf_lock(vf, vf_owner_ofd(vf), cmd == F_OFD_GETLK ? F_GETLK : F_SETLK,
			    cmd == F_OFD_SETLKW, fl, true);
		if (r == 0 && cmd != F_OFD_GETLK)
			atomic_store(&vf->ofd_locked, true);
		return r;
	case F_SETLEASE:
	case F_NOTIFY:
		return -EINVAL;
	case F_GETLEASE:
		return F_UNLCK;
	case F_ADD_SEALS:
	case F_GET_SEALS:
		return -EINVAL;
	case F_GETPIPE_SZ:
	case F_SETPIPE_SZ:
		return -EBADF;
	default:
		/* Descriptor commands (F_DUPFD*, F_GETFD, F_SETFD) are the kernel's. */
		*done = false;
		return 0;
	}
}

IPX_EXPORT int flock(int fd, int op)
{
	struct ipx_file *f;
	/*
	 * flock and fcntl locks are independent on Linux; the volume has one
	 * lock table, so flock locks live on a byte of their own beyond any
	 * file's end (they still meet fcntl locks that run to "end of file").
	 */
	struct flock fl = { .l_whence = SEEK_SET, .l_start = INT64_MAX - 1, .l_len = 1 };
	int r;

	real_init();
	f = ipx_vfile_app(fd);
	if (f == IPX_VF_PRIVATE)
		return (int)ipx_ret(-EBADF);
	if (f == NULL)
		return real.flock(fd, op);
	switch (op & ~LOCK_NB) {
	case LOCK_SH:
		fl.l_type = F_RDLCK;
		break;
	case LOCK_EX:
		fl.l_type = F_WRLCK;
		break;
	case LOCK_UN:
		fl.l_type = F_UNLCK;
		break;
	default:
		ipx_put(f);
		return (int)ipx_ret(-EINVAL);
	}
	/* flock works on descriptors of any access mode. */
	r = vf_lock(f->vf, vf_owner_flock(f->vf), F_SETLK, !(op & LOCK_NB), &fl, false);
	if (r == 0)
		atomic_store(&f->vf->ofd_locked, true);
	ipx_put(f);
	return (int)ipx_ret(r);
}

int ipx_vfile_ioctl(struct ipx_file *f, unsigned long req, void *arg)
{
	struct ipx_vfile *vf = f->vf;
	struct stat st;
	int err = ipx_vfile_check(vf);

	if (err < 0)
		return err;
	switch (req) {
	case FICLONE:
	case FICLONERANGE:
	case FIDEDUPERANGE:
		/* No shared extents: cp falls back to copying. */
		return -EOPNOTSUPP;
	case FIONREAD:
		if (vf->dir)
			return -ENOTTY;
		err = vf->ops->getattr(vf->b, vf->ino, &st);
		if (err < 0)
			return err;
		pthread_mutex_lock(&vf->lock);
		uint64_t cur = vf_off_get(vf);

		*(int *)arg = (uint64_t)st.st_size > cur ?
			      (int)((uint64_t)st.st_size - cur > INT_MAX ? INT_MAX :
				    (uint64_t)st.st_size - cur) : 0;
		pthread_mutex_unlock(&vf->lock);
		return 0;
	case FIGETBSZ:
		*(int *)arg = 4096;
		return 0;
	case FIONBIO:
		pthread_mutex_lock(&vf->lock);
		if (arg != NULL && *(int *)arg)
			vf->flags |= O_NONBLOCK;
		else
			vf->flags &= ~O_NONBLOCK;
		pthread_mutex_unlock(&vf->lock);
		return 0;
	default:
		return -ENOTTY;
	}
}

/* ------------------------------------------------------------------ */
/* sendfile, copy_file_range */

/*
 * sendfile from a volume file to any descriptor (a libOS socket through
 * send() with MSG_MORE between pieces, anything else through write()).
 * With off, read from *off and advance it by what was sent; without, from
 * the file offset, which ends after the bytes sent.
 */
bool ipx_vfile_sendfile(int out, int in, off_t *off, size_t n, ssize_t *ret)
{
	enum { CHUNK = 64 * 1024 };
	struct ipx_file *f = ipx_vfile_app(in), *of;
	struct ipx_vfile *vf;
	size_t total = 0, want;
	ssize_t got, sent = 0;
	bool sock;
	uint64_t pos;
	char *buf;
	int err;

	if (f == NULL)
		return false;
	if (f == IPX_VF_PRIVATE) {
		*ret = ipx_ret(-EBADF);
		return true;
	}
	vf = f->vf;
	err = ipx_vfile_check(vf);
	if (err == 0)
		err = vf_can(vf, false);
	if (err == 0 && vf->dir)
		err = -EINVAL;
	if (err == 0 && off != NULL && *off < 0)
		err = -EINVAL;
	buf = err == 0 ? malloc(CHUNK) : NULL;
	if (err == 0 && buf == NULL)
		err = -ENOMEM;
	if (err < 0) {
		ipx_put(f);
		*ret = ipx_ret(err);
		return true;
	}
	of = ipx_get(out);
	sock = of != NULL && of->kind == IPX_SOCK;
	if (of != NULL)
		ipx_put(of);
	if (off == NULL)
		pthread_mutex_lock(&vf->lock);
	pos = off ? (uint64_t)*off : vf_off_get(vf);
	while (total < n) {
		want = n - total < CHUNK ? n - total : CHUNK;
		got = vf->ops->pread(vf->b, vf->ino, buf, want, pos);
		if (got < 0) {
			sent = got;
			break;
		}
		if (got == 0)
			break;
		if (sock)
			sent = send(out, buf, (size_t)got,
				    total + (size_t)got < n && (size_t)got == want ? MSG_MORE : 0);
		else
			sent = write(out, buf, (size_t)got);
		if (sent < 0) {
			sent = -errno;
			break;
		}
		total += (size_t)sent;
		pos += (uint64_t)sent;
		if (sent < got)
			break;
	}
	if (off == NULL) {
		vf_off_set(vf, pos);
		pthread_mutex_unlock(&vf->lock);
	} else {
		*off = (off_t)pos;
	}
	free(buf);
	ipx_put(f);
	*ret = total == 0 && sent < 0 ? ipx_ret(sent) : (ssize_t)total;
	return true;
}

/* copy_file_range with a volume file on either side: a read/write loop through the wrappers. */
IPX_EXPORT ssize_t copy_file_range(int in, off_t *inoff, int out, off_t *outoff, size_t n,
				   unsigned int flags)
{
	enum { CHUNK = 128 * 1024 };
	struct ipx_file *fi, *fo;
	size_t total = 0;
	ssize_t got, put = 0;
	char *buf;

	real_init();
	fi = ipx_vfile_app(in);
	fo = ipx_vfile_app(out);
	if (fi == NULL && fo == NULL)
		return real.copy_file_range(in, inoff, out, outoff, n, flags);
	if (fi != NULL && fi != IPX_VF_PRIVATE)
		ipx_put(fi);
	if (fo != NULL && fo != IPX_VF_PRIVATE)
		ipx_put(fo);
	if (fi == IPX_VF_PRIVATE || fo == IPX_VF_PRIVATE)
		return ipx_ret(-EBADF);
	if (flags != 0)
		return ipx_ret(-EINVAL);
	if ((inoff != NULL && *inoff < 0) || (outoff != NULL && *outoff < 0))
		return ipx_ret(-EINVAL);
	buf = malloc(n < CHUNK ? (n ? n : 1) : CHUNK);
	if (buf == NULL)
		return ipx_ret(-ENOMEM);
	while (total < n) {
		size_t want = n - total < CHUNK ? n - total : CHUNK;

		got = inoff ? pread(in, buf, want, *inoff) : read(in, buf, want);
		if (got <= 0) {
			put = got < 0 ? -errno : 0;
			break;
		}
		put = outoff ? pwrite(out, buf, (size_t)got, *outoff) : write(out, buf, (size_t)got);
		if (put < 0) {
			put = -errno;
			/* Give back what was read and not written. */
			if (!inoff)
				(void)lseek(in, -got, SEEK_CUR);
			break;
		}
		if (inoff)
			*inoff += put;
		else if (put < got)
			(void)lseek(in, -(got - put), SEEK_CUR);
		if (outoff)
			*outoff += put;
		total += (size_t)put;
		if (put < got)
			break;
	}
	free(buf);
	if (total == 0 && put < 0)
		return ipx_ret(put);
	return (ssize_t)total;
}

/* ------------------------------------------------------------------ */
/* mmap */

/*
 * A private mapping of a volume file is an anonymous mapping filled from
 * the file: later writes to the file are not seen through it (Linux would
 * show them until the page is first written; docs/storage.md).  A shared
 * read-only mapping is the same private copy.  A shared writable mapping
 * would need the page cache we do not have: ENODEV.
 */
static void *vf_mmap(struct ipx_vfile *vf, void *addr, size_t len, int prot, int flags, off_t off)
{
	struct stat st;
	void *p;
	size_t have = 0;
	int err = ipx_vfile_check(vf);

	if (err < 0)
		goto fail;
	if ((vf->flags & O_PATH) || (vf->flags & O_ACCMODE) == O_WRONLY) {
		err = -EACCES;
		goto fail;
	}
	if (vf->dir) {
		err = -ENODEV;
		goto fail;
	}
	if ((flags & MAP_TYPE) == MAP_SHARED || (flags & MAP_TYPE) == MAP_SHARED_VALIDATE) {
		if (prot & PROT_WRITE) {
			fprintf(stderr, "libretto: mmap: shared writable mappings of volume files are "
				"not supported (%s)\n", vf->path ? vf->path : "a volume file");
			err = -ENODEV;
			goto fail;
		}
	}
	if (off < 0 || (off & 4095) != 0 || len == 0) {
		err = -EINVAL;
		goto fail;
	}
	err = vf->ops->getattr(vf->b, vf->ino, &st);
	if (err < 0)
		goto fail;
	flags = (flags & ~(MAP_TYPE | MAP_SHARED_VALIDATE)) | MAP_PRIVATE | MAP_ANONYMOUS;
	flags &= ~(MAP_DENYWRITE | MAP_EXECUTABLE);
	p = real.mmap(addr, len, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED)
		return p;
	while ((uint64_t)off + have < (uint64_t)st.st_size && have < len) {
		ssize_t r = vf->ops->pread(vf->b, vf->ino, (char *)p + have, len - have,
					   (uint64_t)off + have);
		if (r <= 0) {
			if (r < 0) {
				munmap(p, len);
				err = (int)r;
				goto fail;
			}
			break;
		}
		have += (size_t)r;
	}
	if (prot != (PROT_READ | PROT_WRITE) && mprotect(p, len, prot) < 0) {
		err = -errno;
		munmap(p, len);
		goto fail;
	}
	return p;
fail:
	errno = -err;
	return MAP_FAILED;
}

IPX_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct ipx_file *f;
	void *p;

	real_init();
	if (fd < 0 || (flags & MAP_ANONYMOUS) || (f = ipx_vfile_app(fd)) == NULL)
		return real.mmap(addr, len, prot, flags, fd, off);
	if (f == IPX_VF_PRIVATE) {
		errno = EBADF;
		return MAP_FAILED;
	}
	p = vf_mmap(f->vf, addr, len, prot, flags, off);
	ipx_put(f);
	return p;
}

IPX_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

/* ------------------------------------------------------------------ */
/* Extended attributes: the volume has none to offer (ENOTSUP, which tar,
 * cp and ls take as "no attributes here"). */

IPX_EXPORT ssize_t fgetxattr(int fd, const char *name, void *val, size_t n)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, ipx_vfile_check(vf) < 0 ? -EIO : -ENOTSUP))
		return ipx_ret(r);
	return real.fgetxattr(fd, name, val, n);
}

IPX_EXPORT ssize_t flistxattr(int fd, char *list, size_t n)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, ipx_vfile_check(vf) < 0 ? -EIO : 0))
		return ipx_ret(r);
	return real.flistxattr(fd, list, n);
}

IPX_EXPORT int fsetxattr(int fd, const char *name, const void *val, size_t n, int flags)
{
	int r;

	real_init();
	if (IPX_WITH_VFILE(fd, r, ipx_vfile_check(vf) < 0 ? -EIO : -ENOTSUP))
		return (int)ipx_ret(r);
	return real.fsetxattr(fd, name, val, n, flags);
}
