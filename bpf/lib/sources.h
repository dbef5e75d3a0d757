/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/sources.h: a source's resolved class, exact address or longest
 * prefix (steps 3 and 5, "Source classes") */

/* The prefilter word of a source address (16 bytes as in a ct key: IPv4 in the first 4, the rest
 * zero) and its bit in *mask. */
static __always_inline u64 *src_filter_word(u8 *addr, u64 *mask)
{
	u32 a = *(u32 *)addr ^ *(u32 *)(addr + 4) ^ *(u32 *)(addr + 8) ^ *(u32 *)(addr + 12);
	u64 h = ((u64)a * NETXFW_SRC_FILTER_MUL) >> (64 - NETXFW_SRC_FILTER_SHIFT);
	u32 w = h >> 6;

	*mask = 1ULL << (h & 63);
	return src_filter.lookup(&w);
}

/* 0: the address is in neither src4_host nor src6_host (a set bit may be a false positive). */
static __always_inline int source_listed(u8 *addr)
{
	u64 mask, *w = src_filter_word(addr, &mask);

	return w && (*w & mask);
}

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
