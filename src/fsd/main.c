/* libretto-fsd: the storage server; serves ext4 volumes (vol.h) to applications over shared-memory sessions (include/libretto/fsd.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

#include "common/ctlfd.h"
#include "common/kv.h"
#include "fsd/req.h"
#include "fsd/sandbox.h"
#include "libretto/ctl.h"
#include "libretto/fsd.h"
#include "vol/vol.h"

/* Epoll tags: the kind in the high 32 bits, the session index in the low. */
#define TAG_CTL 1ull
#define TAG_TICK 2ull
#define TAG_BELL 3ull

struct fsd_vol {
	bool used;
	uint64_t id;
	struct vol *v;
	char mount[PATH_MAX];
	unsigned nsessions;
	bool dirty;              /* a request of this batch changed it */
	/*
	 * vol_committed_seq() right after the mount: the last transaction the
	 * predecessor committed.  Adoption must judge the predecessor's records
	 * against this value, never against the live one: once this fsd has
	 * committed its own transactions, their sequences overtake the
	 * predecessor's uncommitted one (the replay skips past it), and a
	 * record of that lost transaction would look committed.
	 */
	uint64_t mount_committed;
};

/* Lock owners a session used, so that its end drops their locks. */
#define FSD_SESSION_OWNERS 64

struct fsd_session {
	bool used;
	uint64_t id;
	struct fsd_vol *vol;
	pid_t pid;
	struct vol_cred cred;            /* for requests that name no credentials */
	struct fsd_sess_cred may;        /* what requests that name theirs may claim */
	bool same_pidns;                 /* its process posted with the pid librettod knows */
	int region_fd, bell_fd, state_fd;
	void *rg;
	struct fsd_state *st;
	uint64_t judge;                  /* adoption: records with seq <= judge committed */
	uint64_t requests, refused;
	uint64_t owners[FSD_SESSION_OWNERS];
	unsigned nowners;
	bool owners_overflow;
};

/* One request of the current batch, between running it and publishing its answer. */
struct fsd_pending {
	struct fsd_session *s;
	unsigned slot;
	bool modifies;
	struct fsd_wire_lock rlk;
};

static struct {
	int ctl, epfd, tick_fd;
	struct fsd_vol vols[FSD_MAX_VOLS];
	struct fsd_session sess[FSD_MAX_SESSIONS];
	struct fsd_pending batch[FSD_MAX_SESSIONS * FSD_SLOTS];
	unsigned nbatch;
	uint64_t requests, refused, commits, adopted, replayed, pings, dead_owners;
	bool quit;
	char msg_in[FSD_MSG_MAX], msg_out[FSD_MSG_MAX];
	struct fsd_req req;
	uint8_t wbuf[FSD_SLOT_DATA];
} F = { .ctl = -1, .epfd = -1, .tick_fd = -1 };

static void fsd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fsd_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "libretto: fsd: %s\n", line);
}

/*
 * Weak stand-ins for the journal sequence pair of vol.h, for a vol library
 * that does not have them yet: 0 means "cannot tell", and fsd then runs an
 * unanswered request of a crashed predecessor again instead of publishing
 * its recorded result (safe for every request but the non-idempotent ones,
 * which may then see EEXIST/ENOENT).  The real ones override these.
 */
__attribute__((weak)) uint64_t vol_running_seq(struct vol *v)
{
	(void)v;
	return 0;
}

__attribute__((weak)) uint64_t vol_committed_seq(struct vol *v)
{
	(void)v;
	return 0;
}

/* ---- the batch: run, commit, publish ---- */

/*
 * Drop the POSIX locks of every process that no longer exists among the
 * owners of the sessions on fv (Linux releases a process's locks when it
 * exits; a client process that ends without closing its files, as a
 * forked child calling _exit does, cannot tell fsd).  Only for sessions
 * whose process posted with the pid librettod gave: then fsd and the
 * application see the same pids, and kill(pid, 0) failing with ESRCH means
 * the process is gone (EPERM: it exists).  A zombie, not yet waited for,
 * still counts as alive; a reused pid keeps the dead one's locks.
 * Returns how many owners were dropped.
 */
static unsigned reap_dead_owners(struct fsd_vol *fv)
{
	unsigned dropped = 0;

	for (unsigned k = 0; k < FSD_MAX_SESSIONS; k++) {
		struct fsd_session *s = &F.sess[k];

		if (!s->used || s->vol != fv || !s->same_pidns)
			continue;
		for (unsigned i = 0; i < s->nowners;) {
			uint64_t o = s->owners[i];
			pid_t pid = (pid_t)(uint32_t)o;

			if (!(o & FSD_OWNER_PID) || pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH) {
				i++;
				continue;
			}
			(void)vol_unlock_owner(fv->v, 0, o);
			s->owners[i] = s->owners[--s->nowners];
			dropped++;
		}
	}
	F.dead_owners += dropped;
	return dropped;
}

/*
 * Keep sessions' lock owners apart: the session id (16 bits) in bits
 * 47-62, under the client's bit 63 (a process's POSIX locks) and above its
 * 47 low bits (a pid, or an open file description's address).
 */
