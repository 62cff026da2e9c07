/* Behaviour: sockets shared between threads: accept in one thread, read in another; a reader woken by a writer thread's data and by shutdown. */
#include "bt.h"

#include <pthread.h>

static int lsn, accepted = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void *acceptor(void *arg)
{
	int c = accept(lsn, NULL, NULL);

	pthread_mutex_lock(&lock);
	accepted = c < 0 ? -errno - 1 : c;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
	return NULL;
}

struct reader {
	int fd;
	ssize_t n;
	int err;
	uint64_t fnv;
};

static void *reader(void *arg)
{
	struct reader *r = arg;

	r->fnv = BT_FNV_INIT;
	r->n = bt_drain(r->fd, &r->fnv);
	return NULL;
}

static void *blocked_read(void *arg)
{
	struct reader *r = arg;
	char buf[64];

	r->n = read(r->fd, buf, sizeof(buf));
	r->err = r->n < 0 ? errno : 0;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t ta, tr;
	struct reader rd = { 0 };
	int ctl, fd;
	uint8_t want[50000];

	bt_init(argc, argv, 30);
	lsn = bt_listen_self(0, 8);
	bt_ok("listen", lsn);

	/* Thread A blocks in accept; the main thread asks the peer to
	 * connect; thread B reads the accepted socket until EOF. */
	pthread_create(&ta, NULL, acceptor, NULL);
	usleep(100000);
	ctl = bt_callback(bt_local_port(lsn), 1, sizeof(want), 100);
	bt_ok("callback request", ctl);
	pthread_mutex_lock(&lock);
	while (accepted == -1)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	pthread_join(ta, NULL);
	bt_say("accept in thread A: %s", accepted >= 0 ? "ok" : bt_errname(-accepted - 1));
	rd.fd = accepted;
	pthread_create(&tr, NULL, reader, &rd);
	pthread_join(tr, NULL);
	bt_val("read in thread B", rd.n);
	bt_pattern(want, sizeof(want), 0);
	bt_say("thread B fnv equal: %d", rd.fnv == bt_fnv(BT_FNV_INIT, want, sizeof(want)));
	bt_ok("reply from main", bt_write_all(accepted, "thanks", 6));
	close(accepted);
	bt_callback_report("callback", ctl);

	/* A thread blocked in read is woken by data that another thread's
	 * send provokes (the echo). */
	fd = bt_connect_peer(BT_PORT_ECHO);
	rd.fd = fd;
	pthread_create(&tr, NULL, blocked_read, &rd);
	usleep(100000);
	bt_val("send from main", send(fd, "wake", 4, 0));
	pthread_join(tr, NULL);
	bt_say("blocked read woken: %zd %s", rd.n, rd.err ? bt_errname(rd.err) : "");

	/* A thread blocked in read is woken by shutdown(SHUT_RD) from another
	 * thread (Linux returns 0 there). */
	pthread_create(&tr, NULL, blocked_read, &rd);
	usleep(100000);
	bt_ok("shutdown SHUT_RDWR from main", shutdown(fd, SHUT_RDWR));
	pthread_join(tr, NULL);
	bt_say("blocked read after shutdown: %zd %s", rd.n, rd.err ? bt_errname(rd.err) : "");
	close(fd);

	/* A thread blocked in accept is woken by shutdown of the listener. */
	accepted = -1;
	pthread_create(&ta, NULL, acceptor, NULL);
	usleep(100000);
	bt_ok("shutdown listener", shutdown(lsn, SHUT_RDWR));
	pthread_join(ta, NULL);
	bt_say("blocked accept after shutdown: %s", accepted >= 0 ? "ok" : bt_errname(-accepted - 1));
	close(lsn);
	return 0;
}
