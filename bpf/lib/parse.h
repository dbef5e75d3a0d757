/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/parse.h: Ethernet, VLAN, IPv4, IPv6 and its extension headers,
 * TCP/UDP/ICMP, the packets an ICMP error quotes, IPv6 link plumbing; every header is checked against
 * the end of the frame before it is read */

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10
#define TH_URG 0x20
/* Valid combinations of FIN SYN RST ACK URG (PSH, ECE, CWR ignored), as
 * netfilter's tcp_valid_flags: bit n set = flags n valid. */
#define TCP_VALID_FLAGS ((1ULL << TH_SYN) | (1ULL << (TH_SYN | TH_URG)) | \
			 (1ULL << (TH_SYN | TH_ACK)) | (1ULL << TH_RST) | \
			 (1ULL << (TH_RST | TH_ACK)) | (1ULL << (TH_FIN | TH_ACK)) | \
			 (1ULL << (TH_FIN | TH_ACK | TH_URG)) | (1ULL << TH_ACK) | \
			 (1ULL << (TH_ACK | TH_URG)))

#define IPV6_EXT_MAX 4
#define IP_FRAG_OFFSET 0x1fff
#define IP6_FRAG_OFFSET 0xfff8
#define IP_MF 0x2000

/* pkt.frag */
#define FRAG_FIRST 1 /* offset 0: carries the L4 header */
#define FRAG_LATER 2 /* offset > 0: no L4 header */

struct icmp_hdr {
	u8 type;
	u8 code;
	__be16 csum;
	__be16 id;
	__be16 seq;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct ipv6_frag_hdr {
	u8 nexthdr;
	u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

static __always_inline int is_vlan(__be16 proto)
{
	return proto == nx_htons(ETH_P_8021Q) || proto == nx_htons(ETH_P_8021AD);
}

/* The hop limit of an IPv6 frame that parse() accepted (0: unreadable), read again where only ICMPv6 needs
 * it, so that no other packet carries it through the extension-header walk. parse() allows at most two VLAN
 * tags, so the ethertype 0x86dd is at byte 12, 16 or 20 (a tag's TCI, between, is never read). */
static __always_inline u8 hop_limit6(void *data, void *end)
{
	__be16 *proto = data + 12;

#pragma unroll
	for (int i = 0; i < 3; i++) {
		if ((void *)(proto + 1) > end)
			return 0;
		if (*proto == nx_htons(ETH_P_IPV6)) {
			struct ipv6hdr *ip6 = (void *)(proto + 1);

			return (void *)(ip6 + 1) <= end ? ip6->hop_limit : 0;
		}
		proto += 2;
	}
	return 0;
}

static __always_inline int is_ipv6_ext(u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
	       nh == IPPROTO_DSTOPTS || nh == IPPROTO_FRAGMENT;
}

/* The L4 part of a packet quoted by an ICMP error (the packet this host sent):
 * its reply tuple goes to p->inner, in the form stage_conntrack looks up. */
static __always_inline void parse_quoted_l4(void *l4, void *end, u8 proto, u8 family, struct pkt *p)
{
	u8 icmp = family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		__be16 *ports = l4;

		if ((void *)(ports + 2) > end)
			return;
		p->inner.sport = ports[1];
		p->inner.dport = ports[0];
	} else if (proto == icmp) {
		struct icmp_hdr *ih = l4;

		/* a quoted echo request (sport id, dport 0), reversed */
		if ((void *)(ih + 1) > end || ih->type != (family == 4 ? 8 : 128))
			return;
		p->inner.sport = 0;
		p->inner.dport = ih->id;
	} else {
		return;
	}
	p->inner.proto = proto;
	p->inner.family = family;
	p->icmp_err = 1;
}

static __always_inline void parse_quoted(void *pos, void *end, struct pkt *p)
{
	u8 nh;

	__builtin_memset(&p->inner, 0, sizeof(p->inner));
	if (p->t.family == 4) {
		struct iphdr *ip = pos;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5 ||
		    (ip->frag_off & nx_htons(IP_FRAG_OFFSET)))
			return;
		__builtin_memcpy(p->inner.saddr, &ip->daddr, 4);
		__builtin_memcpy(p->inner.daddr, &ip->saddr, 4);
		/* the quoted packet was sent by this host */
		if (!same_addr(p->inner.daddr, p->t.daddr))
			return;
		parse_quoted_l4(pos + ip->ihl * 4, end, ip->protocol, 4, p);
	} else {
		struct ipv6hdr *ip6 = pos;

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return;
		__builtin_memcpy(p->inner.saddr, &ip6->daddr, 16);
		__builtin_memcpy(p->inner.daddr, &ip6->saddr, 16);
		if (!same_addr(p->inner.daddr, p->t.daddr))
			return;
		/* A first fragment of a datagram this host sent (a large UDP answer, too big for a link
		 * further on): its L4 header follows the fragment header, as netfilter finds it. */
		nh = ip6->nexthdr;
		pos = ip6 + 1;
		if (nh == IPPROTO_FRAGMENT) {
			struct ipv6_frag_hdr *fh = pos;

			if ((void *)(fh + 1) > end || (fh->frag_off & nx_htons(IP6_FRAG_OFFSET)))
				return; /* a later fragment quotes no L4 header */
			nh = fh->nexthdr;
			pos = fh + 1;
		}
		parse_quoted_l4(pos, end, nh, 6, p);
	}
}

