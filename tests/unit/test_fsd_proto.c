/* libretto-fsd's protocol: hostile requests are refused and fsd survives them; the client backend works; a restarted fsd adopts a session and answers exactly once. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "common/kv.h"
#include "fsd/req.h"
#include "libretto/ctl.h"
#include "libretto/fsd.h"
#include "runtime/vfs/vfs.h"

/* ---- part 1: the pure validator ---- */

static uint8_t data[FSD_SLOT_DATA];

static int decode(struct fsd_slot *s)
{
	static struct fsd_req r;
	const char *why;

	return fsd_req_decode(s, data, &r, &why);
}

static void test_decode(void)
{
	struct fsd_slot s;
	static struct fsd_state st;
	static struct fsd_req r;
	const char *why;

	memset(&s, 0, sizeof(s));
	s.id = 1;
	s.op = 0;
	CHECK(decode(&s) == -EINVAL);
	s.op = 999;
	CHECK(decode(&s) == -EINVAL);
	s.op = FSD_OP_LOOKUP;
	s.id = 0;
	CHECK(decode(&s) == -EINVAL);
	s.id = 7;
	/* A path must end with its NUL exactly at path_len. */
	memcpy(data, "abcdefghijkl", 12);
	s.path_len = 5;
	CHECK(decode(&s) == -EINVAL);
	data[5] = '\0';
	CHECK(decode(&s) == 0);
	/* ... and hold no NUL before it. */
	data[2] = '\0';
	CHECK(decode(&s) == -EINVAL);
	data[2] = 'c';
	s.path_len = FSD_SLOT_DATA;
	CHECK(decode(&s) == -EINVAL);
	s.path_len = 0xffffffffu;
	CHECK(decode(&s) == -EINVAL);
	s.path_len = FSD_PATH_MAX;
	CHECK(decode(&s) == -EINVAL);
	/* Bad flags. */
	s.path_len = 5;
	s.flags = 0x4000000;
	CHECK(decode(&s) == -EINVAL);
	s.flags = 0;
	/* The second path may not run off the data area. */
	s.op = FSD_OP_RENAME;
	s.path2_len = FSD_SLOT_DATA - 6;
	CHECK(decode(&s) == -EINVAL);
	s.path2_len = 0xfffffff0u;
	CHECK(decode(&s) == -EINVAL);
	memcpy(data + 6, "xy", 3);
	s.path2_len = 2;
	CHECK(decode(&s) == 0);
	/* Lengths within the area, offsets without overflow. */
	memset(&s, 0, sizeof(s));
	s.id = 3;
	s.op = FSD_OP_PREAD;
	s.len = FSD_SLOT_DATA + 1;
	CHECK(decode(&s) == -EINVAL);
	s.len = FSD_SLOT_DATA;
	CHECK(decode(&s) == 0);
	s.op = FSD_OP_PWRITE;
	s.off = UINT64_MAX - 10;
	CHECK(decode(&s) == -EINVAL);
	s.off = 0;
	s.flags = 2;
	CHECK(decode(&s) == -EINVAL);
	s.op = FSD_OP_SETATTR;
	s.flags = 0;
	s.attr.valid = 0x80;
	CHECK(decode(&s) == -EINVAL);
	s.attr.valid = VOL_SET_MTIME;
	s.attr.mtime_nsec = 2000000000;
	CHECK(decode(&s) == -EINVAL);
	s.op = FSD_OP_LOCK;
	s.flags = F_SETLKW;   /* blocking is the client's loop, never fsd's */
	CHECK(decode(&s) == -EINVAL);
	s.flags = F_SETLK;
	s.lk.type = F_WRLCK;
	s.lk.whence = SEEK_CUR;
	CHECK(decode(&s) == -EINVAL);
	s.lk.whence = SEEK_SET;
	CHECK(decode(&s) == 0);
	s.op = FSD_OP_SEEK_DATA;
	s.flags = SEEK_SET;
	CHECK(decode(&s) == -EINVAL);
	/* Credentials: only known xflags, at most 16 groups, only for ops that take them. */
	{
		struct fsd_wire_cred c = { .uid = 5, .gid = 6, .ngroups = 17 };

		memset(&s, 0, sizeof(s));
		s.id = 8;
		s.op = FSD_OP_ACCESS;
		s.xflags = 0x2;
		CHECK(decode(&s) == -EINVAL);
		s.xflags = FSD_XF_CRED;
		memcpy(data + FSD_CRED_OFF, &c, sizeof(c));
		CHECK(decode(&s) == -EINVAL);
		c.ngroups = 16;
		memcpy(data + FSD_CRED_OFF, &c, sizeof(c));
		CHECK(fsd_req_decode(&s, data, &r, &why) == 0 && r.has_cred && r.cred.uid == 5);
		s.op = FSD_OP_GETATTR;
		CHECK(fsd_req_decode(&s, data, &r, &why) == 0 && !r.has_cred);
	}

	/* Handles: only the root and what the session was given. */
	memset(&s, 0, sizeof(s));
	s.id = 4;
	s.op = FSD_OP_GETATTR;
	s.ino = 12;
	CHECK(fsd_req_decode(&s, data, &r, &why) == 0);
	CHECK(fsd_req_check_handles(&st, &r) == -EBADF);
	s.ino = 2;
	fsd_req_decode(&s, data, &r, &why);
	CHECK(fsd_req_check_handles(&st, &r) == 0);
	s.op = FSD_OP_RELEASE;
	fsd_req_decode(&s, data, &r, &why);
	CHECK(fsd_req_check_handles(&st, &r) == -EBADF);
	struct fsd_handle *h = fsd_handle_get(&st, 12, 5);
	CHECK(h != NULL);
	s.op = FSD_OP_GETATTR;
	s.ino = 12;
	fsd_req_decode(&s, data, &r, &why);
	CHECK(fsd_req_check_handles(&st, &r) == 0);
	s.op = FSD_OP_HOLD;   /* a looked-up inode is not open: no dup of it */
	fsd_req_decode(&s, data, &r, &why);
	CHECK(fsd_req_check_handles(&st, &r) == -EBADF);
	/* A lock of any type needs an open reference of any access (flock locks read-only files). */
	s.op = FSD_OP_LOCK;
	s.flags = F_SETLK;
	s.lk.type = F_WRLCK;
	fsd_req_decode(&s, data, &r, &why);
	CHECK(fsd_req_check_handles(&st, &r) == -EBADF);
	h->refs = 1;
	h->flags |= FSD_HANDLE_READ;
	CHECK(fsd_req_check_handles(&st, &r) == 0);
	h->refs = 0;
	h->flags = 0;
	h->flags |= FSD_HANDLE_STALE;
	s.op = FSD_OP_GETATTR;
	fsd_req_decode(&s, data, &r, &why);
	CHECK(fsd_req_check_handles(&st, &r) == -ESTALE);
	/* A full table reuses looked-up entries but never open ones. */
	memset(&st, 0, sizeof(st));
	for (uint32_t i = 0; i < FSD_MAX_HANDLES; i++) {
		struct fsd_handle *x = fsd_handle_get(&st, 100 + i, 1);

		CHECK(x != NULL);
		if (x)
			x->refs = 1;
	}
	CHECK(fsd_handle_get(&st, 99999, 1) == NULL);
	st.handle[7].refs = 0;
	CHECK(fsd_handle_get(&st, 99999, 1) == &st.handle[7]);
}

