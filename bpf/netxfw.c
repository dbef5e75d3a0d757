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

#define NETXFW_LAYOUT_VERSION 1

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

/* config indices */
#define CFG_POLICY        0
#define CFG_ICMP_RATE     1
#define CFG_ICMP_BURST    2
#define CFG_CT_ENABLED    3
#define CFG_CT_TIMEOUT_NS 4

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
};
#define DROP_REASONS ((1 << R_DROP_BLACKLIST) | (1 << R_DROP_RULE) | \
		      (1 << R_DROP_ICMP_RATE) | (1 << R_DROP_POLICY) | \
		      (1 << R_DROP_MALFORMED))
#define NEXT (-1) /* stage result: no verdict, go on */

#define RULE_ALLOW 1
#define RULE_DENY  2

#define NX_NSEC_PER_SEC 1000000000ULL
#define IPV6_EXT_MAX 4
#define IP_FRAG_OFFSET 0x1fff
#define IP6_FRAG_OFFSET 0xfff8

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define nx_htons(x) ((__be16)__builtin_bswap16(x))
#else
#define nx_htons(x) ((__be16)(x))
#endif

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

struct bucket {
	struct bpf_spin_lock lock;
	u32 pad;
	u64 credit_ns;
	u64 last_ns;
};

BPF_ARRAY(config, u64, 16);
BPF_PERCPU_ARRAY(counters, struct counter, 16);
BPF_ARRAY(meta, struct meta, 1);
BPF_HASH(wl4_host, struct addr4, u64, NETXFW_WL_HOST_SIZE);
BPF_HASH(wl6_host, struct addr6, u64, NETXFW_WL_HOST_SIZE);
BPF_F_TABLE("lpm_trie", struct lpm4_key, u64, wl4_lpm, NETXFW_WL_LPM_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct lpm6_key, u64, wl6_lpm, NETXFW_WL_LPM_SIZE, BPF_F_NO_PREALLOC);
BPF_HASH(bl4_host, struct addr4, u64, NETXFW_BL_HOST_SIZE);
BPF_HASH(bl6_host, struct addr6, u64, NETXFW_BL_HOST_SIZE);
BPF_F_TABLE("lpm_trie", struct lpm4_key, u64, bl4_lpm, NETXFW_BL_LPM_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct lpm6_key, u64, bl6_lpm, NETXFW_BL_LPM_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct rule4_key, u32, rules4, NETXFW_RULE_SIZE, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct rule6_key, u32, rules6, NETXFW_RULE_SIZE, BPF_F_NO_PREALLOC);
BPF_TABLE("lru_hash", struct ct_key, struct ct_val, ct, NETXFW_CT_SIZE);
BPF_ARRAY(icmp_bucket, struct bucket, 1);

/* What the parser learns. The tuple is laid out as a ct key so the
 * conntrack lookup can use it directly. */
struct pkt {
	struct ct_key t;
	u8 has_ports; /* TCP/UDP header present (not a later fragment) */
};

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

