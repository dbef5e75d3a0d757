/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/conntrack.h: flows (steps 2b, 4, 5b and 6's tracking, tc_egress's
 * transitions; "Conntrack") */

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

/* A packet from the peer on a fresh TCP entry: 0 = not a valid answer. A blind attacker forges the
 * peer's RST or FIN with any sequence number (the kernel ignores one outside its window and answers
 * one inside it with a challenge ACK, RFC 5961), so the peer's FIN moves nothing and its RST closes
 * the flow only at exactly the sequence number this host acknowledged last, the one RST the kernel
 * accepts at once: 32 bits to guess. ct_egress_tcp closes on this host's own FIN and RST. After a
 * peer's RST at another number the entry lingers: the kernel answers the next packet on the tuple
 * with a RST, which closes it. */
static __always_inline int ct_ingress_tcp(struct ct_val *v, u8 fl, u32 seq, u64 *now)
{
	u64 st = v->flags & CT_STATE_MASK;

	if (st == CT_SYN_SENT && !(fl & (TH_SYN | TH_RST)))
		return 0; /* nothing but SYN+ACK (or RST) answers our SYN */
	if ((fl & TH_RST) && (v->flags & CT_F_ACKED) && seq == (u32)(v->flags >> 32)) {
		v->flags = (v->flags & ~CT_STATE_MASK) | CT_CLOSE;
		v->last_seen_ns = clock_ns(now);
		return 1;
	}
	fl &= TH_SYN | TH_ACK | TH_RST;
	if ((st == CT_SYN_SENT && fl == (TH_SYN | TH_ACK)) || (st == CT_SYN_RECV && fl == TH_ACK)) {
		/* written on transitions only: most packets just read */
		v->flags = (v->flags & ~CT_STATE_MASK) | CT_ESTABLISHED;
		v->last_seen_ns = clock_ns(now);
	}
	return 1;
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
		if (!ct_ingress_tcp(v, p->tcp_flags, p->seq, now))
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
	/* our SYN+ACK acknowledged the sequence number this ACK carries */
	v.flags = CT_ESTABLISHED | CT_F_INBOUND | rl | CT_F_ACKED | ((u64)p->seq << 32);
	ct.update(&p->t, &v);
	ct_syn.delete(&p->t);
	if (rl)
		source_proven(p, now, bytes, cls);
}

/* A segment's ACK number, as a ct entry keeps it (CT_F_ACKED), or 0 for a segment without ACK. */
static __always_inline u64 ct_acked(u8 fl, u32 ack)
{
	return (fl & TH_ACK) ? CT_F_ACKED | ((u64)ack << 32) : 0;
}

/* A packet of this host on a TCP entry (flags already valid): its FIN or RST closes the flow, its ACK
 * number is what a peer's RST must carry to close it (ct_ingress_tcp). */
static __always_inline void ct_egress_tcp(struct ct_val *v, u8 fl, u32 ack, u64 now)
{
	u64 st = v->flags & CT_STATE_MASK;
	u64 acked = ct_acked(fl, ack);

	if (fl & TH_RST)
		st = CT_CLOSE;
	else if (fl & TH_SYN) /* a new connection on this tuple */
		st = (fl & TH_ACK) ? CT_SYN_RECV : CT_SYN_SENT;
	else if (fl & TH_FIN)
		st = CT_FIN_WAIT;
	else if (st == CT_CLOSE || st == CT_LEGACY)
		/* this host talks again after its RST (or on an entry of layout 1, or one an earlier
		 * program closed on the peer's RST): the flow lives */
		st = CT_ESTABLISHED;
	if (acked)
		v->flags = (v->flags & 0xffffffffULL & ~CT_STATE_MASK) | st | acked;
	else
		v->flags = (v->flags & ~CT_STATE_MASK) | st;
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
