/* Private to stack/: the parsed lease and the start-up checks stack.c runs. */
#ifndef LIBRETTO_STACK_INT_H
#define LIBRETTO_STACK_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

#include "common/kv.h"
#include "nic/nic.h"

/*
 * The lease as the runtime uses it.  kv holds the lease text with every
 * "<name>_fd" value rewritten to the descriptor's new (high, close-on-exec)
 * number, so the NIC backend's open() reads the right descriptors.
 * Addresses are in network byte order; gw.s_addr == 0 means no gateway.
 */
struct stack_lease {
	struct kv kv;
	struct in_addr ip, netmask, gw;
	unsigned prefix;
	uint8_t mac[6];
	const struct nic_ops *ops;
	int region_fd;
	int ctl_fd;
};

/*
 * Read LIBRETTO_LEASE, remove it and our runtime from the environment, and
 * validate it.  Returns 0, -ENOENT (no lease; nothing printed, environment
 * untouched), or -EINVAL (a one-line message already on stderr).  On success
 * the caller owns l (stack_lease_free).
 */
int stack_lease_read(struct stack_lease *l);

/*
 * Move every received descriptor to a high close-on-exec number, record it
 * as private (stack_fd_is_private) and rewrite the lease's "_fd" values.
 * Returns 0 or -errno with a message printed.
 */
int stack_lease_move_fds(struct stack_lease *l);

void stack_lease_free(struct stack_lease *l);

/* The control socket path in force when the lease was read (supervisor
 * restart re-attaches there even if the program changed its environment). */
const char *stack_lease_ctl_path(void);

/* "aa:bb:cc:dd:ee:ff" of a unicast station; 0 or -EINVAL. */
int stack_lease_mac(const char *s, uint8_t mac[6]);

/*
 * A mode switch's new path (ctl.h, order=switch): text names its nfds
 * descriptors in "fds=a,b,..."; each is moved to a private number and
 * recorded as the runtime's (taken[], in order), and out gets the text with
 * "a_fd=N" keys in place of fds=, as a lease has them.  Returns how many
 * were taken, or -errno (every descriptor closed, nothing recorded).
 * stack_private_forget() drops a descriptor from the private set before it
 * is closed.  Both from the progress thread only.
 */
int stack_lease_adopt(const char *text, const int *fds, int nfds, struct kv *out, int *taken);
void stack_private_forget(int fd);

/*
 * DESIGN.md section 7: refuse to run when a loaded object defines a name
 * that liblwip.so also exports (one would silently bind to the other's
 * definition).  Returns 0 or -ELIBBAD with a message naming the symbol and
 * the object; -ENOENT if liblwip is not loaded (cannot happen when linked).
 */
int stack_symcheck(void);

#endif