static uint64_t lock_owner(struct fsd_session *s, uint64_t owner)
{
	uint64_t o = (owner & FSD_OWNER_PID) | ((s->id & 0xffff) << 47) |
		     (owner & ((1ull << 47) - 1));

	for (unsigned i = 0; i < s->nowners; i++)
		if (s->owners[i] == o)
			return o;
	if (s->nowners == FSD_SESSION_OWNERS)
		(void)reap_dead_owners(s->vol);
	if (s->nowners < FSD_SESSION_OWNERS)
		s->owners[s->nowners++] = o;
	else
		s->owners_overflow = true;
	return o;
}

/* A lock request found a conflict: whether it is with a lock still in force. */
static bool lock_conflict(int cmd, int64_t ret, const struct flock *fl)
{
	return cmd == F_GETLK ? ret == 0 && fl->l_type != F_UNLCK : ret == -EAGAIN;
}

static void wire_to_flock(const struct fsd_wire_lock *w, struct flock *fl)
{
	memset(fl, 0, sizeof(*fl));
	fl->l_type = w->type;
	fl->l_whence = w->whence;
	fl->l_start = w->start;
	fl->l_len = w->len;
	fl->l_pid = w->pid;
}

static void flock_to_wire(const struct flock *fl, struct fsd_wire_lock *w)
{
	w->type = fl->l_type;
	w->whence = fl->l_whence;
	w->start = fl->l_start;
	w->len = fl->l_len;
	w->pid = fl->l_pid;
}

/*
 * Run one validated request on the volume.  Output bytes go straight into
 * the slot's data area (the application only ever reads them); results in
 * rec.  Never touches the handle table (that is apply()'s, after commit).
 */
static void run_req(struct fsd_session *s, const struct fsd_req *r, const struct vol_cred *cr,
		    uint8_t *data, struct fsd_rec *rec, struct fsd_wire_lock *rlk)
{
	const struct fsd_slot *q = &r->s;
	struct vol *v = s->vol->v;
	int64_t ret = 0;
	vol_ino_t ino = 0;
	uint64_t u = 0;

	switch (q->op) {
	case FSD_OP_SYNC:
		ret = vol_sync(v, q->flags != 0);
		break;
	case FSD_OP_LOOKUP:
		ret = vol_lookup(v, q->ino, r->path, q->flags, &ino);
		rec->r0 = ino;
		rec->ino = ino;
		break;
	case FSD_OP_OPEN:
		ret = vol_open(v, q->ino, r->path, q->flags, q->mode, cr, &ino);
		rec->r0 = ino;
		rec->ino = ino;
		rec->oflags = q->flags;
		break;
	case FSD_OP_HOLD:
		ret = vol_hold(v, q->ino);
		rec->ino = q->ino;
		break;
	case FSD_OP_RELEASE:
		/* The reference is dropped by apply(), with the handle's. */
		rec->ino = q->ino;
		break;
	case FSD_OP_PREAD:
		ret = vol_pread(v, q->ino, data, q->len, q->off);
		break;
	case FSD_OP_PWRITE:
		/* The payload is copied first: vol reads it more than once, perhaps. */
		memcpy(F.wbuf, data, q->len);
		ret = vol_pwrite(v, q->ino, F.wbuf, q->len, q->off, (unsigned)q->flags, &u);
		rec->r0 = u;
		break;
	case FSD_OP_GETATTR: {
		struct stat st;

		ret = vol_getattr(v, q->ino, &st);
		if (ret == 0)
			memcpy(data, &st, sizeof(st));
		break;
	}
	case FSD_OP_SETATTR: {
		struct vol_setattr sa = {
			.valid = q->attr.valid, .mode = q->attr.mode, .uid = q->attr.uid,
			.gid = q->attr.gid, .size = q->attr.size,
			.atime = { .tv_sec = q->attr.atime_sec, .tv_nsec = q->attr.atime_nsec },
			.mtime = { .tv_sec = q->attr.mtime_sec, .tv_nsec = q->attr.mtime_nsec },
		};

		ret = vol_setattr(v, q->ino, &sa, cr);
		break;
	}
	case FSD_OP_ACCESS:
		ret = vol_access(v, q->ino, q->flags, cr);
		break;
	case FSD_OP_FSYNC:
		ret = vol_fsync(v, q->ino, q->flags != 0);
		break;
	case FSD_OP_READDIR:
		u = q->off;
		ret = vol_readdir(v, q->ino, &u, data, q->len);
		rec->r0 = u;
		break;
	case FSD_OP_MKDIR:
		ret = vol_mkdir(v, q->ino, r->path, q->mode, cr);
		break;
	case FSD_OP_UNLINK:
		ret = vol_unlink(v, q->ino, r->path, q->flags, cr);
		break;
	case FSD_OP_RENAME:
		ret = vol_rename(v, q->ino, r->path, q->ino2, r->path2, (unsigned)q->flags, cr);
		break;
	case FSD_OP_LINK:
		ret = vol_link(v, q->ino, q->ino2, r->path, cr);
		break;
	case FSD_OP_SYMLINK:
		ret = vol_symlink(v, r->path, q->ino, r->path2, cr);
		break;
	case FSD_OP_READLINK:
		ret = vol_readlink(v, q->ino, (char *)data, q->len);
		break;
	case FSD_OP_STATFS: {
		struct statfs sf;

		ret = vol_statfs(v, &sf);
		if (ret == 0)
			memcpy(data, &sf, sizeof(sf));
		break;
	}
	case FSD_OP_FALLOCATE:
		ret = vol_fallocate(v, q->ino, q->flags, q->off, q->len);
		break;
	case FSD_OP_SEEK_DATA:
		ret = vol_seek_data(v, q->ino, q->off, q->flags);
		break;
	case FSD_OP_LOCK: {
		uint64_t owner = lock_owner(s, q->owner);
		struct flock fl;

		wire_to_flock(&q->lk, &fl);
		ret = vol_lock(v, q->ino, owner, q->flags, &fl);
		/* In the way: perhaps a dead process's lock; if any went, ask again. */
		if (lock_conflict(q->flags, ret, &fl) && reap_dead_owners(s->vol)) {
			wire_to_flock(&q->lk, &fl);
			ret = vol_lock(v, q->ino, owner, q->flags, &fl);
		}
		flock_to_wire(&fl, rlk);
		break;
	}
	case FSD_OP_UNLOCK_OWNER:
		ret = vol_unlock_owner(v, q->ino, lock_owner(s, q->owner));
		break;
	default:
		ret = -EINVAL;
		break;
	}
	rec->ret = ret;
}