/* What a session may claim: anything when it was root, else only ids it had. */
static void test_cred_check(void)
{
	struct fsd_sess_cred root = { .uids = { 0, 0, 0, 0 }, .gids = { 0, 0, 0, 0 } };
	struct fsd_sess_cred user = { .uids = { 1000, 1000, 1001, 1000 }, .gids = { 100, 100, 100, 100 },
				      .ngroups = 2, .groups = { 100, 27 } };
	struct fsd_sess_cred setuid = { .uids = { 1000, 0, 0, 0 }, .gids = { 100, 100, 100, 100 } };
	struct fsd_wire_cred c = { .uid = 65534, .gid = 65534 };

	CHECK(fsd_cred_check(&root, &c) == 0);
	CHECK(fsd_cred_check(&setuid, &c) == 0);
	CHECK(fsd_cred_check(&user, &c) == -EPERM);
	c.uid = 1001;
	c.gid = 100;
	CHECK(fsd_cred_check(&user, &c) == 0);
	c.uid = 0;   /* a dropped process cannot claim root back through a non-root session */
	CHECK(fsd_cred_check(&user, &c) == -EPERM);
	c.uid = 1000;
	c.ngroups = 2;
	c.groups[0] = 27;
	c.groups[1] = 0;
	CHECK(fsd_cred_check(&user, &c) == -EPERM);
	c.groups[1] = 100;
	CHECK(fsd_cred_check(&user, &c) == 0);
}

/* ---- part 2: a live fsd (over the fake volume) ---- */

