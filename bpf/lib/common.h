/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/common.h: what every stage uses: the parsed packet, settings,
 * counters, the clock, token buckets */

#define NX_NSEC_PER_SEC 1000000000ULL
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define nx_htons(x) ((__be16)__builtin_bswap16(x))
#define nx_ntohs(x) ((u16)__builtin_bswap16(x))
#define nx_ntohl(x) ((u32)__builtin_bswap32(x))
#else
#define nx_htons(x) ((__be16)(x))
#define nx_ntohs(x) ((u16)(x))
#define nx_ntohl(x) ((u32)(x))
#endif

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

/* The clock is read at most once per packet, and only by a stage that compares
 * times (a conntrack age, a blacklist expiry, the ICMP bucket): most verdicts need
 * none, and bpf_ktime_get_ns() is a helper call. *now == 0: not read yet. */
static __always_inline u64 clock_ns(u64 *now)
{
	if (!*now)
		*now = bpf_ktime_get_ns();
	return *now;
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

/* Token bucket in nanoseconds of credit: a token costs 1e9/rate, the bucket holds burst tokens, credit
 * grows with elapsed time. 1 = a token was taken. */
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
