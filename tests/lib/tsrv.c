/* tsrv.c: starts and stops parleyd for tests. */
#include "tclient.h"
#include "tnet.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS  20000
#define TAIL_LINES       50

/* Servers that are running, for dumping logs after a failure. */
#define MAX_SERVERS 16
static tsrv *running[MAX_SERVERS];

static void track(tsrv *s, bool on)
{
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (on && !running[i]) {
            running[i] = s;
            return;
        }
        if (!on && running[i] == s) running[i] = NULL;
    }
}

void tsrv_dump_all(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (running[i]) tsrv_log_tail(running[i], TAIL_LINES);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

void tsrv_log_tail(const tsrv *s, int lines)
{
    FILE *f = fopen(s->log_path, "r");
    if (!f) {
        t_note("server log %s: %s", s->log_path, strerror(errno));
        return;
    }
    /* Read the last 256 KiB at most and print its last `lines` lines. */
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > 262144 ? size - 262144 : 0;
    fseek(f, from, SEEK_SET);
    size_t cap = (size_t)(size - from);
    char *b = malloc(cap + 1);
    size_t n = fread(b, 1, cap, f);
    fclose(f);
    b[n] = 0;
    size_t start = n;
    int seen = 0;
    while (start > 0) {
        if (b[start - 1] == '\n' && start != n && ++seen >= lines) break;
        start--;
    }
    fprintf(stderr, "# ---- last %d lines of %s (pid %d, port %d) ----\n", lines, s->log_path,
            (int)s->pid, s->port);
    fwrite(b + start, 1, n - start, stderr);
    if (n && b[n - 1] != '\n') fputc('\n', stderr);
    fprintf(stderr, "# ---- end of server log ----\n");
    fflush(stderr);
    free(b);
}

static const char *binary(void)
{
    const char *b = getenv("PARLEYD");
    return b && *b ? b : "build/asan/parleyd";
}

/* Does process pid hold the listening TCP socket on port? Other test runs on this machine pick
 * free ports the same way, so a health answer on our port may come from someone else's server
 * until ours has bound it. Checks /proc/net/tcp{,6} for the listener's inode and our fds. */
static bool owns_listener(pid_t pid, int port)
{
    unsigned long inodes[8];
    int ni = 0;
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f) continue;
        char line[512];
        while (fgets(line, sizeof line, f) && ni < 8) {
            char local[64];
            unsigned st;
            unsigned long inode;
            if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*u %*u %lu", local, &st, &inode) != 3)
                continue;
            const char *colon = strrchr(local, ':');
            if (st == 0x0A && colon && strtol(colon + 1, NULL, 16) == port) inodes[ni++] = inode;
        }
        fclose(f);
    }
    if (!ni) return false;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        char path[320], target[64];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = 0;
        for (int i = 0; i < ni; i++) {
            char want[40];
            snprintf(want, sizeof want, "socket:[%lu]", inodes[i]);
            if (strcmp(target, want) == 0) found = true;
        }
    }
    closedir(d);
    return found;
}

/* 1 if the child has exited (status in *st), 0 if still running. */
static int reap(tsrv *s, int *st)
{
    pid_t r = waitpid(s->pid, st, WNOHANG);
    if (r == s->pid) return 1;
    if (r < 0 && errno == ECHILD) {
        *st = 0;
        return 1;
    }
    return 0;
}

static int status_code(int st)
{
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return T_ERR;
}

#define T_RETRY (-4)

/* Did the last start fail because the port was in use? (Looks at the log since our header.) */
static bool port_taken(const tsrv *s)
{
    FILE *f = fopen(s->log_path, "r");
    if (!f) return false;
    char line[1024];
    bool taken = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "==== tsrv: starting", 19) == 0) taken = false;
        if (strstr(line, "ddress already in use") || strstr(line, "EADDRINUSE")) taken = true;
    }
    fclose(f);
    return taken;
}

