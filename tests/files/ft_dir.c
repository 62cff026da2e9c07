/* File behaviour: mkdir/rmdir (EEXIST ENOTEMPTY ENOTDIR EINVAL), directory link counts, chdir into the test directory, relative paths, getcwd, *at calls. */
#include "ft.h"

/* getcwd relative to the test directory ("." for the directory itself). */
static void show_cwd(const char *step)
{
	char buf[4200];
	size_t n = strlen(ft_dir);

	if (!getcwd(buf, sizeof(buf))) {
		ft_say("%s: -1 %s", step, ft_errname(errno));
		return;
	}
	if (!strncmp(buf, ft_dir, n) && (buf[n] == 0 || buf[n] == '/'))
		ft_say("%s: %s%s", step, buf[n] ? "." : ".", buf + n);
	else
		ft_say("%s: outside the test directory", step);
}

int main(int argc, char **argv)
{
	struct stat st;
	char *start;
	int fd, dfd;

	ft_init(argc, argv, 60);
	start = getcwd(NULL, 0);

	ft_ok("mkdir a", mkdir(ft_path("a"), 0755));
	ft_ok("mkdir a again", mkdir(ft_path("a"), 0755));
	ft_ok("mkdir a/b/c (no a/b)", mkdir(ft_path("a/b/c"), 0755));
	ft_ok("mkdir a/b 0700", mkdir(ft_path("a/b"), 0700));
	ft_ok("mkdir a/b/c 0777 (umask 022)", mkdir(ft_path("a/b/c"), 0777));
	ft_ok("mkdir a/b/c/ (trailing slash, exists)", mkdir(ft_path("a/b/c/"), 0755));
	ft_ok("mkdir a/t/ (trailing slash, new)", mkdir(ft_path("a/t/"), 0755));
	ft_show_stat("stat a", ft_path("a"), 0);
	ft_show_stat("stat a/b", ft_path("a/b"), 0);
	ft_show_stat("stat a/b/c", ft_path("a/b/c"), 0);
	ft_make_file(ft_path("a/file"), 10, 1);
	ft_ok("mkdir a/file/x", mkdir(ft_path("a/file/x"), 0755));
	ft_ok("mkdir a/file (a file)", mkdir(ft_path("a/file"), 0755));
	ft_ok("mkdir \"\"", mkdir("", 0755));
	ft_ok("symlink b -> a/lb", symlink("b", ft_path("a/lb")));
	ft_ok("mkdir a/lb (a symlink)", mkdir(ft_path("a/lb"), 0755));
	ft_show_dir("list a", ft_path("a"));

	ft_ok("rmdir a (not empty)", rmdir(ft_path("a")));
	ft_ok("rmdir a/b (not empty)", rmdir(ft_path("a/b")));
	ft_ok("rmdir a/file (a file)", rmdir(ft_path("a/file")));
	ft_ok("rmdir a/lb (a symlink)", rmdir(ft_path("a/lb")));
	ft_ok("rmdir a/b/c/. (dot)", rmdir(ft_path("a/b/c/.")));
	ft_ok("rmdir a/missing", rmdir(ft_path("a/missing")));
	ft_ok("unlink a/b/c (a dir)", unlink(ft_path("a/b/c")));
	ft_ok("rmdir a/b/c", rmdir(ft_path("a/b/c")));
	ft_show_stat("stat a/b after rmdir c", ft_path("a/b"), 0);
	ft_ok("rmdir a/t/ (trailing slash)", rmdir(ft_path("a/t/")));
	ft_show_stat("stat a", ft_path("a"), 0);

	/* mkdirat/unlinkat relative to a directory descriptor. */
	dfd = open(ft_path("a"), O_RDONLY | O_DIRECTORY);
	ft_ok("mkdirat dfd x", mkdirat(dfd, "x", 0750));
	ft_ok("fstatat dfd x", fstatat(dfd, "x", &st, 0));
	ft_say("x: a dir with mode %04o", (unsigned)(st.st_mode & 07777));
	fd = openat(dfd, "x/inner", O_CREAT | O_WRONLY, 0600);
	ft_ok("openat dfd x/inner O_CREAT", fd);
	close(fd);
	ft_ok("unlinkat dfd x AT_REMOVEDIR (not empty)", unlinkat(dfd, "x", AT_REMOVEDIR));
	ft_ok("unlinkat dfd x/inner AT_REMOVEDIR (a file)", unlinkat(dfd, "x/inner", AT_REMOVEDIR));
	ft_ok("unlinkat dfd x/inner", unlinkat(dfd, "x/inner", 0));
	ft_ok("unlinkat dfd x (a dir, no flag)", unlinkat(dfd, "x", 0));
	ft_ok("unlinkat dfd x AT_REMOVEDIR", unlinkat(dfd, "x", AT_REMOVEDIR));
	ft_ok("unlinkat bad flag", unlinkat(dfd, "file", 0x1));
	ft_ok("mkdirat on a file descriptor", mkdirat(open(ft_path("a/file"), O_RDONLY), "y", 0755));

	/* chdir into the test directory: relative paths and getcwd. */
	ft_ok("chdir dir", chdir(ft_dir));
	show_cwd("getcwd");
	ft_ok("chdir a/b", chdir("a/b"));
	show_cwd("getcwd");
	fd = open("rel", O_CREAT | O_WRONLY, 0644);
	ft_ok("open rel O_CREAT (relative)", fd);
	ft_val("write 3", write(fd, "rel", 3));
	close(fd);
	ft_show_stat("stat a/b/rel (absolute)", ft_path("a/b/rel"), 0);
	ft_show_stat("stat ../file (relative)", "../file", 0);
	ft_ok("mkdir sub (relative)", mkdir("sub", 0755));
	ft_ok("rename rel sub/rel2 (relative)", rename("rel", "sub/rel2"));
	ft_show_file("read sub/rel2", "sub/rel2");
	ft_ok("access ../../a F_OK", access("../../a", F_OK));
	ft_ok("chdir ..", chdir(".."));
	show_cwd("getcwd");
	ft_ok("chdir file (not a dir)", chdir("file"));
	ft_ok("chdir missing", chdir("missing"));
	show_cwd("getcwd (unchanged)");
	fd = open("b", O_RDONLY | O_DIRECTORY);
	ft_ok("fchdir b", fchdir(fd));
	close(fd);
	show_cwd("getcwd");
	ft_ok("chdir lb (a symlink to b, from a)", chdir("../lb"));
	show_cwd("getcwd");
	fd = openat(AT_FDCWD, "sub/rel2", O_RDONLY);
	ft_ok("openat AT_FDCWD sub/rel2", fd);
	close(fd);
	ft_ok("chdir dir", chdir(ft_dir));
	ft_ok("mkdir gone", mkdir("gone", 0755));
	ft_ok("chdir gone", chdir("gone"));
	ft_ok("rmdir ../gone (the cwd)", rmdir("../gone"));
	fd = open("newfile", O_CREAT | O_WRONLY, 0644);
	ft_ok("open newfile O_CREAT in a removed cwd", fd);
	if (fd >= 0)
		close(fd);
	ft_ok("chdir back to the start", chdir(start ? start : "/"));
	free(start);
	ft_show_dir("list dir", ft_dir);
	return 0;
}
