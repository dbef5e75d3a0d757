/* SPDX-License-Identifier: GPL-2.0 */
/*
 * PROTOTYPE of a proposed data-plane layout, benchmarked next to the current one
 * (bench/xdp_cost.py appends this file to the engine's netxfw.c source, so parsing,
 * conntrack, ICMP, policy and counters are netxfw's own code). IPv4 only.
 *
 * Instead of four lookups (whitelist hash, whitelist LPM, blacklist hash, blacklist LPM)
 * and an unconditional port-rule lookup, one exact-address hash and one LPM trie hold
 * every source the lists and the port rules name, each entry carrying the *resolved* class
 * of the addresses whose longest match it is: whitelisted (by it or any covering prefix),
 * blacklisted (same; expiry = the latest of the covering blacklist entries, 0 = never) and
 * whether some port rule's source covers it. The control plane computes this with one sweep
 * over the sorted prefixes. The verdicts are those of docs/internals.md; the clock is read
 * only when an expiry or a conntrack age must be compared.
 */
struct src_info {
	u8 wl;
	u8 bl;
	u8 rules;
	u8 pad[5];
	u64 expires_ns;
};

#define CFG_ANY_SOURCE_RULES 14 /* prototype: 1 when a port rule has source "any" */

BPF_HASH(src4_host, struct addr4, struct src_info, NETXFW_BL_HOST_SIZE + NETXFW_WL_HOST_SIZE);
BPF_F_TABLE("lpm_trie", struct lpm4_key, struct src_info, src4_lpm,
	    NETXFW_BL_LPM_SIZE + NETXFW_WL_LPM_SIZE + NETXFW_RULE_SIZE, BPF_F_NO_PREALLOC);

/* host_first = 0: the stage order of docs/internals.md, with the whitelist and blacklist
 * stages replaced by one host-hash-or-LPM lookup, and the port-rule stage skipped unless a
 * rule's source covers the address. Every other stage is netxfw's own function.
 * host_first = 1: the exact-address hash before conntrack. Same verdicts as long as no
 * tracked flow belongs to a blacklisted address (tc_egress opens none, a block purges
 * them); a whitelisted host is then counted pass_whitelist rather than pass_conntrack. */
static __always_inline int merged(struct xdp_md *ctx, int host_first)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct src_info *si = 0;
	struct pkt p;
	u64 now = 0;
	int r, rules = 0, looked = 0;

	__builtin_memset(&p, 0, sizeof(p));
	r = parse(data, end, &p);
	if (r == NEXT)
		r = stage_sanity(&p);
	if (r != NEXT)
		goto out;
	if (p.t.family != 4) { /* prototype: IPv4 only */
		r = stage_policy();
		goto out;
	}
	if (host_first) {
		si = src4_host.lookup((struct addr4 *)p.t.saddr);
		looked = 1;
		if (si && si->wl) {
			r = R_PASS_WHITELIST;
			goto out;
		}
		if (si && si->bl && (!si->expires_ns || si->expires_ns > clock_ns(&now))) {
			r = R_DROP_BLACKLIST;
			goto out;
		}
	}
	r = stage_conntrack(&p, &now);
	if (r != NEXT)
		goto out;
	if (!looked)
		si = src4_host.lookup((struct addr4 *)p.t.saddr);
	if (!si) {
		struct lpm4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p.t.saddr, 4);
		si = src4_lpm.lookup(&k);
	}
	if (si) {
		if (si->wl) {
			r = R_PASS_WHITELIST;
			goto out;
		}
		if (si->bl && (!si->expires_ns || si->expires_ns > clock_ns(&now))) {
			r = R_DROP_BLACKLIST;
			goto out;
		}
		rules = si->rules;
	}
	r = stage_ratelimit(&p, &now, end - data);
	if (r == NEXT && (rules || cfg(CFG_ANY_SOURCE_RULES))) {
		r = stage_rules(&p);
		if (r == R_PASS_RULE)
			track_inbound(&p, &now);
	}
	if (r == NEXT)
		r = stage_icmp(&p, &now);
	if (r == NEXT)
		r = stage_policy();
out:
	count(r, end - data);
	return (DROP_REASONS >> r) & 1 ? XDP_DROP : XDP_PASS;
}

int xdp_merged(struct xdp_md *ctx)
{
	return merged(ctx, 0);
}

int xdp_merged_hostfirst(struct xdp_md *ctx)
{
	return merged(ctx, 1);
}
