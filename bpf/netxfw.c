/* SPDX-License-Identifier: GPL-2.0 */
/*
 * netxfw data plane: XDP ingress filter and TC egress flow tracker.
 *
 * Maps, keys, values, config indices, counter reasons and the stage order are
 * the contract in docs/internals.md. Change both together and bump
 * NETXFW_LAYOUT_VERSION (and LAYOUT_VERSION in plugins/module_utils/layout.py).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/pkt_cls.h>

#define NETXFW_LAYOUT_VERSION 4

#ifndef NETXFW_WL_LPM_SIZE
#define NETXFW_WL_LPM_SIZE 65536
#endif
#ifndef NETXFW_WL_HOST_SIZE
#define NETXFW_WL_HOST_SIZE 65536
#endif
#ifndef NETXFW_BL_LPM_SIZE
#define NETXFW_BL_LPM_SIZE 1048576
#endif
#ifndef NETXFW_BL_HOST_SIZE
#define NETXFW_BL_HOST_SIZE 1048576
#endif
#ifndef NETXFW_RULE_SIZE
#define NETXFW_RULE_SIZE 65536
#endif
#ifndef NETXFW_CT_SIZE
#define NETXFW_CT_SIZE 262144
#endif
/* embryonic inbound TCP flows (SYN_RECV): a spoofed SYN flood churns this
 * table, never the one that holds established flows */
#ifndef NETXFW_CT_SYN_SIZE
#define NETXFW_CT_SYN_SIZE 65536
#endif
/* rate-limit rules (CIDR -> bucket settings) and per-source buckets */
#ifndef NETXFW_RL_SIZE
#define NETXFW_RL_SIZE 4096
#endif
#ifndef NETXFW_RL_STATE_SIZE
#define NETXFW_RL_STATE_SIZE 65536
#endif
/* first fragments that passed, whose later fragments take their verdict */
#ifndef NETXFW_FRAG_SIZE
#define NETXFW_FRAG_SIZE 8192
#endif
/* DHCP/DHCPv6 requests this host sent, whose replies may come in */
#ifndef NETXFW_DHCP_SIZE
#define NETXFW_DHCP_SIZE 1024
#endif
/* drop sampling ring buffer, in pages (64 KiB with 4 KiB pages: over a thousand events) */
#ifndef NETXFW_DROPLOG_PAGES
#define NETXFW_DROPLOG_PAGES 16
#endif

/* config indices */
#define CFG_POLICY        0
#define CFG_ICMP_RATE     1
#define CFG_ICMP_BURST    2
#define CFG_CT_ENABLED    3
#define CFG_CT_TIMEOUT_NS 4 /* TCP established (and entries of layout 1 without a state) */
#define CFG_CT_TCP_SYN_NS 5 /* SYN_SENT, SYN_RECV */
#define CFG_CT_TCP_FIN_NS 6 /* FIN_WAIT, TIME_WAIT, CLOSE */
#define CFG_CT_UDP_NS     7 /* UDP, one direction seen */
#define CFG_CT_UDP_STREAM_NS 8 /* UDP, both directions seen */
#define CFG_CT_ICMP_NS    9 /* ICMP echo */
#define CFG_SANITY        10 /* bit mask of SANITY_* */
#define CFG_RL_GLOBAL_RATE  11 /* global bucket: packets/s reaching the rate-limit stage, 0 = off */
#define CFG_RL_GLOBAL_BURST 12
#define CFG_DROPLOG_RATE    13 /* drop events per second into the drops ring buffer, 0 = off */
#define CFG_DROPLOG_BURST   14
#define CFG_RULES_GENERATION 15 /* engine: rules.json generation + 1 the maps hold, 0 while it writes them */

/* rl_cfg.flags */
#define RL_F_SYN_ONLY 1 /* only TCP SYNs (no ACK) of the source are limited */

/* Source class: the value of src4/6_host and src4/6_lpm. The engine resolves each entry
 * from every whitelist, blacklist, port-rule and rate-limit source that covers it, so the
 * exact address (else its longest prefix) alone gives the class. */
#define SRC_BAN         (1ULL << 63) /* an auto-ban of the rate limiter (runtime state) */
#define SRC_WL          (1ULL << 62) /* whitelisted: wins over everything else */
#define SRC_BL          (1ULL << 61) /* blacklisted until the expiry */
#define SRC_RULES       (1ULL << 60) /* some port rule's source covers it */
#define SRC_RL          (1ULL << 59) /* some rate-limit rule's source covers it */
#define SRC_EXPIRY_MASK (SRC_RL - 1) /* CLOCK_MONOTONIC ns, 0 = never */
#define SRC_INHERITED   (SRC_RULES | SRC_RL) /* what an auto-ban keeps of the source's class */

#define SANITY_BOGON     1
#define SANITY_FRAGMENT  2
#define SANITY_TCP_FLAGS 4
#define SANITY_LAND      8

/* ct_val.flags: bits 0-7 the state, then flag bits; bits 32-63 the ISN of
 * our SYN+ACK (ct_syn), the source's vouching generation (ct: CT_GEN_SHIFT) */
#define CT_LEGACY      0 /* written by layout 1 before states existed: established */
#define CT_SYN_SENT    1
#define CT_SYN_RECV    2
#define CT_ESTABLISHED 3
#define CT_FIN_WAIT    4
#define CT_TIME_WAIT   5
#define CT_CLOSE       6
#define CT_UDP         7
#define CT_UDP_STREAM  8
#define CT_ICMP_ECHO   9
#define CT_STATE_MASK  0xffULL
#define CT_F_INBOUND   (1ULL << 8)  /* opened by the peer (accepted by a rule, or a rate-limited peer's) */
#define CT_F_LFIN      (1ULL << 9)  /* FIN sent by this host */
#define CT_F_RFIN      (1ULL << 10) /* FIN sent by the peer */
#define CT_F_SYNACK    (1ULL << 11) /* ct_syn: our SYN+ACK went out, ISN in bits 32-63 */
#define CT_F_RL        (1ULL << 12) /* opened by the peer, whose source a rate-limit rule covers */
/* ct: the low 32 bits of CFG_RULES_GENERATION when the flow's exact source was last found neither
 * whitelisted nor blocked (ct_vouched) */
