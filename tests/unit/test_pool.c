/* Unit test: librettod's IP pool, VF pool and addressing-plan checks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "librettod/pool.h"

#include "check.h"


static uint32_t ip(const char *s)
{
	uint32_t v = 0;

	if (ip_parse(s, &v) != 0) {
		fprintf(stderr, "bad test address %s\n", s);
		exit(1);
	}
	return v;
}

static void test_ip_parse(void)
{
	char buf[16];
	uint32_t v, a, b;

	CHECK(ip_parse("10.42.0.10", &v) == 0 && v == 0x0a2a000a);
	CHECK(ip_parse("0.0.0.0", &v) == 0 && v == 0);
	CHECK(ip_parse("255.255.255.255", &v) == 0 && v == 0xffffffffu);
	CHECK(strcmp(ip_fmt(0x0a2a0063, buf), "10.42.0.99") == 0);
	/* Everything inet_aton would accept in odd forms is refused. */
	CHECK(ip_parse("256.1.1.1", &v) == -EINVAL);
	CHECK(ip_parse("1.2.3", &v) == -EINVAL);
	CHECK(ip_parse("1.2.3.4.5", &v) == -EINVAL);
	CHECK(ip_parse("1.2.3.4 ", &v) == -EINVAL);
	CHECK(ip_parse("1..3.4", &v) == -EINVAL);
	CHECK(ip_parse("0010.1.1.1", &v) == -EINVAL);
	CHECK(ip_parse("-1.2.3.4", &v) == -EINVAL);
	CHECK(ip_parse("", &v) == -EINVAL);
	CHECK(ip_parse(NULL, &v) == -EINVAL);
	CHECK(ip_parse("auto", &v) == -EINVAL);

	CHECK(ip_range_parse("10.42.0.10-10.42.0.99", &a, &b) == 0 &&
	      a == ip("10.42.0.10") && b == ip("10.42.0.99"));
	CHECK(ip_range_parse("10.42.0.10-10.42.0.10", &a, &b) == 0 && a == b);
	CHECK(ip_range_parse("10.42.0.99-10.42.0.10", &a, &b) == -EINVAL);
	CHECK(ip_range_parse("10.42.0.10", &a, &b) == -EINVAL);
	CHECK(ip_range_parse("10.42.0.10-", &a, &b) == -EINVAL);
	CHECK(ip_range_parse("-10.42.0.10", &a, &b) == -EINVAL);
	CHECK(ip_range_parse("10.42.0.1000000000000-10.42.0.2", &a, &b) == -EINVAL);
}

static void test_plan(void)
{
	char err[200];

	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.0.99"), 24, ip("10.42.0.2"),
			    false, 0, err, sizeof(err)) == 0);
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.0.99"), 24, ip("10.42.0.2"),
			    true, ip("10.42.0.1"), err, sizeof(err)) == 0);
	/* Shared IP inside the pool. */
	CHECK(ip_plan_check(ip("10.42.0.1"), ip("10.42.0.9"), 24, ip("10.42.0.2"),
			    false, 0, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "shared IP 10.42.0.2 lies inside the pool 10.42.0.1-10.42.0.9"));
	/* Pool across two /24s. */
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.1.5"), 24, ip("10.42.0.2"),
			    false, 0, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "one /24 subnet"));
	/* ... but fine in a /16. */
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.1.5"), 16, ip("10.42.0.2"),
			    false, 0, err, sizeof(err)) == 0);
	/* Network and broadcast addresses. */
	CHECK(ip_plan_check(ip("10.42.0.0"), ip("10.42.0.9"), 24, ip("10.42.0.20"),
			    false, 0, err, sizeof(err)) == -EINVAL);
	CHECK(ip_plan_check(ip("10.42.0.200"), ip("10.42.0.255"), 24, ip("10.42.0.2"),
			    false, 0, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "broadcast"));
	/* Shared IP and gateway off the subnet, gateway in the pool or = shared. */
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.0.99"), 24, ip("10.43.0.2"),
			    false, 0, err, sizeof(err)) == -EINVAL);
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.0.99"), 24, ip("10.42.0.2"),
			    true, ip("192.168.0.1"), err, sizeof(err)) == -EINVAL);
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.0.99"), 24, ip("10.42.0.2"),
			    true, ip("10.42.0.50"), err, sizeof(err)) == -EINVAL);
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.0.99"), 24, ip("10.42.0.2"),
			    true, ip("10.42.0.2"), err, sizeof(err)) == -EINVAL);
	/* Prefix bounds and huge pools. */
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.0.99"), 0, ip("10.42.0.2"),
			    false, 0, err, sizeof(err)) == -EINVAL);
	CHECK(ip_plan_check(ip("10.42.0.10"), ip("10.42.0.99"), 33, ip("10.42.0.2"),
			    false, 0, err, sizeof(err)) == -EINVAL);
	CHECK(ip_plan_check(ip("10.0.0.1"), ip("10.255.255.254"), 8, ip("10.255.255.254"),
			    false, 0, err, sizeof(err)) == -EINVAL);
}

