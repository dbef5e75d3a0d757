/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/sampling.h: drop events into the drops ring buffer ("Drop sampling") */

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