#define CT_GEN_SHIFT   32

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

/* counter reasons */
enum reason {
	R_PASS_CONNTRACK = 0,
	R_PASS_WHITELIST,
	R_DROP_BLACKLIST,
	R_PASS_RULE,
	R_DROP_RULE,
	R_PASS_ICMP,
	R_DROP_ICMP_RATE,
	R_PASS_POLICY,
	R_DROP_POLICY,
	R_PASS_NEIGHBOR,
	R_PASS_NON_IP,
	R_DROP_MALFORMED,
	R_EGRESS_TRACKED,
	R_PASS_RELATED,
	R_DROP_BOGON,
	R_DROP_FRAGMENT,
	R_DROP_TCP_FLAGS,
	R_DROP_LAND,
	R_DROP_RATELIMIT,   /* the source's bucket is empty */
	R_DROP_RATE_GLOBAL, /* the global bucket is empty */
	R_AUTO_BAN,         /* event: a source was banned (counted besides its ACK's verdict) */
	R_PASS_FRAGMENT,    /* a later fragment of a datagram whose first fragment passed */
	R_PASS_DHCP,        /* a DHCP/DHCPv6 reply to a request this host sent */
};
#define NX_REASONS 32 /* size of the counters array */
#define DROP_REASONS ((1ULL << R_DROP_BLACKLIST) | (1ULL << R_DROP_RULE) | \
		      (1ULL << R_DROP_ICMP_RATE) | (1ULL << R_DROP_POLICY) | \
		      (1ULL << R_DROP_MALFORMED) | (1ULL << R_DROP_BOGON) | \
		      (1ULL << R_DROP_FRAGMENT) | (1ULL << R_DROP_TCP_FLAGS) | \
		      (1ULL << R_DROP_LAND) | (1ULL << R_DROP_RATELIMIT) | \
		      (1ULL << R_DROP_RATE_GLOBAL))
#define NEXT (-1) /* stage result: no verdict, go on */

#define RULE_ALLOW 1
#define RULE_DENY  2

#define NX_NSEC_PER_SEC 1000000000ULL
#define IPV6_EXT_MAX 4
#define IP_FRAG_OFFSET 0x1fff
#define IP6_FRAG_OFFSET 0xfff8

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define nx_htons(x) ((__be16)__builtin_bswap16(x))
#define nx_ntohl(x) ((u32)__builtin_bswap32(x))
#else
#define nx_htons(x) ((__be16)(x))
#define nx_ntohl(x) ((u32)(x))
#endif
#define IP_MF 0x2000

/* pkt.frag */
#define FRAG_FIRST 1 /* offset 0: carries the L4 header */
#define FRAG_LATER 2 /* offset > 0: no L4 header */
/* A later fragment takes the verdict of its first for this long: the kernel gives up
 * reassembling after 30 s (IPv4) or 60 s (IPv6). */
#define FRAG_TIMEOUT_NS (60 * NX_NSEC_PER_SEC)
/* A DHCP reply is expected this long after the request it answers (covers a server's
 * conflict-detection ping before its offer; a client retransmitting refreshes it). */
#define DHCP_EXPECT_NS (30 * NX_NSEC_PER_SEC)
#define DHCP_SERVER_PORT  67
#define DHCP_CLIENT_PORT  68
#define DHCP6_CLIENT_PORT 546
#define DHCP6_SERVER_PORT 547
#define BOOTREQUEST 1
#define BOOTREPLY   2

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

struct counter {
	u64 packets;
	u64 bytes;
};

struct meta {
	u64 layout_version;
	u8 identity[32];
};

struct addr4 {
	u8 addr[4];
};

struct addr6 {
	u8 addr[16];
};

struct lpm4_key {
	u32 prefixlen;
	u8 addr[4];
};

struct lpm6_key {
	u32 prefixlen;
	u8 addr[16];
};

/* prefixlen = 24 (proto + dport, always exact) + source prefix length */
struct rule4_key {
	u32 prefixlen;
	u8 proto;
	u8 dport[2];
	u8 addr[4];
	u8 pad;
};

struct rule6_key {
	u32 prefixlen;
	u8 proto;
	u8 dport[2];
	u8 addr[16];
	u8 pad;
};

struct ct_key {
	u8 saddr[16];
	u8 daddr[16];
	__be16 sport;
	__be16 dport;
	u8 proto;
	u8 family;
	u8 pad[2];
};

struct ct_val {
	u64 last_seen_ns;
	u64 flags;
};

/* A datagram as the kernel reassembles it: IPv4 (src, dst, id, proto), IPv6 (src, dst, id) */
struct frag_key {
	u8 saddr[16];
	u8 daddr[16];
	__be32 id;  /* IPv4: the 16-bit id in the first two bytes */
	u8 proto;   /* IPv4 protocol; 0 for IPv6 */
	u8 family;
	u8 pad[2];
};

/* A DHCP exchange this host opened: BOOTP xid and client hardware address, or the
 * DHCPv6 transaction id (3 bytes, chaddr zero) */
struct dhcp_key {
	u8 xid[4];
	u8 family;
	u8 pad[3];
	u8 chaddr[8]; /* first 6 bytes of BOOTP chaddr (an Ethernet address) */
};

struct bucket {
	struct bpf_spin_lock lock;
	u32 pad;
	u64 credit_ns;
	u64 last_ns;
};

