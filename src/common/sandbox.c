/* The servers' sandbox: capabilities dropped, no_new_privs, a seccomp allow-list (sandbox.h). */
#include "common/sandbox.h"

#include <errno.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

int sandbox_drop_caps(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (int c = 0; c <= 63; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno == EINVAL)
			break;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	return 0;
}

#ifdef SANDBOX_HAVE_SECCOMP
#include <seccomp.h>
#include <sys/mman.h>

int sandbox_filter(const int *calls, size_t n, bool kill0)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	int err = 0;

	if (ctx == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n && !err; i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0);
	/* Mappings and protections, but never executable ones. */
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!err && kill0)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
				       SCMP_A1(SCMP_CMP_EQ, 0));
	if (!err)
		err = seccomp_load(ctx);
	seccomp_release(ctx);
	return err < 0 ? err : 0;
}

#else

int sandbox_filter(const int *calls, size_t n, bool kill0)
{
	(void)calls;
	(void)n;
	(void)kill0;
	return -ENOSYS;
}

#endif
