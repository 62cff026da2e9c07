/* The descriptor table: which descriptor numbers name a runtime object. */
#ifndef LIBRETTO_FDTAB_H
#define LIBRETTO_FDTAB_H

/*
 * A slot per descriptor number holds an opaque object pointer (the
 * interposition layer stores its struct ipx_file there) or NULL for a
 * descriptor the runtime does not own (a plain kernel fd, or no fd at all).
 *
 * The table has no size limit of its own: it grows on demand in chunks of
 * FDTAB_CHUNK slots that never move, indexed by a directory that is replaced
 * (under a mutex, the old one kept alive forever: growth is geometric, so
 * the retired directories cost less than the live one) when it is too small.
 *
 * Lookups take no lock.  fdtab_get() calls pin(obj) while the slot still
 * names obj, and fdtab_swap() returns only when no lookup can still pin the
 * object it removed, so the caller of fdtab_swap() may drop the slot's
 * reference at once: a concurrent lookup either pinned the object before
 * (and holds its own reference) or sees the new value.
 */
#define FDTAB_CHUNK_SHIFT 10
#define FDTAB_CHUNK (1 << FDTAB_CHUNK_SHIFT)

/* The object at fd, pinned with pin(obj), or NULL.  Never blocks. */
void *fdtab_get(int fd, void (*pin)(void *obj));

/* The object at fd without pinning: only for a yes/no answer that the
 * caller may act on racily (like "is this one of ours at all"). */
void *fdtab_peek(int fd);

/*
 * Store obj (may be NULL) at fd and return the previous object in *old.
 * Returns 0, -EBADF for a negative fd, -ENOMEM when the table could not
 * grow (then nothing changed).  Storing NULL never allocates.
 */
int fdtab_swap(int fd, void *obj, void **old);

/* One past the highest descriptor the table can currently hold. */
int fdtab_limit(void);

#endif
