/* DESIGN.md section 7: refuse to start when lwIP's exported names collide with another object's. */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack/stack_int.h"

/*
 * Debian's liblwip.so exports generic names (mem_malloc, sys_*, tcp_*, ...)
 * and is not linked -Bsymbolic, so its internal calls go through the global
 * symbol scope.  Two ways that goes wrong:
 *   - an object earlier in the scope (the program, when it exports the
 *     name) defines it: lwIP's calls land in the program;
 *   - an object later in the scope, or loaded RTLD_LOCAL, defines it: that
 *     object's calls to its own function land in lwIP.
 * Either way the process misbehaves in ways nobody could debug, so any
 * object in the base namespace that defines a name liblwip defines is
 * refused, with one exception: an identical read-only constant (libc's
 * in6addr_any), where either binding gives the same bytes.
 *
 * Objects loaded with dlopen() after start-up are not checked.
 */

struct dynsyms {
	const ElfW(Sym) *sym;
	const char *str;
	size_t n;
};

/* Dynamic-section pointers are relocated in place by glibc on most
 * architectures; where they are not, they are offsets from the load base. */
static const void *dyn_ptr(const struct link_map *lm, ElfW(Addr) p)
{
	return (const void *)(p < lm->l_addr ? lm->l_addr + p : p);
}

/* The number of .dynsym entries, from DT_HASH or (GNU hash) by walking the
 * last chain to its end marker. */
static size_t gnu_hash_nsyms(const uint32_t *gh)
{
	uint32_t nbuckets = gh[0], symoffset = gh[1], bloom_size = gh[2];
	const ElfW(Addr) *bloom = (const ElfW(Addr) *)&gh[4];
	const uint32_t *buckets = (const uint32_t *)&bloom[bloom_size];
	const uint32_t *chain = &buckets[nbuckets];
	uint32_t last = 0;

	for (uint32_t i = 0; i < nbuckets; i++)
		if (buckets[i] > last)
			last = buckets[i];
	if (last < symoffset)
		return symoffset;
	while (!(chain[last - symoffset] & 1))
		last++;
	return (size_t)last + 1;
}

static int dynsyms_of(const struct link_map *lm, struct dynsyms *d)
{
	const uint32_t *hash = NULL, *gnu_hash = NULL;

	d->sym = NULL;
	d->str = NULL;
	d->n = 0;
	if (!lm->l_ld)
		return -ENOENT;
	for (const ElfW(Dyn) *dyn = lm->l_ld; dyn->d_tag != DT_NULL; dyn++) {
		switch (dyn->d_tag) {
		case DT_SYMTAB:
			d->sym = dyn_ptr(lm, dyn->d_un.d_ptr);
			break;
		case DT_STRTAB:
			d->str = dyn_ptr(lm, dyn->d_un.d_ptr);
			break;
		case DT_HASH:
			hash = dyn_ptr(lm, dyn->d_un.d_ptr);
			break;
		case DT_GNU_HASH:
			gnu_hash = dyn_ptr(lm, dyn->d_un.d_ptr);
			break;
		}
	}
	if (!d->sym || !d->str)
		return -ENOENT;
	if (hash)
		d->n = hash[1];
	else if (gnu_hash)
		d->n = gnu_hash_nsyms(gnu_hash);
	else
		return -ENOENT;
	return 0;
}

/* A symbol that can bind across objects: defined, global or weak, and an
 * ordinary function or object (TLS and IFUNC resolve differently and lwIP
 * has none). */
static bool sym_is_exported_def(const ElfW(Sym) *s)
{
	unsigned bind = ELF64_ST_BIND(s->st_info), type = ELF64_ST_TYPE(s->st_info);

	if (s->st_shndx == SHN_UNDEF || s->st_name == 0)
		return false;
	if (bind != STB_GLOBAL && bind != STB_WEAK)
		return false;
	return type == STT_FUNC || type == STT_OBJECT || type == STT_NOTYPE;
}

static bool is_lwip(const struct link_map *lm)
{
	const char *base = lm->l_name ? strrchr(lm->l_name, '/') : NULL;

	base = base ? base + 1 : lm->l_name;
	return base && strncmp(base, "liblwip.so", 10) == 0;
}

struct lwip_name {
	const char *name;
	const ElfW(Sym) *sym;
};

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct lwip_name *)a)->name, ((const struct lwip_name *)b)->name);
}