/*
 * The handle table's share of a finished request: an open reference taken
 * (OPEN, HOLD), dropped (RELEASE) or an inode made nameable (LOOKUP).
 * adopting: the request ran in a dead predecessor, whose volume references
 * died with it, so references are taken again here.  May turn a success
 * into -ENFILE (table full of open references).
 */
static void apply(struct fsd_session *s, struct fsd_rec *rec, bool adopting)
{
	struct vol *v = s->vol->v;
	struct fsd_handle *h;
	uint32_t gen = 0;

	if (rec->ret < 0)
		return;
	switch (rec->op) {
	case FSD_OP_LOOKUP:
	case FSD_OP_OPEN:
	case FSD_OP_HOLD:
		if (rec->ino == 0)
			break;
		(void)vol_generation(v, rec->ino, &gen);
		h = fsd_handle_get(s->st, rec->ino, gen);
		if (!h) {
			if (rec->op != FSD_OP_LOOKUP && !adopting)
				vol_release(v, rec->ino);
			rec->ret = -ENFILE;
			break;
		}
		if (rec->op == FSD_OP_LOOKUP)
			break;
		if (h->refs == 0) {
			/* A looked-up entry may name an inode reused since: take the new generation. */
			h->gen = gen;
			h->flags = 0;
		}
		if (adopting && vol_hold(v, rec->ino) < 0) {
			rec->ret = -ESTALE;
			break;
		}
		h->refs++;
		/* What vol_open checked is what the session may do with the inode. */
		if (rec->op == FSD_OP_OPEN && !(rec->oflags & O_PATH)) {
			int acc = rec->oflags & O_ACCMODE;

			if (acc == O_RDONLY || acc == O_RDWR)
				h->flags |= FSD_HANDLE_READ;
			if (acc == O_WRONLY || acc == O_RDWR)
				h->flags |= FSD_HANDLE_WRITE;
		}
		break;
	case FSD_OP_RELEASE:
		h = fsd_handle_find(s->st, rec->ino);
		if (!h || h->refs == 0)
			break;
		h->refs--;
		if (!(h->flags & FSD_HANDLE_STALE))
			vol_release(v, rec->ino);
		if (h->refs == 0)
			h->flags &= ~(FSD_HANDLE_READ | FSD_HANDLE_WRITE);
		if (h->refs == 0 && (h->flags & FSD_HANDLE_STALE))
			memset(h, 0, sizeof(*h));
		break;
	default:
		break;
	}
}

