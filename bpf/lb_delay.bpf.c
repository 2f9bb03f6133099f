// SPDX-License-Identifier: GPL-2.0
/* lb_delay: delay-based control in the manner of Vegas and Swift. Once per
 * round trip it compares the smallest RTT of that round with the base RTT of
 * the path (the smallest RTT any connection to the same backend address saw
 * in the last BASE_AGE_NS). Above that base by more than target_us, a queue is
 * building: cwnd is cut in proportion to the excess, at most max_decrease
 * percent per round trip. Otherwise cwnd grows as in Reno.
 *
 * The base is shared per destination because a connection that starts while
 * others have filled the queue would otherwise take the queue for the path,
 * and push harder than they do (Vegas's late-comer unfairness).
 * Against loss-based traffic on the same bottleneck, backing off on delay
 * gives that traffic everything: lb_delay_mode.h switches such a connection
 * to the kernel's cubic while the other traffic lasts, and back.
 *
 * target_us: queueing delay tolerated (default 1000 us)
 * increase: segments added per RTT below the target (default 1)
 * max_decrease: percent cut per RTT at most, on delay (default 30)
 * loss_decrease: percent cut on loss (default 30)
 * compete: 1 switches to cubic against loss-based traffic, 0 never (default 1)
 */
#include "lb_cc.h"
#include "lb_delay_mode.h"

extern void cubictcp_init(struct sock *sk) __ksym;
extern void cubictcp_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;
extern __u32 cubictcp_recalc_ssthresh(struct sock *sk) __ksym;
extern void cubictcp_state(struct sock *sk, __u8 new_state) __ksym;
extern void cubictcp_cwnd_event(struct sock *sk, enum tcp_ca_event event) __ksym;
extern void cubictcp_acked(struct sock *sk, const struct ack_sample *sample) __ksym;

char _license[] SEC("license") = "GPL";

struct delay_tunables {
	__u32 target_us;
	__u32 increase;
	__u32 max_decrease;
	__u32 loss_decrease;
	__u32 compete;
};

TUNABLES(lb_delay_tunables, struct delay_tunables);

#define BASE_AGE_NS (10ULL * 1000 * 1000 * 1000)

/* Base RTT per destination address. */
struct path_base {
	__u32 rtt_us;
	__u32 pad;
	__u64 seen_ns;   /* when rtt_us was last confirmed or lowered */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct path_base);
} lb_delay_paths SEC(".maps");

/* Per-socket state, kept in the socket's icsk_ca_priv area after cubic's,
 * which the kernel's cubic functions read and write at its start. */
struct delay_state {
	struct bictcp cubic;
	__u32 base_rtt;      /* the path's base RTT at the last sample, us */
	__u32 round_rtt;     /* smallest RTT in the current round, us */
	__u32 round_end;     /* snd_nxt when the round began */
	struct lb_mode m;
	__u8 backing_off;    /* cut at the last round's end: no growth this round */
};

_Static_assert(sizeof(struct delay_state) <=
	       sizeof(((struct inet_connection_sock *)0)->icsk_ca_priv),
	       "lb_delay's state does not fit icsk_ca_priv");

static __always_inline struct delay_state *state(struct sock *sk)
{
	return (struct delay_state *)((struct inet_connection_sock *)sk)->icsk_ca_priv;
}

static __always_inline struct delay_tunables *tunables(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&lb_delay_tunables, &zero);
}

SEC("struct_ops/lb_delay_init")
void BPF_PROG(lb_delay_init, struct sock *sk)
{
	struct delay_state *st = state(sk);

	st->base_rtt = ~0U;
	st->round_rtt = ~0U;
	st->round_end = tcp_sk(sk)->snd_nxt;
	st->backing_off = 0;
	__builtin_memset(&st->m, 0, sizeof(st->m));
	st->m.last_rtt = ~0U;
}

/* The destination's key: its IPv4 address, or an IPv6 address folded. */
static __always_inline __u32 path_key(struct sock *sk)
{
	__u32 *v6 = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32;

	if (sk->__sk_common.skc_family == 10 /* AF_INET6 */)
		return v6[0] ^ v6[1] ^ v6[2] ^ v6[3];
	return sk->__sk_common.skc_daddr;
}

/* Fold one RTT sample into the destination's base; return the base. A
 * connection in compete mode sees other traffic's queue, so it never ages
 * the base out. */
static __always_inline __u32 path_base(struct sock *sk, __u32 rtt, int may_age)
{
	__u32 daddr = path_key(sk);
	__u64 now = bpf_ktime_get_ns();
	struct path_base *base = bpf_map_lookup_elem(&lb_delay_paths, &daddr);
	struct path_base fresh = {.rtt_us = rtt, .seen_ns = now};

	if (!base) {
		bpf_map_update_elem(&lb_delay_paths, &daddr, &fresh, BPF_ANY);
		return rtt;
	}
	if (rtt <= base->rtt_us || (may_age && now - base->seen_ns > BASE_AGE_NS)) {
		base->rtt_us = rtt;      /* a lower RTT, or the old base has aged out */
		base->seen_ns = now;
	} else if (rtt <= base->rtt_us + base->rtt_us / 8) {
		base->seen_ns = now;     /* the base still holds */
	}
	return base->rtt_us;
}

/* Delay mode at a round's end: cut cwnd when its queueing delay exceeded
 * the target. */