/* rate limit of a source CIDR (rl4_cfg/rl6_cfg value) */
struct rl_cfg {
	u64 rate;       /* packets per second */
	u64 burst;      /* bucket depth, packets */
	u64 flags;      /* RL_F_* */
	u64 ban_ttl_ns; /* over the rate: banned this long; 0 = drop only */
};

/* one source's bucket (rl4_state/rl6_state value) */
struct rl_state {
	u64 credit_ns;
	u64 last_ns;
	u64 dropped;
	u64 proof_credit_ns; /* the ban's bucket: TCP handshakes the source completed */
	u64 proof_last_ns;
};

/* a sampled drop (drops ring buffer) */
struct drop_event {
	u64 ts_ns;     /* bpf_ktime_get_ns */
	u8 saddr[16];  /* as in a ct key: IPv4 in the first 4 bytes */
	u8 daddr[16];
	__be16 sport;  /* 0 when unknown */
	__be16 dport;
	u8 proto;
	u8 family;     /* 4, 6, or 0 when the packet did not parse */
	u8 reason;     /* counter reason */
	u8 pad;
	u32 len;       /* packet length */
};

BPF_ARRAY(config, u64, 16);
BPF_PERCPU_ARRAY(counters, struct counter, NX_REASONS);
BPF_ARRAY(meta, struct meta, 1);
/* exact addresses (/32, /128) and prefixes of the whitelist, the blacklist and the sources of
 * the port and rate-limit rules, with their resolved class (a rule's source: one slot at most) */
#define NETXFW_SRC_HOST_SIZE (NETXFW_WL_HOST_SIZE + NETXFW_BL_HOST_SIZE + NETXFW_RULE_SIZE + NETXFW_RL_SIZE)
#define NETXFW_SRC_LPM_SIZE  (NETXFW_WL_LPM_SIZE + NETXFW_BL_LPM_SIZE + NETXFW_RULE_SIZE + NETXFW_RL_SIZE)
BPF_HASH(src4_host, struct addr4, u64, NETXFW_SRC_HOST_SIZE);
BPF_HASH(src6_host, struct addr6, u64, NETXFW_SRC_HOST_SIZE);
BPF_F_TABLE("lpm_trie", struct lpm4_key, u64, src4_lpm, NETXFW_SRC_LPM_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct lpm6_key, u64, src6_lpm, NETXFW_SRC_LPM_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct rule4_key, u32, rules4, NETXFW_RULE_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct rule6_key, u32, rules6, NETXFW_RULE_SIZE, BPF_F_NO_PREALLOC);
BPF_TABLE("lru_hash", struct ct_key, struct ct_val, ct, NETXFW_CT_SIZE);
BPF_TABLE("lru_hash", struct ct_key, struct ct_val, ct_syn, NETXFW_CT_SYN_SIZE);
BPF_ARRAY(icmp_bucket, struct bucket, 1);
BPF_F_TABLE("lpm_trie", struct lpm4_key, struct rl_cfg, rl4_cfg, NETXFW_RL_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct lpm6_key, struct rl_cfg, rl6_cfg, NETXFW_RL_SIZE, BPF_F_NO_PREALLOC);
BPF_TABLE("lru_hash", struct addr4, struct rl_state, rl4_state, NETXFW_RL_STATE_SIZE);
BPF_TABLE("lru_hash", struct addr6, struct rl_state, rl6_state, NETXFW_RL_STATE_SIZE);
BPF_ARRAY(rl_global, struct bucket, 1);
BPF_RINGBUF_OUTPUT(drops, NETXFW_DROPLOG_PAGES);
BPF_ARRAY(droplog_bucket, struct bucket, 1);
BPF_TABLE("lru_hash", struct frag_key, u64, frags, NETXFW_FRAG_SIZE);       /* value: when the first passed */
BPF_TABLE("lru_hash", struct dhcp_key, u64, dhcp_expect, NETXFW_DHCP_SIZE); /* value: when the request left */

/* What the parser learns. The tuple is laid out as a ct key so the
 * conntrack lookup can use it directly. */
struct pkt {
	struct ct_key t;
	u32 seq;             /* TCP, host order */
	u32 ack_seq;
	u8 has_ports; /* TCP/UDP header present (not a later fragment) */
	u8 tcp_flags;
	u8 frag;      /* FRAG_FIRST, FRAG_LATER, 0 not a fragment */
	u8 echo;      /* 1 echo request, 2 echo reply (ports: id) */
	u8 icmp_err;  /* inner holds a quoted TCP/UDP/echo tuple */
	struct ct_key inner; /* ICMP error: the quoted packet's reply tuple; zeroed by parse_quoted */
	/* not zeroed: read only when the fields above say they were set */
	__be32 frag_id;  /* frag != 0: IPv4 id (first two bytes) or IPv6 identification */
	void *l4;        /* UDP: its header; else the start of the frame (a packet pointer on every path) */
};
/* what every packet zeroes of struct pkt: all but inner */
#define PKT_HEAD offsetof(struct pkt, inner)

static __always_inline u64 cfg(u32 idx)
{
	u64 *v = config.lookup(&idx);

	return v ? *v : 0;
}

static __always_inline void count(u32 reason, u64 bytes)
{
	struct counter *c = counters.lookup(&reason);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* ---- parsing: every header is checked against end before it is read ---- */

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

/* 16-byte addresses as kept in a ct key (IPv4: the rest is zero) */
static __always_inline int same_addr(u8 *a, u8 *b)
{
	u8 diff = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		diff |= a[i] ^ b[i];
	return !diff;
}

static __always_inline void parse_quoted(void *pos, void *end, struct pkt *p)
{
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
		parse_quoted_l4(ip6 + 1, end, ip6->nexthdr, 6, p);
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
	}
	return parse_l4(pos + hlen, end, p);
}