static void futex_wake(uint32_t *word)
{
	/* Shared futex (no FUTEX_PRIVATE_FLAG): the waiter is another process. */
	syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Write the answer into the slot and wake its waiter. */
static void publish(struct fsd_session *s, unsigned i, int64_t ret, uint64_t r0, uint64_t r1,
		    const struct fsd_wire_lock *rlk)
{
	struct fsd_slot *slot = fsd_slot_at(s->rg, i);

	slot->ret = ret;
	slot->r0 = r0;
	slot->r1 = r1;
	if (rlk)
		slot->rlk = *rlk;
	/* Pairs with the client's acquire load of state: results before DONE. */
	__atomic_store_n(&slot->state, FSD_SLOT_DONE, __ATOMIC_RELEASE);
	futex_wake(&slot->state);
}

/* Take slot i of session s (it is POSTED): validate, run, and queue it for commit. */
static void take(struct fsd_session *s, unsigned i)
{
	struct fsd_req *r = &F.req;
	struct fsd_rec *rec = &s->st->rec[i];
	struct fsd_pending *p;
	const char *why;
	int err;

	struct vol_cred cred = s->cred;

	s->requests++;
	F.requests++;
	err = fsd_req_decode(fsd_slot_at(s->rg, i), fsd_data_at(s->rg, i), r, &why);
	if (!err)
		err = fsd_req_check_handles(s->st, r);
	if (!err && r->has_cred) {
		err = fsd_cred_check(&s->may, &r->cred);
		cred.uid = r->cred.uid;
		cred.gid = r->cred.gid;
		cred.ngroups = r->cred.ngroups;
		memcpy(cred.groups, r->cred.groups, sizeof(cred.groups));
	}
	if (!err && !s->same_pidns && (pid_t)(r->s.owner_tag >> 32) == s->pid)
		s->same_pidns = true;
	if (err) {
		s->refused++;
		F.refused++;
		rec->status = FSD_REC_NONE;
		publish(s, i, err, 0, 0, NULL);
		return;
	}
	memset(rec, 0, sizeof(*rec));
	rec->id = r->s.id;
	rec->op = r->s.op;
	rec->status = FSD_REC_RUNNING;
	p = &F.batch[F.nbatch++];
	p->s = s;
	p->slot = i;
	p->modifies = fsd_req_modifies(r);
	memset(&p->rlk, 0, sizeof(p->rlk));
	run_req(s, r, &cred, fsd_data_at(s->rg, i), rec, &p->rlk);
	if (p->modifies) {
		rec->seq = vol_running_seq(s->vol->v);
		s->vol->dirty = true;
	}
	rec->status = FSD_REC_DONE;
}

/*
 * Group commit: every volume changed by the batch commits once, then every
 * answer of the batch is published.  A failed commit turns the answers of
 * the requests that changed that volume into -EIO (their change may be
 * lost), never into a success that is not on the journal.
 */
static void commit_and_publish(void)
{
	for (unsigned i = 0; i < FSD_MAX_VOLS; i++) {
		struct fsd_vol *fv = &F.vols[i];

		if (!fv->used || !fv->dirty)
			continue;
		fv->dirty = false;
		if (vol_sync(fv->v, false) < 0) {
			fsd_log("volume %llu (%s): commit failed: answering -EIO",
				(unsigned long long)fv->id, fv->mount);
			for (unsigned k = 0; k < F.nbatch; k++)
				if (F.batch[k].modifies && F.batch[k].s->vol == fv)
					F.batch[k].s->st->rec[F.batch[k].slot].ret = -EIO;
		} else {
			F.commits++;
		}
	}
	/*
	 * Every record of the batch says COMMITTED before any answer goes
	 * out: a crash from here on publishes the recorded results, so the
	 * window in which a successor cannot tell (without the volume's
	 * sequence numbers) is only this loop.
	 */
	for (unsigned k = 0; k < F.nbatch; k++)
		F.batch[k].s->st->rec[F.batch[k].slot].status = FSD_REC_COMMITTED;
	for (unsigned k = 0; k < F.nbatch; k++) {
		struct fsd_pending *p = &F.batch[k];
		struct fsd_rec *rec = &p->s->st->rec[p->slot];

		apply(p->s, rec, false);
		rec->status = FSD_REC_APPLIED;
		publish(p->s, p->slot, rec->ret, rec->r0, rec->r1, &p->rlk);
		rec->status = FSD_REC_PUBLISHED;
	}
	F.nbatch = 0;
}

/* One pass over every session's slots.  Returns the number of requests taken. */
static unsigned serve_batch(void)
{
	unsigned n = 0;

	for (unsigned k = 0; k < FSD_MAX_SESSIONS; k++) {
		struct fsd_session *s = &F.sess[k];

		if (!s->used)
			continue;
		for (unsigned i = 0; i < FSD_SLOTS; i++) {
			struct fsd_slot *slot = fsd_slot_at(s->rg, i);

			/* Pairs with the client's release store of POSTED. */
			if (__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) != FSD_SLOT_POSTED)
				continue;
			take(s, i);
			n++;
		}
	}
	if (F.nbatch)
		commit_and_publish();
	return n;
}

/* ---- sessions and volumes ---- */

static struct fsd_vol *vol_by_id(uint64_t id)
{
	for (unsigned i = 0; i < FSD_MAX_VOLS; i++)
		if (F.vols[i].used && F.vols[i].id == id)
			return &F.vols[i];
	return NULL;
}

static struct fsd_session *sess_by_id(uint64_t id)
{
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++)
		if (F.sess[i].used && F.sess[i].id == id)
			return &F.sess[i];
	return NULL;
}

static int get_u64(const struct kv *kv, const char *key, uint64_t *out)
{
	const char *s = kv_get(kv, key);
	char *end;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

static bool is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/* A memfd of at least min bytes that cannot shrink (else a truncate would SIGBUS fsd). */
static int check_memfd(int fd, size_t min, const char **why)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);

	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		*why = "memfd_unsealed";
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < min) {
		*why = "memfd_small";
		return -EINVAL;
	}
	return 0;
}

static int cmd_vol_add(const struct kv *kv, const int *fds, int nfds, const char **why)
{
	struct fsd_vol *fv = NULL;
	const char *mount = kv_get(kv, "mount");
	uint64_t id;
	int err;

	if (get_u64(kv, "id", &id) || id == 0 || nfds != 1 || !mount || mount[0] != '/' ||
	    strlen(mount) >= PATH_MAX) {
		*why = "bad_args";
		return -EINVAL;
	}
	if (vol_by_id(id)) {
		*why = "id_in_use";
		return -EEXIST;
	}
	for (unsigned i = 0; i < FSD_MAX_VOLS && !fv; i++)
		if (!F.vols[i].used)
			fv = &F.vols[i];
	if (!fv) {
		*why = "too_many_volumes";
		return -ENOSPC;
	}
	err = vol_mount(fds[0], mount, VOL_NO_TICK, &fv->v);
	if (err) {
		*why = "vol_mount";
		return err;
	}
	fv->used = true;
	fv->id = id;
	fv->nsessions = 0;
	fv->dirty = false;
	fv->mount_committed = vol_committed_seq(fv->v);
	snprintf(fv->mount, sizeof(fv->mount), "%s", mount);
	fsd_log("volume %llu mounted (%s at %s)", (unsigned long long)id,
		kv_get(kv, "image") ? kv_get(kv, "image") : "?", mount);
	return 0;
}

