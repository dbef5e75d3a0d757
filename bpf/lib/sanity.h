/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/sanity.h: protocol sanity (CFG_SANITY), step 2a */

static __always_inline int bogon_source(struct pkt *p)
{
	u8 *a = p->t.saddr;

	if (p->t.family == 4) {
		/* 0.0.0.0/8 (but a DHCP client's 0.0.0.0:68 -> :67), 127/8, 224/4, 240/4 */
		if (a[0] == 0)
			return !(p->t.proto == IPPROTO_UDP && p->t.sport == nx_htons(68) &&
				 p->t.dport == nx_htons(67));
		return a[0] == 127 || a[0] >= 224;
	}
	/* ff00::/8, ::1, ::ffff:0:0/96 (:: stays: DAD and MLD use it) */
	if (a[0] == 0xff)
		return 1;
	u8 high = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		high |= a[i];
	if (high)
		return 0;
	if (a[10] == 0xff && a[11] == 0xff)
		return 1;
	return !(a[10] | a[11] | a[12] | a[13] | a[14]) && a[15] == 1;
}

/* Protocol sanity switches (CFG_SANITY): first, so that a tracked flow cannot
 * carry garbage either. ARP and neighbour discovery never get here. */
static __always_inline int stage_sanity(struct pkt *p)
{
	u64 on = cfg(CFG_SANITY);

	if (!on)
		return NEXT;
	if ((on & SANITY_FRAGMENTS) && p->frag)
		return R_DROP_FRAGMENT;
	if ((on & SANITY_TCP_FLAGS) && p->t.proto == IPPROTO_TCP && p->has_ports &&
	    !tcp_flags_valid(p->tcp_flags))
		return R_DROP_TCP_FLAGS;
	if ((on & SANITY_LAND) && same_addr(p->t.saddr, p->t.daddr))
		return R_DROP_LAND;
	if ((on & SANITY_BOGON) && bogon_source(p))
		return R_DROP_BOGON;
	return NEXT;
}