static __always_inline int is_ipv6_ext(u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
	       nh == IPPROTO_DSTOPTS || nh == IPPROTO_FRAGMENT;
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

/* ---- ingress stages ---- */

/* The clock is read at most once per packet, and only by a stage that compares
 * times (a conntrack age, a blacklist expiry, the ICMP bucket): most verdicts need
 * none, and bpf_ktime_get_ns() is a helper call. *now == 0: not read yet. */
static __always_inline u64 clock_ns(u64 *now)
{
	if (!*now)
		*now = bpf_ktime_get_ns();
	return *now;
}

static __always_inline int tcp_flags_valid(u8 flags)
{
	return (TCP_VALID_FLAGS >> (flags & (TH_FIN | TH_SYN | TH_RST | TH_ACK | TH_URG))) & 1;
}

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
	if ((on & SANITY_FRAGMENT) && p->frag)
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

static __always_inline u64 ct_timeout(u64 flags)
{
	u32 idx;

	switch (flags & CT_STATE_MASK) {
	case CT_SYN_SENT:
	case CT_SYN_RECV:
		idx = CFG_CT_TCP_SYN_NS;
		break;
	case CT_FIN_WAIT:
	case CT_TIME_WAIT:
	case CT_CLOSE:
		idx = CFG_CT_TCP_FIN_NS;
		break;
	case CT_UDP:
		idx = CFG_CT_UDP_NS;
		break;
	case CT_UDP_STREAM:
		idx = CFG_CT_UDP_STREAM_NS;
		break;
	case CT_ICMP_ECHO:
		idx = CFG_CT_ICMP_NS;
		break;
	default:
		idx = CFG_CT_TIMEOUT_NS;
	}
	return cfg(idx);
}

/* A flow's age is judged with the coarse clock (CLOCK_MONOTONIC_COARSE: the same clock, up to a tick
 * late, for a fraction of bpf_ktime_get_ns' cost) unless this packet read the precise one already: a
 * flow lives up to one tick (4 ms at HZ=250) past its timeout. */
static __always_inline int ct_fresh(struct ct_val *v, u64 *now)
{
	u64 t = *now ? *now : bpf_ktime_get_coarse_ns();

	/* signed: another CPU may have stamped last_seen after our now */
	return (s64)(t - v->last_seen_ns) < (s64)ct_timeout(v->flags);
}

/* A packet from the peer on a fresh TCP entry: 0 = not a valid answer. */
static __always_inline int ct_ingress_tcp(struct ct_val *v, u8 fl, u64 *now)
{
	u64 f = v->flags, st = f & CT_STATE_MASK;

	if (st == CT_SYN_SENT && !(fl & (TH_SYN | TH_RST)))
		return 0; /* nothing but SYN+ACK (or RST) answers our SYN */
	if (fl & TH_RST)
		st = CT_CLOSE;
	else if (fl & TH_SYN) {
		if ((fl & TH_ACK) && st == CT_SYN_SENT)
			st = CT_ESTABLISHED;
	} else if (fl & TH_FIN) {
		f |= CT_F_RFIN;
		st = (f & CT_F_LFIN) ? CT_TIME_WAIT : CT_FIN_WAIT;
	} else if (st == CT_SYN_RECV && (fl & TH_ACK)) {
		st = CT_ESTABLISHED;
	}
	f = (f & ~CT_STATE_MASK) | st;
	if (f != v->flags) { /* written on transitions only: most packets just read */
		v->flags = f;
		v->last_seen_ns = clock_ns(now);
	}
	return 1;
}

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

/* Token bucket in nanoseconds of credit (as stage_icmp): 1 = a token was taken. */
static __always_inline int take_token(u64 *credit_ns, u64 *last_ns, u64 rate, u64 burst, u64 now)
{
	u64 cost = NX_NSEC_PER_SEC / rate, cap = burst * cost, credit = *credit_ns;
	int ok;

	if (now > *last_ns) {
		credit += now - *last_ns;
		*last_ns = now;
	}
	if (credit > cap)
		credit = cap;
	ok = credit >= cost;
	if (ok)
		credit -= cost;
	*credit_ns = credit;
	return ok;
}

/* One source's bucket. s == NULL: its first packet, *fresh is the state to insert (a full
 * bucket less this packet). No lock: two CPUs racing on one source may let a packet more
 * through, never fewer. 1 = within the rate. */
static __always_inline int source_within(struct rl_cfg *c, struct rl_state *s, struct rl_state *fresh, u64 now)
{
	u64 burst = c->burst ? c->burst : 1;

	if (!s) {
		fresh->last_ns = now;
		fresh->credit_ns = (burst - 1) * (NX_NSEC_PER_SEC / c->rate);
		fresh->proof_last_ns = now;
		fresh->proof_credit_ns = burst * (NX_NSEC_PER_SEC / c->rate);
		return 1;
	}
	if (take_token(&s->credit_ns, &s->last_ns, c->rate, burst, now))
		return 1;
	s->dropped++;
	return 0;
}

static __always_inline int tcp_syn_only(struct pkt *p)
{
	return p->t.proto == IPPROTO_TCP && p->has_ports && (p->tcp_flags & (TH_SYN | TH_ACK)) == TH_SYN;
}

/* A rate-limit rule applies to this packet (with syn_only: a TCP SYN without ACK). */
static __always_inline int rl_applies(struct rl_cfg *c, struct pkt *p)
{
	return c && c->rate && (!(c->flags & RL_F_SYN_ONLY) || tcp_syn_only(p));
}

/* The source's own bucket under its rate-limit rule (rl4_cfg/rl6_cfg, longest prefix; state per
 * address in rl4_state/rl6_state, LRU): 1 = over the rate, the packet drops. Never bans. */
static __always_inline int source_over(struct pkt *p, u64 *clock)
{
	struct rl_state *s, fresh = {};
	struct rl_cfg *c;

	if (p->t.family == 4) {
		struct lpm4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p->t.saddr, 4);
		c = rl4_cfg.lookup(&k);
		if (!rl_applies(c, p))
			return 0;
		s = rl4_state.lookup((struct addr4 *)k.addr);
		if (!source_within(c, s, &fresh, clock_ns(clock)))
			return 1;
		if (!s)
			rl4_state.update((struct addr4 *)k.addr, &fresh);
	} else {
		struct lpm6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, p->t.saddr, 16);
		c = rl6_cfg.lookup(&k);
		if (!rl_applies(c, p))
			return 0;
		s = rl6_state.lookup((struct addr6 *)k.addr);
		if (!source_within(c, s, &fresh, clock_ns(clock)))
			return 1;
		if (!s)
			rl6_state.update((struct addr6 *)k.addr, &fresh);
	}
	return 0;
}