static __always_inline void delay_round(struct tcp_sock *tp, struct delay_state *st,
					__u32 rtt, struct delay_tunables *t)
{
	__u32 target = t ? t->target_us : 1000;
	__u32 most = t ? t->max_decrease : 30;
	__u32 excess, percent;

	if (rtt == ~0U || rtt <= st->base_rtt + target)
		return;
	excess = rtt - st->base_rtt - target;
	percent = excess * 100 / rtt;
	tp->snd_cwnd = cut(tp->snd_cwnd, percent < most ? percent : most);
	/* Leave slow start for good: the path has shown its queue. */
	tp->snd_ssthresh = tp->snd_cwnd;
	st->backing_off = 1;
}

/* What the mode switch decided, done to the window. */
static __always_inline void switch_mode(struct sock *sk, struct delay_state *st,
					__u32 rtt, int verdict)
{
	struct tcp_sock *tp = tcp_sk(sk);

	switch (verdict) {
	case MODE_TO_COMPETE:
		cubictcp_init(sk);
		tp->snd_ssthresh = 0x7fffffff;   /* win back a share in slow start */
		break;
	case MODE_PROBE_CUT:
		st->m.saved_cwnd = tp->snd_cwnd;
		tp->snd_cwnd = mode_probe_cwnd(tp->snd_cwnd, st->base_rtt, rtt);
		break;
	case MODE_PROBE_FAILED:
		if (st->m.saved_cwnd > tp->snd_cwnd)
			tp->snd_cwnd = st->m.saved_cwnd;
		break;
	}
}

/* At a round's end: the mode switch first, then the mode's own rule. */
static __always_inline void end_round(struct sock *sk, struct delay_state *st,
				      struct delay_tunables *t)
{
	struct tcp_sock *tp = tcp_sk(sk);
	__u32 rtt = st->round_rtt;
	int verdict = MODE_KEEP;

	st->round_end = tp->snd_nxt;
	st->round_rtt = ~0U;
	st->backing_off = 0;
	if (!t || t->compete)
		verdict = mode_round(&st->m, rtt, st->base_rtt, t ? t->target_us : 1000,
				     bpf_ktime_get_ns());
	else
		mode_delay_only(&st->m);    /* the switch was turned off meanwhile */
	switch_mode(sk, st, rtt, verdict);
	if (st->m.mode == MODE_DELAY && verdict == MODE_KEEP)
		delay_round(tp, st, rtt, t);
}

SEC("struct_ops/lb_delay_pkts_acked")
void BPF_PROG(lb_delay_pkts_acked, struct sock *sk, const struct ack_sample *sample)
{
	struct delay_state *st = state(sk);
	__s32 rtt = sample->rtt_us;
	struct delay_tunables *t;
	int verdict;

	if (st->m.mode == MODE_COMPETE)
		cubictcp_acked(sk, sample);
	if (rtt <= 0)
		return;
	st->base_rtt = path_base(sk, rtt, st->m.mode == MODE_DELAY);
	if ((__u32)rtt < st->round_rtt)
		st->round_rtt = rtt;
	t = tunables();
	verdict = mode_sample(&st->m, rtt, st->base_rtt, t ? t->target_us : 1000,
			      bpf_ktime_get_ns());
	if (verdict == MODE_TO_DELAY)
		tcp_sk(sk)->snd_ssthresh = tcp_sk(sk)->snd_cwnd;
	else
		switch_mode(sk, st, rtt, verdict);
}

SEC("struct_ops/lb_delay_cong_avoid")
void BPF_PROG(lb_delay_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct delay_state *st = state(sk);
	struct delay_tunables *t = tunables();

	if (seq_after(ack, st->round_end))
		end_round(sk, st, t);
	if (st->m.mode == MODE_COMPETE) {
		if (st->m.probe == PROBE_NONE)
			cubictcp_cong_avoid(sk, ack, acked);
	} else if (!st->backing_off) {
		grow(tp, acked, t ? t->increase : 1);
	}
}

SEC("struct_ops/lb_delay_ssthresh")
__u32 BPF_PROG(lb_delay_ssthresh, struct sock *sk)
{
	struct delay_tunables *t = tunables();

	if (state(sk)->m.mode == MODE_COMPETE)
		return cubictcp_recalc_ssthresh(sk);
	return cut(tcp_sk(sk)->snd_cwnd, t ? t->loss_decrease : 30);
}

SEC("struct_ops/lb_delay_set_state")
void BPF_PROG(lb_delay_set_state, struct sock *sk, __u8 new_state)
{
	if (state(sk)->m.mode == MODE_COMPETE)
		cubictcp_state(sk, new_state);
}

SEC("struct_ops/lb_delay_cwnd_event")
void BPF_PROG(lb_delay_cwnd_event, struct sock *sk, enum tcp_ca_event event)
{
	if (state(sk)->m.mode == MODE_COMPETE)
		cubictcp_cwnd_event(sk, event);
}

SEC("struct_ops/lb_delay_undo_cwnd")
__u32 BPF_PROG(lb_delay_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC(".struct_ops")
struct tcp_congestion_ops lb_delay = {
	.init = (void *)lb_delay_init,
	.pkts_acked = (void *)lb_delay_pkts_acked,
	.cong_avoid = (void *)lb_delay_cong_avoid,
	.ssthresh = (void *)lb_delay_ssthresh,
	.set_state = (void *)lb_delay_set_state,
	.cwnd_event = (void *)lb_delay_cwnd_event,
	.undo_cwnd = (void *)lb_delay_undo_cwnd,
	.name = "lb_delay",
};