static int cmd_vol_del(const struct kv *kv, const char **why)
{
	struct fsd_vol *fv;
	uint64_t id;
	int err;

	if (get_u64(kv, "id", &id) || !(fv = vol_by_id(id))) {
		*why = "no_such_volume";
		return -ENOENT;
	}
	if (fv->nsessions) {
		*why = "volume_in_use";
		return -EBUSY;
	}
	err = vol_unmount(fv->v);
	if (err)
		fsd_log("volume %llu: unmount: %s", (unsigned long long)id, strerror(-err));
	memset(fv, 0, sizeof(*fv));
	return 0;
}

/* Parse "G[,G...]" into cred->groups. */
static int parse_groups(const char *s, struct vol_cred *cred)
{
	cred->ngroups = 0;
	while (s && *s) {
		char *end;
		unsigned long g;

		errno = 0;
		g = strtoul(s, &end, 10);
		if (errno || end == s || g > UINT32_MAX || cred->ngroups >= 16)
			return -EINVAL;
		cred->groups[cred->ngroups++] = (uint32_t)g;
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	return 0;
}

/* Parse "R,E,S,FS" (four ids) into ids; absent: all four are dflt. */
static int parse_ids4(const char *s, uint32_t dflt, uint32_t ids[4])
{
	for (unsigned i = 0; i < 4; i++)
		ids[i] = dflt;
	if (!s)
		return 0;
	for (unsigned i = 0; i < 4; i++) {
		char *end;
		unsigned long id;

		errno = 0;
		id = strtoul(s, &end, 10);
		if (errno || end == s || id > UINT32_MAX || *end != (i < 3 ? ',' : '\0'))
			return -EINVAL;
		ids[i] = (uint32_t)id;
		s = end + 1;
	}
	return 0;
}

/*
 * A restarted fsd takes a session over: re-take the open references of
 * its handles, then answer the requests the predecessor had finished from
 * its record, and leave the others POSTED for the next batch to run.
 */
static void adopt(struct fsd_session *s)
{
	struct fsd_state *st = s->st;
	struct vol *v = s->vol->v;
	uint64_t committed = s->judge;
	uint32_t n = st->nhandles < FSD_MAX_HANDLES ? st->nhandles : FSD_MAX_HANDLES;
	unsigned stale = 0, held = 0, replayed = 0, rerun = 0;

	st->nhandles = n;
	for (uint32_t i = 0; i < n; i++) {
		struct fsd_handle *h = &st->handle[i];
		uint32_t gen = 0;

		if (h->ino == 0)
			continue;
		if (vol_generation(v, h->ino, &gen) < 0 || gen != h->gen) {
			if (h->refs == 0) {
				memset(h, 0, sizeof(*h));
			} else {
				h->flags |= FSD_HANDLE_STALE;
				stale++;
			}
			continue;
		}
		if (h->flags & FSD_HANDLE_STALE)
			continue;
		for (uint32_t r = 0; r < h->refs; r++)
			if (vol_hold(v, h->ino) < 0) {
				h->flags |= FSD_HANDLE_STALE;
				stale++;
				break;
			}
		held += h->refs;
	}
	for (unsigned i = 0; i < FSD_SLOTS; i++) {
		struct fsd_slot *slot = fsd_slot_at(s->rg, i);
		struct fsd_rec *rec = &st->rec[i];
		struct fsd_slot copy;

		memcpy(&copy, slot, sizeof(copy));
		if (copy.state != FSD_SLOT_POSTED || copy.id != rec->id || copy.op != rec->op)
			continue;
		/*
		 * DONE: it ran; a change is kept only when its transaction
		 * committed (seq 0: cannot tell, run it again).  Requests that
		 * change nothing are simply run again.
		 */
		if (rec->status == FSD_REC_DONE) {
			struct fsd_req fake = { .s = copy };

			if (fsd_req_modifies(&fake) && rec->seq && rec->seq <= committed)
				rec->status = FSD_REC_COMMITTED;
			else
				/*
				 * Lost with its transaction: forget the result, so that
				 * no later fsd (whose committed sequence will have passed
				 * this one) mistakes it for a committed answer.
				 */
				rec->status = FSD_REC_NONE;
		}
		if (rec->status == FSD_REC_COMMITTED) {
			apply(s, rec, true);
			rec->status = FSD_REC_APPLIED;
		}
		if (rec->status == FSD_REC_APPLIED) {
			publish(s, i, rec->ret, rec->r0, rec->r1, NULL);
			rec->status = FSD_REC_PUBLISHED;
			replayed++;
		} else {
			rerun++;
		}
	}
	F.replayed += replayed;
	F.adopted++;
	fsd_log("session %llu adopted: %u open references re-taken, %u stale handles, "
		"%u answers replayed from the record, %u requests to run again",
		(unsigned long long)s->id, held, stale, replayed, rerun);
}

static void sess_release(struct fsd_session *s)
{
	if (s->rg)
		munmap(s->rg, fsd_region_size());
	if (s->st)
		munmap(s->st, fsd_state_size());
	if (s->bell_fd >= 0) {
		epoll_ctl(F.epfd, EPOLL_CTL_DEL, s->bell_fd, NULL);
		close(s->bell_fd);
	}
	if (s->region_fd >= 0)
		close(s->region_fd);
	if (s->state_fd >= 0)
		close(s->state_fd);
	memset(s, 0, sizeof(*s));
	s->region_fd = s->bell_fd = s->state_fd = -1;
}

static int cmd_session_add(const struct kv *kv, const int *fds, int nfds, const char **why)
{
	struct fsd_session *s = NULL;
	struct fsd_vol *fv;
	struct fsd_region *hdr;
	uint64_t id, vid, pid, uid, gid, adopt_flag = 0, judge = 0;
	struct epoll_event ev = { .events = EPOLLIN };
	unsigned idx = 0;
	int err;

	if (get_u64(kv, "id", &id) || id == 0 || id > 0xffff || get_u64(kv, "vol", &vid) ||
	    get_u64(kv, "pid", &pid) || get_u64(kv, "uid", &uid) || get_u64(kv, "gid", &gid) ||
	    uid > UINT32_MAX || gid > UINT32_MAX || nfds != 3 ||
	    (kv_get(kv, "adopt") && (get_u64(kv, "adopt", &adopt_flag) || adopt_flag > 1)) ||
	    (kv_get(kv, "committed") && get_u64(kv, "committed", &judge))) {
		*why = "bad_args";
		return -EINVAL;
	}
	if (!(fv = vol_by_id(vid))) {
		*why = "no_such_volume";
		return -ENOENT;
	}
	if (sess_by_id(id)) {
		*why = "id_in_use";
		return -EEXIST;
	}
	for (unsigned i = 0; i < FSD_MAX_SESSIONS && !s; i++)
		if (!F.sess[i].used) {
			s = &F.sess[i];
			idx = i;
		}
	if (!s) {
		*why = "too_many_sessions";
		return -ENOSPC;
	}
	err = check_memfd(fds[0], fsd_region_size(), why);
	if (!err)
		err = check_memfd(fds[2], fsd_state_size(), why);
	if (!err && !is_eventfd(fds[1])) {
		*why = "doorbell_not_eventfd";
		err = -EINVAL;
	}
	if (err)
		return err;
	memset(s, 0, sizeof(*s));
	s->region_fd = s->bell_fd = s->state_fd = -1;
	if (parse_groups(kv_get(kv, "groups"), &s->cred) ||
	    parse_ids4(kv_get(kv, "uids"), (uint32_t)uid, s->may.uids) ||
	    parse_ids4(kv_get(kv, "gids"), (uint32_t)gid, s->may.gids)) {
		*why = "bad_credentials";
		return -EINVAL;
	}
	s->may.ngroups = s->cred.ngroups;
	memcpy(s->may.groups, s->cred.groups, sizeof(s->may.groups));
	s->rg = mmap(NULL, fsd_region_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	s->st = mmap(NULL, fsd_state_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fds[2], 0);
	if (s->rg == MAP_FAILED || s->st == MAP_FAILED) {
		err = -errno;
		if (s->rg != MAP_FAILED)
			munmap(s->rg, fsd_region_size());
		if (s->st != MAP_FAILED)
			munmap(s->st, fsd_state_size());
		memset(s, 0, sizeof(*s));
		*why = "mmap";
		return err;
	}
	if (adopt_flag && (s->st->magic != FSD_STATE_MAGIC || s->st->session != id ||
			   s->st->vol != vid)) {
		munmap(s->rg, fsd_region_size());
		munmap(s->st, fsd_state_size());
		memset(s, 0, sizeof(*s));
		*why = "state_mismatch";
		return -EINVAL;
	}
	/* The doorbell is drained without blocking: O_NONBLOCK on our side of it. */
	fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
	ev.data.u64 = (TAG_BELL << 32) | idx;
	if (epoll_ctl(F.epfd, EPOLL_CTL_ADD, fds[1], &ev) < 0) {
		err = -errno;
		munmap(s->rg, fsd_region_size());
		munmap(s->st, fsd_state_size());
		memset(s, 0, sizeof(*s));
		*why = "epoll";
		return err;
	}
	s->used = true;
	s->id = id;
	s->vol = fv;
	s->pid = (pid_t)pid;
	s->cred.uid = (uint32_t)uid;
	s->cred.gid = (uint32_t)gid;
	s->region_fd = fds[0];
	s->bell_fd = fds[1];
	s->state_fd = fds[2];
	/*
	 * The records were written by the fsd that last served the session;
	 * what it committed is what the first mount after it found
	 * (committed=, from the supervisor), which is our own mount's value
	 * when that fsd was our predecessor.  Never a later value: sequences
	 * of our own commits overtake the predecessor's lost transaction.
	 */
	s->judge = kv_get(kv, "committed") ? judge : fv->mount_committed;
	if (s->judge > fv->mount_committed)
		s->judge = fv->mount_committed;
	fv->nsessions++;
	if (!adopt_flag) {
		memset(s->st, 0, sizeof(*s->st));
		s->st->magic = FSD_STATE_MAGIC;
		s->st->version = FSD_REGION_VERSION;
		s->st->session = id;
		s->st->vol = vid;
	} else {
		adopt(s);
	}
	hdr = s->rg;
	hdr->fsd_pid = (uint32_t)getpid();
	__atomic_fetch_or(&hdr->flags, FSD_REGION_F_UP, __ATOMIC_RELEASE);
	__atomic_fetch_add(&hdr->generation, 1, __ATOMIC_RELEASE);
	return 0;
}

/* The session's end: its open references and locks go. */
static void sess_drop(struct fsd_session *s)
{
	struct vol *v = s->vol->v;
	uint32_t n = s->st->nhandles < FSD_MAX_HANDLES ? s->st->nhandles : FSD_MAX_HANDLES;

	for (unsigned i = 0; i < s->nowners; i++)
		vol_unlock_owner(v, 0, s->owners[i]);
	if (s->owners_overflow)
		fsd_log("session %llu used more than %d lock owners: some locks stay until "
			"the volume is unmounted", (unsigned long long)s->id, FSD_SESSION_OWNERS);
	for (uint32_t i = 0; i < n; i++) {
		struct fsd_handle *h = &s->st->handle[i];

		if (h->ino && !(h->flags & FSD_HANDLE_STALE))
			for (uint32_t r = 0; r < h->refs; r++)
				vol_release(v, h->ino);
	}
	s->vol->nsessions--;
	sess_release(s);
}

static int cmd_session_del(const struct kv *kv, const char **why)
{
	struct fsd_session *s;
	uint64_t id;

	if (get_u64(kv, "id", &id) || !(s = sess_by_id(id))) {
		*why = "no_such_session";
		return -ENOENT;
	}
	sess_drop(s);
	return 0;
}

static void cmd_stats(struct kv_buf *b)
{
	unsigned nv = 0, ns = 0;

	for (unsigned i = 0; i < FSD_MAX_VOLS; i++)
		nv += F.vols[i].used;
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++)
		ns += F.sess[i].used;
	kv_buf_add(b, '\n', "vols", "%u", nv);
	kv_buf_add(b, '\n', "sessions", "%u", ns);
	kv_buf_add(b, '\n', "requests", "%llu", (unsigned long long)F.requests);
	kv_buf_add(b, '\n', "refused", "%llu", (unsigned long long)F.refused);
	kv_buf_add(b, '\n', "commits", "%llu", (unsigned long long)F.commits);
	kv_buf_add(b, '\n', "adopted", "%llu", (unsigned long long)F.adopted);
	kv_buf_add(b, '\n', "replayed", "%llu", (unsigned long long)F.replayed);
	kv_buf_add(b, '\n', "dead_owners", "%llu", (unsigned long long)F.dead_owners);
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++) {
		struct fsd_session *s = &F.sess[i];
		unsigned handles = 0;

		if (!s->used)
			continue;
		for (uint32_t k = 0; k < s->st->nhandles && k < FSD_MAX_HANDLES; k++)
			handles += s->st->handle[k].refs > 0;
		kv_buf_add(b, '\n', "session", "%llu", (unsigned long long)s->id);
		kv_buf_add(b, ' ', "vol", "%llu", (unsigned long long)s->vol->id);
		kv_buf_add(b, ' ', "pid", "%d", (int)s->pid);
		kv_buf_add(b, ' ', "requests", "%llu", (unsigned long long)s->requests);
		kv_buf_add(b, ' ', "refused", "%llu", (unsigned long long)s->refused);
		kv_buf_add(b, ' ', "handles", "%u", handles);
	}
}

