/* ttl.c - the expiry reaper: a sandbox whose endAt passed is killed, or
 * paused if it asked for autoPause. Paused sandboxes do not expire: they
 * hold no memory and stay until they are killed or resumed. */
#include "../lib/log.h"
#include "apicore.h"

static void expire(struct api *a, struct sandbox_entry *e, int64_t now)
{
	log_info("sandbox.expired", "sandbox=%s endAt passed %lld ms ago: %s", e->rec.id,
		 (long long)(now - e->rec.end_ms), e->rec.auto_pause ? "pausing" : "killing");
	sandbox_job_submit(a, e, e->rec.auto_pause ? JOB_PAUSE : JOB_STOP, NULL, 0, 0);
}

static void ttl_tick(void *arg)
{
	struct api *a = arg;
	int64_t now = wall_ms();
	for (struct sandbox_entry *e = a->sandboxes; e; e = e->next)
		if (!e->busy && e->rec.state == SANDBOX_RUNNING && e->rec.end_ms <= now)
			expire(a, e, now);
	loop_timer_arm(a->loop, &a->ttl_timer, a->cfg.ttl_interval_ms, ttl_tick, a);
}

void ttl_start(struct api *a)
{
	loop_timer_arm(a->loop, &a->ttl_timer, a->cfg.ttl_interval_ms, ttl_tick, a);
}

void ttl_stop(struct api *a)
{
	loop_timer_disarm(a->loop, &a->ttl_timer);
}
