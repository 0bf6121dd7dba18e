/* parley-bench: the load generator that measures parleyd and its reference peers.
 *
 *   parley-bench [options] idle|direct|group|catchup|slow
 *
 * The parent registers users over REST (parley), forks workers (each under the per-process
 * open-file cap), tells them to connect and to run traffic, samples the server's RSS and CPU from
 * /proc/PID, and prints one summary (and --json FILE). Protocols: parley (WebSocket, auth, sync,
 * send/ack), relay (the WebSocket relay protocol of bench/bare-relay.c and
 * bench/harness/ws-relay.js: "id:NAME" -> "ok", then "TO TEXT" is forwarded to TO) and mqtt (3.1.1,
 * QoS 0).
 *
 * Exit status: 0 when every message arrived exactly once; 1 when a message was lost or duplicated,
 * a send was refused or a live connection dropped; 2 for usage errors; 3 when the run could not be
 * set up (connections refused, registration failed, timeout). See bench/README.md. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pb.h"

opts_t O;
user_t *U;
char (*GID)[40];
int NCONNS;

static int NW;
static int *WLO, *WHI, *WFD;
static pid_t *WPID;
static int64_t DEADLINE;
static buf_t J; /* the JSON result */

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void kill_workers(void)
{
    for (int i = 0; i < NW; i++)
        if (WPID && WPID[i] > 0) kill(WPID[i], SIGKILL);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "parley-bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    kill_workers();
    exit(3);
}

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

void conn_name(int idx, char out[40])
{
    if (O.proto == P_PARLEY)
        snprintf(out, 40, "%s", U[idx].uid);
    else
        snprintf(out, 40, "c%d", idx);
}

void report_merge(report_t *into, const report_t *f)
{
    into->conns_ok += f->conns_ok;
    into->conns_failed += f->conns_failed;
    into->conns_lost += f->conns_lost;
    if (f->elapsed_ns > into->elapsed_ns) into->elapsed_ns = f->elapsed_ns;
    into->sent += f->sent;
    into->acked += f->acked;
    into->errors += f->errors;
    into->expected += f->expected;
    into->unique += f->unique;
    into->dups += f->dups;
    into->gaps += f->gaps;
    into->foreign += f->foreign;
    into->deliv_window += f->deliv_window;
    into->senders += f->senders;
    hist_merge(&into->h1, &f->h1);
    hist_merge(&into->h2, &f->h2);
}

/* ---- /proc ---- */

typedef struct psample {
    int64_t t;
    int64_t rss; /* bytes */
    int64_t cpu; /* clock ticks, user + system */
} psample;

static bool proc_read(psample *s)
{
    s->t = now_ns();
    s->rss = s->cpu = -1;
    if (O.server_pid <= 0) return false;
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/status", O.server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) s->rss = strtoll(line + 6, NULL, 10) * 1024;
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/stat", O.server_pid);
    f = fopen(path, "r");
    if (!f) return false;
    char st[2048];
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = 0;
    char *p = strrchr(st, ')'); /* the name may hold spaces */
    if (!p) return false;
    long long ut = 0, stt = 0;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14)
     * stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &stt) == 2)
        s->cpu = ut + stt;
    return true;
}

static double cpu_pct(const psample *a, const psample *b)
{
    if (a->cpu < 0 || b->cpu < 0 || b->t <= a->t) return -1;
    return 100.0 * (double)(b->cpu - a->cpu) / (double)sysconf(_SC_CLK_TCK) /
           ((double)(b->t - a->t) / 1e9);
}

static psample *TL; /* samples taken while waiting for the workers */
static int NTL, CAPTL;

