/* File behaviour: fcntl record locks (F_SETLK/F_GETLK/F_SETLKW, OFD locks, close drops POSIX locks) and flock, within one process and between a parent and a forked child. */
#include "ft.h"

#include <sys/file.h>
#include <sys/wait.h>

static const char *ltype(short t)
{
	return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };

	return fcntl(fd, cmd, &fl);
}

/* F_GETLK or F_OFD_GETLK for a write lock over [start, start+len): prints the conflict, pid as a relation. */
static void getlk(const char *step, int fd, int cmd, off_t start, off_t len, pid_t other)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len };

	if (fcntl(fd, cmd, &fl) < 0) {
		ft_say("%s: -1 %s", step, ft_errname(errno));
		return;
	}
	if (fl.l_type == F_UNLCK)
		ft_say("%s: F_UNLCK", step);
	else
		ft_say("%s: %s start=%lld len=%lld pid=%s", step, ltype(fl.l_type), (long long)fl.l_start,
		       (long long)fl.l_len, fl.l_pid == -1 ? "-1" : fl.l_pid == getpid() ? "self" :
		       fl.l_pid == other ? "other" : "unexpected");
}

/* Parent and child take turns through two pipes: one byte each way per step. */
static void step_wait(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1)
		_exit(3);
}

static void step_go(int fd)
{
	if (write(fd, "s", 1) != 1)
		_exit(3);
}

