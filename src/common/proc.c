/* Facts about other processes read from /proc. */
#include "common/proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool proc_is_child_of(pid_t pid, pid_t parent)
{
	char path[64], line[128];
	bool yes = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "PPid:", 5) == 0) {
			yes = atoi(line + 5) == (int)parent;
			break;
		}
	}
	fclose(f);
	return yes;
}
