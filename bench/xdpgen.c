/* SPDX-License-Identifier: GPL-2.0 */
/*
 * XDP traffic generator for the veth benchmark (compiled with BCC, run by bench/xdpgen.py with
 * BPF_PROG_TEST_RUN in live-frames mode): every run takes the template UDP frame, gives it the
 * next source address of `srcs` (round-robin per CPU), recomputes the IPv4 header checksum and
 * redirects it out of `cfg[1]` (the generator's veth). The frames reach the peer veth as XDP
 * frames, without an skb: the receive side works like a NIC driver's, XDP before any skb.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>

BPF_ARRAY(srcs, u32, 4096);
BPF_ARRAY(cfg, u32, 4); /* 0: number of sources, 1: ifindex */
BPF_PERCPU_ARRAY(seq, u32, 1);

int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	u32 zero = 0, one = 1, *n, *ifindex, *s, *src, k;
	u16 *w;
	u32 sum = 0;

	if ((void *)(ip + 1) > end)
		return XDP_ABORTED;
	n = cfg.lookup(&zero);
	ifindex = cfg.lookup(&one);
	s = seq.lookup(&zero);
	if (!n || !ifindex || !s || !*n)
		return XDP_ABORTED;
	k = *s;
	*s = k + 1 >= *n ? 0 : k + 1;
	src = srcs.lookup(&k);
	if (!src)
		return XDP_ABORTED;
	ip->saddr = *src;
	ip->check = 0;
	w = (u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum;
	return bpf_redirect(*ifindex, 0);
}
