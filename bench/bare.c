/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Reference programs for the per-packet cost benchmark (compiled with BCC):
 * the least an XDP filter can do per IPv4 packet with one map lookup.
 *   xdp_empty      returns XDP_PASS (the test-run overhead that every number is net of)
 *   xdp_bare_hash  parses Ethernet + IPv4, one hash lookup of the source address
 *   xdp_bare_lpm   parses Ethernet + IPv4, one LPM-trie lookup of the source address
 * Both lookups drop on a hit and pass on a miss.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>

#ifndef BARE_SIZE
#define BARE_SIZE 1048576
#endif

struct lpm4_key {
	u32 prefixlen;
	u8 addr[4];
};

BPF_HASH(bare_hash, u32, u64, BARE_SIZE);
BPF_F_TABLE("lpm_trie", struct lpm4_key, u64, bare_lpm, BARE_SIZE, BPF_F_NO_PREALLOC);

int xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

static __always_inline struct iphdr *ip4(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > end || eth->h_proto != __constant_htons(ETH_P_IP))
		return 0;
	return ip;
}

int xdp_bare_hash(struct xdp_md *ctx)
{
	struct iphdr *ip = ip4(ctx);
	u32 saddr;

	if (!ip)
		return XDP_PASS;
	saddr = ip->saddr;
	return bare_hash.lookup(&saddr) ? XDP_DROP : XDP_PASS;
}

int xdp_bare_lpm(struct xdp_md *ctx)
{
	struct iphdr *ip = ip4(ctx);
	struct lpm4_key k = {.prefixlen = 32};

	if (!ip)
		return XDP_PASS;
	__builtin_memcpy(k.addr, &ip->saddr, 4);
	return bare_lpm.lookup(&k) ? XDP_DROP : XDP_PASS;
}

/* The veth floor: drop everything. */
int xdp_drop_all(struct xdp_md *ctx)
{
	return XDP_DROP;
}