static int spawn_once(tsrv *s)
{
    const char *bin = binary();
    if (access(bin, X_OK) != 0) {
        t_note("server binary %s: %s (set PARLEYD or build it)", bin, strerror(errno));
        return T_ERR;
    }
    s->port = free_port();
    if (s->port <= 0) {
        t_note("no free port");
        return T_ERR;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    char *argv[TSRV_MAX_ARGS + 8];
    int ac = 0;
    argv[ac++] = (char *)bin;
    argv[ac++] = "--port";
    argv[ac++] = port;
    argv[ac++] = "--data";
    argv[ac++] = s->dir;
    for (int i = 0; i < s->nargs; i++) argv[ac++] = s->args[i];
    argv[ac] = NULL;

    int logfd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        t_note("open %s: %s", s->log_path, strerror(errno));
        return T_ERR;
    }
    dprintf(logfd, "==== tsrv: starting %s on port %d ====\n", bin, s->port);
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        return T_ERR;
    }
    if (pid == 0) {
        /* Die with the test process, so a crashed test leaves no server behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        execv(bin, argv);
        dprintf(2, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(logfd);
    s->pid = pid;
    track(s, true);

    long long dl = tnet_deadline(START_TIMEOUT_MS);
    for (;;) {
        int st;
        if (reap(s, &st)) {
            track(s, false);
            s->pid = 0;
            if (port_taken(s)) {
                t_note("port %d was taken by another process; trying another one", s->port);
                return T_RETRY;
            }
            t_note("parleyd exited while starting (status %d)", status_code(st));
            tsrv_log_tail(s, TAIL_LINES);
            return T_ERR;
        }
        int fd = owns_listener(s->pid, s->port) ? tnet_connect(s->port, 500) : -1;
        if (fd >= 0) {
            close(fd);
            thttp_resp r;
            if (thttp_do(s->port, "GET", "/v1/health", NULL, NULL, &r) == 0) {
                int status = r.status;
                thttp_resp_free(&r);
                if (status == 200) return 0;
            }
        }
        if (tnet_left(dl) == 0) break;
        t_sleep_ms(20); /* polling a process that has nothing to wait on */
    }
    t_note("parleyd did not answer GET /v1/health with 200 within %d ms", START_TIMEOUT_MS);
    tsrv_kill9(s);
    tsrv_log_tail(s, TAIL_LINES);
    return T_ERR;
}

static int spawn(tsrv *s)
{
    for (int attempt = 0;; attempt++) {
        int rc = spawn_once(s);
        if (rc != T_RETRY) return rc;
        if (attempt == 5) {
            tsrv_log_tail(s, TAIL_LINES);
            return T_ERR;
        }
    }
}

int tsrv_start_args(tsrv *s, const char *data_dir, ...)
{
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, data_dir);
    for (const char *a; (a = va_arg(ap, const char *));) {
        if (s->nargs == TSRV_MAX_ARGS) break;
        s->args[s->nargs++] = strdup(a);
    }
    va_end(ap);
    if (data_dir) {
        snprintf(s->dir, sizeof s->dir, "%s", data_dir);
        mkdir(s->dir, 0700);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(s->dir, sizeof s->dir, "%s/parley-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(s->dir)) {
            t_note("mkdtemp %s: %s", s->dir, strerror(errno));
            tsrv_cleanup(s);
            return T_ERR;
        }
        s->own_dir = true;
    }
    snprintf(s->log_path, sizeof s->log_path, "%s/parleyd.log", s->dir);
    int rc = spawn(s);
    if (rc != 0) tsrv_cleanup(s); /* a failed setup gets no teardown */
    return rc;
}

int tsrv_restart(tsrv *s)
{
    if (s->pid) {
        t_note("tsrv_restart: the server is still running");
        return T_ERR;
    }
    return spawn(s);
}

int tsrv_stop(tsrv *s)
{
    if (!s->pid) return s->last_status;
    kill(s->pid, SIGTERM);
    long long dl = tnet_deadline(STOP_TIMEOUT_MS);
    int st = 0, rc;
    for (;;) {
        if (reap(s, &st)) {
            rc = status_code(st);
            break;
        }
        if (tnet_left(dl) == 0) {
            t_note("parleyd did not exit within %d ms of SIGTERM; killing it", STOP_TIMEOUT_MS);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            rc = T_TIMEOUT;
            break;
        }
        t_sleep_ms(10);
    }
    if (rc != 0) {
        t_note("parleyd exited with status %d after SIGTERM (want 0)", rc);
        tsrv_log_tail(s, TAIL_LINES);
    }
    track(s, false);
    s->pid = 0;
    s->last_status = rc;
    return rc;
}

int tsrv_kill9(tsrv *s)
{
    if (!s->pid) return 0;
    kill(s->pid, SIGKILL);
    int st;
    waitpid(s->pid, &st, 0);
    track(s, false);
    s->pid = 0;
    s->last_status = status_code(st);
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void tsrv_cleanup(tsrv *s)
{
    if (s->pid) tsrv_kill9(s);
    if (s->own_dir && s->dir[0]) {
        if (getenv("T_KEEP"))
            t_note("keeping %s", s->dir);
        else
            nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    for (int i = 0; i < s->nargs; i++) free(s->args[i]);
    s->nargs = 0;
    s->dir[0] = 0;
}

int tsrv_up(tsrv *s)
{
    return tsrv_start(s, NULL, "--pwhash", "min") == 0 ? 0 : -1;
}

int tsrv_down(tsrv *s)
{
    t_after_test();
    int rc = tsrv_stop(s);
    tsrv_cleanup(s);
    return rc == 0 ? 0 : -1;
}

long tsrv_read_file(const tsrv *s, const char *name, uint8_t *out, size_t cap)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        t_note("open %s: %s", path, strerror(errno));
        return T_ERR;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, out + n, cap - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap) break;
    }
    close(fd);
    return (long)n;
}
