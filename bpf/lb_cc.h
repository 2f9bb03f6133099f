/* SPDX-License-Identifier: GPL-2.0 */
/* What our struct_ops congestion-control algorithms share: the kernel helpers
 * they may call (kfuncs allowed for tcp_congestion_ops) and the one-entry map
 * that holds an algorithm's tunables, written by the balancer's control process.
 */
#ifndef LB_CC_H
#define LB_CC_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

extern __u32 tcp_slow_start(struct tcp_sock *tp, __u32 acked) __ksym;
extern void tcp_cong_avoid_ai(struct tcp_sock *tp, __u32 w, __u32 acked) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

/* Tunables are an array of __u32 in the order lbctl names them
 * (dataplane/bpf_cc.py): one map entry per algorithm instance. */
#define TUNABLES(map, value_t)                      \
	struct {                                       \
		__uint(type, BPF_MAP_TYPE_ARRAY);          \
		__uint(max_entries, 1);                    \
		__type(key, __u32);                        \
		__type(value, value_t);                     \
	} map SEC(".maps")

static __always_inline struct tcp_sock *tcp_sk(const struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline __u32 at_least(__u32 value, __u32 floor)
{
	return value > floor ? value : floor;
}

static __always_inline int seq_after(__u32 a, __u32 b)
{
	return (__s32)(a - b) > 0;
}

/* One AI step: slow start below ssthresh, then `per_rtt` segments per RTT. */
static __always_inline void grow(struct tcp_sock *tp, __u32 acked, __u32 per_rtt)
{
	if (tp->snd_cwnd < tp->snd_ssthresh) {
		acked = tcp_slow_start(tp, acked);
		if (!acked)
			return;
	}
	tcp_cong_avoid_ai(tp, at_least(tp->snd_cwnd / at_least(per_rtt, 1), 1), acked);
}

/* cwnd after cutting `percent` of it, never below two segments. */
static __always_inline __u32 cut(__u32 cwnd, __u32 percent)
{
	if (percent > 100)
		percent = 100;
	return at_least(cwnd - cwnd * percent / 100, 2);
}

#endif
