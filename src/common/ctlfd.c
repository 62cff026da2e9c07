/* The servers' --control-fd argument (ctlfd.h). */
#include "common/ctlfd.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

int ctlfd_parse(const char *arg, int *fd)
{
	int type;
	socklen_t tl = sizeof(type);
	char *end;
	long v;

	*fd = -1;
	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || v < 0 || v > INT32_MAX)
		return -EINVAL;
	*fd = (int)v;
	if (getsockopt(*fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_SEQPACKET)
		return -ENOTSOCK;
	return 0;
}
