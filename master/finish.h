/*
 * finish.h - what runs once a job has ended: the --on-finish command and
 * the --notify POST of summary.json.
 *
 * Both run after the master has closed its store, so they see the final
 * summary.json. Neither changes the exit status: a hook that fails is
 * logged (master.on_finish_failed, master.notify_failed), not fatal, since
 * the job itself is done and durable by then.
 */
#ifndef FANOUT_FINISH_H
#define FANOUT_FINISH_H

/* Runs CMD with /bin/sh -c and waits for it; FANOUT_EXIT_STATUS, FANOUT_OUT
 * and FANOUT_SUMMARY are set in its environment. */
void finish_run_hook(const char *cmd, const char *out, int status);

/* Checks a --notify URL before the job starts: http:// or https:// and no
 * control characters. Returns 0, or -1 with a message in err. */
int finish_check_url(const char *url, char *err, size_t errlen);

/* POSTs OUT/summary.json to url as application/json, with the exit status
 * in a Fanout-Exit-Status header. Up to 3 attempts, 10 s each, 1 s then 2 s
 * apart, for connection failures and 5xx/429 answers. Returns 0 once an
 * attempt got a 2xx answer, -1 otherwise (logged). */
int finish_notify(const char *url, const char *out, int status);

#endif
