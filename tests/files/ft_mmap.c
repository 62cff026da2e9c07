/* File behaviour: mmap MAP_PRIVATE of a file for reading (whole, at an offset, past EOF in the last page), private writes not reaching the file, EACCES EINVAL ENODEV. */
#include "ft.h"

#include <sys/mman.h>

#define SIZE (3 * 4096 + 100)

int main(int argc, char **argv)
{
	uint8_t want[SIZE];
	uint8_t *p;
	int fd, wo;

	ft_init(argc, argv, 60);
	ft_make_file(ft_path("f"), SIZE, 1);
	ft_pattern(want, SIZE, 0, 1);

	fd = open(ft_path("f"), O_RDONLY);
	p = mmap(NULL, SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
	ft_ok("mmap whole PROT_READ MAP_PRIVATE", p == MAP_FAILED ? -1 : 0);
	if (p != MAP_FAILED) {
		ft_say("mapping equals the file: %s", ft_yn(!memcmp(p, want, SIZE)));
		ft_say("last page beyond EOF is zeros: %s", ft_yn(p[SIZE] == 0 && p[4 * 4096 - 1] == 0));
		ft_ok("munmap", munmap(p, SIZE));
	}
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 8192);
	ft_ok("mmap 4096 at offset 8192", p == MAP_FAILED ? -1 : 0);
	if (p != MAP_FAILED) {
		ft_say("offset mapping equals the file: %s", ft_yn(!memcmp(p, want + 8192, 4096)));
		munmap(p, 4096);
	}
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 100);
	ft_ok("mmap at unaligned offset", p == MAP_FAILED ? -1 : 0);
	p = mmap(NULL, 0, PROT_READ, MAP_PRIVATE, fd, 0);
	ft_ok("mmap length 0", p == MAP_FAILED ? -1 : 0);
	close(fd);

	/* A private writable mapping: the process sees its writes, the file does not. */
	fd = open(ft_path("f"), O_RDWR);
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ft_ok("mmap PROT_WRITE MAP_PRIVATE", p == MAP_FAILED ? -1 : 0);
	if (p != MAP_FAILED) {
		memcpy(p + 10, "private", 7);
		ft_say("the mapping holds the private write: %s", ft_yn(!memcmp(p + 10, "private", 7)));
		munmap(p, SIZE);
	}
	close(fd);
	ft_show_file("file after the private write (unchanged)", ft_path("f"));

	/* The mapping stays valid after close of its descriptor. */
	fd = open(ft_path("f"), O_RDONLY);
	p = mmap(NULL, SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	ft_say("mapping readable after close: %s", ft_yn(p != MAP_FAILED && !memcmp(p, want, SIZE)));
	if (p != MAP_FAILED)
		munmap(p, SIZE);

	wo = open(ft_path("f"), O_WRONLY);
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, wo, 0);
	ft_ok("mmap an O_WRONLY fd", p == MAP_FAILED ? -1 : 0);
	close(wo);
	ft_ok("mkdir d", mkdir(ft_path("d"), 0755));
	fd = open(ft_path("d"), O_RDONLY);
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	ft_ok("mmap a directory", p == MAP_FAILED ? -1 : 0);
	close(fd);
	ft_make_file(ft_path("empty"), 0, 1);
	fd = open(ft_path("empty"), O_RDONLY);
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	ft_ok("mmap an empty file (succeeds; touching it would SIGBUS)", p == MAP_FAILED ? -1 : 0);
	if (p != MAP_FAILED)
		munmap(p, 4096);
	close(fd);
	return 0;
}