static void quit_all(void)
{
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++)
		if (F.sess[i].used)
			sess_drop(&F.sess[i]);
	for (unsigned i = 0; i < FSD_MAX_VOLS; i++)
		if (F.vols[i].used) {
			int err = vol_unmount(F.vols[i].v);

			if (err)
				fsd_log("volume %llu: unmount: %s", (unsigned long long)F.vols[i].id,
					strerror(-err));
			memset(&F.vols[i], 0, sizeof(F.vols[i]));
		}
}

/* One control message: answer it.  Returns -1 on EOF or quit. */
static int ctl_handle(void)
{
	int fds[CTL_MAX_FDS], nfds = CTL_MAX_FDS, n, err = 0;
	const char *why = "", *cmd;
	struct kv kv;
	struct kv_buf b;
	bool keep_fds = false, stop = false;

	n = ctl_recv(F.ctl, F.msg_in, sizeof(F.msg_in), fds, &nfds);
	if (n == -EAGAIN)
		return 0;
	if (n <= 0)
		return -1;
	kv_buf_init(&b, F.msg_out, sizeof(F.msg_out));
	if (kv_parse(&kv, F.msg_in, (size_t)n) < 0 || kv.n == 0) {
		err = -EINVAL;
		why = "parse";
		goto reply;
	}
	cmd = kv.pair[0].key;
	if (!strcmp(cmd, "vol_add")) {
		err = cmd_vol_add(&kv, fds, nfds, &why);
		if (!err) {
			struct fsd_vol *fv = vol_by_id(strtoull(kv_get(&kv, "id"), NULL, 10));

			/* The supervisor keeps it for sessions a later fsd adopts (fsd.h). */
			if (fv)
				kv_buf_add(&b, '\n', "committed", "%llu",
					   (unsigned long long)fv->mount_committed);
		}
	} else if (!strcmp(cmd, "vol_del")) {
		err = cmd_vol_del(&kv, &why);
	} else if (!strcmp(cmd, "session_add")) {
		err = cmd_session_add(&kv, fds, nfds, &why);
		keep_fds = err == 0;
	} else if (!strcmp(cmd, "session_del")) {
		err = cmd_session_del(&kv, &why);
	} else if (!strcmp(cmd, "stats")) {
		cmd_stats(&b);
	} else if (!strcmp(cmd, "ping")) {
		kv_buf_add(&b, '\n', "pong", "%llu", (unsigned long long)++F.pings);
	} else if (!strcmp(cmd, "quit")) {
		quit_all();
		stop = true;
	} else {
		err = -EINVAL;
		why = "unknown_command";
	}
	kv_free(&kv);
reply:
	/* vol_add's image: vol dup'ed it.  Every other descriptor we did not keep goes. */
	if (!keep_fds)
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	if (err)
		kv_buf_add(&b, '\n', "error", "%s", why[0] ? why : "failed");
	kv_buf_add(&b, '\n', "errno", "%d", -err);
	ctl_send(F.ctl, F.msg_out, b.len, NULL, 0);
	return stop ? -1 : 0;
}

