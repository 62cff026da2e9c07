/* Shared helpers of the file-behaviour suite: observation lines, errno names, checksums, paths in the test directory. */
#ifndef FT_H
#define FT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/*
 * Every program takes the directory to work in as argv[1] (created if
 * missing, must be empty) and prints one line per observation on stdout,
 * built only from values that every correct file system gives alike: return
 * classes, errno names, sizes, modes, link counts, checksums, sorted names.
 * Inode, device numbers and times that legitimately differ are never
 * printed, only relations between them ("same inode: yes").  The runner
 * (run.sh) compares a kernel tmpfs run with a direct and an indirect volume
 * run.  A program exits 0 when it ran to its end (whatever it observed),
 * 2 on a usage or setup error.
 */

/* The test directory (argv[1], without a trailing slash). */
extern const char *ft_dir;

/*
 * Check arguments, create the directory, set umask 022, make stdout line
 * buffered and arm an alarm of `seconds` so that a hung call kills the
 * program (the runner sees the missing lines).
 */
void ft_init(int argc, char **argv, unsigned seconds);

/* ft_dir + "/" + name, in one of 8 rotating static buffers. */
const char *ft_path(const char *name);

/*
 * The observation helpers are the socket behaviour suite's
 * (tests/behaviour/bt_common.c): one line per observation, "step: ok",
 * "step: <value>" or "step: -1 ENAME" (errno kept), the symbolic errno
 * name, FNV-1a.
 */
#include "bt.h"
#define ft_say bt_say
#define ft_errname bt_errname
#define ft_ok bt_ok
#define ft_val bt_val
#define ft_fnv bt_fnv
/* "yes" or "no". */
const char *ft_yn(int v);

#define FT_FNV_INIT 0xcbf29ce484222325ULL
/* A deterministic byte stream, not periodic at small powers of two; seed selects the stream. */
void ft_pattern(uint8_t *buf, size_t n, uint64_t off, unsigned seed);

/* Create (or truncate) path with n pattern bytes of `seed`; 0 or -errno. */
int ft_make_file(const char *path, size_t n, unsigned seed);
/* Print "step: size=N fnv=X" for the whole file at path, or the errno. */
void ft_show_file(const char *step, const char *path);
/* Print "step: size=N fnv=X" for what is readable from fd from its offset to EOF. */
void ft_show_fd(const char *step, int fd);
/* Print "step: mode=O type=T nlink=N size=S uid=U gid=G" from a stat of path (lstat when nofollow). */
void ft_show_stat(const char *step, const char *path, int nofollow);
/* A file type as a word: file, dir, symlink, fifo, ... */
const char *ft_type(mode_t m);
/* Print "step: name/type name/type ..." of a directory, sorted, without . and .. */
void ft_show_dir(const char *step, const char *path);

#endif