static __always_inline int parse_l4(void *pos, void *end, struct pkt *p)
{
	if (p->t.proto == IPPROTO_TCP) {
		struct tcphdr *th = pos;

		if ((void *)(th + 1) > end)
			return R_DROP_MALFORMED;
		p->t.sport = th->source;
		p->t.dport = th->dest;
		p->has_ports = 1;
	} else if (p->t.proto == IPPROTO_UDP) {
		struct udphdr *uh = pos;

		if ((void *)(uh + 1) > end)
			return R_DROP_MALFORMED;
		p->t.sport = uh->source;
		p->t.dport = uh->dest;
		p->has_ports = 1;
	} else if (p->t.proto == IPPROTO_ICMPV6 && p->t.family == 6) {
		u8 *type = pos;

		/* RS, RA, NS, NA, redirect */
		if ((void *)(type + 1) <= end && *type >= 133 && *type <= 137)
			return R_PASS_NEIGHBOR;
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
	if (ip->frag_off & nx_htons(IP_FRAG_OFFSET))
		return NEXT; /* later fragment: no L4 header, ports unknown */
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
			if (fh->frag_off & nx_htons(IP6_FRAG_OFFSET)) {
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

static __always_inline int stage_conntrack(struct pkt *p, u64 now)
{
	struct ct_val *v;

	if (!p->has_ports || !cfg(CFG_CT_ENABLED))
		return NEXT;
	v = ct.lookup(&p->t);
	/* signed: another CPU may have stamped last_seen after our now */
	if (v && (s64)(now - v->last_seen_ns) < (s64)cfg(CFG_CT_TIMEOUT_NS))
		return R_PASS_CONNTRACK;
	return NEXT;
}

static __always_inline int stage_whitelist(struct pkt *p)
{
	if (p->t.family == 4) {
		struct lpm4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p->t.saddr, 4);
		if (wl4_host.lookup((struct addr4 *)k.addr) || wl4_lpm.lookup(&k))
			return R_PASS_WHITELIST;
	} else {
		struct lpm6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, p->t.saddr, 16);
		if (wl6_host.lookup((struct addr6 *)k.addr) || wl6_lpm.lookup(&k))
			return R_PASS_WHITELIST;
	}
	return NEXT;
}

/* A blacklist value is its expiry; 0 never expires. */
static __always_inline int active(u64 *expires_ns, u64 now)
{
	return expires_ns && (*expires_ns == 0 || *expires_ns > now);
}

static __always_inline int blacklisted(u8 family, u8 *addr, u64 now)
{
	if (family == 4) {
		struct lpm4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, addr, 4);
		return active(bl4_host.lookup((struct addr4 *)k.addr), now) ||
		       active(bl4_lpm.lookup(&k), now);
	} else {
		struct lpm6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, addr, 16);
		return active(bl6_host.lookup((struct addr6 *)k.addr), now) ||
		       active(bl6_lpm.lookup(&k), now);
	}
}

static __always_inline int stage_blacklist(struct pkt *p, u64 now)
{
	return blacklisted(p->t.family, p->t.saddr, now) ? R_DROP_BLACKLIST : NEXT;
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

/* Token bucket kept in nanoseconds of credit: a packet costs 1e9/rate,
 * the bucket holds burst packets, and credit grows with elapsed time. */
static __always_inline int stage_icmp(struct pkt *p, u64 now)
{
	u8 icmp = p->t.family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
	u64 rate, cost, cap, credit;
	struct bucket *b;
	u32 zero = 0;
	int ok;

	if (p->t.proto != icmp)
		return NEXT;
	rate = cfg(CFG_ICMP_RATE);
	if (!rate)
		return NEXT;
	b = icmp_bucket.lookup(&zero);
	if (!b)
		return NEXT;
	cost = NX_NSEC_PER_SEC / rate;
	cap = cfg(CFG_ICMP_BURST) * cost;

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

int xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct pkt p;
	u64 now;
	int r;

	__builtin_memset(&p, 0, sizeof(p));
	r = parse(data, end, &p);
	if (r == NEXT) {
		now = bpf_ktime_get_ns();
		r = stage_conntrack(&p, now);
		if (r == NEXT)
			r = stage_whitelist(&p);
		if (r == NEXT)
			r = stage_blacklist(&p, now);
		if (r == NEXT)
			r = stage_rules(&p);
		if (r == NEXT)
			r = stage_icmp(&p, now);
		if (r == NEXT)
			r = stage_policy();
	}
	count(r, end - data);
	return (DROP_REASONS >> r) & 1 ? XDP_DROP : XDP_PASS;
}

/* Records the reply tuple of outbound TCP/UDP so that stage_conntrack
 * recognises the answers. Never changes the packet's fate. */
int tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ct_val *old, v = {};
	struct ct_key k;
	struct pkt p;

	if (!cfg(CFG_CT_ENABLED))
		return TC_ACT_OK;
	__builtin_memset(&p, 0, sizeof(p));
	if (parse(data, end, &p) != NEXT || !p.has_ports)
		return TC_ACT_OK;

	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.saddr, p.t.daddr, 16);
	__builtin_memcpy(k.daddr, p.t.saddr, 16);
	k.sport = p.t.dport;
	k.dport = p.t.sport;
	k.proto = p.t.proto;
	k.family = p.t.family;
	v.last_seen_ns = bpf_ktime_get_ns();

	old = ct.lookup(&k);
	if (old)
		old->last_seen_ns = v.last_seen_ns;
	/* Blocking a peer purges its flows; a retransmission to it must not
	 * re-open the fast path that the blacklist stage sits behind. */
	else if (!blacklisted(k.family, k.saddr, v.last_seen_ns))
		ct.update(&k, &v);
	count(R_EGRESS_TRACKED, skb->len);
	return TC_ACT_OK;
}
