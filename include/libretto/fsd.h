/* The storage server's protocols: supervisor <-> libretto-fsd control messages, and the application <-> fsd session region (issue 8). */
#ifndef LIBRETTO_FSD_H
#define LIBRETTO_FSD_H

#include <stddef.h>
#include <stdint.h>

/*
 * ---- Control channel (supervisor <-> fsd) ----
 *
 * Transport as netd.h: the supervisor (librettod's fsd_sup.c, or a test
 * harness) creates a SOCK_SEQPACKET socketpair and starts libretto-fsd with
 * its end as descriptor 3 (`--control-fd 3`).  One message is one request
 * or one reply, "key=value" lines, the first line of a request the command
 * alone, at most FSD_MSG_MAX bytes; descriptors travel as SCM_RIGHTS
 * (ctl_send()/ctl_recv() of src/common/kv.h) in the order each command
 * lists them.  fsd answers every request with exactly one reply, in order,
 * ending with "errno=N", preceded by "error=<word>" when N != 0.  A request
 * that fails changes nothing and its descriptors are closed.  EOF on the
 * control socket is `quit`.
 *
 *   vol_add      keys: id= (non-zero), mount= (absolute), image= (for
 *                messages only)   fds: image
 *                fsd mounts the image with vol_mount(VOL_NO_TICK) (replaying
 *                the journal of a crashed predecessor) and ticks it itself.
 *                Reply: committed=N, vol_committed_seq() right after the
 *                mount: the last transaction the previous fsd committed.
 *                Errors: EEXIST id in use, EINVAL/EUCLEAN/EIO vol_mount's.
 *   vol_del      keys: id=     vol_unmount (clean); refused with EBUSY while
 *                a session uses the volume.
 *   session_add  keys: id= (non-zero), vol=, pid=, uid=, gid=,
 *                groups=G[,G...] (at most 16, optional), adopt=0|1,
 *                committed=N (optional, adopt=1: the committed= of the
 *                first vol_add after the fsd that last took the session;
 *                absent: this fsd's own mount's, right when that fsd was
 *                its predecessor),
 *                uids=R,E,S,FS and gids=R,E,S,FS (optional: the real,
 *                effective, saved and file-system ids of pid; absent, uid=
 *                and gid= alone)
 *                fds:  region, doorbell, state
 *                region: the session's memfd shared with the application
 *                (struct fsd_region below), sealed with F_SEAL_SHRINK and
 *                F_SEAL_GROW, at least fsd_region_size() bytes, header
 *                filled by the supervisor.  doorbell: an eventfd the
 *                application writes after posting requests.  state: a memfd
 *                of fsd_state_size() bytes that ONLY the supervisor and fsd
 *                hold (never the application): fsd's per-session memory
 *                that must survive an fsd crash (the session's inode handles
 *                and the record of every request in flight, struct
 *                fsd_state).  adopt=0: a new session, fsd initialises state.
 *                adopt=1: a restarted fsd takes the session over: it
 *                re-takes the open references of every handle in state
 *                (stale ones, whose inode generation changed, answer
 *                ESTALE), answers the requests its predecessor had finished
 *                (exactly once, below) and runs the others.  Either way fsd
 *                bumps region->generation and sets FSD_REGION_F_UP.
 *                uid/gid/groups are the credentials of a request that
 *                names none.  A request may name the caller's current ones
 *                (FSD_XF_CRED: a program that changed its ids since, as
 *                servers that drop root do); fsd accepts them when one of
 *                uids= is 0 (root may become anyone), or else when the
 *                claimed uid is one of uids=, the gid one of gids=, and every
 *                group one of groups=: what setresuid/setresgid can reach
 *                without privilege.  Otherwise the request gets -EPERM.
 *                The weakness: fsd cannot see the caller's present ids, so
 *                a process that dropped root after the session began can
 *                claim root again on its volume (as it could on a direct
 *                volume, whose file system it runs itself).
 *   session_del  keys: id=    drops the session's open references and locks,
 *                closes its descriptors.
 *   stats        reply: vols=, sessions=, requests=, refused=, commits=,
 *                adopted=, replayed= (results published from a
 *                predecessor's record), dead_owners= (lock owners dropped
 *                because their process had gone), then one line per session
 *                "session=<id> vol=<id> pid= requests= refused= handles="
 *                (space separated).
 *   ping         reply "pong=<n>" (n counts pings) + errno=0: fsd's loop is
 *                alive (hang detection by the supervisor).
 *   quit         unmount every volume cleanly, reply errno=0, exit 0.
 *
 * ---- The session (application <-> fsd) ----
 *
 * One memfd per session: a header page, FSD_SLOTS request slots of
 * sizeof(struct fsd_slot), then one data area of FSD_SLOT_DATA bytes per
 * slot.  A slot is a single request at a time; the client may have up to
 * FSD_SLOTS requests in flight (multi-threaded programs, forked children:
 * slots are claimed with an atomic compare-and-swap, so every process that
 * maps the region may use it).
 *
 * Slot life (the state word, 32 bits, futex-aligned):
 *   FREE  --client CAS-->  CLAIMED  (client fills op, id, args, data)
 *   CLAIMED --client store-release--> POSTED, then writes 1 to the doorbell
 *   POSTED  --fsd store-release-->    DONE   (results filled first), then
 *           FUTEX_WAKE on the state word (shared futex: no FUTEX_PRIVATE_FLAG)
 *   DONE    --client, after reading the results--> FREE
 * The client sleeps with FUTEX_WAIT on the state word while it is POSTED
 * (why futex rather than a response eventfd: one wake-up names exactly the
 * waiting thread and slot, no descriptor per thread, and a timeout lets the
 * client ring again while a crashed fsd is being replaced).
 *
 * fsd copies the slot (and then each path) out of shared memory before it
 * validates anything: the application may rewrite the region at any time.
 * Every field is checked: op, lengths within the slot's data area, paths
 * NUL-terminated at their stated length with no NUL inside, flag masks,
 * and inode numbers the session holds (returned to it by lookup/open, or
 * the root).  A bad request is answered -EINVAL (-EBADF for an inode the
 * session does not hold) and counted; fsd never trusts it further.
 *
 * Exactly once across an fsd crash: a request that changes the volume is
 * answered only after the transaction holding its change has been
 * committed (group commit: the requests of one batch, then one vol_sync).
 * Before the commit, fsd records in the session's state memfd, per slot,
 * the request id, its result and the journal sequence of its transaction.
 * A successor adopting the session publishes the recorded result of a
 * request whose transaction committed, and runs the others again (their
 * changes never reached the journal), forgetting their records.
 * "Committed" means: seq <= what the first mount after the recording fsd
 * found committed (vol_committed_seq() at that mount; session_add's
 * committed=).  Never the live value: a replay skips the lost
 * transaction's sequence and the successor's own commits soon pass it, so
 * a later value would make a lost change look committed (fsd_kill's
 * "record LOST", fixed with test_fsd_proto's test_adopt_late).
 */

