/* Pure path helpers of the file layer: lexical normalization, mount matching, LIBRETTO_VOLUMES entries. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vfs/vfs_mount.h"

/* Append one component (len bytes) to out (length *olen), folding "." and "..". */
static int vfs_path_push(char *out, size_t n, size_t *olen, const char *c, size_t len)
{
	if (len == 0 || (len == 1 && c[0] == '.'))
		return 0;
	if (len == 2 && c[0] == '.' && c[1] == '.') {
		/* Back to the previous slash; ".." at "/" stays at "/". */
		while (*olen > 0 && out[*olen - 1] != '/')
			(*olen)--;
		if (*olen > 1)
			(*olen)--;
		out[*olen] = '\0';
		return 0;
	}
	if (*olen + (*olen > 1 ? 1 : 0) + len + 1 > n)
		return -ENAMETOOLONG;
	if (*olen > 1)
		out[(*olen)++] = '/';
	memcpy(out + *olen, c, len);
	*olen += len;
	out[*olen] = '\0';
	return 0;
}

static int vfs_path_fold(char *out, size_t n, size_t *olen, const char *p)
{
	int err;

	while (*p != '\0') {
		const char *s;

		while (*p == '/')
			p++;
		s = p;
		while (*p != '\0' && *p != '/')
			p++;
		err = vfs_path_push(out, n, olen, s, (size_t)(p - s));
		if (err < 0)
			return err;
	}
	return 0;
}

int vfs_path_normalize(const char *base, const char *path, char *out, size_t n)
{
	size_t olen = 1;
	int err;

	if (path == NULL || path[0] == '\0')
		return -ENOENT;
	if (n < 2)
		return -ENAMETOOLONG;
	out[0] = '/';
	out[1] = '\0';
	if (path[0] != '/') {
		if (base == NULL || base[0] != '/')
			return -EINVAL;
		err = vfs_path_fold(out, n, &olen, base);
		if (err < 0)
			return err;
	}
	err = vfs_path_fold(out, n, &olen, path);
	return err < 0 ? err : (int)olen;
}

const char *vfs_path_under(const char *abs, const char *mnt, size_t mlen)
{
	if (strncmp(abs, mnt, mlen) != 0)
		return NULL;
	if (abs[mlen] == '\0' || abs[mlen] == '/')
		return abs + mlen;
	return NULL;
}

bool vfs_path_has_dotdot(const char *path)
{
	for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2)
		if ((p == path || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			return true;
	return false;
}

bool vfs_path_wants_dir(const char *path)
{
	size_t len = strlen(path);

	/* Strip trailing "/" and "/." pairs; a slash was seen after a name. */
	while (len > 0) {
		if (path[len - 1] == '/')
			len--;
		else if (len >= 2 && path[len - 1] == '.' && path[len - 2] == '/')
			len--;
		else
			break;
	}
	return len > 0 && len < strlen(path);
}

/* Copy the value (vlen bytes) into dst (size n) as a string. */
static int vfs_entry_copy(char *dst, size_t n, const char *v, size_t vlen)
{
	if (vlen >= n)
		return -ENAMETOOLONG;
	memcpy(dst, v, vlen);
	dst[vlen] = '\0';
	return 0;
}

int vfs_entry_parse(const char *text, size_t len, struct vfs_entry *e, const char **why)
{
	char mount[PATH_MAX] = "";
	const char *p = text, *end = text + len;
	bool have_fd = false;

	memset(e, 0, sizeof(*e));
	e->fd = -1;
	*why = NULL;
	while (p < end) {
		const char *kv = p, *eq, *c;
		size_t klen, vlen;

		c = memchr(p, ',', (size_t)(end - p));
		if (c == NULL)
			c = end;
		p = c + 1;
		if (c == kv)
			continue;
		eq = memchr(kv, '=', (size_t)(c - kv));
		if (eq == NULL) {
			*why = "a key without '='";
			return -EINVAL;
		}
		klen = (size_t)(eq - kv);
		vlen = (size_t)(c - eq - 1);
		eq++;
		if (klen == 5 && memcmp(kv, "mount", 5) == 0) {
			if (vfs_entry_copy(mount, sizeof(mount), eq, vlen) < 0) {
				*why = "mount= is too long";
				return -EINVAL;
			}
		} else if (klen == 5 && memcmp(kv, "image", 5) == 0) {
			if (vfs_entry_copy(e->image, sizeof(e->image), eq, vlen) < 0) {
				*why = "image= is too long";
				return -EINVAL;
			}
		} else if (klen == 7 && memcmp(kv, "storage", 7) == 0) {
			if (vlen == 6 && memcmp(eq, "direct", 6) == 0)
				e->storage = VFS_DIRECT;
			else if (vlen == 8 && memcmp(eq, "indirect", 8) == 0)
				e->storage = VFS_INDIRECT;
			else {
				*why = "storage= is neither direct nor indirect";
				return -EINVAL;
			}
		} else if (klen == 2 && memcmp(kv, "fd", 2) == 0) {
			char num[16], *q;
			long v;

			if (vlen == 0 || vfs_entry_copy(num, sizeof(num), eq, vlen) < 0) {
				*why = "fd= is not a descriptor number";
				return -EINVAL;
			}
			v = strtol(num, &q, 10);
			if (*q != '\0' || v < 0 || v > 1 << 20) {
				*why = "fd= is not a descriptor number";
				return -EINVAL;
			}
			e->fd = (int)v;
			have_fd = true;
		}
		/* Other keys are the indirect backend's (vfs_fsd_attach). */
	}
	if (mount[0] != '/') {
		*why = "mount= is missing or not absolute";
		return -EINVAL;
	}
	if (vfs_path_normalize(NULL, mount, e->mount, sizeof(e->mount)) < 0 ||
	    strcmp(e->mount, "/") == 0) {
		*why = "mount= must name a directory other than /";
		return -EINVAL;
	}
	if (e->storage == 0) {
		*why = "storage= is missing";
		return -EINVAL;
	}
	if (e->storage == VFS_DIRECT && !have_fd) {
		*why = "storage=direct needs fd=";
		return -EINVAL;
	}
	return 0;
}

int vfs_path_last_dot(const char *path)
{
	size_t len = strlen(path), s;

	while (len > 1 && path[len - 1] == '/')
		len--;
	s = len;
	while (s > 0 && path[s - 1] != '/')
		s--;
	if (len - s == 1 && path[s] == '.')
		return 1;
	if (len - s == 2 && path[s] == '.' && path[s + 1] == '.')
		return 2;
	return 0;
}
