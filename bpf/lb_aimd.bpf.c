// SPDX-License-Identifier: GPL-2.0
/* lb_aimd: Reno-shaped AIMD whose step sizes are runtime tunables.
 * increase: segments added per RTT in congestion avoidance (default 1)
 * decrease: percent of cwnd cut on loss (default 50, Reno's halving)
 */
#include "lb_cc.h"

char _license[] SEC("license") = "GPL";

struct aimd_tunables {
	__u32 increase;
	__u32 decrease;
};

TUNABLES(lb_aimd_tunables, struct aimd_tunables);

static __always_inline struct aimd_tunables *tunables(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&lb_aimd_tunables, &zero);
}

SEC("struct_ops/lb_aimd_ssthresh")
__u32 BPF_PROG(lb_aimd_ssthresh, struct sock *sk)
{
	struct aimd_tunables *t = tunables();

	return cut(tcp_sk(sk)->snd_cwnd, t ? t->decrease : 50);
}

SEC("struct_ops/lb_aimd_cong_avoid")
void BPF_PROG(lb_aimd_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct aimd_tunables *t = tunables();

	grow(tcp_sk(sk), acked, t ? t->increase : 1);
}

SEC("struct_ops/lb_aimd_undo_cwnd")
__u32 BPF_PROG(lb_aimd_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC(".struct_ops")
struct tcp_congestion_ops lb_aimd = {
	.ssthresh = (void *)lb_aimd_ssthresh,
	.cong_avoid = (void *)lb_aimd_cong_avoid,
	.undo_cwnd = (void *)lb_aimd_undo_cwnd,
	.name = "lb_aimd",
};
