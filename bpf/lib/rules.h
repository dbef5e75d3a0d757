/* SPDX-License-Identifier: GPL-2.0 */
/* netxfw data plane, bpf/lib/rules.h: IP+port rules (step 6) and the default policy (step 8) */

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

static __always_inline int stage_policy(void)
{
	/* anything but 0 (allow) denies: fail closed */
	return cfg(CFG_POLICY) ? R_DROP_POLICY : R_PASS_POLICY;
}