/* An auto-ban's src host value: it keeps the rule bits of the source's class; an expiry beyond
 * the 59 bits saturates (never wraps into the past). */
static __always_inline u64 ban_value(struct rl_cfg *c, u64 cls, u64 now)
{
	u64 until = now + c->ban_ttl_ns;

	if (until > SRC_EXPIRY_MASK || until < now)
		until = SRC_EXPIRY_MASK;
	return until | SRC_BAN | SRC_BL | (cls & SRC_INHERITED);
}

/* With a ban (ban_ttl), a completed handshake moves its SYN's token from the source's bucket to its
 * ban bucket: the ACK acknowledged our SYN+ACK's ISN, so the source receives what is sent to its
 * address. Unproven excess (SYNs that never complete, anything forged in someone else's name) is
 * dropped as without a ban; proven excess (completed handshakes beyond the rule's rate and burst)
 * bans the source for ban_ttl. */
static __always_inline int proof_over(struct rl_cfg *c, struct rl_state *s, u64 now)
{
	u64 burst = c->burst ? c->burst : 1, cost = NX_NSEC_PER_SEC / c->rate;

	s->credit_ns = s->credit_ns + cost > burst * cost ? burst * cost : s->credit_ns + cost;
	return !take_token(&s->proof_credit_ns, &s->proof_last_ns, c->rate, burst, now);
}

static __always_inline void source_proven(struct pkt *p, u64 *clock, u64 bytes, u64 cls)
{
	struct rl_state *s;
	struct rl_cfg *c;
	u64 ban;

	if (p->t.family == 4) {
		struct lpm4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p->t.saddr, 4);
		c = rl4_cfg.lookup(&k);
		if (!c || !c->rate || !c->ban_ttl_ns)
			return;
		s = rl4_state.lookup((struct addr4 *)k.addr);
		if (!s || !proof_over(c, s, clock_ns(clock)))
			return;
		ban = ban_value(c, cls, *clock);
		src4_host.update((struct addr4 *)k.addr, &ban);
	} else {
		struct lpm6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, p->t.saddr, 16);
		c = rl6_cfg.lookup(&k);
		if (!c || !c->rate || !c->ban_ttl_ns)
			return;
		s = rl6_state.lookup((struct addr6 *)k.addr);
		if (!s || !proof_over(c, s, clock_ns(clock)))
			return;
		ban = ban_value(c, cls, *clock);
		src6_host.update((struct addr6 *)k.addr, &ban);
	}
	count(R_AUTO_BAN, bytes);
}

/* Rate limiting of untracked packets: the source's bucket if a rate-limit rule covers it (cls),
 * then the global bucket. */
static __always_inline int stage_ratelimit(struct pkt *p, u64 *clock, u64 cls)
{
	u64 rate, now;

	if ((cls & SRC_RL) && source_over(p, clock))
		return R_DROP_RATELIMIT;

	rate = cfg(CFG_RL_GLOBAL_RATE);
	if (rate) {
		u64 burst = cfg(CFG_RL_GLOBAL_BURST);
		struct bucket *b;
		u32 zero = 0;
		int ok;

		b = rl_global.lookup(&zero);
		if (!b)
			return NEXT;
		now = clock_ns(clock); /* no helper call while the lock is held */
		bpf_spin_lock(&b->lock);
		ok = take_token(&b->credit_ns, &b->last_ns, rate, burst ? burst : 1, now);
		bpf_spin_unlock(&b->lock);
		if (!ok)
			return R_DROP_RATE_GLOBAL;
	}
	return NEXT;
}

/* The fresh ct entry of a packet with ports or an echo, or NULL. */
static __always_inline struct ct_val *ct_find(struct pkt *p, u64 *now)
{
	struct ct_val *v;

	if (!cfg(CFG_CT_ENABLED))
		return NULL;
	v = ct.lookup(&p->t);
	return v && ct_fresh(v, now) ? v : NULL;
}

/* A packet of a tracked flow passes, but one of a flow its peer opened from a rate-limited source
 * (CT_F_RL) takes a token from that source's bucket first. held_only (the source is auto-banned):
 * only flows the address really holds pass: TCP (the peer's completed a handshake, the others
 * this host opened) and the flows this host opened. NEXT leaves the entry as it was. */
static __always_inline int ct_pass(struct pkt *p, struct ct_val *v, u64 *now, int held_only)
{
	if (held_only && p->t.proto != IPPROTO_TCP && (v->flags & CT_F_INBOUND))
		return NEXT;
	if ((v->flags & CT_F_RL) && source_over(p, now))
		return R_DROP_RATELIMIT;
	if (p->t.proto == IPPROTO_TCP) {
		if (!ct_ingress_tcp(v, p->tcp_flags, now))
			return NEXT;
	} else if ((v->flags & CT_STATE_MASK) == CT_UDP) {
		v->flags = (v->flags & ~CT_STATE_MASK) | CT_UDP_STREAM;
		v->last_seen_ns = clock_ns(now);
	}
	return R_PASS_CONNTRACK;
}