static const char *fsd_path;
static pid_t fsd_pid;
static int ctl = -1;
static char reply[FSD_MSG_MAX];

static void fsd_start(void)
{
	int sp[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) < 0) {
		perror("socketpair");
		exit(1);
	}
	fsd_pid = fork();
	if (fsd_pid == 0) {
		dup2(sp[1], 3);
		execl(fsd_path, "libretto-fsd", "--control-fd", "3", (char *)NULL);
		_exit(127);
	}
	close(sp[1]);
	ctl = sp[0];
}

/* One request; its errno value, or -1 when fsd did not answer within 5 s. */
static int req(const char *text, const int *fds, int nfds)
{
	struct pollfd p = { .fd = ctl, .events = POLLIN };
	int got[CTL_MAX_FDS], ngot = CTL_MAX_FDS, n;
	const char *e;

	if (ctl_send(ctl, text, strlen(text), fds, nfds))
		return -1;
	if (poll(&p, 1, 5000) != 1)
		return -1;
	n = ctl_recv(ctl, reply, sizeof(reply), got, &ngot);
	if (n <= 0)
		return -1;
	e = strstr(reply, "errno=");
	return e ? atoi(e + 6) : -1;
}

static void fsd_kill(void)
{
	int st;

	kill(fsd_pid, SIGKILL);
	waitpid(fsd_pid, &st, 0);
	close(ctl);
	ctl = -1;
}

static int sealed_memfd(size_t size, bool seal)
{
	int fd = memfd_create("t", MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		return -1;
	if (seal)
		fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	return fd;
}

static int region_fd, bell_fd, state_fd, image_fd;
static void *rg;

/* The header librettod writes in a fresh (zeroed) region of session id. */
static void region_head(struct fsd_region *h, uint64_t session)
{
	h->magic = FSD_REGION_MAGIC;
	h->version = FSD_REGION_VERSION;
	h->nslots = FSD_SLOTS;
	h->slot_data = FSD_SLOT_DATA;
	h->size = fsd_region_size();
	h->session = session;
}

static void session_make(void)
{
	struct fsd_region *h;

	region_fd = sealed_memfd(fsd_region_size(), true);
	state_fd = sealed_memfd(fsd_state_size(), true);
	bell_fd = eventfd(0, 0);
	image_fd = memfd_create("image", 0);
	rg = mmap(NULL, fsd_region_size(), PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, 0);
	h = rg;
	region_head(h, 1);
}

static int session_add(int adopt)
{
	int fds[3] = { region_fd, bell_fd, state_fd };
	char text[200];

	snprintf(text, sizeof(text), "session_add\nid=1\nvol=1\npid=%d\nuid=0\ngid=0\nadopt=%d\n",
		 (int)getpid(), adopt);
	return req(text, fds, 3);
}

static int vol_add(void)
{
	return req("vol_add\nid=1\nmount=/data\nimage=fake\n", &image_fd, 1);
}

/* Post a raw slot (as a hostile client would) and wait for fsd's answer. */
static int64_t raw_post(unsigned i, const struct fsd_slot *s)
{
	struct fsd_slot *slot = fsd_slot_at(rg, i);
	uint64_t one = 1;

	memcpy((char *)slot + 4, (const char *)s + 4, sizeof(*s) - 4);
	__atomic_store_n(&slot->state, FSD_SLOT_POSTED, __ATOMIC_RELEASE);
	if (write(bell_fd, &one, 8) != 8)
		return -9999;
	for (int k = 0; k < 5000; k++) {
		if (__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) == FSD_SLOT_DONE) {
			int64_t ret = slot->ret;

			__atomic_store_n(&slot->state, FSD_SLOT_FREE, __ATOMIC_RELEASE);
			return ret;
		}
		usleep(1000);
	}
	return -9999;
}

