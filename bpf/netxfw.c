/* SPDX-License-Identifier: GPL-2.0 */
/*
 * netxfw data plane: XDP ingress filter and TC egress flow tracker.
 *
 * Maps, keys, values, config indices, counter reasons and the stage order are
 * the contract in docs/internals.md. Change both together and bump
 * NETXFW_LAYOUT_VERSION (and LAYOUT_VERSION in plugins/module_utils/layout.py).
 *
 * One header per concern under bpf/lib/, included once each, in this order (each
 * uses only those before it). scripts/gen_bpf_source.py joins them into the one
 * source that ships (plugins/module_utils/bpf_source.py) and that BCC compiles.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/pkt_cls.h>
#include "lib/layout.h"
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/sanity.h"
#include "lib/fragments.h"
#include "lib/sources.h"
#include "lib/ratelimit.h"
#include "lib/conntrack.h"
#include "lib/dhcp.h"
#include "lib/rules.h"
#include "lib/icmp.h"
#include "lib/sampling.h"

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

		/* An exact address is decided before conntrack: one hash lookup drops a listed
		 * attacker. Same verdicts as the stage order, as no tracked flow belongs to a
		 * blocked source (a block purges them, tc_egress opens none), except that an
		 * auto-ban spares the flows the address really holds (ct_pass held_only; a SYN
		 * opens none, it drops at once). The exact-source prefilter skips that lookup
		 * where the source's bit is clear (no exact entry): there, conntrack comes first. */
		if (source_listed(p.t.saddr))
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
		if (r == NEXT)
			r = stage_conntrack(&p, &now, 0, &flow, &looked);
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
			ct_egress_tcp(old, fl, p.ack_seq, v.last_seen_ns);
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
			v.flags = ((fl & TH_SYN) ? CT_SYN_SENT : CT_ESTABLISHED) | ct_acked(fl, p.ack_seq);
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
