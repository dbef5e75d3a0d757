/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/icmp.h: the echo-request bucket (step 7) */

/* Echo requests (ping) against the ICMP bucket (take_token: a packet costs 1e9/rate ns of credit,
 * the bucket holds CFG_ICMP_BURST packets; a burst of 0 passes none). No other ICMP type is special
 * here: replies and errors passed conntrack already if they belong to a flow of this host, ND and MLD
 * passed as link plumbing; the rest meets the default policy. */
static __always_inline int stage_icmp(struct pkt *p, u64 *clock)
{
	u64 rate, burst, now;
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
	burst = cfg(CFG_ICMP_BURST);
	now = clock_ns(clock); /* no helper call while the lock is held */
	bpf_spin_lock(&b->lock);
	ok = take_token(&b->credit_ns, &b->last_ns, rate, burst, now);
	bpf_spin_unlock(&b->lock);
	return ok ? R_PASS_ICMP : R_DROP_ICMP_RATE;
}