static void test_ip_pool(void)
{
	struct ip_pool p;
	uint32_t a, first = ip("10.42.0.10"), last = ip("10.42.0.12");

	CHECK(ip_pool_init(&p, last, first) == -EINVAL);
	CHECK(ip_pool_init(&p, 0, IP_POOL_MAX) == -EINVAL);
	CHECK(ip_pool_init(&p, first, last) == 0);
	CHECK(ip_pool_size(&p) == 3);
	CHECK(ip_pool_contains(&p, first) && ip_pool_contains(&p, last));
	CHECK(!ip_pool_contains(&p, first - 1) && !ip_pool_contains(&p, last + 1));

	/* Lowest free first. */
	CHECK(ip_pool_take_any(&p, &a) == 0 && a == first);
	CHECK(ip_pool_take_any(&p, &a) == 0 && a == first + 1);
	CHECK(ip_pool_put(&p, first) == 0);
	CHECK(ip_pool_take_any(&p, &a) == 0 && a == first);
	CHECK(ip_pool_take_any(&p, &a) == 0 && a == last);
	CHECK(p.used == 3);
	CHECK(ip_pool_take_any(&p, &a) == -EADDRNOTAVAIL);

	/* Explicit addresses. */
	CHECK(ip_pool_take(&p, first + 1) == -EADDRINUSE);
	CHECK(ip_pool_take(&p, ip("10.42.0.9")) == -EADDRNOTAVAIL);
	CHECK(ip_pool_take(&p, ip("10.42.0.13")) == -EADDRNOTAVAIL);
	CHECK(ip_pool_put(&p, first + 1) == 0);
	CHECK(ip_pool_put(&p, first + 1) == -EINVAL);
	CHECK(ip_pool_put(&p, ip("10.42.0.200")) == -EINVAL);
	CHECK(ip_pool_take(&p, first + 1) == 0);
	CHECK(p.used == 3);
	ip_pool_fini(&p);
	CHECK(ip_pool_size(&p) == 0);

	/* A single-address pool. */
	CHECK(ip_pool_init(&p, first, first) == 0);
	CHECK(ip_pool_take(&p, first) == 0);
	CHECK(ip_pool_take_any(&p, &a) == -EADDRNOTAVAIL);
	ip_pool_fini(&p);
}

static void test_vf_names(void)
{
	char err[200];
	char **names = NULL;
	int n = 0;

	CHECK(vf_name_number("vf1") == 1);
	CHECK(vf_name_number("vf12") == 12);
	CHECK(vf_name_number("vf") == -1);
	CHECK(vf_name_number("vf1-sw") == -1);
	CHECK(vf_name_number("pf0") == -1);
	CHECK(vf_name_number("vfx") == -1);

	CHECK(ifname_valid("vf1"));
	CHECK(ifname_valid("enp3s0f1v0"));
	CHECK(!ifname_valid(""));
	CHECK(!ifname_valid("."));
	CHECK(!ifname_valid("a/b"));
	CHECK(!ifname_valid("a b"));
	CHECK(!ifname_valid("a,b"));
	CHECK(!ifname_valid("0123456789abcdef"));
	CHECK(ifname_valid("0123456789abcde"));

	CHECK(vf_list_parse("vf10,vf2,vf1", &names, &n, err, sizeof(err)) == 0 && n == 3);
	if (n == 3) {
		vf_names_sort(names, n);
		CHECK(!strcmp(names[0], "vf1") && !strcmp(names[1], "vf2") &&
		      !strcmp(names[2], "vf10"));
	}
	vf_names_free(names, n);

	CHECK(vf_list_parse("eth9,vf3,ens1", &names, &n, err, sizeof(err)) == 0 && n == 3);
	if (n == 3) {
		vf_names_sort(names, n);
		CHECK(!strcmp(names[0], "vf3") && !strcmp(names[1], "ens1") &&
		      !strcmp(names[2], "eth9"));
	}
	vf_names_free(names, n);

	CHECK(vf_list_parse("vf1,,vf2", &names, &n, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "empty item"));
	CHECK(vf_list_parse("vf1,vf1", &names, &n, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "listed twice"));
	CHECK(vf_list_parse("vf1,", &names, &n, err, sizeof(err)) == -EINVAL);
	CHECK(vf_list_parse("", &names, &n, err, sizeof(err)) == -EINVAL);
	CHECK(vf_list_parse("vf1,0123456789abcdef", &names, &n, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "longer than"));
	CHECK(vf_list_parse("vf/1", &names, &n, err, sizeof(err)) == -EINVAL);
}

static void test_vf_pool(void)
{
	char *names[] = { "vf1", "vf2", "vf3" };
	char *dup[] = { "vf1", "vf1" };
	char *bad[] = { "vf 1" };
	struct vf_pool p;

	CHECK(vf_pool_init(&p, dup, 2) == -EEXIST);
	CHECK(vf_pool_init(&p, bad, 1) == -EINVAL);
	CHECK(vf_pool_init(&p, names, 3) == 0);
	CHECK(vf_pool_find(&p, "vf2") == 1);
	CHECK(vf_pool_find(&p, "vf4") == -ENOENT);
	CHECK(vf_pool_next_free(&p, 0) == 0);
	p.slot[0].owner = 7;
	CHECK(vf_pool_next_free(&p, 0) == 1);
	p.slot[1].owner = 8;
	/* Skipping a busy VF from a given index, as vf=auto does. */
	CHECK(vf_pool_next_free(&p, 0) == 2);
	CHECK(vf_pool_next_free(&p, 3) == -EBUSY);
	p.slot[2].owner = 9;
	CHECK(vf_pool_next_free(&p, 0) == -EBUSY);
	CHECK(vf_pool_used(&p) == 3);
	p.slot[1].owner = 0;
	CHECK(vf_pool_used(&p) == 2);
	CHECK(vf_pool_next_free(&p, 0) == 1);
	CHECK(vf_pool_next_free(&p, 2) == -EBUSY);
	vf_pool_fini(&p);

	CHECK(vf_pool_init(&p, NULL, 0) == 0);
	CHECK(vf_pool_next_free(&p, 0) == -EBUSY);
	vf_pool_fini(&p);
}

int main(void)
{
	test_ip_parse();
	test_plan();
	test_ip_pool();
	test_vf_names();
	test_vf_pool();
	if (failures) {
		fprintf(stderr, "test_pool: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_pool: all checks passed\n");
	return 0;
}
