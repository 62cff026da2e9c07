/* libretto-fsd's pure request logic: copying a request out of a session's shared slot, validating it, the session's inode handle table. */
#ifndef FSD_REQ_H
#define FSD_REQ_H

#include <stdbool.h>
#include <stdint.h>

#include "libretto/fsd.h"

/*
 * A request, copied out of shared memory: nothing here changes when the
 * application rewrites its region afterwards.  The write payload is not
 * copied here (the caller copies it into its own buffer when it runs the
 * request).
 */
struct fsd_req {
	struct fsd_slot s;
	char path[FSD_PATH_MAX];
	char path2[FSD_PATH_MAX];
	bool has_cred;              /* the request names its caller's credentials: */
	struct fsd_wire_cred cred;  /* copied and checked for shape (ngroups <= 16) */
};

/*
 * What a session's process could be: its real, effective, saved and
 * file-system uids and gids, and its supplementary groups, as librettod
 * read them when the session began.
 */
struct fsd_sess_cred {
	uint32_t uids[4], gids[4];
	uint32_t ngroups;
	uint32_t groups[16];
};

/*
 * Copy slot (and the paths of the op from data, a slot data area of
 * FSD_SLOT_DATA bytes) into r, then validate every field but the inode
 * handles (fsd_req_check_handles).  Returns 0, or -EINVAL (with a short
 * token naming the check in *why) for a malformed request.  Never reads
 * shared memory twice.
 */
int fsd_req_decode(const struct fsd_slot *slot, const uint8_t *data, struct fsd_req *r,
		   const char **why);

/* Whether an op reads credentials (the vol.h functions with a struct vol_cred). */
bool fsd_op_takes_cred(uint32_t op);

/*
 * Whether a session whose process had the ids sc may claim the credentials
 * claim: yes when any of sc's uids is 0 (root may become anyone), else when
 * claim's uid is one of sc's uids, its gid one of sc's gids and each of its
 * groups one of sc's groups (what a process reaches without privilege).
 * 0 or -EPERM.
 */
int fsd_cred_check(const struct fsd_sess_cred *sc, const struct fsd_wire_cred *claim);

/* Whether a (valid) request changes the volume: it is answered only after a commit. */
bool fsd_req_modifies(const struct fsd_req *r);

/*
 * Check that every inode the request names is one the session may use: the
 * root, or a handle in st (looked up or opened by this session).  HOLD and
 * RELEASE need an open reference.  0, -EBADF (unknown), -ESTALE (the inode
 * changed under a restarted fsd).
 */
int fsd_req_check_handles(const struct fsd_state *st, const struct fsd_req *r);

/* The handle of ino in st, or NULL. */
struct fsd_handle *fsd_handle_find(struct fsd_state *st, uint32_t ino);
const struct fsd_handle *fsd_handle_find_const(const struct fsd_state *st, uint32_t ino);

/*
 * The handle of ino, made if absent (generation gen); when the table is
 * full an entry without open references is reused.  NULL: the table is
 * full of open references.
 */
struct fsd_handle *fsd_handle_get(struct fsd_state *st, uint32_t ino, uint32_t gen);

#endif
