// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Bounded AF_PACKET traffic generator for the netxfw veth benchmark.
 *
 *   sender IFNAME DST_MAC DST_IP COUNT MAX_SECONDS SRC_FILE [BATCH]
 *
 * Sends COUNT UDP/IPv4 frames (60 bytes + FCS-less) out of IFNAME with sendmmsg(),
 * round-robin over the source addresses listed in SRC_FILE (one dotted quad per line),
 * and stops after COUNT frames or MAX_SECONDS, whichever comes first. Prints one JSON
 * line: frames sent, seconds, and the process's own user/system CPU seconds.
 * Checksums are valid so that the IP stack (iptables raw) sees the frames too.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME_LEN 60
#define MAX_SRC 65536
#define MAX_BATCH 256

static uint16_t csum(const void *data, int len, uint32_t sum)
{
	const uint16_t *p = data;

	while (len > 1) {
		sum += *p++;
		len -= 2;
	}
	if (len)
		sum += *(const uint8_t *)p;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void build(uint8_t *f, const uint8_t *dmac, const uint8_t *smac, uint32_t src, uint32_t dst, uint16_t sport)
{
	struct ether_header *eth = (void *)f;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	int plen = FRAME_LEN - sizeof(*eth) - sizeof(*ip) - sizeof(*udp);
	struct {
		uint32_t s, d;
		uint8_t z, p;
		uint16_t l;
	} __attribute__((packed)) ph;
	uint32_t sum = 0;
	const uint16_t *w = (const void *)&ph;

	memset(f, 0, FRAME_LEN);
	memcpy(eth->ether_dhost, dmac, 6);
	memcpy(eth->ether_shost, smac, 6);
	eth->ether_type = htons(ETHERTYPE_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->tot_len = htons(sizeof(*ip) + sizeof(*udp) + plen);
	ip->frag_off = htons(IP_DF);
	ip->saddr = src;
	ip->daddr = dst;
	ip->check = csum(ip, sizeof(*ip), 0);
	udp->source = htons(sport);
	udp->dest = htons(9);
	udp->len = htons(sizeof(*udp) + plen);
	ph.s = src;
	ph.d = dst;
	ph.z = 0;
	ph.p = IPPROTO_UDP;
	ph.l = udp->len;
	for (unsigned i = 0; i < sizeof(ph) / 2; i++)
		sum += w[i];
	udp->check = csum(udp, sizeof(*udp) + plen, sum);
	if (!udp->check)
		udp->check = 0xffff;
}

int main(int argc, char **argv)
{
	static uint8_t frames[MAX_SRC][FRAME_LEN];
	static struct mmsghdr msgs[MAX_BATCH];
	static struct iovec iov[MAX_BATCH];
	uint8_t dmac[6], smac[6] = {0x02, 0, 0, 0, 0, 0x02};
	struct sockaddr_ll sll = {0};
	unsigned long long count, sent = 0;
	double max_s, t0, t1;
	int nsrc = 0, batch = 64, fd;
	struct rusage ru;
	char line[64];
	uint32_t dst;
	FILE *f;

	if (argc < 7) {
		fprintf(stderr, "usage: %s IFNAME DST_MAC DST_IP COUNT MAX_SECONDS SRC_FILE [BATCH]\n", argv[0]);
		return 2;
	}
	if (sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1], &dmac[2], &dmac[3], &dmac[4],
		   &dmac[5]) != 6 || inet_pton(AF_INET, argv[3], &dst) != 1) {
		fprintf(stderr, "bad MAC or IP\n");
		return 2;
	}
	count = strtoull(argv[4], NULL, 10);
	max_s = atof(argv[5]);
	if (argc > 7)
		batch = atoi(argv[7]);
	if (batch < 1 || batch > MAX_BATCH)
		batch = 64;
	f = fopen(argv[6], "r");
	if (!f) {
		perror(argv[6]);
		return 2;
	}
	while (nsrc < MAX_SRC && fgets(line, sizeof(line), f)) {
		uint32_t src;

		line[strcspn(line, "\r\n")] = 0;
		if (inet_pton(AF_INET, line, &src) == 1) {
			build(frames[nsrc], dmac, smac, src, dst, 1024 + nsrc % 60000);
			nsrc++;
		}
	}
	fclose(f);
	if (!nsrc) {
		fprintf(stderr, "no source addresses\n");
		return 2;
	}

	fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: send only, never receive */
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = if_nametoindex(argv[1]);
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, dmac, 6);
	if (!sll.sll_ifindex) {
		perror(argv[1]);
		return 1;
	}
	{
		int one = 1;

		setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	}
	for (int i = 0; i < batch; i++) {
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &sll;
		msgs[i].msg_hdr.msg_namelen = sizeof(sll);
		iov[i].iov_len = FRAME_LEN;
	}

	t0 = now();
	t1 = t0;
	while (sent < count) {
		int n = batch, r;

		if (count - sent < (unsigned long long)n)
			n = count - sent;
		for (int i = 0; i < n; i++)
			iov[i].iov_base = frames[(sent + i) % nsrc];
		r = sendmmsg(fd, msgs, n, 0);
		if (r < 0) {
			if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)
				continue;
			perror("sendmmsg");
			break;
		}
		sent += r;
		if ((sent & 0x3fff) < (unsigned)batch) {
			t1 = now();
			if (t1 - t0 >= max_s)
				break;
		}
	}
	t1 = now();
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"sent\": %llu, \"seconds\": %.6f, \"user\": %.6f, \"system\": %.6f, \"sources\": %d}\n", sent, t1 - t0,
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, nsrc);
	close(fd);
	return 0;
}