#define FSD_MSG_MAX 65536
#define FSD_MAX_VOLS 64
#define FSD_MAX_SESSIONS 256

#define FSD_REGION_MAGIC 0x44534646u /* "FFSD" */
#define FSD_REGION_VERSION 1
#define FSD_SLOTS 32
#define FSD_SLOT_DATA (256 * 1024)

/* Slot states. */
#define FSD_SLOT_FREE 0u
#define FSD_SLOT_CLAIMED 1u
#define FSD_SLOT_POSTED 2u
#define FSD_SLOT_DONE 3u

/* region->flags */
#define FSD_REGION_F_UP 0x1u	/* an fsd serves the session (cleared by the supervisor when fsd dies) */

/*
 * Operations.  Arguments and results by op (every op also sets ret: >= 0,
 * or -errno as vol.h's function of the same name):
 *   SYNC       flags=durable (0|1)
 *   LOOKUP     ino=dir, flags=AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH, path -> r0=ino
 *   OPEN       ino=dir, flags=oflags, mode, path -> r0=ino (an open reference: RELEASE it)
 *   HOLD       ino (one more open reference)
 *   RELEASE    ino
 *   PREAD      ino, off, len (<= FSD_SLOT_DATA) -> ret bytes in data
 *   PWRITE     ino, off, len (<= FSD_SLOT_DATA) bytes in data, flags=VOL_APPEND|0 -> r0=end
 *   GETATTR    ino -> struct stat in data
 *   SETATTR    ino, attr
 *   ACCESS     ino, flags=mask
 *   FSYNC      ino, flags=datasync (0|1)
 *   READDIR    ino, off=cookie, len=buffer size (<= FSD_SLOT_DATA) -> data, r0=cookie
 *   MKDIR      ino=dir, path, mode
 *   UNLINK     ino=dir, path, flags=0|AT_REMOVEDIR
 *   RENAME     ino=odir, path, ino2=ndir, path2, flags=0|RENAME_NOREPLACE|RENAME_EXCHANGE
 *   LINK       ino, ino2=ndir, path=npath
 *   SYMLINK    path=target, ino=dir, path2=the link's path
 *   READLINK   ino, len (<= FSD_SLOT_DATA) -> data
 *   STATFS     -> struct statfs in data
 *   FALLOCATE  ino, flags=mode, off, len
 *   SEEK_DATA  ino, off, flags=whence (SEEK_DATA|SEEK_HOLE) -> ret offset
 *   LOCK       ino, owner, flags=cmd (F_SETLK|F_GETLK), lk -> lk (F_GETLK)
 *   UNLOCK_OWNER ino (0: all), owner
 * Paths are in the slot's data area: path at 0 (path_len bytes then a NUL),
 * path2 right after path's NUL (path2_len bytes then a NUL).  A path is at
 * most 4095 bytes.  Lock owners are the client's: bit 63 set, a process's
 * POSIX locks, with the pid in the low 32 bits; else an open file
 * description's (an opaque value below 2^47).  fsd keeps sessions' owners
 * apart, and drops the POSIX locks of a process that no longer exists when
 * they stand in another's way (a forked child that exited without closing
 * its files: Linux releases a process's locks at its exit).
 * LOCK needs an open reference of the inode, not a particular access mode:
 * flock(2) locks any descriptor; fcntl's rule (a read lock needs a
 * readable descriptor, a write lock a writable one) is the client's check,
 * which knows the descriptor's mode.
 */