/* Stage 4. *flow: the entry ct_find gave (looked: it was asked already), so that no packet looks
 * its flow up twice. */
static __always_inline int stage_conntrack(struct pkt *p, u64 *now, int held_only, struct ct_val **flow, int *looked)
{
	if (!(p->has_ports | p->echo))
		/* no ports: a later fragment is looked up here, off the paths of other packets (a
		 * banned source's pass only if the first did: on a flow the address holds) */
		return p->frag == FRAG_LATER ? stage_fragment(p, now) : NEXT;
	if (!*looked) {
		*flow = ct_find(p, now);
		*looked = 1;
	}
	return *flow ? ct_pass(p, *flow, now, held_only) : NEXT;
}

/* The packets of established flows (TCP without SYN, UDP, echo replies) look their flow up before their
 * source: a flow whose exact source was found neither whitelisted nor blocked under the rule maps'
 * current generation (the engine changes CFG_RULES_GENERATION around every write of the src maps, 0
 * while it writes) passes on one lookup. Flows of rate-limited peers never skip the source: an auto-ban
 * (written by the data plane, no generation change) must be able to stop them. */
static __always_inline int ct_first(struct pkt *p)
{
	if (p->t.proto == IPPROTO_TCP)
		return p->has_ports && !(p->tcp_flags & TH_SYN);
	return p->has_ports | (p->echo == 2);
}

static __always_inline int ct_vouched(struct ct_val *v, u32 gen)
{
	return gen && !(v->flags & CT_F_RL) && (u32)(v->flags >> CT_GEN_SHIFT) == gen;
}

/* The source of a flow that passed was found neither whitelisted nor blocked (gen read before the
 * source was looked up: a write that began since has changed it). Written when it changes only. */
static __always_inline void ct_vouch(struct ct_val *v, u32 gen)
{
	if (gen && (u32)(v->flags >> CT_GEN_SHIFT) != gen)
		v->flags = (v->flags & ((1ULL << CT_GEN_SHIFT) - 1)) | ((u64)gen << CT_GEN_SHIFT);
}

/* An ICMP error quoting a flow this host tracks (PMTU discovery under default deny). It runs after
 * the source stages: a blacklist wins over "related", for an exact address and a prefix alike. */
static __always_inline int stage_related(struct pkt *p, u64 *now)
{
	struct ct_val *v;

	if (!p->icmp_err || !cfg(CFG_CT_ENABLED))
		return NEXT;
	v = ct.lookup(&p->inner);
	return v && ct_fresh(v, now) ? R_PASS_RELATED : NEXT;
}

/* After a port rule (or, for a rate-limited source, the policy) let a packet in. TCP: a SYN opens
 * an embryonic entry in ct_syn; the ACK that acknowledges our SYN+ACK's ISN moves it to ct as
 * ESTABLISHED | INBOUND, so the flow's later packets take the fast path. Only a peer that received
 * our SYN+ACK can send that ACK: spoofed SYNs never reach ct, and the completed handshake is the
 * proof an auto-ban counts (source_proven). UDP from a rate-limited source: a mark in ct_syn, which
 * tc_egress turns into an INBOUND | RL entry if this host answers. CT_F_RL keeps a flow opened by a
 * rate-limited peer under its rate limit. */
static __always_inline void track_inbound(struct pkt *p, u64 *now, u64 bytes, u64 cls)
{
	u8 fl = p->tcp_flags & (TH_FIN | TH_SYN | TH_RST | TH_ACK);
	u64 rl = (cls & SRC_RL) ? CT_F_RL : 0;
	struct ct_val *e, v = {};

	if (!p->has_ports || !cfg(CFG_CT_ENABLED))
		return;
	if (p->t.proto == IPPROTO_UDP) {
		if (rl) {
			v.last_seen_ns = clock_ns(now);
			v.flags = CT_UDP | CT_F_INBOUND | CT_F_RL;
			ct_syn.update(&p->t, &v);
		}
		return;
	}
	if (p->t.proto != IPPROTO_TCP)
		return;
	if (fl == TH_SYN) {
		v.last_seen_ns = clock_ns(now);
		v.flags = CT_SYN_RECV | CT_F_INBOUND;
		ct_syn.update(&p->t, &v);
		return;
	}
	if (fl != TH_ACK)
		return;
	e = ct_syn.lookup(&p->t);
	if (!e || !(e->flags & CT_F_SYNACK) || p->ack_seq != (u32)(e->flags >> 32) + 1 ||
	    (s64)(clock_ns(now) - e->last_seen_ns) >= (s64)cfg(CFG_CT_TCP_SYN_NS))
		return;
	v.last_seen_ns = *now;
	v.flags = CT_ESTABLISHED | CT_F_INBOUND | rl;
	ct.update(&p->t, &v);
	ct_syn.delete(&p->t);
	if (rl)
		source_proven(p, now, bytes, cls);
}

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

static __always_inline int stage_rules(struct pkt *p)
{
	u32 *action;

	if (!p->has_ports)
		return NEXT;
	if (p->t.family == 4) {
		struct rule4_key k = {.prefixlen = 24 + 32, .proto = p->t.proto};

		__builtin_memcpy(k.dport, &p->t.dport, 2);
		__builtin_memcpy(k.addr, p->t.saddr, 4);
		action = rules4.lookup(&k);
	} else {
		struct rule6_key k = {.prefixlen = 24 + 128, .proto = p->t.proto};

		__builtin_memcpy(k.dport, &p->t.dport, 2);
		__builtin_memcpy(k.addr, p->t.saddr, 16);
		action = rules6.lookup(&k);
	}
	if (!action)
		return NEXT;
	if (*action == RULE_ALLOW)
		return R_PASS_RULE;
	if (*action == RULE_DENY)
		return R_DROP_RULE;
	return NEXT;
}

