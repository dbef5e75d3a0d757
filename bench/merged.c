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

int xdp_merged(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct src_info *si = 0;
	struct pkt p;
	u64 now = 0;
	int r, rules;

	__builtin_memset(&p, 0, sizeof(p));
	r = parse(data, end, &p);
	if (r != NEXT)
		goto out;
	if (p.t.family != 4) { /* prototype: IPv4 only */
		r = stage_policy();
		goto out;
	}
	if (p.has_ports && cfg(CFG_CT_ENABLED)) {
		struct ct_val *v = ct.lookup(&p.t);

		if (v) {
			now = bpf_ktime_get_ns();
			if ((s64)(now - v->last_seen_ns) < (s64)cfg(CFG_CT_TIMEOUT_NS)) {
				r = R_PASS_CONNTRACK;
				goto out;
			}
		}
	}
	si = src4_host.lookup((struct addr4 *)p.t.saddr);
	if (!si) {
		struct lpm4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p.t.saddr, 4);
		si = src4_lpm.lookup(&k);
	}
	rules = 0;
	if (si) {
		if (si->wl) {
			r = R_PASS_WHITELIST;
			goto out;
		}
		if (si->bl) {
			if (!si->expires_ns) {
				r = R_DROP_BLACKLIST;
				goto out;
			}
			if (!now)
				now = bpf_ktime_get_ns();
			if (si->expires_ns > now) {
				r = R_DROP_BLACKLIST;
				goto out;
			}
		}
		rules = si->rules;
	}
	r = NEXT;
	if (rules || cfg(CFG_ANY_SOURCE_RULES))
		r = stage_rules(&p);
	if (r == NEXT && (p.t.proto == IPPROTO_ICMP) && cfg(CFG_ICMP_RATE))
		r = stage_icmp(&p, &now);
	if (r == NEXT)
		r = stage_policy();
out:
	count(r, end - data);
	return (DROP_REASONS >> r) & 1 ? XDP_DROP : XDP_PASS;
}