enum fsd_op {
	FSD_OP_SYNC = 1,
	FSD_OP_LOOKUP,
	FSD_OP_OPEN,
	FSD_OP_HOLD,
	FSD_OP_RELEASE,
	FSD_OP_PREAD,
	FSD_OP_PWRITE,
	FSD_OP_GETATTR,
	FSD_OP_SETATTR,
	FSD_OP_ACCESS,
	FSD_OP_FSYNC,
	FSD_OP_READDIR,
	FSD_OP_MKDIR,
	FSD_OP_UNLINK,
	FSD_OP_RENAME,
	FSD_OP_LINK,
	FSD_OP_SYMLINK,
	FSD_OP_READLINK,
	FSD_OP_STATFS,
	FSD_OP_FALLOCATE,
	FSD_OP_SEEK_DATA,
	FSD_OP_LOCK,
	FSD_OP_UNLOCK_OWNER,
	FSD_OP_MAX
};

#define FSD_PATH_MAX 4096
#define FSD_OWNER_PID (1ull << 63)

/* setattr arguments on the wire (vol.h struct vol_setattr with fixed-size fields). */
struct fsd_wire_attr {
	uint32_t valid;		/* VOL_SET_* */
	uint32_t mode;
	uint32_t uid, gid;
	uint64_t size;
	int64_t atime_sec, atime_nsec;
	int64_t mtime_sec, mtime_nsec;
};

/* struct flock on the wire. */
struct fsd_wire_lock {
	int16_t type, whence;
	int32_t pid;
	int64_t start, len;
};

struct fsd_slot {
	uint32_t state;		/* FSD_SLOT_*: the futex word */
	uint32_t op;		/* enum fsd_op */
	uint64_t id;		/* request id, non-zero, unique within the session */
	uint64_t owner_tag;	/* the client's: who posted (pid << 32 | per-image token) */
	uint32_t ino, ino2;
	int32_t flags;
	uint32_t mode;
	uint64_t off, len;
	uint64_t owner;		/* lock owner */
	uint32_t path_len, path2_len;
	struct fsd_wire_attr attr;
	struct fsd_wire_lock lk;
	uint32_t xflags;	/* FSD_XF_*: what else the request carries */
	uint8_t pad0[36];
	/* Results: written by fsd before state becomes DONE. */
	int64_t ret;
	uint64_t r0, r1;
	struct fsd_wire_lock rlk;
	uint8_t pad1[16];
};

/*
 * The caller's credentials at the time of the call (slot->xflags has
 * FSD_XF_CRED), at FSD_CRED_OFF in the slot's data area, past the two
 * paths' room.  Only the ops that take a struct vol_cred in vol.h read
 * them: OPEN, SETATTR, ACCESS, MKDIR, UNLINK, RENAME, LINK, SYMLINK.
 * fsd accepts them when the session's credentials could have become them
 * (see session_add), else it answers -EPERM; without FSD_XF_CRED the
 * session's file-system ids are used.
 */
#define FSD_XF_CRED 0x1u
#define FSD_CRED_OFF (2 * FSD_PATH_MAX)

struct fsd_wire_cred {
	uint32_t uid, gid;	/* file-system uid and gid */
	uint32_t ngroups;	/* at most 16 */
	uint32_t pad;
	uint32_t groups[16];
};