/* Echo requests (ping) against the ICMP bucket, kept in nanoseconds of credit: a packet costs
 * 1e9/rate, the bucket holds burst packets, and credit grows with elapsed time. No other ICMP
 * type is special here: replies and errors passed conntrack already if they belong to a flow of
 * this host, ND and MLD passed as link plumbing; the rest meets the default policy. */
static __always_inline int stage_icmp(struct pkt *p, u64 *clock)
{
	u64 rate, cost, cap, credit, now;
	struct bucket *b;
	u32 zero = 0;
	int ok;

	if (p->echo != 1)
		return NEXT;
	rate = cfg(CFG_ICMP_RATE);
	if (!rate)
		return NEXT;
	b = icmp_bucket.lookup(&zero);
	if (!b)
		return NEXT;
	cost = NX_NSEC_PER_SEC / rate;
	cap = cfg(CFG_ICMP_BURST) * cost;
	now = clock_ns(clock); /* no helper call while the lock is held */

	bpf_spin_lock(&b->lock);
	credit = b->credit_ns;
	if (now > b->last_ns) {
		credit += now - b->last_ns;
		b->last_ns = now;
	}
	if (credit > cap)
		credit = cap;
	ok = credit >= cost;
	if (ok)
		credit -= cost;
	b->credit_ns = credit;
	bpf_spin_unlock(&b->lock);

	return ok ? R_PASS_ICMP : R_DROP_ICMP_RATE;
}

static __always_inline int stage_policy(void)
{
	/* anything but 0 (allow) denies: fail closed */
	return cfg(CFG_POLICY) ? R_DROP_POLICY : R_PASS_POLICY;
}

/* Drop sampling: at most CFG_DROPLOG_RATE events per second (burst CFG_DROPLOG_BURST) go to
 * the drops ring buffer, so a flood never turns into an event storm; a full ring drops events. */
static __always_inline void sample_drop(struct pkt *p, u32 reason, u64 *clock, u64 len)
{
	u64 rate = cfg(CFG_DROPLOG_RATE), burst, now;
	struct drop_event ev = {};
	struct bucket *b;
	u32 zero = 0;
	int ok;

	if (!rate)
		return;
	burst = cfg(CFG_DROPLOG_BURST);
	b = droplog_bucket.lookup(&zero);
	if (!b)
		return;
	now = clock_ns(clock); /* no helper call while the lock is held */
	/* A lock-free look first: under a flood the bucket is empty and most drops stop here
	 * (the locked take below decides; a stale read only sends a drop to it). */
	if (b->credit_ns + (now > b->last_ns ? now - b->last_ns : 0) < NX_NSEC_PER_SEC / rate)
		return;
	bpf_spin_lock(&b->lock);
	ok = take_token(&b->credit_ns, &b->last_ns, rate, burst ? burst : 1, now);
	bpf_spin_unlock(&b->lock);
	if (!ok)
		return;
	ev.ts_ns = now;
	__builtin_memcpy(ev.saddr, p->t.saddr, 16);
	__builtin_memcpy(ev.daddr, p->t.daddr, 16);
	ev.sport = p->t.sport;
	ev.dport = p->t.dport;
	ev.proto = p->t.proto;
	ev.family = p->t.family;
	ev.reason = reason;
	ev.len = len;
	drops.ringbuf_output(&ev, sizeof(ev), 0);
}

int xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct pkt p;
	u64 now = 0;
	int r;

	__builtin_memset(&p, 0, PKT_HEAD);
	p.l4 = data;
	r = parse(data, end, &p);
	if (r == NEXT)
		r = stage_sanity(&p);
	if (r == NEXT) {
		struct ct_val *flow = NULL;
		u64 *hit = NULL, cls = 0;
		int looked = 0;
		u32 gen = 0;

		if (ct_first(&p)) {
			gen = cfg(CFG_RULES_GENERATION); /* before the source is looked up (ct_vouch) */
			flow = ct_find(&p, &now);
			looked = 1;
			if (flow && ct_vouched(flow, gen))
				r = ct_pass(&p, flow, &now, 0);
		}
		/* An exact address is decided before conntrack: one hash lookup drops a listed
		 * attacker. Same verdicts as the stage order, as no tracked flow belongs to a
		 * blocked source (a block purges them, tc_egress opens none), except that an
		 * auto-ban spares the flows the address really holds (ct_pass held_only; a SYN
		 * opens none, it drops at once). */
		if (r == NEXT) {
			hit = source_host(p.t.family, p.t.saddr);
			cls = hit ? *hit : 0;
			if (hit) {
				r = stage_source(cls, &now);
				if (r == R_DROP_BLACKLIST && (cls & SRC_BAN) && !tcp_syn_only(&p)) {
					r = stage_conntrack(&p, &now, 1, &flow, &looked);
					if (r == NEXT)
						r = R_DROP_BLACKLIST;
				}
			}
			if (r == NEXT) {
				r = stage_conntrack(&p, &now, 0, &flow, &looked);
				if (r == R_PASS_CONNTRACK && flow && !(cls & (SRC_WL | SRC_BL)))
					ct_vouch(flow, gen);
			}
		}
		if (r == NEXT && !hit) {
			hit = source_prefix(p.t.family, p.t.saddr);
			cls = hit ? *hit : 0;
			r = stage_source(cls, &now);
		}
		/* replies to this host's DHCP requests: only UDP to a DHCP client port looks */
		if (r == NEXT && p.t.proto == IPPROTO_UDP &&
		    (p.t.dport == nx_htons(DHCP_CLIENT_PORT) || p.t.dport == nx_htons(DHCP6_CLIENT_PORT)))
			r = stage_dhcp(&p, end, &now);
		if (r == NEXT)
			r = stage_related(&p, &now);
		if (r == NEXT)
			r = stage_ratelimit(&p, &now, cls);
		if (r == NEXT && (cls & SRC_RULES))
			r = stage_rules(&p);
		if (r == NEXT)
			r = stage_icmp(&p, &now);
		if (r == NEXT)
			r = stage_policy();
		if (r == R_PASS_RULE || (r == R_PASS_POLICY && (cls & SRC_RL)))
			track_inbound(&p, &now, end - data, cls);
		if (p.frag == FRAG_FIRST && !((DROP_REASONS >> r) & 1))
			frag_passed(&p, &now);
	}
	count(r, end - data);
	if ((DROP_REASONS >> r) & 1) {
		sample_drop(&p, r, &now, end - data);
		return XDP_DROP;
	}
	return XDP_PASS;
}

