/* Facts about other processes read from /proc. */
#ifndef LIBRETTO_PROC_H
#define LIBRETTO_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* Whether pid's parent is parent now (the PPid line of /proc/pid/status);
 * false if pid is gone or /proc cannot be read. */
bool proc_is_child_of(pid_t pid, pid_t parent);

#endif