_Static_assert(sizeof(struct fsd_wire_cred) == 80, "fsd_wire_cred ABI");
_Static_assert(sizeof(struct fsd_wire_attr) == 56, "fsd_wire_attr ABI");
_Static_assert(sizeof(struct fsd_wire_lock) == 24, "fsd_wire_lock ABI");
_Static_assert(offsetof(struct fsd_slot, ret) == 192, "fsd_slot ABI");
_Static_assert(sizeof(struct fsd_slot) == 256, "fsd_slot ABI");

/*
 * The region header (offset 0, one page).  The supervisor writes magic,
 * version, nslots, slot_data, size and session at creation; fsd writes
 * generation (+1 each time an fsd takes the session: a client that sees it
 * move knows requests in flight were adopted), flags and fsd_pid; the
 * supervisor clears FSD_REGION_F_UP when the fsd dies.  Clients and fsd
 * treat everything here as advisory except what they wrote themselves.
 */
struct fsd_region {
	uint32_t magic;
	uint32_t version;
	uint32_t nslots;
	uint32_t slot_data;
	uint64_t size;
	uint64_t session;
	uint32_t generation;
	uint32_t flags;
	uint32_t fsd_pid;
	uint32_t reserved[5];
};

_Static_assert(sizeof(struct fsd_region) == 64, "fsd_region ABI");

#define FSD_REGION_HDR 4096
#define FSD_SLOTS_OFF FSD_REGION_HDR
#define FSD_DATA_OFF (FSD_SLOTS_OFF + FSD_SLOTS * sizeof(struct fsd_slot))

static inline size_t fsd_region_size(void)
{
	return FSD_DATA_OFF + (size_t)FSD_SLOTS * FSD_SLOT_DATA;
}

static inline struct fsd_slot *fsd_slot_at(void *region, unsigned i)
{
	return (struct fsd_slot *)((char *)region + FSD_SLOTS_OFF) + i;
}

static inline uint8_t *fsd_data_at(void *region, unsigned i)
{
	return (uint8_t *)region + FSD_DATA_OFF + (size_t)i * FSD_SLOT_DATA;
}

/*
 * The state memfd (fsd's private per-session memory, kept by the
 * supervisor across fsd processes).  Created zeroed by the supervisor; fsd
 * writes magic at session_add adopt=0.
 *
 * rec[i] describes the last request fsd took from slot i: status RUNNING
 * when fsd began it, DONE with ret/r0/r1 and seq (the journal transaction
 * that holds its change, 0 when it changed nothing or the volume cannot
 * tell) when it returned, COMMITTED once that transaction is committed,
 * APPLIED once the session's handle table reflects it (open references
 * taken or dropped), then PUBLISHED when the slot says DONE.
 *
 * handle[] is the session's inode table: ino (0: empty), its generation
 * when taken, refs (open references the session holds; 0: only looked up,
 * which lets the session name the inode), flags.
 */
#define FSD_STATE_MAGIC 0x54534446u /* "FDST" */
#define FSD_MAX_HANDLES 4096

enum fsd_rec_status {
	FSD_REC_NONE = 0,
	FSD_REC_RUNNING,
	FSD_REC_DONE,
	FSD_REC_COMMITTED,
	FSD_REC_APPLIED,
	FSD_REC_PUBLISHED,
};

struct fsd_rec {
	uint64_t id;
	uint32_t op;
	uint32_t status;
	uint64_t seq;
	int64_t ret;
	uint64_t r0, r1;
	uint32_t ino;		/* the inode whose handle the request takes or drops */
	int32_t oflags;		/* OPEN: its flags (the access it grants) */
};

#define FSD_HANDLE_STALE 0x1u
/*
 * The access the session's opens of the inode granted (vol_open checked
 * them): PREAD and READDIR need READ, PWRITE and FALLOCATE need WRITE,
 * LOCK the one of its lock type, and all of them an open reference.  An
 * inode that is only looked up can be stat'ed, checked, read as a link and
 * named as a directory, never read or written.  Cleared with the last
 * open reference.
 */
#define FSD_HANDLE_READ 0x2u
#define FSD_HANDLE_WRITE 0x4u

struct fsd_handle {
	uint32_t ino;
	uint32_t gen;
	uint32_t refs;
	uint32_t flags;
};

struct fsd_state {
	uint32_t magic;
	uint32_t version;
	uint64_t session;
	uint64_t vol;
	uint32_t nhandles;	/* high-water mark of handle[] */
	uint32_t pad[9];
	struct fsd_rec rec[FSD_SLOTS];
	struct fsd_handle handle[FSD_MAX_HANDLES];
};

_Static_assert(sizeof(struct fsd_rec) == 56, "fsd_rec ABI");

static inline size_t fsd_state_size(void)
{
	return (sizeof(struct fsd_state) + 4095) & ~(size_t)4095;
}

#endif
