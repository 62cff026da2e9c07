/* librettod's supervision of libretto-fsd, the storage server, and its sessions (issue 8). */
#ifndef LIBRETTOD_FSD_SUP_H
#define LIBRETTOD_FSD_SUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/kv.h"

struct ld_config;

/*
 * librettod starts libretto-fsd at start-up (fsd_sup_start) and restarts it
 * when it dies or stops answering, like netd (docs/storage.md "Recovery").
 * librettod opens every image itself and keeps, per volume, the image
 * descriptor and, per session, the descriptors of the session's shared
 * region (include/libretto/fsd.h): a new fsd gets all of them again and
 * adopts the requests in flight.
 *
 * fsd_sup_start(): 0 when fsd runs, else -errno with the reason logged
 *   (librettod keeps running; indirect volumes then get ENODEV).
 * fsd_sup_fd(): an epoll descriptor for the event loop (-1 if none); when
 *   readable, call fsd_sup_on_event().
 * fsd_sup_status(): appends fsd=running|restarting|stopped, fsd_pid=,
 *   fsd_restarts=, fsd_volumes=, fsd_sessions= (and fsd_error= when not
 *   running) to a status reply.
 * fsd_sup_session_open(): a new session for the application with pid on
 *   the volume whose image librettod opened as image_fd (kept by fsd_sup
 *   while any session uses it: the caller may close its copy) at the
 *   caller's realpath image, shown at mount.  Volumes are told apart by
 *   (st_dev, st_ino) of image_fd: the first session mounts the volume in
 *   fsd, later ones share it.  On success appends the reply keys (vol=,
 *   session=, and what fsd.h defines) to reply, stores the descriptors to
 *   send (in fds=order, also appended as "fds=a,b,c") in fds[*nfds], and
 *   the session id in *session.  Errors: -ENODEV fsd not running, -EINVAL
 *   fsd refused the image (not an ext4 it can mount), with a sentence in err.
 *   The caller closes the returned descriptors after sending them.
 * fsd_sup_session_close(): the session's lease ended; the volume is
 *   unmounted in fsd (clean) when its last session goes, and its image
 *   descriptor closed.
 * fsd_sup_serves(): whether fsd serves the volume on (dev, ino) now.
 * fsd_sup_stop(): `quit` to fsd (it unmounts every volume cleanly), waits at
 *   most 5 s, then SIGKILL.
 * fsd_sup_restart(): `libretto fsd restart`: stop it and start a new one
 *   that adopts every session.  0 or -errno with a sentence in msg.
 */
int fsd_sup_start(const struct ld_config *cfg);
int fsd_sup_fd(void);
void fsd_sup_on_event(void);
void fsd_sup_status(struct kv_buf *b);
int fsd_sup_session_open(int image_fd, const char *image, const char *mount, pid_t pid,
			 struct kv_buf *reply, int *fds, int *nfds, uint64_t *session,
			 char *err, size_t errlen);
void fsd_sup_session_close(uint64_t session);
bool fsd_sup_serves(dev_t dev, ino_t ino);
void fsd_sup_stop(void);
int fsd_sup_restart(char *msg, size_t len);

#endif
