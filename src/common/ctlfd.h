/* The --control-fd argument that librettod gives its servers (netd, fsd). */
#ifndef LIBRETTO_CTLFD_H
#define LIBRETTO_CTLFD_H

/*
 * Parse arg, the descriptor of the server's control socket.  0 with it in
 * *fd; -EINVAL (and *fd -1) when arg is not a decimal descriptor;
 * -ENOTSOCK (*fd the number) when that descriptor is not a SOCK_SEQPACKET
 * socket, which is what librettod always hands over.
 */
int ctlfd_parse(const char *arg, int *fd);

#endif