static void cross_process(void)
{
	int to_child[2], to_parent[2], st;
	pid_t parent = getpid(), child;
	int fd = open(ft_path("f"), O_RDWR);

	ft_ok("parent F_SETLK F_WRLCK [0,10)", setlk(fd, F_SETLK, F_WRLCK, 0, 10));
	ft_ok("parent F_SETLK F_RDLCK [20,30)", setlk(fd, F_SETLK, F_RDLCK, 20, 10));
	if (pipe(to_child) < 0 || pipe(to_parent) < 0)
		return;
	child = fork();
	if (child == 0) {
		int cfd = open(ft_path("f"), O_RDWR);

		close(to_child[1]);
		close(to_parent[0]);
		getlk("  child F_GETLK [5,6)", cfd, F_GETLK, 5, 1, parent);
		getlk("  child F_GETLK [10,20)", cfd, F_GETLK, 10, 10, parent);
		ft_ok("  child F_SETLK F_WRLCK [5,6)", setlk(cfd, F_SETLK, F_WRLCK, 5, 1));
		ft_ok("  child F_SETLK F_RDLCK [20,25) (shared)", setlk(cfd, F_SETLK, F_RDLCK, 20, 5));
		ft_ok("  child F_SETLK F_WRLCK [25,30)", setlk(cfd, F_SETLK, F_WRLCK, 25, 5));
		ft_ok("  child F_SETLK F_WRLCK [40,50)", setlk(cfd, F_SETLK, F_WRLCK, 40, 10));
		step_go(to_parent[1]);
		step_wait(to_child[0]);
		/* The parent has dropped [0,10) by now, so this wait ends at once. */
		ft_ok("  child F_SETLKW F_WRLCK [0,10) (waits for the parent)", setlk(cfd, F_SETLKW, F_WRLCK, 0, 10));
		getlk("  child F_GETLK [0,10) (own lock)", cfd, F_GETLK, 0, 10, parent);
		step_go(to_parent[1]);
		step_wait(to_child[0]);
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	step_wait(to_parent[0]);
	getlk("parent F_GETLK [40,50)", fd, F_GETLK, 40, 10, child);
	ft_ok("parent F_SETLK F_WRLCK [40,50)", setlk(fd, F_SETLK, F_WRLCK, 40, 10));
	ft_ok("parent F_SETLK F_UNLCK [0,10)", setlk(fd, F_SETLK, F_UNLCK, 0, 10));
	step_go(to_child[1]);
	step_wait(to_parent[0]);
	getlk("parent F_GETLK [0,10) (child's now)", fd, F_GETLK, 0, 10, child);
	step_go(to_child[1]);
	waitpid(child, &st, 0);
	ft_say("child exit: %d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	getlk("parent F_GETLK [0,50) after the child's exit", fd, F_GETLK, 0, 50, child);
	close(to_child[1]);
	close(to_parent[0]);
	close(fd);
}

int main(int argc, char **argv)
{
	int one_process = getenv("FT_ONE_PROCESS") != NULL;
	int fd, fd2, fd3;

	ft_init(argc, argv, 60);
	ft_make_file(ft_path("f"), 100, 1);

	/* One process, POSIX locks: its own locks never conflict; bad arguments. */
	fd = open(ft_path("f"), O_RDWR);
	ft_ok("F_SETLK F_WRLCK [0,10)", setlk(fd, F_SETLK, F_WRLCK, 0, 10));
	ft_ok("F_SETLK F_RDLCK [5,15) (own lock converted)", setlk(fd, F_SETLK, F_RDLCK, 5, 10));
	getlk("F_GETLK [0,100) (own locks never conflict)", fd, F_GETLK, 0, 100, 0);
	ft_ok("F_SETLK bad type", setlk(fd, F_SETLK, 99, 0, 1));
	ft_ok("F_SETLK negative start", setlk(fd, F_SETLK, F_WRLCK, -5, 1));
	ft_ok("F_SETLK len 0 (to EOF and beyond)", setlk(fd, F_SETLK, F_WRLCK, 200, 0));
	fd2 = open(ft_path("f"), O_RDONLY);
	ft_ok("F_SETLK F_WRLCK on an O_RDONLY fd", setlk(fd2, F_SETLK, F_WRLCK, 0, 1));
	ft_ok("F_SETLK F_RDLCK on an O_RDONLY fd", setlk(fd2, F_SETLK, F_RDLCK, 50, 1));

	/* OFD locks belong to the open file description: they conflict within one process. */
	fd3 = open(ft_path("f"), O_RDWR);
	/* [0,3) meets only the write part [0,5) of the POSIX locks. */
	getlk("F_OFD_GETLK [0,3) vs the POSIX lock", fd3, F_OFD_GETLK, 0, 3, 0);
	ft_ok("F_OFD_SETLK [0,10) (conflicts with the POSIX lock)", setlk(fd3, F_OFD_SETLK, F_WRLCK, 0, 10));
	ft_ok("F_OFD_SETLK [60,70)", setlk(fd3, F_OFD_SETLK, F_WRLCK, 60, 10));
	ft_ok("F_SETLK POSIX [60,70) (conflicts with the OFD lock)", setlk(fd, F_SETLK, F_WRLCK, 60, 10));
	/* Closing any descriptor of the file drops the process's POSIX locks. */
	ft_ok("close the O_RDONLY fd", close(fd2));
	getlk("F_OFD_GETLK [0,10) after that close", fd3, F_OFD_GETLK, 0, 10, 0);
	ft_ok("F_OFD_SETLK [0,10) now", setlk(fd3, F_OFD_SETLK, F_WRLCK, 0, 10));
	fd2 = open(ft_path("f"), O_RDWR);
	getlk("F_OFD_GETLK [0,10) from another description", fd2, F_OFD_GETLK, 0, 10, 0);
	ft_ok("F_OFD_SETLK nonzero l_pid", fcntl(fd2, F_OFD_SETLK, &(struct flock){ .l_type = F_WRLCK, .l_pid = 1, .l_len = 1 }));
	close(fd3);
	getlk("F_OFD_GETLK after closing the holder", fd2, F_OFD_GETLK, 0, 100, 0);
	close(fd2);
	close(fd);

	/* flock: per open file description too. */
	fd = open(ft_path("f"), O_RDONLY);
	fd2 = open(ft_path("f"), O_RDONLY);
	ft_ok("flock LOCK_EX", flock(fd, LOCK_EX));
	ft_ok("flock LOCK_EX|LOCK_NB on another description", flock(fd2, LOCK_EX | LOCK_NB));
	ft_ok("flock LOCK_SH|LOCK_NB on another description", flock(fd2, LOCK_SH | LOCK_NB));
	ft_ok("flock LOCK_UN", flock(fd, LOCK_UN));
	ft_ok("flock LOCK_SH|LOCK_NB now", flock(fd2, LOCK_SH | LOCK_NB));
	ft_ok("flock LOCK_SH|LOCK_NB on the first", flock(fd, LOCK_SH | LOCK_NB));
	ft_ok("flock bad op", flock(fd, 0));
	close(fd);
	close(fd2);

	if (one_process)
		ft_say("between processes: not checked (FT_ONE_PROCESS)");
	else
		cross_process();
	return 0;
}