static __always_inline int is_icmp_error(u8 family, u8 type)
{
	if (family == 4) /* unreachable (incl. fragmentation needed), time exceeded, parameter problem */
		return type == 3 || type == 11 || type == 12;
	return type >= 1 && type <= 4; /* unreachable, packet too big, time exceeded, parameter problem */
}

/* ICMPv6 link plumbing, one bit per type 128..159 (bit = type - 128); docs/internals.md, "ICMP and
 * ICMPv6 types". ND_TYPES: neighbour discovery and what RFC 4890 4.4.1 groups with it (inverse ND
 * 141/142, SEND certificate path 148/149): hop limit 255 (RFC 4861 7.1, RFC 3122, RFC 3971), code 0.
 * ND_LL_SOURCE: RA and redirect also come from a link-local source (RFC 4861 6.1.2, 8.1).
 * MLD_TYPES: MLD (130-132, 143) and multicast router discovery (151-153): hop limit 1 and a link-local
 * (or, for an MLDv2 report, the unspecified) source (RFC 2710, 3810, 4286). */
#define ICMP6_BIT(t) (1U << ((t) - 128))
#define ND_TYPES (ICMP6_BIT(133) | ICMP6_BIT(134) | ICMP6_BIT(135) | ICMP6_BIT(136) | ICMP6_BIT(137) | \
		  ICMP6_BIT(141) | ICMP6_BIT(142) | ICMP6_BIT(148) | ICMP6_BIT(149))
#define ND_LL_SOURCE (ICMP6_BIT(134) | ICMP6_BIT(137))
#define MLD_TYPES (ICMP6_BIT(130) | ICMP6_BIT(131) | ICMP6_BIT(132) | ICMP6_BIT(143) | \
		   ICMP6_BIT(151) | ICMP6_BIT(152) | ICMP6_BIT(153))

