/* librettod's address and VF pools: pure bookkeeping, no I/O. */
#ifndef LIBRETTOD_POOL_H
#define LIBRETTOD_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <net/if.h>

/*
 * Addresses are IPv4 in host byte order throughout this module; the
 * formatting helpers convert.  Nothing here allocates after init, prints or
 * touches the system, so the unit tests drive it directly.
 */

/* Parse dotted-quad text; 0 or -EINVAL. */
int ip_parse(const char *text, uint32_t *out);
/* Format into buf (at least 16 bytes). Returns buf. */
char *ip_fmt(uint32_t ip, char *buf);
/* Parse "A-B" with A <= B; 0 or -EINVAL. */
int ip_range_parse(const char *text, uint32_t *first, uint32_t *last);

/*
 * Check that the addressing plan is coherent: prefix in 1..32, the pool lies
 * inside one subnet of that prefix and avoids its network and broadcast
 * addresses (prefix <= 30), the shared IP and the gateway (if has_gateway)
 * are in the subnet but outside the pool.  Returns 0, or -EINVAL with a
 * sentence in err.
 */
int ip_plan_check(uint32_t first, uint32_t last, int prefix, uint32_t shared,
		  bool has_gateway, uint32_t gateway, char *err, size_t errlen);

/* At most this many addresses in a pool; larger ranges are refused. */
#define IP_POOL_MAX 65536

struct ip_pool {
	uint32_t first, last;
	uint32_t used;        /* addresses taken */
	uint8_t *taken;       /* one byte per address, last - first + 1 */
};

/* 0, -EINVAL (first > last or more than IP_POOL_MAX addresses), -ENOMEM. */
int ip_pool_init(struct ip_pool *p, uint32_t first, uint32_t last);
void ip_pool_fini(struct ip_pool *p);
uint32_t ip_pool_size(const struct ip_pool *p);
bool ip_pool_contains(const struct ip_pool *p, uint32_t ip);
/* Take the lowest free address: 0, or -EADDRNOTAVAIL when all are taken. */
int ip_pool_take_any(struct ip_pool *p, uint32_t *out);
/* Take one address: 0, -EADDRNOTAVAIL (not in the pool), -EADDRINUSE. */
int ip_pool_take(struct ip_pool *p, uint32_t ip);
/* Give an address back; -EINVAL if it was not taken. */
int ip_pool_put(struct ip_pool *p, uint32_t ip);

/*
 * The VF pool: a fixed list of interface names and, per name, the id of the
 * application that leases it (0 = free).  Slot order is the allocation
 * order for vf=auto.
 */
struct vf_slot {
	char name[IF_NAMESIZE];
	unsigned owner;
};

struct vf_pool {
	int n;
	struct vf_slot *slot;
};

/* Names must be valid interface names and distinct: -EINVAL, -EEXIST, -ENOMEM. */
int vf_pool_init(struct vf_pool *p, char *const *names, int n);
void vf_pool_fini(struct vf_pool *p);
/* The slot index of name, or -ENOENT. */
int vf_pool_find(const struct vf_pool *p, const char *name);
/* The first free slot at index >= from, or -EBUSY. */
int vf_pool_next_free(const struct vf_pool *p, int from);
int vf_pool_used(const struct vf_pool *p);

/* True if name is a syntactically valid Linux interface name. */
bool ifname_valid(const char *name);
/* N for a name "vf<digits>" (no sign, no leading junk), else -1. */
long vf_name_number(const char *name);
/* Sort names of the form vf<N> by N (others after them, by name). */
void vf_names_sort(char **names, int n);
/*
 * Split a comma list of interface names into a malloc'd array of malloc'd
 * strings (free with vf_names_free).  Empty items, invalid names and
 * duplicates are refused with -EINVAL and a sentence in err.
 */
int vf_list_parse(const char *list, char ***names, int *n, char *err, size_t errlen);
void vf_names_free(char **names, int n);

#endif
