/* libretto-fsd's sandbox (capabilities and the system call filter). */
#ifndef FSD_SANDBOX_H
#define FSD_SANDBOX_H

/*
 * Drop every capability, set no_new_privs and install the seccomp
 * allow-list of sandbox.c.  Call once, before the first control message.
 * Returns 0, -ENOSYS when built without libseccomp (capabilities are
 * dropped anyway), or the negative errno of the failure; fsd then runs
 * unfiltered and says so.
 */
int fsd_sandbox(void);

#endif