static void sample_tl(void)
{
    if (O.server_pid <= 0) return;
    if (NTL == CAPTL) {
        CAPTL = CAPTL ? CAPTL * 2 : 256;
        TL = realloc(TL, (size_t)CAPTL * sizeof *TL);
        if (!TL) abort();
    }
    proc_read(&TL[NTL]);
    NTL++;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- workers ---- */

static void send_cmd(int w, const cmd_t *c)
{
    const char *p = (const char *)c;
    size_t n = sizeof *c;
    while (n) {
        ssize_t k = write(WFD[w], p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die("worker %d is gone", w);
        p += k;
        n -= (size_t)k;
    }
}

static void send_all(const cmd_t *c)
{
    for (int w = 0; w < NW; w++) send_cmd(w, c);
}

/* Waits for one report from each worker, sampling the server every 100 ms meanwhile. */
static void collect(report_t *sum)
{
    memset(sum, 0, sizeof *sum);
    report_t *r = malloc(sizeof *r);
    size_t *got = calloc((size_t)NW, sizeof *got);
    struct pollfd *pf = calloc((size_t)NW, sizeof *pf);
    if (!r || !got || !pf) abort();
    report_t **part = calloc((size_t)NW, sizeof *part);
    for (int w = 0; w < NW; w++) {
        part[w] = calloc(1, sizeof(report_t));
        if (!part[w]) abort();
    }
    int left = NW;
    int64_t next_sample = now_ns();
    while (left > 0) {
        if (now_ns() > DEADLINE) die("timed out after %d s (--timeout)", O.timeout_s);
        if (now_ns() >= next_sample) {
            sample_tl();
            next_sample += 100000000;
        }
        for (int w = 0; w < NW; w++) {
            pf[w].fd = got[w] == sizeof(report_t) ? -1 : WFD[w];
            pf[w].events = POLLIN;
        }
        int n = poll(pf, (nfds_t)NW, 50);
        if (n < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        for (int w = 0; w < NW && n > 0; w++) {
            if (pf[w].fd < 0 || !pf[w].revents) continue;
            ssize_t k = read(WFD[w], (char *)part[w] + got[w], sizeof(report_t) - got[w]);
            if (k <= 0) die("worker %d stopped unexpectedly", w);
            got[w] += (size_t)k;
            if (got[w] == sizeof(report_t)) {
                report_merge(sum, part[w]);
                left--;
            }
        }
    }
    for (int w = 0; w < NW; w++) free(part[w]);
    free(part);
    free(r);
    free(got);
    free(pf);
}

static void fork_workers(int unit)
{
    int units = NCONNS / unit;
    NW = (NCONNS + O.per_worker - 1) / O.per_worker;
    if (NW < 1) NW = 1;
    if (NW > units) NW = units;
    WLO = calloc((size_t)NW, sizeof *WLO);
    WHI = calloc((size_t)NW, sizeof *WHI);
    WFD = calloc((size_t)NW, sizeof *WFD);
    WPID = calloc((size_t)NW, sizeof *WPID);
    if (!WLO || !WHI || !WFD || !WPID) abort();
    fflush(stdout);
    fflush(stderr);
    for (int w = 0; w < NW; w++) {
        WLO[w] = (int)((int64_t)units * w / NW) * unit;
        WHI[w] = (int)((int64_t)units * (w + 1) / NW) * unit;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            randombytes_stir(); /* a fresh generator state in every process */
            close(sv[0]);
            for (int k = 0; k < w; k++) close(WFD[k]);
            worker_main(w, WLO[w], WHI[w], sv[1]);
            _exit(0);
        }
        close(sv[1]);
        WFD[w] = sv[0];
        WPID[w] = pid;
    }
    say("workers: %d process%s, up to %d connections each", NW, NW > 1 ? "es" : "", O.per_worker);
}

static void stop_workers(void)
{
    cmd_t q = {.op = OP_QUIT};
    send_all(&q);
    for (int w = 0; w < NW; w++) {
        int st;
        int64_t until = now_ns() + 5000000000LL;
        while (waitpid(WPID[w], &st, WNOHANG) == 0) {
            if (now_ns() > until) {
                kill(WPID[w], SIGKILL);
                waitpid(WPID[w], &st, 0);
                break;
            }
            sleep_ms(10);
        }
        WPID[w] = 0;
        close(WFD[w]);
    }
}

/* Connects the first `per` share of every worker's connections; returns the merged report. */
static void connect_all(int total, int from_zero, report_t *sum)
{
    for (int w = 0; w < NW; w++) {
        int64_t a = (int64_t)total * WLO[w] / NCONNS, b = (int64_t)total * WHI[w] / NCONNS;
        cmd_t c = {.op = OP_CONNECT, .a = (int32_t)(b - a), .b = from_zero};
        send_cmd(w, &c);
    }
    collect(sum);
}

/* ---- JSON ---- */

static void jhist(const char *name, const hist_t *h)
{
    buf_printf(&J,
               "\"%s\":{\"count\":%" PRIu64 ",\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
               "\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
               name, h->count, hist_quantile(h, 0.5) / 1e3, hist_quantile(h, 0.9) / 1e3,
               hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3,
               hist_mean(h) / 1e3);
}

static const char *proto_name(void)
{
    static const char *n[] = {"parley", "relay", "mqtt", "xmpp"};
    return n[O.proto];
}

static const char *scen_name(void)
{
    static const char *n[] = {"idle", "direct", "group", "catchup", "slow"};
    return n[O.scen];
}

static void json_head(void)
{
    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    buf_printf(&J,
               "{\"tool\":\"parley-bench\",\"scenario\":\"%s\",\"proto\":\"%s\",\"label\":\"%s\","
               "\"date\":\"%s\",\"params\":{\"conns\":%d,\"workers\":%d,\"pairs\":%d,"
               "\"group_size\":%d,\"groups\":%d,\"rate\":%.1f,\"window\":%d,\"warmup\":%.2f,"
               "\"duration\":%.2f,\"payload\":%d,\"catchup_n\":%d,\"slow_rate\":%.1f},\"result\":{",
               scen_name(), proto_name(), O.label, date, NCONNS, NW, O.pairs, O.group_size,
               O.groups, O.rate, O.window, O.warmup, O.duration, O.payload, O.catchup_n,
               O.slow_rate);
}

static void json_write(bool ok)
{
    buf_printf(&J, "},\"ok\":%s}\n", ok ? "true" : "false");
    if (!O.json[0]) return;
    FILE *f = fopen(O.json, "w");
    if (!f) die("cannot write %s: %s", O.json, strerror(errno));
    fwrite(J.data, 1, J.len, f);
    fclose(f);
}

/* ---- scenarios ---- */

static bool verdict(const report_t *s, const char *what)
{
    int64_t lost = s->expected > s->unique ? s->expected - s->unique : 0;
    bool ok = lost == 0 && s->dups == 0 && s->errors == 0 && s->conns_lost == 0 && s->foreign == 0;
    say("correctness (%s): sent %" PRId64 ", refused %" PRId64 ", expected %" PRId64
        ", delivered %" PRId64 ", lost %" PRId64 ", duplicated %" PRId64 ", stray %" PRId64
        ", connections dropped %" PRId64 " -> %s",
        what, s->sent, s->errors, s->expected, s->unique, lost, s->dups, s->foreign, s->conns_lost,
        ok ? "OK" : "FAILED");
    buf_printf(&J,
               "\"sent\":%" PRId64 ",\"acked\":%" PRId64 ",\"errors\":%" PRId64
               ",\"expected\":%" PRId64 ",\"delivered\":%" PRId64 ",\"lost\":%" PRId64
               ",\"dup\":%" PRId64 ",\"stray\":%" PRId64 ",\"conns_dropped\":%" PRId64 ",",
               s->sent, s->acked, s->errors, s->expected, s->unique, lost, s->dups, s->foreign,
               s->conns_lost);
    return ok;
}

static void print_lat(const char *what, const hist_t *h)
{
    say("%s: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%" PRIu64 " samples)", what,
        hist_quantile(h, 0.5) / 1e6, hist_quantile(h, 0.99) / 1e6, hist_quantile(h, 0.999) / 1e6,
        (double)h->max / 1e6, h->count);
}

static int scen_idle(void)
{
    int steps[64], ns = 0;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", O.steps);
    for (char *t = strtok(tmp, ","); t && ns < 64; t = strtok(NULL, ",")) {
        int v = atoi(t);
        if (v > NCONNS) v = NCONNS;
        if (v > 0 && (ns == 0 || v > steps[ns - 1])) steps[ns++] = v;
    }
    psample base;
    sleep_ms(500);
    proc_read(&base);
    say("idle: server RSS with no connections: %.1f MiB", (double)base.rss / 1048576.0);
    double xs[65], ys[65];
    int np = 0;
    if (base.rss > 0) {
        xs[np] = 0;
        ys[np++] = (double)base.rss;
    }
    buf_printf(&J, "\"rss_base\":%" PRId64 ",\"steps\":[", base.rss);
    bool ok = true;
    int64_t have = 0;
    for (int i = 0; i < ns; i++) {
        report_t r;
        connect_all(steps[i], 0, &r);
        int64_t got = r.conns_ok;
        have += got;
        double secs = (double)r.elapsed_ns / 1e9;
        if (r.conns_failed) ok = false;
        sleep_ms(2000);
        psample a, b;
        proc_read(&a);
        sleep_ms(3000);
        proc_read(&b);
        double cpu = cpu_pct(&a, &b);
        say("idle: %" PRId64 " connections (+%" PRId64 " in %.2f s, %.0f/s, %" PRId64
            " failed), connect-to-live p50 %.1f ms p99 %.1f ms; server RSS %.1f MiB, idle CPU %.1f "
            "%%",
            have, got, secs, (double)got / secs, r.conns_failed, hist_quantile(&r.h1, 0.5) / 1e6,
            hist_quantile(&r.h1, 0.99) / 1e6, (double)b.rss / 1048576.0, cpu);
        buf_printf(&J,
                   "%s{\"conns\":%" PRId64 ",\"failed\":%" PRId64 ",\"connect_s\":%.3f,"
                   "\"connect_rate\":%.1f,\"rss\":%" PRId64 ",\"idle_cpu_pct\":%.2f,",
                   i ? "," : "", have, r.conns_failed, secs, (double)got / secs, b.rss, cpu);
        jhist("connect_ms_x1000", &r.h1); /* microseconds, like every latency */
        buf_append_str(&J, "}");
        if (b.rss > 0) {
            xs[np] = (double)have;
            ys[np++] = (double)b.rss;
        }
        if (r.conns_failed) break;
    }
    /* least squares: bytes per connection */
    double slope = 0;
    if (np >= 2) {
        double mx = 0, my = 0, sxx = 0, sxy = 0;
        for (int i = 0; i < np; i++) mx += xs[i], my += ys[i];
        mx /= np;
        my /= np;
        for (int i = 0; i < np; i++) {
            sxx += (xs[i] - mx) * (xs[i] - mx);
            sxy += (xs[i] - mx) * (ys[i] - my);
        }
        slope = sxx > 0 ? sxy / sxx : 0;
    }
    say("idle: server memory per idle authenticated connection (least-squares slope over %d "
        "points): %.0f bytes (%.2f KiB)",
        np, slope, slope / 1024.0);
    buf_printf(&J, "],\"bytes_per_conn\":%.1f,\"conns\":%" PRId64, slope, have);
    json_write(ok);
    return ok ? 0 : 3;
}

static int senders_count(void)
{
    if (O.scen == S_GROUP) return O.groups;
    if (O.scen == S_CATCHUP) return 1;
    return NCONNS;
}

static int scen_traffic(void)
{
    report_t c;
    connect_all(NCONNS, 0, &c);
    say("connected %" PRId64 " of %d in %.2f s (connect-to-live p99 %.1f ms)", c.conns_ok, NCONNS,
        (double)c.elapsed_ns / 1e9, hist_quantile(&c.h1, 0.99) / 1e6);
    if (c.conns_failed) die("%" PRId64 " connections failed", c.conns_failed);
    int flags = O.scen == S_GROUP ? RUN_ACKWIN : 0;
    if (O.scen == S_SLOW) flags |= RUN_SLOW;
    cmd_t run = {.op = OP_RUN,
                 .a = O.window,
                 .b = flags,
                 .warmup = O.warmup,
                 .duration = O.duration,
                 .rate_per_sender = O.rate > 0 ? O.rate / senders_count() : 0,
                 .slow_rate = O.slow_rate};
    NTL = 0;
    int64_t t0 = now_ns();
    send_all(&run);
    report_t r;
    collect(&r);
    int64_t m0 = t0 + (int64_t)(O.warmup * 1e9), m1 = m0 + (int64_t)(O.duration * 1e9);
    /* server CPU and RSS over the measured window, from the samples */
    psample *a = NULL, *b = NULL;
    int64_t rss_max = -1, rss_base_max = -1, rss_end = -1;
    for (int i = 0; i < NTL; i++) {
        if (!a && TL[i].t >= m0) a = &TL[i];
        if (TL[i].t <= m1) b = &TL[i];
        if (TL[i].rss > rss_max) rss_max = TL[i].rss;
        if (TL[i].t < m0 && TL[i].rss > rss_base_max) rss_base_max = TL[i].rss;
        rss_end = TL[i].rss;
    }
    double cpu = a && b ? cpu_pct(a, b) : -1;
    double rate = (double)r.deliv_window / O.duration;
    say("%s %s: %s, %d connections: delivered %.0f msg/s (offered %s), server CPU %.0f %%, RSS max "
        "%.1f MiB",
        O.label, scen_name(), proto_name(), NCONNS, rate, O.rate > 0 ? "fixed" : "flat out", cpu,
        (double)rss_max / 1048576.0);
    if (O.rate > 0) say("offered: %.0f msg/s", O.rate);
    print_lat("latency", &r.h1);
    buf_printf(&J,
               "\"delivered_per_s\":%.1f,\"offered_per_s\":%.1f,\"server_cpu_pct\":%.1f,"
               "\"server_rss_max\":%" PRId64 ",\"server_rss_end\":%" PRId64 ",",
               rate, O.rate, cpu, rss_max, rss_end);
    jhist("latency_us", &r.h1);
    buf_append_str(&J, ",");
    if (O.scen == S_SLOW) {
        int nslow = 0;
        for (int i = 1; i < NCONNS; i += 2)
            if ((i / 2) % (int)(1.0 / (2 * O.slow_frac) + 0.5) == 0) nslow++;
        print_lat("others' latency before the slow phase", &r.h2);
        print_lat("others' latency while 5% do not read", &r.h1);
        /* RSS while the slow clients do not read (the bound), its rise over the last 5 s of that
         * phase (a plateau means bounded), and after they read again (the catch-up from the store)
         */
        int64_t slow_max = -1, at_m1 = -1, at_m1_5 = -1, after_max = -1;
        for (int i = 0; i < NTL; i++) {
            if (TL[i].t >= m0 && TL[i].t <= m1 && TL[i].rss > slow_max) slow_max = TL[i].rss;
            if (TL[i].t <= m1) at_m1 = TL[i].rss;
            if (TL[i].t <= m1 - 5000000000LL) at_m1_5 = TL[i].rss;
            if (TL[i].t > m1 && TL[i].rss > after_max) after_max = TL[i].rss;
        }
        say("slow: server RSS while they do not read: max %.1f MiB (+%.1f MiB over the baseline, "
            "%.0f KiB per slow client); in the last 5 s of that phase it moved %+.2f MiB; max "
            "after "
            "they read again (the server catches them up from the store): %.1f MiB",
            slow_max / 1048576.0, (slow_max - rss_base_max) / 1048576.0,
            nslow ? (slow_max - rss_base_max) / 1024.0 / nslow : 0, (at_m1 - at_m1_5) / 1048576.0,
            after_max / 1048576.0);
        buf_printf(&J,
                   "\"rss_slow_max\":%" PRId64 ",\"rss_slow_last5s_change\":%" PRId64
                   ",\"rss_after_max\":%" PRId64 ",",
                   slow_max, at_m1 - at_m1_5, after_max);
        double growth = (double)(rss_max - rss_base_max);
        say("slow: %d of %d clients stopped reading for %.0f s; server RSS %.1f MiB before, max "
            "%.1f MiB during (+%.1f MiB, %.0f KiB per slow client), %.1f MiB after",
            nslow, NCONNS, O.duration, rss_base_max / 1048576.0, rss_max / 1048576.0,
            growth / 1048576.0, nslow ? growth / nslow / 1024.0 : 0, rss_end / 1048576.0);
        buf_printf(&J, "\"slow_clients\":%d,\"rss_before\":%" PRId64 ",\"rss_growth\":%.0f,", nslow,
                   rss_base_max, growth);
        jhist("baseline_latency_us", &r.h2);
        buf_append_str(&J, ",\"rss_timeline\":[");
        for (int i = 0; i < NTL; i++)
            buf_printf(&J, "%s[%.2f,%" PRId64 "]", i ? "," : "", (TL[i].t - t0) / 1e9, TL[i].rss);
        buf_append_str(&J, "],");
    }
    bool ok = verdict(&r, scen_name());
    buf_printf(&J, "\"conns\":%d", NCONNS);
    json_write(ok);
    return ok ? 0 : 1;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int scen_catchup(void)
{
    report_t c;
    connect_all(1, 0, &c); /* the sender; the receiver stays offline */
    if (c.conns_ok != 1) die("the sender could not connect");
    cmd_t fill = {.op = OP_RUN, .a = O.window, .b = RUN_ACKWIN | RUN_FILL, .n = O.catchup_n};
    send_all(&fill);
    report_t f;
    collect(&f);
    say("catchup: %" PRId64 " messages stored for an offline user in %.2f s (%.0f msg/s, %" PRId64
        " refused)",
        f.acked, f.elapsed_ns / 1e9, f.acked / (f.elapsed_ns / 1e9), f.errors);
    buf_printf(&J, "\"stored\":%" PRId64 ",\"store_s\":%.3f,\"syncs\":[", f.acked,
               f.elapsed_ns / 1e9);
    bool ok = f.errors == 0 && f.acked == O.catchup_n;
    double times[64];
    int nt = 0;
    for (int i = 0; i < O.repeat && i < 64; i++) {
        psample a, b;
        proc_read(&a);
        report_t s;
        connect_all(2, 1, &s);
        proc_read(&b);
        double secs = s.elapsed_ns / 1e9;
        int64_t lost = s.expected > s.unique ? s.expected - s.unique : 0;
        bool good = s.conns_ok == 1 && lost == 0 && s.dups == 0 && s.foreign == 0;
        ok = ok && good;
        say("catchup: sync %d: connect, auth and sync of %" PRId64 " messages in %.3f s "
            "(%.0f msg/s), lost %" PRId64 ", duplicated %" PRId64 " -> %s; server CPU %.0f %%",
            i + 1, s.unique, secs, s.unique / secs, lost, s.dups, good ? "OK" : "FAILED",
            cpu_pct(&a, &b));
        buf_printf(
            &J, "%s{\"s\":%.4f,\"delivered\":%" PRId64 ",\"lost\":%" PRId64 ",\"dup\":%" PRId64 "}",
            i ? "," : "", secs, s.unique, lost, s.dups);
        times[nt++] = secs;
        cmd_t d = {.op = OP_DISCONNECT, .a = 1};
        send_all(&d);
        report_t x;
        collect(&x);
        sleep_ms(300);
    }
    qsort(times, (size_t)nt, sizeof times[0], cmp_dbl);
    double med = nt ? times[nt / 2] : 0;
    say("catchup: median time to sync %d messages: %.3f s (min %.3f, max %.3f)", O.catchup_n, med,
        nt ? times[0] : 0, nt ? times[nt - 1] : 0);
    buf_printf(&J, "],\"sync_s_median\":%.4f,\"sync_s_min\":%.4f,\"sync_s_max\":%.4f", med,
               nt ? times[0] : 0, nt ? times[nt - 1] : 0);
    json_write(ok);
    return ok ? 0 : 1;
}

/* ---- main ---- */

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: parley-bench [options] idle|direct|group|catchup|slow\n"
        "  --proto parley|relay|mqtt   what the server speaks (default parley)\n"
        "  --host H --port N            the server (default 127.0.0.1:8080)\n"
        "  --server-pid PID             read the server's RSS and CPU from /proc/PID\n"
        "  --pairs N                    direct, slow: pairs of users (default 100)\n"
        "  --group-size N --groups N    group: members per group, groups (default 10, 10)\n"
        "  --rate R                     offered messages/s in total; 0 = flat out (default 0)\n"
        "  --window N                   flat out: messages in flight per sender (default 8)\n"
        "  --warmup S --duration S      seconds before measuring, seconds measured (1, 5)\n"
        "  --payload BYTES              message text size (default 150)\n"
        "  --steps A,B,...              idle: connection counts (default 1000,5000,10000,19000)\n"
        "  --per-worker N               most connections per worker process (default 10000)\n"
        "  --sources N                  source addresses 127.0.1.1..N (default 64)\n"
        "  --connect-inflight N         connection attempts at once per worker (default 48,\n"
        "                               under mosquitto's fixed listen backlog of 100)\n"
        "  --catchup N --repeat K       catchup: waiting messages, timed syncs (100000, 3)\n"
        "  --slow-frac F --slow-rate R  slow: share that stops reading (0.05), msgs/s to each "
        "(2000)\n"
        "  --drain-ms MS                wait for stragglers after sending stops (default 10000)\n"
        "  --timeout S                  give up after S seconds (default 600)\n"
        "  --users FILE                 parley: cache of registered users, reused across runs\n"
        "  --label NAME --json FILE     name in the output, JSON result file\n");
}

int main(int argc, char **argv)
{
    memset(&O, 0, sizeof O);
    snprintf(O.host, sizeof O.host, "127.0.0.1");
    snprintf(O.domain, sizeof O.domain, "bench.local");
    O.port = 8080;
    O.pairs = 100;
    O.group_size = 10;
    O.groups = 10;
    O.window = 8;
    O.warmup = 1;
    O.duration = 5;
    O.payload = 150;
    snprintf(O.steps, sizeof O.steps, "1000,5000,10000,19000");
    O.per_worker = 10000;
    O.sources = 64;
    O.catchup_n = 100000;
    O.repeat = 3;
    O.slow_frac = 0.05;
    O.slow_rate = 2000;
    O.drain_ms = 10000;
    O.timeout_s = 600;
    O.rest_parallel = 16;
    O.inflight = 48;
    static const struct option lo[] = {{"proto", 1, 0, 'P'},
                                       {"host", 1, 0, 'H'},
                                       {"port", 1, 0, 'p'},
                                       {"server-pid", 1, 0, 's'},
                                       {"pairs", 1, 0, 'n'},
                                       {"group-size", 1, 0, 'g'},
                                       {"groups", 1, 0, 'G'},
                                       {"rate", 1, 0, 'r'},
                                       {"window", 1, 0, 'w'},
                                       {"warmup", 1, 0, 'W'},
                                       {"duration", 1, 0, 'd'},
                                       {"payload", 1, 0, 'l'},
                                       {"steps", 1, 0, 'S'},
                                       {"per-worker", 1, 0, 'k'},
                                       {"sources", 1, 0, 'a'},
                                       {"catchup", 1, 0, 'c'},
                                       {"repeat", 1, 0, 'R'},
                                       {"slow-frac", 1, 0, 'f'},
                                       {"slow-rate", 1, 0, 'F'},
                                       {"drain-ms", 1, 0, 'D'},
                                       {"timeout", 1, 0, 'T'},
                                       {"users", 1, 0, 'u'},
                                       {"label", 1, 0, 'L'},
                                       {"json", 1, 0, 'j'},
                                       {"connect-inflight", 1, 0, 'i'},
                                       {"domain", 1, 0, 'X'},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'P':
            if (!strcmp(optarg, "parley"))
                O.proto = P_PARLEY;
            else if (!strcmp(optarg, "relay"))
                O.proto = P_RELAY;
            else if (!strcmp(optarg, "mqtt"))
                O.proto = P_MQTT;
            else if (!strcmp(optarg, "xmpp"))
                O.proto = P_XMPP;
            else {
                usage(stderr);
                return 2;
            }
            break;
        case 'H':
            snprintf(O.host, sizeof O.host, "%s", optarg);
            break;
        case 'p':
            O.port = atoi(optarg);
            break;
        case 's':
            O.server_pid = atoi(optarg);
            break;
        case 'n':
            O.pairs = atoi(optarg);
            break;
        case 'g':
            O.group_size = atoi(optarg);
            break;
        case 'G':
            O.groups = atoi(optarg);
            break;
        case 'r':
            O.rate = atof(optarg);
            break;
        case 'w':
            O.window = atoi(optarg);
            break;
        case 'W':
            O.warmup = atof(optarg);
            break;
        case 'd':
            O.duration = atof(optarg);
            break;
        case 'l':
            O.payload = atoi(optarg);
            break;
        case 'S':
            snprintf(O.steps, sizeof O.steps, "%s", optarg);
            break;
        case 'k':
            O.per_worker = atoi(optarg);
            break;
        case 'a':
            O.sources = atoi(optarg);
            break;
        case 'c':
            O.catchup_n = atoi(optarg);
            break;
        case 'R':
            O.repeat = atoi(optarg);
            break;
        case 'f':
            O.slow_frac = atof(optarg);
            break;
        case 'F':
            O.slow_rate = atof(optarg);
            break;
        case 'D':
            O.drain_ms = atoi(optarg);
            break;
        case 'T':
            O.timeout_s = atoi(optarg);
            break;
        case 'u':
            snprintf(O.users, sizeof O.users, "%s", optarg);
            break;
        case 'L':
            snprintf(O.label, sizeof O.label, "%s", optarg);
            break;
        case 'j':
            snprintf(O.json, sizeof O.json, "%s", optarg);
            break;
        case 'i':
            O.inflight = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *sc = argv[optind];
    if (!strcmp(sc, "idle"))
        O.scen = S_IDLE;
    else if (!strcmp(sc, "direct"))
        O.scen = S_DIRECT;
    else if (!strcmp(sc, "group"))
        O.scen = S_GROUP;
    else if (!strcmp(sc, "catchup"))
        O.scen = S_CATCHUP;
    else if (!strcmp(sc, "slow"))
        O.scen = S_SLOW;
    else {
        usage(stderr);
        return 2;
    }
    if (O.payload < 40 || O.payload > 4000 || O.pairs < 1 || O.group_size < 2 || O.groups < 1 ||
        O.per_worker < 2 || O.per_worker > 19000 || O.inflight < 1 || O.window < 1 ||
        O.duration <= 0 || O.slow_frac < 0 || O.slow_frac > 0.5) {
        fprintf(stderr, "parley-bench: an option is out of range (see --help)\n");
        return 2;
    }
    if (!O.label[0])
        snprintf(O.label, sizeof O.label, "%s", O.proto == P_PARLEY ? "parley" : "peer");
    if ((O.scen == S_GROUP || O.scen == S_CATCHUP) && O.proto != P_PARLEY) {
        fprintf(stderr, "parley-bench: the %s scenario needs a Parley server (--proto parley)\n",
                sc);
        return 2;
    }
    /* the userspace generator: WebSocket masks need no system call per frame */
    randombytes_set_implementation(&randombytes_internal_implementation);
    if (sodium_init() < 0) return 3;
    struct rlimit rl; /* one worker never needs more files than the process may open */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)O.per_worker + 64 > rl.rlim_cur) {
        O.per_worker = (int)rl.rlim_cur - 64;
        if (O.per_worker < 2)
            die("the open-file limit (%lu) is too low", (unsigned long)rl.rlim_cur);
    }
    signal(SIGPIPE, SIG_IGN);
    O.run_id = randombytes_random();
    DEADLINE = now_ns() + (int64_t)O.timeout_s * 1000000000LL;
    int unit = 1;
    switch (O.scen) {
    case S_IDLE: {
        int mx = 0;
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", O.steps);
        for (char *t = strtok(tmp, ","); t; t = strtok(NULL, ","))
            if (atoi(t) > mx) mx = atoi(t);
        NCONNS = mx;
        break;
    }
    case S_DIRECT:
    case S_SLOW:
        NCONNS = 2 * O.pairs;
        unit = 2;
        break;
    case S_GROUP:
        NCONNS = O.group_size * O.groups;
        unit = O.group_size;
        break;
    case S_CATCHUP:
        NCONNS = 2;
        unit = 2;
        O.per_worker = 2;
        break;
    }
    if (NCONNS < 1) die("nothing to do");
    buf_init(&J);
    json_head();
    U = calloc((size_t)NCONNS, sizeof *U);
    if (!U) abort();
    say("parley-bench: %s scenario against %s at %s:%d (%s), %d connections", sc, proto_name(),
        O.host, O.port, O.label, NCONNS);
    if (O.proto == P_PARLEY && rest_ensure_users(NCONNS) != 0)
        die("could not register the users (is parleyd running with --pwhash min?)");
    if (O.scen == S_GROUP) {
        GID = calloc((size_t)O.groups, sizeof *GID);
        if (!GID) abort();
        bool unsupported;
        char why[512] = "";
        if (rest_create_groups(O.groups, O.group_size, &unsupported, why, sizeof why) != 0) {
            if (unsupported) {
                say("group: SKIPPED: this parleyd has no groups yet (%s). The scenario runs as "
                    "soon as POST /v1/groups exists.",
                    why);
                buf_printf(&J, "\"skipped\":true,\"reason\":\"parleyd has no groups yet\"");
                json_write(true);
                return 0;
            }
            die("could not create the groups: %s", why);
        }
        say("group: %d groups of %d members created", O.groups, O.group_size);
    }
    fork_workers(unit);
    int rc;
    switch (O.scen) {
    case S_IDLE:
        rc = scen_idle();
        break;
    case S_CATCHUP:
        rc = scen_catchup();
        break;
    default:
        rc = scen_traffic();
        break;
    }
    stop_workers();
    return rc;
}
