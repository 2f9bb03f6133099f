/* SPDX-License-Identifier: GPL-2.0 */
/* lb_delay's mode switch, kept free of kernel types so that the same rule is
 * compiled into the BPF object and, by tests/test_cc_mode.py, into a host
 * library that replays recorded RTT samples through it.
 *
 * A round is "queued" when its smallest RTT is more than 2 * target, and more
 * than base / 16, above the path's base (twice the delay rule's own target,
 * so that one packet's serialisation on a slow link does not count; and a
 * share of the base, so that jitter on a long path does not).
 *
 * delay mode: lb_delay's own rule (back off when the round's smallest RTT is
 *   more than target above the base). A queued round that is not at least
 *   1/16 below the last one is "stuck": our cuts did not drain the queue.
 *   QUEUED_ROUNDS stuck rounds in a row (a round that drains or improves
 *   starts the count again) say the queue is not ours: loss-based traffic
 *   shares the bottleneck, and delay mode would starve.
 * compete mode: the kernel's cubic runs the window, so we share as cubic
 *   does. After PROBE_ROUNDS rounds and a gap (PROBE_GAP_NS, one more
 *   PROBE_GAP_NS for each of the last two probes that failed), a drain probe
 *   cuts cwnd to cwnd * base / rtt (what fills the path with no queue of
 *   ours) and lets one round drain. The first RTT sample after it judges:
 *   within base + 2 * target, the queue was all ours (the other traffic has
 *   gone) and delay mode resumes at that cwnd; above it, cwnd goes back to
 *   what it was and compete mode goes on.
 */
#ifndef LB_DELAY_MODE_H
#define LB_DELAY_MODE_H

#define MODE_DELAY 0
#define MODE_COMPETE 1

#define QUEUED_ROUNDS 6
#define PROBE_ROUNDS 4
#define PROBE_GAP_MS 500
#define PROBE_BACKOFF 2        /* failed probes that lengthen the gap, at most */

enum probe_phase { PROBE_NONE, PROBE_DRAIN, PROBE_JUDGE };

/* What the caller does to cwnd after a decision. */
enum mode_verdict {
	MODE_KEEP,          /* nothing beyond the mode's usual rule */
	MODE_TO_COMPETE,    /* start cubic, leave the delay cuts behind */
	MODE_PROBE_CUT,     /* save cwnd, cut it to cwnd * base / rtt */
	MODE_PROBE_FAILED,  /* put the saved cwnd back */
	MODE_TO_DELAY,      /* keep the probe's cwnd as the delay mode's start */
};

struct lb_mode {
	__u32 probe_at_ms;   /* compete: when the last probe ended or the mode began */
	__u32 saved_cwnd;    /* cwnd before the probe's cut */
	__u32 last_rtt;      /* the last round's smallest RTT, us */
	__u8 mode;
	__u8 queued;         /* delay: rounds in a row above base + target */
	__u8 rounds;         /* compete: rounds since the last probe */
	__u8 probe;          /* enum probe_phase */
	__u8 failed;         /* probes failed in a row (up to PROBE_BACKOFF) */
};

static __always_inline int mode_queued(__u32 rtt, __u32 base, __u32 target)
{
	__u32 excess = 2 * target > base / 16 ? 2 * target : base / 16;

	return rtt != ~0U && rtt > base + excess;
}

/* No better than the round before by 1/16: the queue is not draining. */
static __always_inline int mode_stuck(struct lb_mode *m, __u32 rtt)
{
	__u32 last = m->last_rtt;

	m->last_rtt = rtt;
	return !(last != ~0U && last != 0 && rtt + last / 16 < last);
}

static __always_inline void mode_compete(struct lb_mode *m, __u64 now)
{
	m->mode = MODE_COMPETE;
	m->failed = 0;
	m->queued = 0;
	m->rounds = 0;
	m->probe = PROBE_NONE;
	m->probe_at_ms = now / 1000000;
}

/* Delay mode again: the queue was ours, or the switch was turned off. */
static __always_inline void mode_delay_only(struct lb_mode *m)
{
	m->mode = MODE_DELAY;
	m->queued = 0;
	m->probe = PROBE_NONE;
}

/* The queue stayed through the probe: compete on, the next probe later. */
static __always_inline int mode_probe_failed(struct lb_mode *m, __u64 now)
{
	__u8 failed = m->failed < PROBE_BACKOFF ? m->failed + 1 : PROBE_BACKOFF;

	mode_compete(m, now);
	m->failed = failed;
	return MODE_PROBE_FAILED;
}

/* At a round's end, given that round's smallest RTT (~0U: no sample). */
static __always_inline int mode_round(struct lb_mode *m, __u32 rtt, __u32 base,
				      __u32 target, __u64 now)
{
	if (m->mode == MODE_DELAY) {
		int stuck = mode_stuck(m, rtt);

		m->queued = stuck && mode_queued(rtt, base, target) ? m->queued + 1 : 0;
		if (m->queued < QUEUED_ROUNDS)
			return MODE_KEEP;
		mode_compete(m, now);
		return MODE_TO_COMPETE;
	}
	if (m->probe == PROBE_DRAIN) {
		m->probe = PROBE_JUDGE;       /* the queue had this round to drain */
		return MODE_KEEP;
	}
	if (m->probe == PROBE_JUDGE)      /* a whole round without a sample */
		return mode_probe_failed(m, now);
	if (m->rounds < 255)
		m->rounds++;
	if (m->rounds < PROBE_ROUNDS ||
	    (__u32)(now / 1000000) - m->probe_at_ms < PROBE_GAP_MS * (1U + m->failed))
		return MODE_KEEP;
	m->probe = PROBE_DRAIN;
	return MODE_PROBE_CUT;
}

/* On each RTT sample: the first one while judging ends the probe. */
static __always_inline int mode_sample(struct lb_mode *m, __u32 rtt, __u32 base,
				       __u32 target, __u64 now)
{
	if (m->mode != MODE_COMPETE || m->probe != PROBE_JUDGE)
		return MODE_KEEP;
	if (mode_queued(rtt, base, target))
		return mode_probe_failed(m, now);
	m->failed = 0;
	mode_delay_only(m);
	m->last_rtt = ~0U;
	return MODE_TO_DELAY;
}

/* The probe's cwnd: the share of cwnd that the base RTT is of the RTT. */
static __always_inline __u32 mode_probe_cwnd(__u32 cwnd, __u32 base, __u32 rtt)
{
	__u64 fit = (__u64)cwnd * base / (rtt ? rtt : 1);

	return fit > 2 ? (__u32)fit : 2;
}

#endif
