/* The table of NIC backends, looked up by the lease's "backend=" name. */
#include <string.h>

#include "nic/nic.h"

static const struct nic_ops *const nic_backends[] = {
	&nic_afxdp_ops,
	&nic_afpacket_ops,
	&nic_shm_ops,
};

const struct nic_ops *nic_ops_by_name(const char *name)
{
	for (size_t i = 0; i < sizeof(nic_backends) / sizeof(nic_backends[0]); i++)
		if (strcmp(nic_backends[i]->name, name) == 0)
			return nic_backends[i];
	return NULL;
}
