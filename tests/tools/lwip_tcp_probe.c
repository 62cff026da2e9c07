/* lwip-tcp-probe: TCP servers on lwIP's raw API, to test the stack and NIC under the runtime before sockets exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <lwip/tcpip.h>
#include <lwip/tcp.h>

/*
 * Usage: lwip-tcp-probe SECONDS SOURCE_BYTES
 *
 * Run under the runtime (fake-lease), which starts lwIP and its netif at
 * the first socket: main() opens one first.  Listens on port 5001 (discard: counts what it receives)
 * and 5002 (source: sends SOURCE_BYTES to each client, then closes), for
 * SECONDS, then prints "discarded=N" on stdout.
 *
 * It calls lwIP directly under the core lock, which unmodified programs
 * never do; it must not reference lwIP's data objects (IP_ADDR_ANY and the
 * like), whose copy relocations the runtime's symbol check would refuse.
 */

static char chunk[16384];
static unsigned long long discarded;
static unsigned long source_bytes;

static err_t discard_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	if (!p) {
		tcp_recv(pcb, NULL);
		tcp_close(pcb);
		return ERR_OK;
	}
	discarded += p->tot_len;
	tcp_recved(pcb, p->tot_len);
	pbuf_free(p);
	return ERR_OK;
}

/* Queue as much as the send buffer takes; close once all is acknowledged. */
static void source_fill(struct tcp_pcb *pcb)
{
	unsigned long *left = pcb->callback_arg;

	while (*left > 0) {
		unsigned long n = tcp_sndbuf(pcb);

		if (n > sizeof(chunk))
			n = sizeof(chunk);
		if (n > *left)
			n = *left;
		if (n == 0 || tcp_write(pcb, chunk, (u16_t)n, 0) != ERR_OK)
			break;
		*left -= n;
	}
	tcp_output(pcb);
	if (*left == 0 && !pcb->unsent && !pcb->unacked) {
		tcp_sent(pcb, NULL);
		free(left);
		tcp_arg(pcb, NULL);
		tcp_close(pcb);
	}
}

static err_t source_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	source_fill(pcb);
	return ERR_OK;
}

static void source_err(void *arg, err_t err)
{
	free(arg);
}

static err_t probe_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	unsigned long *left;

	if (err != ERR_OK || !pcb)
		return ERR_VAL;
	if ((long)arg == 5001) {
		tcp_recv(pcb, discard_recv);
		return ERR_OK;
	}
	left = malloc(sizeof(*left));
	if (!left) {
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	*left = source_bytes;
	tcp_arg(pcb, left);
	tcp_sent(pcb, source_sent);
	tcp_err(pcb, source_err);
	tcp_nagle_disable(pcb);
	source_fill(pcb);
	return ERR_OK;
}

int main(int argc, char **argv)
{
	unsigned secs;

	if (argc != 3) {
		fprintf(stderr, "usage: lwip-tcp-probe SECONDS SOURCE_BYTES\n");
		return 2;
	}
	secs = (unsigned)strtoul(argv[1], NULL, 10);
	source_bytes = strtoul(argv[2], NULL, 10);
	memset(chunk, 'x', sizeof(chunk));
	/* The runtime starts lwIP at the first socket the libOS serves; this
	 * one (left open) is only that trigger. */
	if (socket(AF_INET, SOCK_DGRAM, 0) < 0) {
		perror("lwip-tcp-probe: socket (starting the stack)");
		return 1;
	}
	LOCK_TCPIP_CORE();
	for (long port = 5001; port <= 5002; port++) {
		struct tcp_pcb *l = tcp_new();

		/* NULL is "any address" (IP_ADDR_ANY would be a data reference). */
		if (!l || tcp_bind(l, NULL, (u16_t)port) != ERR_OK) {
			UNLOCK_TCPIP_CORE();
			fprintf(stderr, "lwip-tcp-probe: cannot bind port %ld\n", port);
			return 1;
		}
		l = tcp_listen(l);
		if (!l) {
			UNLOCK_TCPIP_CORE();
			fprintf(stderr, "lwip-tcp-probe: cannot listen on port %ld\n", port);
			return 1;
		}
		tcp_arg(l, (void *)port);
		tcp_accept(l, probe_accept);
	}
	UNLOCK_TCPIP_CORE();
	sleep(secs);
	LOCK_TCPIP_CORE();
	printf("discarded=%llu\n", discarded);
	UNLOCK_TCPIP_CORE();
	fflush(stdout);
	return 0;
}
