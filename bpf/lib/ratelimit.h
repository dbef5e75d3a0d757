/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/ratelimit.h: per-source buckets of the rate-limit rules, auto-bans
 * on proven excess, the global bucket (step 5c, "Rate limiting") */

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

/* A rate-limit rule applies to this packet (with syn_only: a TCP SYN without ACK). */
static __always_inline int rl_applies(struct rl_cfg *c, struct pkt *p)
{
	return c && c->rate && (!(c->flags & RL_F_SYN_ONLY) || tcp_syn_only(p));
}

/* The per-family maps of a source (BCC names a map at each call: no map can be passed). The barriers
 * keep clang from merging a lookup of either family into one call: the verifier inlines a hash lookup
 * only at a call site that sees a single map (as in source_host). */

/* The rate-limit rule covering the source (rl4_cfg/rl6_cfg, longest prefix), or NULL. */
static __always_inline struct rl_cfg *rl_rule(struct pkt *p)
{
	struct rl_cfg *c;

	if (p->t.family == 4) {
		struct lpm4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p->t.saddr, 4);
		c = rl4_cfg.lookup(&k);
		asm volatile("" : "+r"(c));
	} else {
		struct lpm6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, p->t.saddr, 16);
		c = rl6_cfg.lookup(&k);
	}
	return c;
}

/* The source's bucket (rl4_state/rl6_state, per address, LRU), or NULL. */
static __always_inline struct rl_state *rl_bucket(struct pkt *p)
{
	struct rl_state *s;

	if (p->t.family == 4) {
		s = rl4_state.lookup((struct addr4 *)p->t.saddr);
		asm volatile("" : "+r"(s));
	} else {
		s = rl6_state.lookup((struct addr6 *)p->t.saddr);
	}
	return s;
}

static __always_inline void rl_bucket_insert(struct pkt *p, struct rl_state *fresh)
{
	if (p->t.family == 4)
		rl4_state.update((struct addr4 *)p->t.saddr, fresh);
	else
		rl6_state.update((struct addr6 *)p->t.saddr, fresh);
}

/* The source's own bucket under its rate-limit rule: 1 = over the rate, the packet drops. Never bans. */
static __always_inline int source_over(struct pkt *p, u64 *clock)
{
	struct rl_state *s, fresh = {};
	struct rl_cfg *c = rl_rule(p);

	if (!rl_applies(c, p))
		return 0;
	s = rl_bucket(p);
	if (!source_within(c, s, &fresh, clock_ns(clock)))
		return 1;
	if (!s)
		rl_bucket_insert(p, &fresh);
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
	struct rl_cfg *c = rl_rule(p);
	struct rl_state *s;
	u64 ban, mask, *w;

	if (!c || !c->rate || !c->ban_ttl_ns)
		return;
	s = rl_bucket(p);
	if (!s || !proof_over(c, s, clock_ns(clock)))
		return;
	ban = ban_value(c, cls, *clock);
	/* the prefilter's bit before the entry (never a ban whose lookup is skipped), and again after it: an
	 * engine write of the word that began before the first one may have undone it, and an engine that
	 * wrote words looks for the bans it finds without their bit (sources.py, _ban_bits_lost) */
	w = src_filter_word(p->t.saddr, &mask);
	if (w)
		__sync_fetch_and_or(w, mask);
	if (p->t.family == 4)
		src4_host.update((struct addr4 *)p->t.saddr, &ban);
	else
		src6_host.update((struct addr6 *)p->t.saddr, &ban);
	if (w)
		__sync_fetch_and_or(w, mask);
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
