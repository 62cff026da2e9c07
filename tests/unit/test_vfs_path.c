/* Unit test: the file layer's lexical path normalization, mount matching and LIBRETTO_VOLUMES entries (vfs_path.c). */
#include <errno.h>
#include <string.h>

#include "vfs/vfs_mount.h"
#include "check.h"

static int norm_is(const char *base, const char *path, const char *want)
{
	char out[PATH_MAX];
	int r = vfs_path_normalize(base, path, out, sizeof(out));

	if (r < 0 || strcmp(out, want) != 0 || (size_t)r != strlen(want)) {
		fprintf(stderr, "normalize(%s, %s) = %d \"%s\", want \"%s\"\n",
			base ? base : "NULL", path, r, r < 0 ? "" : out, want);
		return 0;
	}
	return 1;
}

static void test_normalize(void)
{
	char small[8];

	CHECK(norm_is(NULL, "/", "/"));
	CHECK(norm_is(NULL, "//", "/"));
	CHECK(norm_is(NULL, "/data", "/data"));
	CHECK(norm_is(NULL, "/data/", "/data"));
	CHECK(norm_is(NULL, "//data//a///b/", "/data/a/b"));
	CHECK(norm_is(NULL, "/data/./a/.", "/data/a"));
	CHECK(norm_is(NULL, "/data/a/../b", "/data/b"));
	CHECK(norm_is(NULL, "/data/..", "/"));
	CHECK(norm_is(NULL, "/data/../etc/passwd", "/etc/passwd"));
	CHECK(norm_is(NULL, "/../../..", "/"));
	CHECK(norm_is(NULL, "/..data/x", "/..data/x"));
	CHECK(norm_is(NULL, "/data/...", "/data/..."));
	CHECK(norm_is("/data/a", "b", "/data/a/b"));
	CHECK(norm_is("/data/a", "..", "/data"));
	CHECK(norm_is("/data/a", "../..", "/"));
	CHECK(norm_is("/data", "../etc", "/etc"));
	CHECK(norm_is("/", "data/x", "/data/x"));
	CHECK(norm_is("/home/u", "../../data/./x/", "/data/x"));
	CHECK(norm_is("/data/a", "/abs", "/abs"));
	CHECK(norm_is("/data/a", ".", "/data/a"));
	CHECK(vfs_path_normalize(NULL, "", small, sizeof(small)) == -ENOENT);
	CHECK(vfs_path_normalize(NULL, NULL, small, sizeof(small)) == -ENOENT);
	CHECK(vfs_path_normalize(NULL, "rel", small, sizeof(small)) == -EINVAL);
	CHECK(vfs_path_normalize(NULL, "/abcdefgh", small, sizeof(small)) == -ENAMETOOLONG);
	CHECK(vfs_path_normalize(NULL, "/abcdef", small, sizeof(small)) == 7);
	CHECK(vfs_path_normalize(NULL, "/a/../abcdef", small, sizeof(small)) == 7);
}

static void test_under(void)
{
	const char *r;

	r = vfs_path_under("/data", "/data", 5);
	CHECK(r != NULL && strcmp(r, "") == 0);
	r = vfs_path_under("/data/a/b", "/data", 5);
	CHECK(r != NULL && strcmp(r, "/a/b") == 0);
	CHECK(vfs_path_under("/database", "/data", 5) == NULL);
	CHECK(vfs_path_under("/dat", "/data", 5) == NULL);
	CHECK(vfs_path_under("/", "/data", 5) == NULL);
	CHECK(vfs_path_under("/etc/data", "/data", 5) == NULL);
	r = vfs_path_under("/srv/vol/x", "/srv/vol", 8);
	CHECK(r != NULL && strcmp(r, "/x") == 0);
}

static void test_components(void)
{
	CHECK(vfs_path_has_dotdot(".."));
	CHECK(vfs_path_has_dotdot("../x"));
	CHECK(vfs_path_has_dotdot("a/.."));
	CHECK(vfs_path_has_dotdot("a/../b"));
	CHECK(!vfs_path_has_dotdot("a/..b"));
	CHECK(!vfs_path_has_dotdot("a..b/c"));
	CHECK(!vfs_path_has_dotdot("..."));
	CHECK(!vfs_path_has_dotdot("a/b"));
	CHECK(vfs_path_wants_dir("a/"));
	CHECK(vfs_path_wants_dir("a/."));
	CHECK(vfs_path_wants_dir("/data/x//"));
	CHECK(!vfs_path_wants_dir("a"));
	CHECK(!vfs_path_wants_dir("/"));
	CHECK(!vfs_path_wants_dir("a/.."));
	CHECK(!vfs_path_wants_dir("."));
}

static int parse(const char *s, struct vfs_entry *e)
{
	const char *why;

	return vfs_entry_parse(s, strlen(s), e, &why);
}

static void test_entries(void)
{
	struct vfs_entry e;
	const char *why = NULL;

	CHECK(parse("mount=/data,storage=direct,image=/tmp/a.img,fd=5", &e) == 0);
	CHECK(strcmp(e.mount, "/data") == 0 && strcmp(e.image, "/tmp/a.img") == 0);
	CHECK(e.storage == VFS_DIRECT && e.fd == 5);
	/* The mount point is normalized; unknown keys are the indirect backend's. */
	CHECK(parse("mount=/srv//vol/,storage=indirect,image=/x.img,vol=3,session=9,fds=7.8.9", &e) == 0);
	CHECK(strcmp(e.mount, "/srv/vol") == 0 && e.storage == VFS_INDIRECT && e.fd == -1);
	/* The entry ends where the caller says (entries are ';' separated). */
	CHECK(vfs_entry_parse("mount=/d,storage=direct,fd=3;mount=/e", 28, &e, &why) == 0);
	CHECK(e.fd == 3 && strcmp(e.mount, "/d") == 0);
	CHECK(parse("mount=/,storage=direct,fd=3", &e) == -EINVAL);
	CHECK(parse("mount=/data/..,storage=direct,fd=3", &e) == -EINVAL);
	CHECK(parse("mount=data,storage=direct,fd=3", &e) == -EINVAL);
	CHECK(parse("storage=direct,fd=3", &e) == -EINVAL);
	CHECK(parse("mount=/data,fd=3", &e) == -EINVAL);
	CHECK(parse("mount=/data,storage=weird,fd=3", &e) == -EINVAL);
	CHECK(parse("mount=/data,storage=direct", &e) == -EINVAL);
	CHECK(parse("mount=/data,storage=direct,fd=x", &e) == -EINVAL);
	CHECK(parse("mount=/data,storage=direct,fd=-1", &e) == -EINVAL);
	CHECK(parse("mount=/data,storage=direct,fd=3,junk", &e) == -EINVAL);
	CHECK(vfs_entry_parse("mount=/data,storage=direct,fd=3,junk", 36, &e, &why) == -EINVAL && why != NULL);
	CHECK(parse("mount=/data,,storage=direct,fd=3,", &e) == 0);
}

int main(void)
{
	test_normalize();
	test_under();
	test_components();
	test_entries();
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