static void test_refusals(void)
{
	int fds[3];
	int unsealed = sealed_memfd(fsd_region_size(), false);
	int notbell = memfd_create("x", 0);

	fds[0] = unsealed;
	fds[1] = bell_fd;
	fds[2] = state_fd;
	CHECK(req("session_add\nid=1\nvol=1\npid=1\nuid=0\ngid=0\nadopt=0\n", fds, 3) == EINVAL);
	CHECK(strstr(reply, "error=memfd_unsealed") != NULL);
	fds[0] = region_fd;
	fds[1] = notbell;
	CHECK(req("session_add\nid=1\nvol=1\npid=1\nuid=0\ngid=0\nadopt=0\n", fds, 3) == EINVAL);
	CHECK(strstr(reply, "error=doorbell_not_eventfd") != NULL);
	CHECK(req("session_add\nid=1\nvol=1\npid=1\nuid=0\ngid=0\nadopt=0\n", fds, 2) == EINVAL);
	CHECK(req("session_add\nid=1\nvol=77\npid=1\nuid=0\ngid=0\n", NULL, 0) == EINVAL);
	CHECK(req("frobnicate\n", NULL, 0) == EINVAL);
	CHECK(req("vol_add\nid=2\nmount=relative\n", &image_fd, 1) == EINVAL);
	/* adopt=1 of a state that was never a session's */
	fds[1] = bell_fd;
	CHECK(req("session_add\nid=1\nvol=1\npid=1\nuid=0\ngid=0\nadopt=1\n", fds, 3) == EINVAL);
	CHECK(strstr(reply, "error=state_mismatch") != NULL);
	close(unsealed);
	close(notbell);
}

static void test_client(void *b)
{
	const struct vfs_ops *o = &vfs_fsd_ops;
	size_t big = 3 * FSD_SLOT_DATA / 2 + 17;
	char *w = malloc(big), *r = malloc(big);
	vol_ino_t ino = 0, ino2 = 0;
	uint64_t end = 0;
	struct stat st;

	for (size_t k = 0; k < big; k++)
		w[k] = (char)(k * 7 + 3);
	CHECK(o->open(b, VOL_ROOT_INO, "/f", O_CREAT | O_RDWR, 0644, NULL, &ino) == 0);
	CHECK(ino > 2);
	/* Larger than a slot's area: in pieces. */
	CHECK(o->pwrite(b, ino, w, big, 0, 0, &end) == (ssize_t)big);
	CHECK(end == big);
	memset(r, 0, big);
	CHECK(o->pread(b, ino, r, big + 100, 0) == (ssize_t)big);
	CHECK(memcmp(w, r, big) == 0);
	CHECK(o->getattr(b, ino, &st) == 0 && st.st_size == (off_t)big);
	/* An append longer than the area is a short write. */
	CHECK(o->pwrite(b, ino, w, big, 0, VOL_APPEND, &end) == FSD_SLOT_DATA);
	CHECK(end == big + FSD_SLOT_DATA);
	CHECK(o->open(b, VOL_ROOT_INO, "f", O_CREAT | O_EXCL | O_RDWR, 0644, NULL, &ino2) == -EEXIST);
	CHECK(o->lookup(b, VOL_ROOT_INO, "f", 0, &ino2) == 0 && ino2 == ino);
	CHECK(o->mkdir(b, VOL_ROOT_INO, "d", 0755, NULL) == 0);
	CHECK(o->mkdir(b, VOL_ROOT_INO, "d", 0755, NULL) == -EEXIST);
	CHECK(o->hold(b, ino) == 0);
	CHECK(o->release(b, ino) == 0);
	CHECK(o->sync(b, true) == 0);
	/* The caller's credentials reach the volume (the session's were root's: any may be claimed). */
	{
		struct vol_cred nobody = { .uid = 65534, .gid = 65533 };
		vol_ino_t n = 0;

		CHECK(o->open(b, VOL_ROOT_INO, "nobody", O_CREAT | O_RDWR, 0644, &nobody, &n) == 0);
		CHECK(o->getattr(b, n, &st) == 0 && st.st_uid == 65534 && st.st_gid == 65533);
		CHECK(o->release(b, n) == 0);
	}
	/* What an open granted, and nothing more: a looked-up inode is not readable. */
	{
		vol_ino_t ro = 0, x = 0;
		char c = 'c';

		CHECK(o->open(b, VOL_ROOT_INO, "ro", O_CREAT | O_WRONLY, 0644, NULL, &ro) == 0);
		CHECK(o->pwrite(b, ro, &c, 1, 0, 0, NULL) == 1);
		CHECK(o->pread(b, ro, &c, 1, 0) == -EBADF);
		CHECK(o->release(b, ro) == 0);
		CHECK(o->lookup(b, VOL_ROOT_INO, "ro", 0, &x) == 0 && x == ro);
		CHECK(o->pread(b, ro, &c, 1, 0) == -EBADF);
		CHECK(o->pwrite(b, ro, &c, 1, 0, 0, NULL) == -EBADF);
		CHECK(o->getattr(b, ro, &st) == 0 && st.st_size == 1);
		CHECK(o->open(b, VOL_ROOT_INO, "ro", O_RDONLY, 0, NULL, &x) == 0);
		CHECK(o->pread(b, ro, &c, 1, 0) == 1 && c == 'c');
		CHECK(o->pwrite(b, ro, &c, 1, 0, 0, NULL) == -EBADF);
		CHECK(o->release(b, ro) == 0);
		CHECK(o->release(b, ro) == -EBADF);
	}
	free(w);
	free(r);
}

