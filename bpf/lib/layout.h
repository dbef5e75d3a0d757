/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/layout.h: the pinned contract of docs/internals.md (capacities, config
 * indices, source classes, conntrack states and flags, counter reasons, map keys and values, the maps).
 * plugins/module_utils/layout.py mirrors it; tests/unit/test_bpf_constants.py compares the two */

#define NETXFW_LAYOUT_VERSION 5

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
#define SANITY_FRAGMENTS 2
#define SANITY_TCP_FLAGS 4
#define SANITY_LAND      8

/* ct_val.flags: bits 0-7 the state, then flag bits; bits 32-63 the ISN of
 * our SYN+ACK (ct_syn), or the last acknowledgment number this host sent (a ct entry with CT_F_ACKED) */
#define CT_LEGACY      0 /* written by layout 1 before states existed: established */
#define CT_SYN_SENT    1
#define CT_SYN_RECV    2
#define CT_ESTABLISHED 3
#define CT_FIN_WAIT    4
#define CT_TIME_WAIT   5 /* both FINs: written by earlier programs of this layout only */
#define CT_CLOSE       6
#define CT_UDP         7
#define CT_UDP_STREAM  8
#define CT_ICMP_ECHO   9
#define CT_STATE_MASK  0xffULL
#define CT_F_INBOUND   (1ULL << 8)  /* opened by the peer (accepted by a rule, or a rate-limited peer's) */
/* bits 9 and 10: the FINs seen, written by earlier programs of this layout, no longer read */
#define CT_F_SYNACK    (1ULL << 11) /* ct_syn: our SYN+ACK went out, ISN in bits 32-63 */
#define CT_F_RL        (1ULL << 12) /* opened by the peer, whose source a rate-limit rule covers */
#define CT_F_ACKED     (1ULL << 13) /* ct: bits 32-63 hold the last ACK number this host sent */

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
/* The exact-source prefilter: one bit per hash of a source address (IPv6 folded to 32 bits), set for
 * every address of src4_host and src6_host before it is written there (cleared, if ever, after it is
 * deleted). A clear bit: the address is in neither map, its lookup is skipped. At least
 * NETXFW_SRC_FILTER_BITS_PER_SLOT bits per slot of one of them, a power of two (the hash keeps its top
 * NETXFW_SRC_FILTER_SHIFT bits). */
#define NETXFW_SRC_FILTER_BITS_PER_SLOT 8
#define NETXFW_SRC_FILTER_MUL 0x9E3779B97F4A7C15ULL
#define NETXFW_SRC_FILTER_SHIFT (64 - __builtin_clzll(NETXFW_SRC_FILTER_BITS_PER_SLOT * NETXFW_SRC_HOST_SIZE - 1))
#define NETXFW_SRC_FILTER_WORDS (1ULL << (NETXFW_SRC_FILTER_SHIFT - 6))
BPF_ARRAY(src_filter, u64, NETXFW_SRC_FILTER_WORDS);
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
