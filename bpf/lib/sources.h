/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/sources.h: a source's resolved class, exact address or longest
 * prefix (steps 3 and 5, "Source classes") */

/* The exact-address entry of a source, or NULL. The barrier keeps clang from merging the two
 * lookups into one call on either map: the verifier inlines a hash lookup only at a call site
 * that sees a single map (about 15 ns per packet). */
static __always_inline u64 *source_host(u8 family, u8 *addr)
{
	u64 *v;

	if (family == 4) {
		v = src4_host.lookup((struct addr4 *)addr);
		asm volatile("" : "+r"(v));
	} else {
		v = src6_host.lookup((struct addr6 *)addr);
	}
	return v;
}

/* The longest prefix holding a source, or NULL (the barrier: as in source_host, a direct call). */
static __always_inline u64 *source_prefix(u8 family, u8 *addr)
{
	u64 *v;

	if (family == 4) {
		struct lpm4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, addr, 4);
		v = src4_lpm.lookup(&k);
		asm volatile("" : "+r"(v));
		return v;
	} else {
		struct lpm6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, addr, 16);
		return src6_lpm.lookup(&k);
	}
}

static __always_inline int blocking(u64 cls, u64 *now)
{
	u64 expires = cls & SRC_EXPIRY_MASK;

	return (cls & (SRC_WL | SRC_BL)) == SRC_BL && (expires == 0 || expires > clock_ns(now));
}

/* The whitelist and blacklist stages, decided by the source's resolved class. */
static __always_inline int stage_source(u64 cls, u64 *now)
{
	if (cls & SRC_WL)
		return R_PASS_WHITELIST;
	return blocking(cls, now) ? R_DROP_BLACKLIST : NEXT;
}

static __always_inline u64 source_class(u8 family, u8 *addr)
{
	u64 *v = source_host(family, addr);

	if (!v)
		v = source_prefix(family, addr);
	return v ? *v : 0;
}
