/* main.c: parleyd's start and stop.
 *
 * Start: settings, the data folder, the signing key, the schema (migrations run once here, before
 * any other thread opens the store), the pipeline thread, the listener. Stop on SIGINT or SIGTERM:
 * stop accepting, close every socket (WebSockets with 1001), let the pipeline commit and answer
 * what it holds, wait for running jobs, close the store. Exit 0 after a clean stop. */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "server/api/auth.h"
#include "server/pipeline/pipeline.h"
#include "server/server.h"
#include "server/store/pool.h"

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void stop(server_t *s)
{
    if (s->stopping) return;
    s->stopping = true;
    log_info("stopping: closing connections and flushing the pipeline");
    uv_close((uv_handle_t *)&s->listener, on_closed);
    uv_close((uv_handle_t *)&s->sigint, on_closed);
    uv_close((uv_handle_t *)&s->sigterm, on_closed);
    conn_close_all(s);
    pipeline_stop(s); /* commits what is queued; results wait on the bus */
    bus_drain(s);
    uv_close((uv_handle_t *)&s->wake, on_closed);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    stop(h->data);
}

static int make_data_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
        log_error("data folder %s exists but is not a folder", dir);
        return -1;
    }
    log_error("cannot make the data folder %s: %s", dir, strerror(errno));
    return -1;
}

int main(int argc, char **argv)
{
    static server_t srv;
    server_t *s = &srv;
    char err[512];
    config_defaults(&s->cfg);
    int rc = config_from_args(&s->cfg, argc, argv, err, sizeof err);
    if (rc == 1) return 0;
    if (rc != 0) {
        fprintf(stderr, "parleyd: %s\n", err);
        return 2;
    }
    int lvl = log_level_parse(s->cfg.log_level);
    if (lvl < 0) {
        fprintf(stderr, "parleyd: log_level must be debug, info, warn, error or off\n");
        return 2;
    }
    log_threshold = (enum log_level)lvl;
    if (strcmp(s->cfg.pwhash, "interactive") && strcmp(s->cfg.pwhash, "moderate") &&
        strcmp(s->cfg.pwhash, "min")) {
        fprintf(stderr, "parleyd: pwhash must be interactive, moderate or min\n");
        return 2;
    }
    if (sodium_init() < 0) {
        log_error("libsodium cannot start");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    http_parser_set_max_header_size((uint32_t)s->cfg.max_header + 1024);
    if (make_data_dir(s->cfg.data) != 0) return 1;

    store_set_fsync(s->cfg.fsync != 0);
    store_t *first;
    if (store_open(&first, s->cfg.data, err, sizeof err) != ST_OK) {
        log_error("%s", err);
        return 1;
    }
    s->pool = store_pool_new(s->cfg.data);
    store_pool_put(s->pool, first);
    s->loop = uv_default_loop();
    hmap_init(&s->sessions);
    hmap_init(&s->presence);
    hmap_init(&s->groups);
    if (auth_init(s) != 0 || bus_init(s) != 0 || pipeline_start(s) != 0 || conn_listen(s) != 0) {
        rc = 1;
        if (s->pipeline) pipeline_stop(s);
        goto out;
    }
    uv_signal_init(s->loop, &s->sigint);
    uv_signal_init(s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    log_info("parleyd %s listening on http://%s:%lld (WebSocket at /v1/ws), data in %s",
             PARLEY_VERSION, s->cfg.bind, (long long)s->cfg.port, s->cfg.data);
    uv_run(s->loop, UV_RUN_DEFAULT);
    log_info("stopped cleanly");
out:
    if (!s->stopping) { /* start failed: close what was opened */
        if (s->bus) uv_close((uv_handle_t *)&s->wake, on_closed);
        if (uv_is_active((uv_handle_t *)&s->listener) || s->listener.data)
            uv_close((uv_handle_t *)&s->listener, on_closed);
        uv_run(s->loop, UV_RUN_DEFAULT);
    }
    bus_free(s);
    store_pool_free(s->pool);
    auth_free();
    hmap_free(&s->sessions);
    groups_free(s);
    uv_loop_close(s->loop);
    return rc;
}
