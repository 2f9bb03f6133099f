// SPDX-License-Identifier: GPL-2.0
/* lb_relay: TCP mode's in-kernel relay (relay: sockmap). Each relayed socket
 * sits in lb_socks under its socket cookie, and lb_peers maps that cookie to
 * its peer's. Every segment a relayed socket receives is redirected to the
 * peer's send side, so the bytes never reach user space. Sockets without a
 * peer entry keep their data (SK_PASS), and so does an empty segment (a FIN
 * alone): redirected, the kernel's send of zero bytes would report EPIPE on the
 * peer; passed, it is the EOF that user space reads and passes on itself.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

#define MAX_SOCKETS 65536

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, __u64);
	__type(value, __u64);
} lb_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, __u64);
	__type(value, __u64);
} lb_peers SEC(".maps");

SEC("sk_skb/stream_verdict")
int lb_relay(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u64 *peer = bpf_map_lookup_elem(&lb_peers, &cookie);

	if (!peer || !skb->len)
		return SK_PASS;
	return bpf_sk_redirect_hash(skb, &lb_socks, peer, 0);
}
