/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/dhcp.h: replies to this host's DHCP and DHCPv6 requests (step 5a, "DHCP") */

/* A DHCP reply is expected this long after the request it answers (covers a server's
 * conflict-detection ping before its offer; a client retransmitting refreshes it). */
#define DHCP_EXPECT_NS (30 * NX_NSEC_PER_SEC)
#define DHCP_SERVER_PORT  67
#define DHCP_CLIENT_PORT  68
#define DHCP6_CLIENT_PORT 546
#define DHCP6_SERVER_PORT 547
#define BOOTREQUEST 1
#define BOOTREPLY   2

/* The exchange a DHCP message belongs to, from the UDP header at p->l4 (has_ports):
 * 0 = not a BOOTP/DHCPv6 message with room for the fields. */
static __always_inline int dhcp_key(struct pkt *p, void *end, struct dhcp_key *k)
{
	u8 *msg = (u8 *)p->l4 + sizeof(struct udphdr);

	__builtin_memset(k, 0, sizeof(*k));
	k->family = p->t.family;
	if (p->t.family == 4) {
		/* op htype hlen hops xid[4] secs[2] flags[2] ciaddr yiaddr siaddr giaddr chaddr[16] */
		if ((void *)(msg + 34) > end)
			return 0;
		__builtin_memcpy(k->xid, msg + 4, 4);
		__builtin_memcpy(k->chaddr, msg + 28, 6);
		return msg[0];
	}
	/* msg-type, transaction-id[3] */
	if ((void *)(msg + 4) > end)
		return 0;
	__builtin_memcpy(k->xid, msg + 1, 3);
	return msg[0] ? msg[0] : 0xff;
}

/* A DHCP reply (UDP 67 -> 68, BOOTREPLY) or DHCPv6 reply (547 -> 546) passes when it echoes
 * the transaction id (and, for DHCP, the hardware address) of a request this host sent
 * (tc_egress, dhcp_expect) not long ago. An open udp/68 would let anyone on the path
 * configure this host; the xid is 32 random bits the client chose. */
static __always_inline int stage_dhcp(struct pkt *p, void *end, u64 *now)
{
	struct dhcp_key k;
	int type;
	u64 *sent;

	if (p->t.family == 4) {
		if (p->t.dport != nx_htons(DHCP_CLIENT_PORT) || p->t.sport != nx_htons(DHCP_SERVER_PORT))
			return NEXT;
	} else if (p->t.dport != nx_htons(DHCP6_CLIENT_PORT) || p->t.sport != nx_htons(DHCP6_SERVER_PORT)) {
		return NEXT;
	}
	type = dhcp_key(p, end, &k);
	if (!type || (p->t.family == 4 && type != BOOTREPLY))
		return NEXT;
	sent = dhcp_expect.lookup(&k);
	if (sent && (s64)(clock_ns(now) - *sent) < (s64)DHCP_EXPECT_NS)
		return R_PASS_DHCP;
	return NEXT;
}

/* tc_egress: a DHCP request (68 -> 67, BOOTREQUEST) or DHCPv6 client message (546 -> 547) of
 * this host opens (or refreshes) the expectation of its replies. */
static __always_inline int dhcp_request(struct pkt *p, void *end)
{
	struct dhcp_key k;
	int type;
	u64 ts;

	if (p->t.family == 4) {
		if (p->t.sport != nx_htons(DHCP_CLIENT_PORT) || p->t.dport != nx_htons(DHCP_SERVER_PORT))
			return 0;
	} else if (p->t.sport != nx_htons(DHCP6_CLIENT_PORT) || p->t.dport != nx_htons(DHCP6_SERVER_PORT)) {
		return 0;
	}
	type = dhcp_key(p, end, &k);
	if (!type || (p->t.family == 4 && type != BOOTREQUEST))
		return 0;
	ts = bpf_ktime_get_ns();
	dhcp_expect.update(&k, &ts);
	return 1;
}