/*
 * A forked child's POSIX lock goes with the child (fsd finds its process
 * gone when the lock is in the way); a lock of an open file description
 * (no pid in its owner) stays.
 */
static void test_dead_owner(void *b)
{
	const struct vfs_ops *o = &vfs_fsd_ops;
	uint64_t me = FSD_OWNER_PID | (uint32_t)getpid();
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	vol_ino_t ino = 0;
	int go[2], ready[2], st = 0;
	char c = 0;
	pid_t child;

	CHECK(o->open(b, VOL_ROOT_INO, "locked", O_CREAT | O_RDONLY, 0644, NULL, &ino) == 0);
	CHECK(pipe(go) == 0 && pipe(ready) == 0);
	child = fork();
	if (child == 0) {
		struct flock a = fl, d = fl;

		a.l_pid = getpid();
		d.l_start = 100;
		d.l_pid = -1;
		/* Read-only descriptor, write locks: flock's case (fcntl's rule is the client's). */
		if (o->lock(b, ino, FSD_OWNER_PID | (uint32_t)getpid(), F_SETLK, &a) != 0 ||
		    o->lock(b, ino, 0x7fff0000ull, F_SETLK, &d) != 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(0);   /* without unlocking, as a process that just exits */
	}
	CHECK(read(ready[0], &c, 1) == 1);
	fl.l_pid = getpid();
	CHECK(o->lock(b, ino, me, F_SETLK, &fl) == -EAGAIN);
	fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	CHECK(o->lock(b, ino, me, F_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_pid == child);
	CHECK(write(go[1], "x", 1) == 1);
	CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	CHECK(o->lock(b, ino, me, F_GETLK, &fl) == 0 && fl.l_type == F_UNLCK);
	fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10,
			     .l_pid = getpid() };
	CHECK(o->lock(b, ino, me, F_SETLK, &fl) == 0);
	fl = (struct flock){ .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1,
			     .l_pid = getpid() };
	CHECK(o->lock(b, ino, me, F_SETLK, &fl) == -EAGAIN);
	CHECK(req("stats\n", NULL, 0) == 0 && strstr(reply, "dead_owners=1\n") != NULL);
	CHECK(o->unlock_owner(b, ino, me) == 0);
	CHECK(o->unlock_owner(b, ino, 0x7fff0000ull) == 0);
	CHECK(o->release(b, ino) == 0);
	close(go[0]);
	close(go[1]);
	close(ready[0]);
	close(ready[1]);
}

/* A session that never was root: its requests may claim its own ids, never root's. */
static void test_nonroot_session(void)
{
	const struct vfs_ops *o = &vfs_fsd_ops;
	int rfd = sealed_memfd(fsd_region_size(), true), sfd = sealed_memfd(fsd_state_size(), true);
	int bfd = eventfd(0, 0), fds[3] = { rfd, bfd, sfd };
	struct vol_cred root = { .uid = 0, .gid = 0 }, user = { .uid = 1000, .gid = 100 };
	struct fsd_region *h = mmap(NULL, fsd_region_size(), PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
	char entry[200];
	vol_ino_t ino = 0;
	void *b2 = NULL;

	CHECK(h != MAP_FAILED);
	if (h == MAP_FAILED)
		return;
	region_head(h, 2);
	CHECK(req("session_add\nid=2\nvol=1\npid=1\nuid=1000\ngid=100\nuids=1000,1000,x\n", fds, 3) ==
	      EINVAL);
	CHECK(req("session_add\nid=2\nvol=1\npid=1\nuid=1000\ngid=100\nuids=1000,1000,1000,1000\n"
		  "gids=100,100,100,100\nadopt=0\n", fds, 3) == 0);
	snprintf(entry, sizeof(entry), "mount=/data,storage=indirect,vol=1,session=2,fds=%d.%d", rfd, bfd);
	CHECK(vfs_fsd_attach(entry, &b2) == 0);
	if (b2) {
		CHECK(o->open(b2, VOL_ROOT_INO, "user2", O_CREAT | O_RDWR, 0644, &root, &ino) == -EPERM);
		CHECK(o->mkdir(b2, VOL_ROOT_INO, "dir2", 0755, &root) == -EPERM);
		CHECK(o->open(b2, VOL_ROOT_INO, "user2", O_CREAT | O_RDWR, 0644, &user, &ino) == 0);
		/* No credentials named: the session's own. */
		CHECK(o->release(b2, ino) == 0);
		CHECK(o->open(b2, VOL_ROOT_INO, "user3", O_CREAT | O_RDWR, 0644, NULL, &ino) == 0);
		CHECK(o->release(b2, ino) == 0);
		free(b2);
	}
	CHECK(req("session_del\nid=2\n", NULL, 0) == 0);
	munmap(h, fsd_region_size());
	close(rfd);
	close(bfd);
	close(sfd);
}

/* Many threads, and a forked child, share the session's slots (claimed atomically). */
#define TH 40          /* more threads than slots: some wait for a free one */
#define TH_OPS 200

static void *thread_main(void *arg)
{
	void *b = arg;
	long bad = 0;

	for (int k = 0; k < TH_OPS; k++) {
		vol_ino_t ino = 0;
		struct stat st;

		if (vfs_fsd_ops.lookup(b, VOL_ROOT_INO, "f", 0, &ino) || ino <= 2 ||
		    vfs_fsd_ops.getattr(b, ino, &st) || !S_ISREG(st.st_mode))
			bad++;
	}
	return (void *)bad;
}

static void test_concurrent(void *b)
{
	pthread_t t[TH];
	long bad = 0;
	pid_t child;
	int st = 0;

	child = fork();
	if (child == 0)
		_exit(thread_main(b) == NULL ? 0 : 1);
	for (int i = 0; i < TH; i++)
		pthread_create(&t[i], NULL, thread_main, b);
	for (int i = 0; i < TH; i++) {
		void *r;

		pthread_join(t[i], &r);
		bad += (long)r;
	}
	CHECK(bad == 0);
	CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* Every slot is free again. */
	for (unsigned i = 0; i < FSD_SLOTS; i++)
		CHECK(fsd_slot_at(rg, i)->state == FSD_SLOT_FREE);
}

/* Garbage in every field, many times: every request answered, fsd alive. */
static void test_hostile(void)
{
	struct fsd_slot s;
	unsigned answered = 0;
	int64_t ret;

	memset(&s, 0, sizeof(s));
	s.id = 55;
	s.op = FSD_OP_PREAD;
	s.ino = 12345;
	s.len = 10;
	CHECK(raw_post(5, &s) == -EBADF);
	s.op = 99;
	CHECK(raw_post(5, &s) == -EINVAL);
	s.op = FSD_OP_PREAD;
	s.ino = 2;
	s.len = FSD_SLOT_DATA * 4;
	CHECK(raw_post(5, &s) == -EINVAL);
	srandom(42);
	for (int k = 0; k < 3000; k++) {
		uint32_t *p = (uint32_t *)&s;
		uint8_t *d = fsd_data_at(rg, 6);

		for (unsigned j = 0; j < sizeof(s) / 4; j++)
			p[j] = (uint32_t)random();
		/* Often a real op, so the deeper checks run too. */
		if (k % 2)
			s.op = 1 + (uint32_t)random() % (FSD_OP_MAX - 1);
		if (k % 3 == 0)
			s.ino = 2;
		if (k % 5 == 0)
			s.path_len = (uint32_t)random() % 64;
		for (unsigned j = 0; j < 256; j++)
			d[j] = (uint8_t)random();
		ret = raw_post(6, &s);
		if (ret != -9999)
			answered++;
	}
	CHECK(answered == 3000);
	CHECK(req("ping\n", NULL, 0) == 0);
	CHECK(strstr(reply, "pong=") != NULL);
	/* The region cannot be shrunk under fsd (sealed). */
	CHECK(ftruncate(region_fd, 4096) < 0);
	CHECK(req("stats\n", NULL, 0) == 0);
	CHECK(strstr(reply, "refused=") != NULL);
}

/* The fsd dies; a request posted meanwhile is answered by its successor. */
struct waiter {
	void *b;
	int ret;
	vol_ino_t ino;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = vfs_fsd_ops.lookup(w->b, VOL_ROOT_INO, "", AT_EMPTY_PATH, &w->ino);
	return NULL;
}

static void test_adopt(void *b)
{
	const struct vfs_ops *o = &vfs_fsd_ops;
	struct fsd_state *st = mmap(NULL, fsd_state_size(), PROT_READ | PROT_WRITE, MAP_SHARED,
				    state_fd, 0);
	struct fsd_region *h = rg;
	uint32_t gen0 = h->generation;
	vol_ino_t ino = 0;
	struct waiter w = { .b = b, .ret = 1 };
	pthread_t t;
	char buf[8];
	struct fsd_slot s;

	CHECK(o->open(b, VOL_ROOT_INO, "g", O_CREAT | O_RDWR, 0644, NULL, &ino) == 0);
	fsd_kill();
	pthread_create(&t, NULL, waiter_main, &w);
	usleep(200000);
	CHECK(w.ret == 1);   /* still waiting in its slot */

	/*
	 * Two requests the dead fsd had "run": a mkdir recorded COMMITTED
	 * with a result no real mkdir gives (42): the successor must publish
	 * it without running it; and one recorded DONE in a transaction that
	 * never committed: the successor must run it (the fake volume answers 0).
	 */
	memset(&s, 0, sizeof(s));
	s.op = FSD_OP_MKDIR;
	s.ino = VOL_ROOT_INO;
	s.id = 9001;
	s.path_len = 1;
	memcpy(fsd_data_at(rg, 20), "x", 2);
	memcpy(fsd_data_at(rg, 21), "y", 2);
	memcpy((char *)fsd_slot_at(rg, 20) + 4, (char *)&s + 4, sizeof(s) - 4);
	s.id = 9002;
	memcpy((char *)fsd_slot_at(rg, 21) + 4, (char *)&s + 4, sizeof(s) - 4);
	st->rec[20] = (struct fsd_rec){ .id = 9001, .op = FSD_OP_MKDIR, .status = FSD_REC_COMMITTED,
					.ret = 42, .seq = 3 };
	st->rec[21] = (struct fsd_rec){ .id = 9002, .op = FSD_OP_MKDIR, .status = FSD_REC_DONE,
					.ret = 43, .seq = 1000 };
	__atomic_store_n(&fsd_slot_at(rg, 20)->state, FSD_SLOT_POSTED, __ATOMIC_RELEASE);
	__atomic_store_n(&fsd_slot_at(rg, 21)->state, FSD_SLOT_POSTED, __ATOMIC_RELEASE);

	fsd_start();
	CHECK(vol_add() == 0);
	CHECK(session_add(1) == 0);
	pthread_join(t, NULL);
	CHECK(w.ret == 0 && w.ino == VOL_ROOT_INO);
	CHECK(h->generation == gen0 + 1);
	for (int k = 0; k < 2000 && (__atomic_load_n(&fsd_slot_at(rg, 21)->state, __ATOMIC_ACQUIRE) !=
				     FSD_SLOT_DONE); k++)
		usleep(1000);
	CHECK(fsd_slot_at(rg, 20)->state == FSD_SLOT_DONE && fsd_slot_at(rg, 20)->ret == 42);
	CHECK(fsd_slot_at(rg, 21)->state == FSD_SLOT_DONE && fsd_slot_at(rg, 21)->ret == 0);
	fsd_slot_at(rg, 20)->state = FSD_SLOT_FREE;
	fsd_slot_at(rg, 21)->state = FSD_SLOT_FREE;
	/* The fake volume lost the inode with the old fsd: its handle is stale. */
	CHECK(o->pread(b, ino, buf, sizeof(buf), 0) == -ESTALE);
	CHECK(o->release(b, ino) == 0);
	CHECK(o->pread(b, ino, buf, sizeof(buf), 0) == -EBADF);
	munmap(st, fsd_state_size());
}

/*
 * Regression (fsd_kill's "record LOST"): the successor adopts session 1,
 * serves it and commits, and only then adopts session 2, whose request
 * the dead fsd had run in a transaction that never committed (recorded
 * DONE with sequence 1, the fake volume's first).  By then the live
 * committed sequence has passed 1; the successor must judge the record by
 * what was committed when it mounted (0) and run the request, not publish
 * the recorded answer (43) of a change the journal lost.
 */
static void test_adopt_late(void *b)
{
	const struct vfs_ops *o = &vfs_fsd_ops;
	int r2 = sealed_memfd(fsd_region_size(), true), s2 = sealed_memfd(fsd_state_size(), true);
	int b2 = eventfd(0, 0), fds[3] = { r2, b2, s2 };
	void *rg2 = mmap(NULL, fsd_region_size(), PROT_READ | PROT_WRITE, MAP_SHARED, r2, 0);
	struct fsd_state *st2 = mmap(NULL, fsd_state_size(), PROT_READ | PROT_WRITE, MAP_SHARED, s2, 0);
	struct fsd_region *h2 = rg2;
	struct fsd_slot s, *slot;
	char text[200];
	uint64_t one = 1;
	vol_ino_t ino;

	CHECK(rg2 != MAP_FAILED && st2 != MAP_FAILED);
	if (rg2 == MAP_FAILED || st2 == MAP_FAILED)
		return;
	region_head(h2, 2);
	st2->magic = FSD_STATE_MAGIC;
	st2->version = FSD_REGION_VERSION;
	st2->session = 2;
	st2->vol = 1;
	fsd_kill();

	memset(&s, 0, sizeof(s));
	s.op = FSD_OP_MKDIR;
	s.ino = VOL_ROOT_INO;
	s.id = 9101;
	s.path_len = 4;
	memcpy(fsd_data_at(rg2, 0), "late", 5);
	slot = fsd_slot_at(rg2, 0);
	memcpy((char *)slot + 4, (char *)&s + 4, sizeof(s) - 4);
	st2->rec[0] = (struct fsd_rec){ .id = 9101, .op = FSD_OP_MKDIR, .status = FSD_REC_DONE,
					.ret = 43, .seq = 1 };
	__atomic_store_n(&slot->state, FSD_SLOT_POSTED, __ATOMIC_RELEASE);

	fsd_start();
	CHECK(vol_add() == 0);
	CHECK(session_add(1) == 0);
	/* Session 1 works and commits (the fake volume's sequence moves to 2). */
	CHECK(o->mkdir(b, VOL_ROOT_INO, "early1", 0755, NULL) == 0);
	CHECK(o->mkdir(b, VOL_ROOT_INO, "early2", 0755, NULL) == 0);
	snprintf(text, sizeof(text), "session_add\nid=2\nvol=1\npid=%d\nuid=0\ngid=0\nadopt=1\n",
		 (int)getpid());
	CHECK(req(text, fds, 3) == 0);
	CHECK(write(b2, &one, 8) == 8);
	for (int k = 0; k < 2000 && __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) != FSD_SLOT_DONE; k++)
		usleep(1000);
	CHECK(slot->state == FSD_SLOT_DONE);
	CHECK(slot->ret == 0);		/* run again, not the recorded 43 */
	CHECK(o->lookup(b, VOL_ROOT_INO, "late", 0, &ino) == 0);
	CHECK(st2->rec[0].status == FSD_REC_PUBLISHED);
	slot->state = FSD_SLOT_FREE;
	CHECK(req("session_del\nid=2\n", NULL, 0) == 0);
	munmap(rg2, fsd_region_size());
	munmap(st2, fsd_state_size());
	close(r2);
	close(s2);
	close(b2);
}

int main(int argc, char **argv)
{
	char entry[200];
	void *b = NULL;
	int st;

	test_decode();
	test_cred_check();
	if (argc < 2) {
		fprintf(stderr, "usage: test_fsd_proto FSD-BINARY (over the fake volume)\n");
		return failures ? 1 : 77;
	}
	fsd_path = argv[1];
	signal(SIGPIPE, SIG_IGN);
	session_make();
	fsd_start();
	CHECK(vol_add() == 0);
	test_refusals();
	CHECK(session_add(0) == 0);
	CHECK(((struct fsd_region *)rg)->flags & FSD_REGION_F_UP);
	snprintf(entry, sizeof(entry), "mount=/data,storage=indirect,image=/x.img,vol=1,session=1,"
		 "fds=%d.%d", region_fd, bell_fd);
	CHECK(vfs_fsd_attach("mount=/data,storage=indirect,fds=1", &b) == -EINVAL);
	CHECK(vfs_fsd_attach(entry, &b) == 0);
	if (b) {
		test_client(b);
		test_dead_owner(b);
		test_nonroot_session();
		test_concurrent(b);
		test_hostile();
		test_adopt(b);
		test_adopt_late(b);
	}
	free(b);   /* the backend of a process lives until its exit; the test tidies up */
	CHECK(req("session_del\nid=1\n", NULL, 0) == 0);
	CHECK(req("vol_del\nid=1\n", NULL, 0) == 0);
	CHECK(req("quit\n", NULL, 0) == 0);
	CHECK(waitpid(fsd_pid, &st, 0) == fsd_pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (failures)
		fprintf(stderr, "test_fsd_proto: %d failures\n", failures);
	return failures ? 1 : 0;
}
