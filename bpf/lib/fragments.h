/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/fragments.h: a later fragment takes its first fragment's verdict (step 3a) */

/* A later fragment takes the verdict of its first for this long: the kernel gives up
 * reassembling after 30 s (IPv4) or 60 s (IPv6). */
#define FRAG_TIMEOUT_NS (60 * NX_NSEC_PER_SEC)

/* The datagram of a fragment (the kernel's reassembly key). */
static __always_inline void frag_key(struct pkt *p, struct frag_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, p->t.saddr, 16);
	__builtin_memcpy(k->daddr, p->t.daddr, 16);
	k->id = p->frag_id;
	k->family = p->t.family;
	if (p->t.family == 4)
		k->proto = p->t.proto;
}

/* A later fragment takes the verdict of its datagram's first fragment: pass if that one
 * passed (recorded by frag_passed) not long ago. Otherwise it goes on as a packet without
 * ports: the source and the policy decide (under deny, an orphan is dropped). */
static __always_inline int stage_fragment(struct pkt *p, u64 *now)
{
	struct frag_key k;
	u64 *first;

	frag_key(p, &k);
	first = frags.lookup(&k);
	if (first && (s64)(clock_ns(now) - *first) < (s64)FRAG_TIMEOUT_NS)
		return R_PASS_FRAGMENT;
	return NEXT;
}

/* A first fragment passed: its later fragments will pass too. Drops are not recorded, so
 * fragments the policy refuses cannot evict the entries of datagrams it let in. */
static __always_inline void frag_passed(struct pkt *p, u64 *now)
{
	struct frag_key k;
	u64 ts = clock_ns(now);

	frag_key(p, &k);
	frags.update(&k, &ts);
}