/* True if addr lies in a read-only loaded segment of the object at base. */
static bool addr_read_only(const struct link_map *lm, const void *addr)
{
	const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)lm->l_addr;
	const ElfW(Phdr) *ph;

	/* The ELF header is mapped at the base of every shared object. */
	if (!eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return false;
	ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
	for (int i = 0; i < eh->e_phnum; i++) {
		uintptr_t lo = lm->l_addr + ph[i].p_vaddr, hi = lo + ph[i].p_memsz;

		if (ph[i].p_type == PT_LOAD && (uintptr_t)addr >= lo && (uintptr_t)addr < hi)
			return !(ph[i].p_flags & PF_W);
	}
	return false;
}

/*
 * Two definitions of one name are harmless when they are the same constant:
 * an object of the same size and bytes, read-only in liblwip.  The other
 * copy must be read-only too, unless it is a copy relocation of a C
 * library constant: a program that uses glibc's in6addr_any (lighttpd does)
 * carries a writable copy of it in its own .bss, with the bytes the C
 * library gave it, and every reference, lwIP's included, binds to that copy.
 */
static bool same_constant(const struct link_map *lm, const ElfW(Sym) *s, const void *theirs,
			  const struct link_map *lwip, const ElfW(Sym) *hit, const void *ours,
			  const char *name)
{
	void *libc;
	bool libc_defines = false;

	if (ELF64_ST_TYPE(s->st_info) != STT_OBJECT || s->st_size != hit->st_size ||
	    !addr_read_only(lwip, ours) || memcmp(theirs, ours, s->st_size) != 0)
		return false;
	if (addr_read_only(lm, theirs))
		return true;
	libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (libc) {
		libc_defines = dlsym(libc, name) != NULL;
		dlclose(libc);
	}
	return libc_defines;
}

static const char *object_name(const struct link_map *lm)
{
	if (lm->l_name && lm->l_name[0])
		return lm->l_name;
	return program_invocation_name ? program_invocation_name : "the program";
}

int stack_symcheck(void)
{
	struct link_map *head = NULL, *lwip = NULL, *lm;
	struct lwip_name *names = NULL;
	struct dynsyms ld;
	size_t nnames = 0, conflicts = 0;
	void *self;
	int err = 0;

	self = dlopen(NULL, RTLD_NOW | RTLD_NOLOAD);
	if (!self || dlinfo(self, RTLD_DI_LINKMAP, &head) != 0 || !head) {
		fprintf(stderr, "libretto: cannot read the list of loaded objects: %s\n", dlerror());
		return -ELIBBAD;
	}
	while (head->l_prev)
		head = head->l_prev;
	for (lm = head; lm; lm = lm->l_next)
		if (is_lwip(lm))
			lwip = lm;
	if (!lwip || dynsyms_of(lwip, &ld) < 0) {
		fprintf(stderr, "libretto: liblwip.so is not loaded or has no symbol table\n");
		err = -ENOENT;
		goto out;
	}
	names = calloc(ld.n, sizeof(*names));
	if (!names) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 1; i < ld.n; i++)
		if (sym_is_exported_def(&ld.sym[i]))
			names[nnames++] = (struct lwip_name){ ld.str + ld.sym[i].st_name, &ld.sym[i] };
	qsort(names, nnames, sizeof(*names), name_cmp);

	for (lm = head; lm; lm = lm->l_next) {
		struct dynsyms od;

		if (lm == lwip || dynsyms_of(lm, &od) < 0)
			continue;
		for (size_t i = 1; i < od.n; i++) {
			const ElfW(Sym) *s = &od.sym[i];
			struct lwip_name key, *hit;
			const void *theirs, *ours;

			if (!sym_is_exported_def(s))
				continue;
			key.name = od.str + s->st_name;
			hit = bsearch(&key, names, nnames, sizeof(*names), name_cmp);
			if (!hit)
				continue;
			theirs = (const void *)(lm->l_addr + s->st_value);
			ours = (const void *)(lwip->l_addr + hit->sym->st_value);
			if (same_constant(lm, s, theirs, lwip, hit->sym, ours, key.name))
				continue;
			if (conflicts++ == 0) {
				void *bound = dlsym(RTLD_DEFAULT, key.name);

				fprintf(stderr, "libretto: %s defines \"%s\", a name liblwip.so also "
					"exports: %s; refusing to run lwIP in this process "
					"(see DESIGN.md section 7)\n",
					object_name(lm), key.name,
					bound == ours ? "that object's calls would land in lwIP"
						      : "lwIP's calls would land in that object");
			}
		}
	}
	if (conflicts > 1)
		fprintf(stderr, "libretto: (%zu conflicting names in all)\n", conflicts);
	if (conflicts)
		err = -ELIBBAD;
out:
	free(names);
	dlclose(self);
	return err;
}
