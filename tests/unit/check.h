/* The unit tests' one assertion: report a failed condition and go on; main() returns failures != 0. */
#ifndef LIBRETTO_TEST_CHECK_H
#define LIBRETTO_TEST_CHECK_H

#include <stdio.h>

/* Failed checks so far, from any thread.  One test program is one
 * translation unit, so a static counter per program is enough. */
static int failures;

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: check failed: %s\n",       \
				__FILE__, __LINE__, #cond);                \
			__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED); \
		}                                                          \
	} while (0)

#endif
