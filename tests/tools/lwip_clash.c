/* lwip-clash: a program that exports two of lwIP's generic names, for the runtime's symbol check. */
#include <stdlib.h>

/* Exported (the program is linked with --export-dynamic), so lwIP's own
 * calls to these names would bind here if the runtime allowed it. */
void *mem_malloc(size_t size)
{
	return malloc(size);
}

int tcp_write(void)
{
	return -1;
}

int main(void)
{
	return 0;
}
