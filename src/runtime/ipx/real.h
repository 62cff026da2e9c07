/* The real (next in link order) implementations of the interposed calls. */
#ifndef LIBRETTO_REAL_H
#define LIBRETTO_REAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <utime.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/*
 * real.<name>(...) calls libc's own function, never our wrapper.  Filled by
 * real_init() (dlsym(RTLD_NEXT)) before any wrapper runs; wrappers may be
 * called before the runtime constructor (another library's constructor), so
 * each wrapper calls real_init() cheaply first (it is idempotent and
 * thread-safe).  Everything inside the runtime that does kernel I/O on a
 * descriptor uses real.* so it never recurses into the wrappers.
 */
struct real_fns {
#define IPX(ret, name, params, args) ret (*name) params;
#include "ipx.def"
#undef IPX
};

extern struct real_fns real;
void real_init(void);

#endif
