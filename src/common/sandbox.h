/* The servers' sandbox (libretto-netd, libretto-fsd): no capabilities, no new privileges, a system call allow-list. */
#ifndef LIBRETTO_SANDBOX_H
#define LIBRETTO_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Give up every capability for good: the ambient and bounding sets first
 * (so nothing comes back through an exec), then the effective, permitted
 * and inheritable ones, and set no_new_privs.  The servers get every
 * descriptor they need already open from librettod, and using them needs
 * no privilege.  Returns 0 or -errno.
 */
int sandbox_drop_caps(void);

/*
 * Install a seccomp filter on the calling process: the calls numbered in
 * calls[n] (SYS_* values) with any arguments, mmap and mprotect without
 * PROT_EXEC, and, when kill0, kill(pid, 0) (does a process exist; never a
 * signal).  Every other call fails with EPERM instead of killing the
 * server: a call forgotten in a list must not take every application's
 * network or storage down, and a refused call executes nothing either way.
 * Returns 0, -ENOSYS when built without libseccomp, or libseccomp's
 * negative errno.
 */
int sandbox_filter(const int *calls, size_t n, bool kill0);

#endif