static __always_inline int link_local6(u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static __always_inline int unspecified6(u8 *a)
{
	u8 any = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		any |= a[i];
	return !any;
}

/* An ICMPv6 message that can only have come from this link and that the host needs before any
 * address or flow is known (ND, MLD): passed like ARP, before the source stages. A hop limit of
 * 255 survives no router; a link-local or unspecified source is never forwarded. Anything else of
 * these types (wrong hop limit or source, nonzero ND code, a fragment: RFC 6980) is not link
 * plumbing and takes the normal stages. p->l4 is still the start of the frame here (it moves to the
 * L4 header for UDP only). */
static __always_inline int link_plumbing6(u8 type, u8 code, struct pkt *p, void *end)
{
	u32 bit;

	if (type < 128 || type > 159 || p->frag)
		return 0;
	bit = ICMP6_BIT(type);
	if (ND_TYPES & bit)
		return code == 0 && hop_limit6(p->l4, end) == 255 &&
		       (!(ND_LL_SOURCE & bit) || link_local6(p->t.saddr));
	if (MLD_TYPES & bit)
		return hop_limit6(p->l4, end) == 1 && (link_local6(p->t.saddr) || unspecified6(p->t.saddr));
	return 0;
}

static __always_inline int parse_l4(void *pos, void *end, struct pkt *p)
{
	u8 icmp = p->t.family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;

	if (p->t.proto == IPPROTO_TCP) {
		struct tcphdr *th = pos;

		if ((void *)(th + 1) > end)
			return R_DROP_MALFORMED;
		p->t.sport = th->source;
		p->t.dport = th->dest;
		p->has_ports = 1;
		p->tcp_flags = ((u8 *)th)[13];
		p->seq = nx_ntohl(th->seq);
		p->ack_seq = nx_ntohl(th->ack_seq);
	} else if (p->t.proto == IPPROTO_UDP) {
		struct udphdr *uh = pos;

		if ((void *)(uh + 1) > end)
			return R_DROP_MALFORMED;
		p->t.sport = uh->source;
		p->t.dport = uh->dest;
		p->has_ports = 1;
		p->l4 = uh;
	} else if (p->t.proto == IPPROTO_ICMPV6 && p->t.family == 6) {
		u8 *tc = pos; /* type, code */

		if ((void *)(tc + 2) <= end && link_plumbing6(tc[0], tc[1], p, end))
			return R_PASS_NEIGHBOR;
	}
	if (p->t.proto == icmp) {
		struct icmp_hdr *ih = pos;

		if ((void *)(ih + 1) > end)
			return NEXT;
		/* echo: the id stands in for the ports, placed so that a request's
		 * reversed tuple is the tuple of its reply */
		if (ih->type == (p->t.family == 4 ? 8 : 128)) {
			p->t.sport = ih->id;
			p->echo = 1;
		} else if (ih->type == (p->t.family == 4 ? 0 : 129)) {
			p->t.dport = ih->id;
			p->echo = 2;
		} else if (is_icmp_error(p->t.family, ih->type)) {
			parse_quoted(ih + 1, end, p);
		}
	}
	return NEXT;
}

/* The L4 header a first fragment must hold whole, by the IP header's length (the frame may hold more:
 * Ethernet pads short frames, and anyone may append bytes, which the kernel trims). Its ports and flags
 * are judged here; flags read from the padding while the real ones come in the next fragment would
 * bypass what they decide (RFC 1858: tiny fragments). */
static __always_inline u32 l4_header_size(u8 proto)
{
	return proto == IPPROTO_TCP ? sizeof(struct tcphdr) : proto == IPPROTO_UDP ? sizeof(struct udphdr) : 0;
}

static __always_inline int parse_ipv4(void *pos, void *end, struct pkt *p)
{
	struct iphdr *ip = pos;
	u32 hlen;

	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
		return R_DROP_MALFORMED;
	hlen = ip->ihl * 4;
	if (pos + hlen > end)
		return R_DROP_MALFORMED;

	p->t.family = 4;
	p->t.proto = ip->protocol;
	__builtin_memcpy(p->t.saddr, &ip->saddr, 4);
	__builtin_memcpy(p->t.daddr, &ip->daddr, 4);
	if (ip->frag_off & nx_htons(IP_FRAG_OFFSET | IP_MF)) {
		p->frag = FRAG_FIRST;
		p->frag_id = 0;
		__builtin_memcpy(&p->frag_id, &ip->id, 2);
		if (ip->frag_off & nx_htons(IP_FRAG_OFFSET)) {
			p->frag = FRAG_LATER;
			return NEXT; /* later fragment: no L4 header, ports unknown */
		}
		if (hlen + l4_header_size(p->t.proto) > nx_ntohs(ip->tot_len))
			return R_DROP_MALFORMED;
	}
	return parse_l4(pos + hlen, end, p);
}

static __always_inline int parse_ipv6(void *pos, void *end, struct pkt *p)
{
	struct ipv6hdr *ip6 = pos;
	u8 nh;

	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return R_DROP_MALFORMED;
	p->t.family = 6;
	__builtin_memcpy(p->t.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->t.daddr, &ip6->daddr, 16);
	nh = ip6->nexthdr;
	pos = ip6 + 1;

#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (nh == IPPROTO_FRAGMENT) {
			struct ipv6_frag_hdr *fh = pos;

			if ((void *)(fh + 1) > end)
				return R_DROP_MALFORMED;
			nh = fh->nexthdr;
			pos = fh + 1;
			p->frag = FRAG_FIRST;
			p->frag_id = fh->identification;
			if (fh->frag_off & nx_htons(IP6_FRAG_OFFSET)) {
				p->frag = FRAG_LATER;
				p->t.proto = nh; /* later fragment: ports unknown */
				return NEXT;
			}
		} else if (is_ipv6_ext(nh)) {
			struct ipv6_opt_hdr *oh = pos;
			u32 len;

			if ((void *)(oh + 1) > end)
				return R_DROP_MALFORMED;
			len = (oh->hdrlen + 1) * 8;
			if (pos + len > end)
				return R_DROP_MALFORMED;
			nh = oh->nexthdr;
			pos += len;
		} else {
			break;
		}
	}
	/* A fifth extension header would hide the L4 header from port rules. */
	if (is_ipv6_ext(nh))
		return R_DROP_MALFORMED;
	p->t.proto = nh;
	if (p->frag && pos + l4_header_size(nh) > (void *)(ip6 + 1) + nx_ntohs(ip6->payload_len))
		return R_DROP_MALFORMED;
	return parse_l4(pos, end, p);
}

/* Returns a final reason (neighbour, non-IP, malformed) or NEXT with p filled. */
static __always_inline int parse(void *data, void *end, struct pkt *p)
{
	struct ethhdr *eth = data;
	void *pos;
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return R_DROP_MALFORMED;
	proto = eth->h_proto;
	pos = eth + 1;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_hdr *vh = pos;

		if (!is_vlan(proto))
			break;
		if ((void *)(vh + 1) > end)
			return R_DROP_MALFORMED;
		proto = vh->encap_proto;
		pos = vh + 1;
	}
	/* A third tag: stacked VLAN devices could still deliver IP from it. */
	if (is_vlan(proto))
		return R_DROP_MALFORMED;

	if (proto == nx_htons(ETH_P_IP))
		return parse_ipv4(pos, end, p);
	if (proto == nx_htons(ETH_P_IPV6))
		return parse_ipv6(pos, end, p);
	if (proto == nx_htons(ETH_P_ARP))
		return R_PASS_NEIGHBOR;
	return R_PASS_NON_IP;
}

static __always_inline int tcp_flags_valid(u8 flags)
{
	return (TCP_VALID_FLAGS >> (flags & (TH_FIN | TH_SYN | TH_RST | TH_ACK | TH_URG))) & 1;
}

static __always_inline int tcp_syn_only(struct pkt *p)
{
	return p->t.proto == IPPROTO_TCP && p->has_ports && (p->tcp_flags & (TH_SYN | TH_ACK)) == TH_SYN;
}
