/* librettod's address and VF pools: pure bookkeeping, no I/O. */
#include "librettod/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ip_parse(const char *text, uint32_t *out)
{
	uint32_t ip = 0;
	const char *p = text;

	if (!text)
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		unsigned v = 0;
		int digits = 0;

		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (unsigned)(*p - '0');
			/* Three digits at most, which also keeps v from overflowing. */
			if (++digits > 3 || v > 255)
				return -EINVAL;
			p++;
		}
		if (digits == 0)
			return -EINVAL;
		ip = ip << 8 | v;
		if (i < 3 && *p++ != '.')
			return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	*out = ip;
	return 0;
}

char *ip_fmt(uint32_t ip, char *buf)
{
	snprintf(buf, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff,
		 (ip >> 8) & 0xff, ip & 0xff);
	return buf;
}

int ip_range_parse(const char *text, uint32_t *first, uint32_t *last)
{
	char a[16], b[16];
	const char *dash;
	size_t la;

	if (!text || !(dash = strchr(text, '-')))
		return -EINVAL;
	la = (size_t)(dash - text);
	if (la >= sizeof(a) || strlen(dash + 1) >= sizeof(b))
		return -EINVAL;
	memcpy(a, text, la);
	a[la] = '\0';
	strcpy(b, dash + 1);
	if (ip_parse(a, first) || ip_parse(b, last) || *first > *last)
		return -EINVAL;
	return 0;
}

static uint32_t prefix_mask(int prefix)
{
	return prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
}

int ip_plan_check(uint32_t first, uint32_t last, int prefix, uint32_t shared,
		  bool has_gateway, uint32_t gateway, char *err, size_t errlen)
{
	char a[16], b[16];
	uint32_t mask, net;

	if (prefix < 1 || prefix > 32) {
		snprintf(err, errlen, "prefix /%d is out of range (1..32)", prefix);
		return -EINVAL;
	}
	if (first > last) {
		snprintf(err, errlen, "pool %s-%s is empty (first > last)",
			 ip_fmt(first, a), ip_fmt(last, b));
		return -EINVAL;
	}
	if (last - first >= IP_POOL_MAX) {
		snprintf(err, errlen, "pool %s-%s has more than %d addresses",
			 ip_fmt(first, a), ip_fmt(last, b), IP_POOL_MAX);
		return -EINVAL;
	}
	mask = prefix_mask(prefix);
	net = first & mask;
	if ((last & mask) != net) {
		snprintf(err, errlen, "pool %s-%s does not fit in one /%d subnet",
			 ip_fmt(first, a), ip_fmt(last, b), prefix);
		return -EINVAL;
	}
	if (prefix <= 30 && (first == net || last == (net | ~mask))) {
		snprintf(err, errlen, "pool %s-%s includes the /%d subnet's network or broadcast address",
			 ip_fmt(first, a), ip_fmt(last, b), prefix);
		return -EINVAL;
	}
	if ((shared & mask) != net) {
		snprintf(err, errlen, "shared IP %s is not in the pool's /%d subnet",
			 ip_fmt(shared, a), prefix);
		return -EINVAL;
	}
	if (shared >= first && shared <= last) {
		char c[16];

		snprintf(err, errlen, "shared IP %s lies inside the pool %s-%s",
			 ip_fmt(shared, a), ip_fmt(first, b), ip_fmt(last, c));
		return -EINVAL;
	}
	if (has_gateway) {
		if ((gateway & mask) != net) {
			snprintf(err, errlen, "gateway %s is not in the pool's /%d subnet",
				 ip_fmt(gateway, a), prefix);
			return -EINVAL;
		}
		if (gateway >= first && gateway <= last) {
			snprintf(err, errlen, "gateway %s lies inside the pool", ip_fmt(gateway, a));
			return -EINVAL;
		}
		if (gateway == shared) {
			snprintf(err, errlen, "gateway %s is also the shared IP", ip_fmt(gateway, a));
			return -EINVAL;
		}
	}
	return 0;
}

int ip_pool_init(struct ip_pool *p, uint32_t first, uint32_t last)
{
	memset(p, 0, sizeof(*p));
	if (first > last || last - first >= IP_POOL_MAX)
		return -EINVAL;
	p->taken = calloc((size_t)(last - first) + 1, 1);
	if (!p->taken)
		return -ENOMEM;
	p->first = first;
	p->last = last;
	return 0;
}

void ip_pool_fini(struct ip_pool *p)
{
	free(p->taken);
	memset(p, 0, sizeof(*p));
}

uint32_t ip_pool_size(const struct ip_pool *p)
{
	return p->taken ? p->last - p->first + 1 : 0;
}

bool ip_pool_contains(const struct ip_pool *p, uint32_t ip)
{
	return p->taken && ip >= p->first && ip <= p->last;
}

int ip_pool_take_any(struct ip_pool *p, uint32_t *out)
{
	uint32_t n = ip_pool_size(p);

	for (uint32_t i = 0; i < n; i++) {
		if (!p->taken[i]) {
			p->taken[i] = 1;
			p->used++;
			*out = p->first + i;
			return 0;
		}
	}
	return -EADDRNOTAVAIL;
}