static int run(void)
{
	struct epoll_event evs[64];

	for (;;) {
		/* Right after a batch look again at once: clients post while we work. */
		int busy = serve_batch() > 0;
		int n = epoll_wait(F.epfd, evs, 64, busy ? 0 : 1000);

		if (n < 0 && errno != EINTR) {
			fsd_log("epoll_wait: %s", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64 >> 32, v;
			unsigned idx = (unsigned)evs[i].data.u64;

			if (tag == TAG_CTL) {
				if (ctl_handle() < 0) {
					quit_all();
					return 0;
				}
			} else if (tag == TAG_TICK) {
				if (read(F.tick_fd, &v, sizeof(v)) == sizeof(v))
					for (unsigned k = 0; k < FSD_MAX_VOLS; k++)
						if (F.vols[k].used)
							vol_tick(F.vols[k].v);
			} else if (tag == TAG_BELL && idx < FSD_MAX_SESSIONS && F.sess[idx].used) {
				/*
				 * Drain only; the batch scans the slots themselves.  One
				 * read takes the whole count (not a semaphore eventfd); a
				 * ring after it makes the descriptor readable again, so a
				 * second read would only ever fail with EAGAIN (one
				 * wasted system call per request).
				 */
				(void)!read(F.sess[idx].bell_fd, &v, sizeof(v));
			}
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: libretto-fsd --control-fd N [--no-sandbox]\n"
		"The storage server; started by librettod (include/libretto/fsd.h).\n");
}

int main(int argc, char **argv)
{
	struct itimerspec its = { .it_value = { .tv_sec = 1 }, .it_interval = { .tv_sec = 1 } };
	struct epoll_event ev = { .events = EPOLLIN };
	bool sandbox = true;
	const char *ctl_arg = NULL;
	int fd = -1, err = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--control-fd") && i + 1 < argc) {
			ctl_arg = argv[++i];
		} else if (!strcmp(argv[i], "--no-sandbox")) {
			sandbox = false;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!ctl_arg || (err = ctlfd_parse(ctl_arg, &fd)) == -EINVAL) {
		usage(stderr);
		return 2;
	}
	if (err) {
		fsd_log("--control-fd %d is not a SOCK_SEQPACKET socket", fd);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (unsigned i = 0; i < FSD_MAX_SESSIONS; i++)
		F.sess[i].region_fd = F.sess[i].bell_fd = F.sess[i].state_fd = -1;
	F.ctl = (int)fd;
	fcntl(F.ctl, F_SETFD, FD_CLOEXEC);
	F.epfd = epoll_create1(EPOLL_CLOEXEC);
	F.tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (F.epfd < 0 || F.tick_fd < 0 || timerfd_settime(F.tick_fd, 0, &its, NULL) < 0) {
		fsd_log("cannot create the event descriptors: %s", strerror(errno));
		return 1;
	}
	ev.data.u64 = TAG_CTL << 32;
	if (epoll_ctl(F.epfd, EPOLL_CTL_ADD, F.ctl, &ev) < 0) {
		fsd_log("epoll_ctl: %s", strerror(errno));
		return 1;
	}
	ev.data.u64 = TAG_TICK << 32;
	if (epoll_ctl(F.epfd, EPOLL_CTL_ADD, F.tick_fd, &ev) < 0) {
		fsd_log("epoll_ctl: %s", strerror(errno));
		return 1;
	}
	if (sandbox) {
		int err = fsd_sandbox();

		if (err)
			fsd_log("warning: running without the seccomp filter: %s", strerror(-err));
	}
	return run();
}
