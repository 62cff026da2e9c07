/* File behaviour: rename and renameat2 (over a file, over an empty and a full dir, into itself, across dirs, RENAME_NOREPLACE, RENAME_EXCHANGE). */
#include "ft.h"

#include <linux/fs.h>
#include <sys/syscall.h>

static int rename2(const char *a, const char *b, unsigned flags)
{
	return renameat2(AT_FDCWD, a, AT_FDCWD, b, flags);
}

int main(int argc, char **argv)
{
	struct stat st1, st2;
	int fd;

	ft_init(argc, argv, 60);

	ft_make_file(ft_path("a"), 100, 1);
	ft_make_file(ft_path("b"), 200, 2);
	stat(ft_path("a"), &st1);
	ft_ok("rename a b (over a file)", rename(ft_path("a"), ft_path("b")));
	stat(ft_path("b"), &st2);
	ft_say("b is a's inode: %s", ft_yn(st1.st_ino == st2.st_ino));
	ft_show_file("b", ft_path("b"));
	ft_show_stat("stat a", ft_path("a"), 0);
	ft_ok("rename missing x", rename(ft_path("missing"), ft_path("x")));
	ft_ok("rename b b (same name)", rename(ft_path("b"), ft_path("b")));
	ft_show_file("b", ft_path("b"));

	/* An open descriptor follows the file across a rename, and keeps the replaced file. */
	ft_make_file(ft_path("c"), 300, 3);
	fd = open(ft_path("b"), O_RDONLY);
	ft_ok("rename c b (b open)", rename(ft_path("c"), ft_path("b")));
	ft_show_fd("old b through its fd", fd);
	close(fd);
	ft_show_file("new b", ft_path("b"));

	/* Directories. */
	ft_ok("mkdir d1", mkdir(ft_path("d1"), 0755));
	ft_ok("mkdir d2 (empty)", mkdir(ft_path("d2"), 0755));
	ft_ok("mkdir d3", mkdir(ft_path("d3"), 0755));
	ft_make_file(ft_path("d1/in1"), 10, 4);
	ft_make_file(ft_path("d3/in3"), 10, 5);
	ft_ok("rename d1 d2 (over an empty dir)", rename(ft_path("d1"), ft_path("d2")));
	ft_show_dir("d2", ft_path("d2"));
	ft_ok("rename d2 d3 (over a full dir)", rename(ft_path("d2"), ft_path("d3")));
	ft_ok("rename d2 b (dir over a file)", rename(ft_path("d2"), ft_path("b")));
	ft_ok("rename b d3 (file over a dir)", rename(ft_path("b"), ft_path("d3")));
	ft_ok("mkdir d2/sub", mkdir(ft_path("d2/sub"), 0755));
	ft_ok("rename d2 d2/sub/x (into itself)", rename(ft_path("d2"), ft_path("d2/sub/x")));
	ft_ok("rename d2 d2/x (into itself)", rename(ft_path("d2"), ft_path("d2/x")));
	ft_ok("rename d2/. x", rename(ft_path("d2/."), ft_path("x")));
	ft_ok("rename d2/sub/.. x", rename(ft_path("d2/sub/.."), ft_path("x")));
	ft_ok("rename b/ x (a file with trailing slash)", rename(ft_path("b/"), ft_path("x")));
	ft_ok("rename d2/ d4/ (trailing slashes on dirs)", rename(ft_path("d2/"), ft_path("d4/")));
	ft_show_stat("stat dir (link count)", ft_dir, 0);
	ft_ok("rename d4/sub sub (out of a dir)", rename(ft_path("d4/sub"), ft_path("sub")));
	ft_show_stat("stat d4 (one subdir less)", ft_path("d4"), 0);
	ft_show_stat("stat dir (one subdir more)", ft_dir, 0);
	ft_ok("rename sub d3/sub (into another dir)", rename(ft_path("sub"), ft_path("d3/sub")));
	ft_ok("rename d3/in3 d4/moved (file across dirs)", rename(ft_path("d3/in3"), ft_path("d4/moved")));
	ft_show_dir("d3", ft_path("d3"));
	ft_show_dir("d4", ft_path("d4"));
	ft_ok("renameat dfd-relative", renameat(AT_FDCWD, ft_path("d4/moved"), open(ft_path("d3"), O_RDONLY | O_DIRECTORY), "back"));
	ft_show_dir("d3", ft_path("d3"));
	ft_ok("rename d3/missing/x y (missing dir)", rename(ft_path("d3/back"), ft_path("d3/missing/x")));
	ft_ok("rename to a name under a file", rename(ft_path("d3/back"), ft_path("b/x")));

	/* Symbolic links are renamed, not followed. */
	ft_ok("symlink b -> lb", symlink("b", ft_path("lb")));
	ft_ok("rename lb lb2", rename(ft_path("lb"), ft_path("lb2")));
	ft_show_stat("lstat lb2", ft_path("lb2"), 1);
	ft_show_stat("stat b (untouched)", ft_path("b"), 0);

	/* renameat2 flags. */
	ft_make_file(ft_path("n1"), 11, 6);
	ft_make_file(ft_path("n2"), 22, 7);
	ft_ok("RENAME_NOREPLACE n1 n2 (exists)", rename2(ft_path("n1"), ft_path("n2"), RENAME_NOREPLACE));
	ft_ok("RENAME_NOREPLACE n1 n3", rename2(ft_path("n1"), ft_path("n3"), RENAME_NOREPLACE));
	ft_show_stat("stat n1", ft_path("n1"), 0);
	ft_show_file("n3", ft_path("n3"));
	ft_ok("RENAME_EXCHANGE n2 n3", rename2(ft_path("n2"), ft_path("n3"), RENAME_EXCHANGE));
	ft_show_file("n2", ft_path("n2"));
	ft_show_file("n3", ft_path("n3"));
	ft_ok("RENAME_EXCHANGE n2 missing", rename2(ft_path("n2"), ft_path("missing"), RENAME_EXCHANGE));
	ft_ok("RENAME_EXCHANGE n2 d3 (file and dir)", rename2(ft_path("n2"), ft_path("d3"), RENAME_EXCHANGE));
	ft_show_stat("stat n2 (now the dir)", ft_path("n2"), 0);
	ft_show_stat("stat d3 (now the file)", ft_path("d3"), 0);
	ft_show_dir("n2", ft_path("n2"));
	ft_ok("RENAME_NOREPLACE|RENAME_EXCHANGE", rename2(ft_path("n2"), ft_path("n3"), RENAME_NOREPLACE | RENAME_EXCHANGE));
	ft_ok("renameat2 unknown flag", rename2(ft_path("n2"), ft_path("n9"), 1u << 30));
	ft_show_dir("dir", ft_dir);
	return 0;
}
