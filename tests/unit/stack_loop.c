/* Test-only stack.h: real lwIP with one netif 10.0.0.1/24 that talks to itself. */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include <lwip/etharp.h>
#include <lwip/init.h>
#include <lwip/netif.h>
#include <lwip/tcpip.h>

#include "stack/stack.h"
#include "stack_loop.h"

/*
 * Frames to 10.0.0.1 never reach linkoutput: with LWIP_NETIF_LOOPBACK lwIP
 * loops them inside (netif_loop_output) and its tcpip thread feeds them back
 * in under the core lock, so a client and a server in one process reach each
 * other through the whole TCP/UDP/IP path.  Everything else (ARP for other
 * hosts) is dropped and counted.
 */
static struct netif loop_netif;
static bool loop_up;
static struct libretto_region loop_region;
static int loop_port_refs[REGION_MAX_PORTS];
unsigned long stack_loop_dropped;

static err_t loop_linkoutput(struct netif *nif, struct pbuf *p)
{
	stack_loop_dropped++;
	return ERR_OK;
}

static err_t loop_netif_init(struct netif *nif)
{
	static const uint8_t mac[6] = { 0x02, 0x4c, 0x00, 0x00, 0x0f, 0x01 };

	nif->name[0] = 't';
	nif->name[1] = 'l';
	nif->mtu = 1500;
	nif->hwaddr_len = 6;
	memcpy(nif->hwaddr, mac, 6);
	nif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
	nif->output = etharp_output;
	nif->linkoutput = loop_linkoutput;
	return ERR_OK;
}

static void loop_tcpip_done(void *arg)
{
	sem_post(arg);
}

int stack_init(void)
{
	sem_t done;
	ip4_addr_t ip, mask, gw;

	if (loop_up)
		return 0;
	real_init();
	sem_init(&done, 0, 0);
	tcpip_init(loop_tcpip_done, &done);
	while (sem_wait(&done) != 0)
		;
	sem_destroy(&done);
	IP4_ADDR(&ip, 10, 0, 0, 1);
	IP4_ADDR(&mask, 255, 255, 255, 0);
	IP4_ADDR(&gw, 0, 0, 0, 0);
	stack_lock();
	netif_add(&loop_netif, &ip, &mask, &gw, NULL, loop_netif_init, tcpip_input);
	netif_set_default(&loop_netif);
	netif_set_link_up(&loop_netif);
	netif_set_up(&loop_netif);
	stack_unlock();
	loop_region.magic = LIBRETTO_REGION_MAGIC;
	loop_region.version = LIBRETTO_REGION_VERSION;
	loop_up = true;
	return 0;
}

bool stack_active(void)
{
	return loop_up;
}

void stack_lock(void)
{
	LOCK_TCPIP_CORE();
}

void stack_unlock(void)
{
	UNLOCK_TCPIP_CORE();
}

int stack_poll(int budget)
{
	/* lwIP's tcpip thread delivers looped frames by itself. */
	return 0;
}

struct in_addr stack_ip(void)
{
	struct in_addr a = { .s_addr = htonl(0x0a000001) };
	return a;
}

struct in_addr stack_netmask(void)
{
	struct in_addr a = { .s_addr = htonl(0xffffff00) };
	return a;
}

bool stack_routes(struct in_addr dst)
{
	return (dst.s_addr & stack_netmask().s_addr) == (stack_ip().s_addr & stack_netmask().s_addr);
}

struct libretto_region *stack_region(void)
{
	return &loop_region;
}

/* Same contract as the real stack: reference counted, highest state shown. */
/* Direct mode only here: no port claims. */
bool stack_indirect(void)
{
	return false;
}

int stack_port_claim(uint8_t proto, uint16_t *port)
{
	(void)proto;
	(void)port;
	return 0;
}

void stack_port_unclaim(uint8_t proto, uint16_t port)
{
	(void)proto;
	(void)port;
}

void stack_port_add(uint8_t proto, uint16_t port, uint8_t state)
{
	struct libretto_region *r = &loop_region;

	for (uint32_t i = 0; i < r->nports; i++) {
		if (r->ports[i].proto == proto && r->ports[i].port == port) {
			loop_port_refs[i]++;
			if (state > r->ports[i].state)
				r->ports[i].state = state;
			return;
		}
	}
	if (r->nports == REGION_MAX_PORTS)
		return;
	r->ports[r->nports].proto = proto;
	r->ports[r->nports].port = port;
	r->ports[r->nports].state = state;
	loop_port_refs[r->nports++] = 1;
}

void stack_port_del(uint8_t proto, uint16_t port)
{
	struct libretto_region *r = &loop_region;

	for (uint32_t i = 0; i < r->nports; i++) {
		if (r->ports[i].proto != proto || r->ports[i].port != port)
			continue;
		if (--loop_port_refs[i] > 0)
			return;
		r->nports--;
		r->ports[i] = r->ports[r->nports];
		loop_port_refs[i] = loop_port_refs[r->nports];
		return;
	}
}

int stack_loop_port_state(uint8_t proto, uint16_t port)
{
	int st = 0;

	stack_lock();
	for (uint32_t i = 0; i < loop_region.nports; i++)
		if (loop_region.ports[i].proto == proto && loop_region.ports[i].port == port)
			st = loop_region.ports[i].state;
	stack_unlock();
	return st;
}

bool stack_fd_is_private(int fd)
{
	return false;
}

int stack_ctl_fd(void)
{
	return -1;
}