int ip_pool_take(struct ip_pool *p, uint32_t ip)
{
	if (!ip_pool_contains(p, ip))
		return -EADDRNOTAVAIL;
	if (p->taken[ip - p->first])
		return -EADDRINUSE;
	p->taken[ip - p->first] = 1;
	p->used++;
	return 0;
}

int ip_pool_put(struct ip_pool *p, uint32_t ip)
{
	if (!ip_pool_contains(p, ip) || !p->taken[ip - p->first])
		return -EINVAL;
	p->taken[ip - p->first] = 0;
	p->used--;
	return 0;
}

bool ifname_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	/* The kernel's dev_valid_name(): 1..15 bytes, not "." or "..", no '/',
	 * ':' or whitespace.  We also refuse ',' and '=', which would break the
	 * control protocol's lists. */
	if (n == 0 || n >= IF_NAMESIZE || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == ',' || c == '=')
			return false;
	}
	return true;
}

int vf_pool_init(struct vf_pool *p, char *const *names, int n)
{
	memset(p, 0, sizeof(*p));
	if (n < 0)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (!ifname_valid(names[i]))
			return -EINVAL;
		for (int j = 0; j < i; j++)
			if (!strcmp(names[i], names[j]))
				return -EEXIST;
	}
	p->slot = calloc(n ? (size_t)n : 1, sizeof(*p->slot));
	if (!p->slot)
		return -ENOMEM;
	for (int i = 0; i < n; i++)
		strcpy(p->slot[i].name, names[i]);
	p->n = n;
	return 0;
}

void vf_pool_fini(struct vf_pool *p)
{
	free(p->slot);
	memset(p, 0, sizeof(*p));
}

int vf_pool_find(const struct vf_pool *p, const char *name)
{
	for (int i = 0; i < p->n; i++)
		if (!strcmp(p->slot[i].name, name))
			return i;
	return -ENOENT;
}

int vf_pool_next_free(const struct vf_pool *p, int from)
{
	for (int i = from < 0 ? 0 : from; i < p->n; i++)
		if (!p->slot[i].owner)
			return i;
	return -EBUSY;
}

int vf_pool_used(const struct vf_pool *p)
{
	int used = 0;

	for (int i = 0; i < p->n; i++)
		used += p->slot[i].owner != 0;
	return used;
}

long vf_name_number(const char *name)
{
	long v = 0;
	const char *p;

	if (strncmp(name, "vf", 2) != 0 || !name[2])
		return -1;
	for (p = name + 2; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		/* Interface names are 15 bytes, so 13 digits cannot overflow. */
		v = v * 10 + (*p - '0');
	}
	return v;
}

static int vf_name_cmp(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	long nx = vf_name_number(x), ny = vf_name_number(y);

	if (nx >= 0 && ny >= 0 && nx != ny)
		return nx < ny ? -1 : 1;
	if ((nx >= 0) != (ny >= 0))
		return nx >= 0 ? -1 : 1;
	return strcmp(x, y);
}

void vf_names_sort(char **names, int n)
{
	if (n > 1)
		qsort(names, (size_t)n, sizeof(*names), vf_name_cmp);
}

void vf_names_free(char **names, int n)
{
	if (!names)
		return;
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int vf_list_parse(const char *list, char ***names_out, int *n_out, char *err, size_t errlen)
{
	char **names = NULL;
	int n = 0, cap = 0;
	const char *p = list;

	if (!list || !*list) {
		snprintf(err, errlen, "the VF list is empty");
		return -EINVAL;
	}
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char *name;

		if (len == 0) {
			snprintf(err, errlen, "the VF list '%s' has an empty item", list);
			goto fail;
		}
		if (len >= IF_NAMESIZE) {
			snprintf(err, errlen, "VF name '%.*s' is longer than %d bytes",
				 (int)len, p, IF_NAMESIZE - 1);
			goto fail;
		}
		name = strndup(p, len);
		if (!name) {
			snprintf(err, errlen, "out of memory");
			vf_names_free(names, n);
			return -ENOMEM;
		}
		if (!ifname_valid(name)) {
			snprintf(err, errlen, "'%s' is not a valid interface name", name);
			free(name);
			goto fail;
		}
		for (int i = 0; i < n; i++) {
			if (!strcmp(names[i], name)) {
				snprintf(err, errlen, "VF %s is listed twice", name);
				free(name);
				goto fail;
			}
		}
		if (n == cap) {
			int ncap = cap ? cap * 2 : 8;
			char **nn = realloc(names, sizeof(*names) * (size_t)ncap);

			if (!nn) {
				free(name);
				snprintf(err, errlen, "out of memory");
				vf_names_free(names, n);
				return -ENOMEM;
			}
			names = nn;
			cap = ncap;
		}
		names[n++] = name;
		if (!comma)
			break;
		p = comma + 1;
	}
	*names_out = names;
	*n_out = n;
	return 0;
fail:
	vf_names_free(names, n);
	return -EINVAL;
}