/* A packet of this host on a TCP entry (flags already valid). */
static __always_inline void ct_egress_tcp(struct ct_val *v, u8 fl, u64 now)
{
	u64 f = v->flags, st = f & CT_STATE_MASK;

	if (fl & TH_RST) {
		st = CT_CLOSE;
	} else if (fl & TH_SYN) { /* a new connection on this tuple */
		f &= ~(CT_F_LFIN | CT_F_RFIN);
		st = (fl & TH_ACK) ? CT_SYN_RECV : CT_SYN_SENT;
	} else if (fl & TH_FIN) {
		f |= CT_F_LFIN;
		st = (f & CT_F_RFIN) ? CT_TIME_WAIT : CT_FIN_WAIT;
	} else if (st == CT_CLOSE || st == CT_LEGACY) {
		/* this host still talks: a (spoofed) RST did not close it */
		st = CT_ESTABLISHED;
	}
	v->flags = (f & ~CT_STATE_MASK) | st;
	v->last_seen_ns = now;
}

/* Our SYN+ACK for a SYN that track_inbound let in: remember its ISN. */
static __always_inline int ct_synack(struct ct_key *k, u32 isn, u64 now)
{
	struct ct_val *e = ct_syn.lookup(k);

	if (!e)
		return 0;
	e->flags = CT_SYN_RECV | CT_F_INBOUND | CT_F_SYNACK | ((u64)isn << 32);
	e->last_seen_ns = now;
	return 1;
}

/* Records the reply tuple of outbound TCP/UDP/ICMP echo so that
 * stage_conntrack recognises the answers, and follows the TCP state.
 * Entries are created only by valid packets: a SYN (SYN_SENT), a plain ACK of
 * a socket of this host (picked up ESTABLISHED), UDP, an echo request.
 * Never changes the packet's fate. */
int tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ct_val *old, v = {};
	struct ct_key k;
	struct pkt p;
	u8 fl;

	__builtin_memset(&p, 0, PKT_HEAD);
	p.l4 = data;
	if (parse(data, end, &p) != NEXT || !(p.has_ports || p.echo == 1))
		return TC_ACT_OK;
	if (p.t.proto == IPPROTO_UDP &&
	    (p.t.dport == nx_htons(DHCP_SERVER_PORT) || p.t.dport == nx_htons(DHCP6_SERVER_PORT)) &&
	    dhcp_request(&p, end))
		return TC_ACT_OK; /* not a flow: the replies come from other addresses */
	if (!cfg(CFG_CT_ENABLED))
		return TC_ACT_OK;
	fl = p.tcp_flags & (TH_FIN | TH_SYN | TH_RST | TH_ACK | TH_URG);
	if (p.t.proto == IPPROTO_TCP && !tcp_flags_valid(fl))
		return TC_ACT_OK; /* garbage neither creates nor moves an entry */

	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.saddr, p.t.daddr, 16);
	__builtin_memcpy(k.daddr, p.t.saddr, 16);
	k.sport = p.t.dport;
	k.dport = p.t.sport;
	k.proto = p.t.proto;
	k.family = p.t.family;
	v.last_seen_ns = bpf_ktime_get_ns();

	old = ct.lookup(&k);
	if (old) {
		if (p.t.proto == IPPROTO_TCP)
			ct_egress_tcp(old, fl, v.last_seen_ns);
		else
			old->last_seen_ns = v.last_seen_ns;
	} else {
		if (p.t.proto == IPPROTO_TCP) {
			if ((fl & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK)) {
				if (!ct_synack(&k, p.seq, v.last_seen_ns))
					return TC_ACT_OK;
				goto tracked;
			}
			if (fl & (TH_FIN | TH_RST))
				return TC_ACT_OK;
			v.flags = (fl & TH_SYN) ? CT_SYN_SENT : CT_ESTABLISHED;
		} else {
			v.flags = p.t.proto == IPPROTO_UDP ? CT_UDP : CT_ICMP_ECHO;
		}
		/* Blocking a peer purges its flows; a retransmission to it must not
		 * re-open the fast path that the blacklist stage sits behind. */
		u64 cls = source_class(k.family, k.saddr);

		if (blocking(cls, &v.last_seen_ns))
			return TC_ACT_OK;
		/* This host answers a rate-limited peer: if the peer sent first (track_inbound's
		 * mark), the flow is the peer's and stays under its rate limit. */
		if (p.t.proto == IPPROTO_UDP && (cls & SRC_RL)) {
			struct ct_val *mark = ct_syn.lookup(&k);

			if (mark && (mark->flags & CT_STATE_MASK) == CT_UDP) {
				v.flags = mark->flags;
				ct_syn.delete(&k);
			}
		}
		ct.update(&k, &v);
	}
tracked:
	count(R_EGRESS_TRACKED, skb->len);
	return TC_ACT_OK;
}
