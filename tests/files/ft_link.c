/* File behaviour: link/linkat (link counts, same inode, EEXIST EPERM on dirs), symlink/symlinkat, readlink/readlinkat (truncation, EINVAL), relative and absolute targets. */
#include "ft.h"

int main(int argc, char **argv)
{
	char buf[300];
	struct stat s1, s2;
	ssize_t n;
	int dfd;

	ft_init(argc, argv, 60);

	ft_make_file(ft_path("f"), 100, 1);
	ft_ok("link f g", link(ft_path("f"), ft_path("g")));
	ft_show_stat("stat f", ft_path("f"), 0);
	stat(ft_path("f"), &s1);
	stat(ft_path("g"), &s2);
	ft_say("f and g: same inode: %s", ft_yn(s1.st_ino == s2.st_ino));
	ft_ok("link f g again", link(ft_path("f"), ft_path("g")));
	ft_ok("link missing h", link(ft_path("missing"), ft_path("h")));
	ft_ok("mkdir d", mkdir(ft_path("d"), 0755));
	ft_ok("link d dl (a dir)", link(ft_path("d"), ft_path("dl")));
	ft_ok("link f d/h", link(ft_path("f"), ft_path("d/h")));
	ft_ok("link f missing/h", link(ft_path("f"), ft_path("missing/h")));
	ft_show_stat("stat g", ft_path("g"), 0);
	ft_val("write through g", (long)(ft_make_file(ft_path("g"), 30, 2)));
	ft_show_file("f (written through g)", ft_path("f"));
	ft_ok("unlink f", unlink(ft_path("f")));
	ft_show_stat("stat g", ft_path("g"), 0);
	ft_ok("unlink d/h", unlink(ft_path("d/h")));
	ft_show_stat("stat g", ft_path("g"), 0);

	/* Symbolic links. */
	ft_ok("symlink g -> s (relative)", symlink("g", ft_path("s")));
	ft_ok("symlink absolute -> sa", symlink(ft_path("g"), ft_path("sa")));
	ft_ok("symlink ../g -> d/s2", symlink("../g", ft_path("d/s2")));
	ft_ok("symlink x -> g (exists)", symlink("x", ft_path("g")));
	ft_ok("symlink empty target", symlink("", ft_path("e")));
	ft_show_file("read through s", ft_path("s"));
	ft_show_file("read through d/s2", ft_path("d/s2"));
	ft_show_file("read through sa", ft_path("sa"));
	n = readlink(ft_path("s"), buf, sizeof(buf));
	ft_say("readlink s: %zd \"%.*s\"", n, n > 0 ? (int)n : 0, buf);
	n = readlink(ft_path("d/s2"), buf, sizeof(buf));
	ft_say("readlink d/s2: %zd \"%.*s\"", n, n > 0 ? (int)n : 0, buf);
	n = readlink(ft_path("sa"), buf, sizeof(buf));
	ft_say("readlink sa is the absolute path: %s", ft_yn(n > 0 && (size_t)n == strlen(ft_path("g")) &&
						     !memcmp(buf, ft_path("g"), (size_t)n)));
	n = readlink(ft_path("d/s2"), buf, 2);
	ft_say("readlink d/s2 into 2 bytes: %zd \"%.*s\"", n, n > 0 ? (int)n : 0, buf);
	ft_val("readlink g (not a link)", readlink(ft_path("g"), buf, sizeof(buf)));
	ft_val("readlink missing", readlink(ft_path("missing"), buf, sizeof(buf)));
	ft_val("readlink size 0", readlink(ft_path("s"), buf, 0));
	ft_show_stat("lstat s", ft_path("s"), 1);
	ft_ok("symlink a 200-byte target", symlink("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", ft_path("long")));
	n = readlink(ft_path("long"), buf, sizeof(buf));
	ft_say("readlink long: %zd", n);
	ft_show_stat("lstat long", ft_path("long"), 1);

	/* *at variants relative to a directory descriptor. */
	dfd = open(ft_path("d"), O_RDONLY | O_DIRECTORY);
	ft_ok("symlinkat dfd s3 -> s2", symlinkat("s2", dfd, "s3"));
	n = readlinkat(dfd, "s3", buf, sizeof(buf));
	ft_say("readlinkat dfd s3: %zd \"%.*s\"", n, n > 0 ? (int)n : 0, buf);
	ft_show_file("read through d/s3 (two links)", ft_path("d/s3"));
	ft_ok("linkat dfd s3 -> s4 (no follow: a link to the link)", linkat(dfd, "s3", dfd, "s4", 0));
	ft_show_stat("lstat d/s4", ft_path("d/s4"), 1);
	ft_ok("linkat dfd s3 -> s5 AT_SYMLINK_FOLLOW (a link to the file)", linkat(dfd, "s3", dfd, "s5", AT_SYMLINK_FOLLOW));
	ft_show_stat("lstat d/s5", ft_path("d/s5"), 1);
	ft_show_stat("stat g (three names now)", ft_path("g"), 0);
	close(dfd);
	ft_show_dir("d", ft_path("d"));
	ft_show_dir("dir", ft_dir);
	return 0;
}
