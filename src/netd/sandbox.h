/* libretto-netd's system call filter. */
#ifndef NETD_SANDBOX_H
#define NETD_SANDBOX_H

/*
 * Install the seccomp filter of sandbox.c on the calling process (and set
 * no_new_privs).  Call once, after start-up and before the first control
 * message.  Returns 0, -ENOSYS when built without libseccomp, or the
 * negative errno of libseccomp's failure; netd then runs unfiltered and
 * says so.
 */
int netd_sandbox(void);

#endif
