/* Unit test: librettod's register-request validation and ps record text. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/kv.h"
#include "librettod/pool.h"
#include "librettod/proto.h"

#include "check.h"


/* Parse a request text and validate it as a register request. */
static int parse(const char *text, struct proto_register *r, char *err, size_t len)
{
	struct kv kv;
	int rc;

	err[0] = '\0';
	if (kv_parse(&kv, text, strlen(text)) != 0)
		return -999;
	rc = proto_parse_register(&kv, r, err, len);
	kv_free(&kv);
	return rc;
}

static void test_register_defaults(void)
{
	struct proto_register r;
	char err[200];

	CHECK(parse("register\n", &r, err, sizeof(err)) == 0);
	CHECK(!strcmp(r.name, "app"));
	CHECK(r.ip_auto && r.vf_auto);
	CHECK(r.backend == PROTO_BACKEND_AFXDP);

	CHECK(parse("register\nname=web\nmode=direct\nip=auto\nvf=auto\nbackend=auto\n",
		    &r, err, sizeof(err)) == 0);
	CHECK(!strcmp(r.name, "web") && r.ip_auto && r.vf_auto);
	CHECK(r.backend == PROTO_BACKEND_AUTO);

	/* Unknown keys are ignored (newer clients). */
	CHECK(parse("register\nname=x\ncolour=blue\n", &r, err, sizeof(err)) == 0);
}

static void test_register_explicit(void)
{
	struct proto_register r;
	uint32_t want;
	char err[200];

	ip_parse("10.42.0.33", &want);
	CHECK(parse("register\nip=10.42.0.33\nvf=vf3\nbackend=afpacket\n", &r, err,
		    sizeof(err)) == 0);
	CHECK(!r.ip_auto && r.ip == want);
	CHECK(!r.vf_auto && !strcmp(r.vf, "vf3"));
	CHECK(r.backend == PROTO_BACKEND_AFPACKET);
	CHECK(!strcmp(proto_backend_name(r.backend), "afpacket"));
	CHECK(!strcmp(proto_backend_name(PROTO_BACKEND_AFXDP), "afxdp"));
	CHECK(!strcmp(proto_backend_name(PROTO_BACKEND_AUTO), "auto"));
}

static void test_register_errors(void)
{
	struct proto_register r;
	char err[200];

	CHECK(parse("register\nip=10.42.0\n", &r, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "ip=10.42.0 is not an IPv4 address"));
	CHECK(parse("register\nvf=a/b\n", &r, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "vf=a/b"));
	CHECK(parse("register\nvf=\n", &r, err, sizeof(err)) == -EINVAL);
	CHECK(parse("register\nbackend=dpdk\n", &r, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "backend=dpdk is unknown"));
	CHECK(parse("register\nmode=indirect\n", &r, err, sizeof(err)) == -ENOTSUP);
	CHECK(strstr(err, "only mode=direct"));
	CHECK(parse("register\nname=\n", &r, err, sizeof(err)) == -EINVAL);
	CHECK(parse("register\nname=a,b\n", &r, err, sizeof(err)) == -EINVAL);
	CHECK(parse("register\nname=a=b\n", &r, err, sizeof(err)) == -EINVAL);
	CHECK(parse("register\nname=0123456789012345678901234567890123456789012345678901234567890123\n",
		    &r, err, sizeof(err)) == -EINVAL);
	CHECK(parse("register\nname=012345678901234567890123456789012345678901234567890123456789012\n",
		    &r, err, sizeof(err)) == 0);
	CHECK(parse("register\nname=my-app_1.2+x@host:9\n", &r, err, sizeof(err)) == 0);
	/* Error text is one line, so it fits the protocol's error= line. */
	CHECK(parse("register\nip=x\n", &r, err, sizeof(err)) == -EINVAL && !strchr(err, '\n'));
}

static void test_ports(void)
{
	struct region_port pt[REGION_MAX_PORTS + 4];
	char buf[1024];

	memset(pt, 0, sizeof(pt));
	CHECK(proto_fmt_ports(pt, 0, buf, sizeof(buf)) == 0 && !strcmp(buf, "-"));
	CHECK(proto_fmt_ports(pt, 5, buf, sizeof(buf)) == 0 && !strcmp(buf, "-"));

	pt[0] = (struct region_port){ .port = 80, .proto = REGION_PROTO_TCP, .state = 2 };
	pt[1] = (struct region_port){ .port = 9, .proto = REGION_PROTO_UDP, .state = 0 };
	pt[2] = (struct region_port){ .port = 5201, .proto = REGION_PROTO_UDP, .state = 1 };
	pt[3] = (struct region_port){ .port = 7, .proto = 132, .state = 1 };
	CHECK(proto_fmt_ports(pt, 4, buf, sizeof(buf)) == 0);
	CHECK(!strcmp(buf, "tcp:80,udp:5201,p132:7"));
	CHECK(proto_fmt_ports(pt, 1, buf, sizeof(buf)) == 0 && !strcmp(buf, "tcp:80"));

	/* A hostile nports is clamped to the table's size. */
	for (int i = 0; i < REGION_MAX_PORTS + 4; i++)
		pt[i] = (struct region_port){ .port = 65535, .proto = REGION_PROTO_TCP, .state = 1 };
	CHECK(proto_fmt_ports(pt, 0xffffffffu, buf, sizeof(buf)) == 0);
	{
		int commas = 0;

		for (char *p = buf; *p; p++)
			commas += *p == ',';
		CHECK(commas == REGION_MAX_PORTS - 1);
	}

	/* Too small a buffer: a shorter, still well-formed list. */
	CHECK(proto_fmt_ports(pt, 3, buf, 15) == -ENOSPC);
	CHECK(!strcmp(buf, "tcp:65535"));
	CHECK(proto_fmt_ports(pt, 0, buf, 1) == -ENOSPC);
}

static void test_mac(void)
{
	const uint8_t mac[6] = { 0x02, 0x4c, 0x00, 0x00, 0x01, 0x0a };
	char buf[18];

	CHECK(!strcmp(proto_fmt_mac(mac, buf), "02:4c:00:00:01:0a"));
}

int main(void)
{
	test_register_defaults();
	test_register_explicit();
	test_register_errors();
	test_ports();
	test_mac();
	if (failures) {
		fprintf(stderr, "test_pool_proto: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_pool_proto: all checks passed\n");
	return 0;
}
