/* fcload server statistics: RSS and CPU time of the --server-pid processes, read from /proc. */
#include "fcload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads VmRSS (kB) from /proc/PID/status and utime+stime (clock ticks) from
 * /proc/PID/stat. Returns false if either cannot be read. */
static bool proc_read(int pid, uint64_t *rss_kb, uint64_t *ticks)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool have_rss = false;
    while (fgets(buf, sizeof buf, f)) {
        if (strncmp(buf, "VmRSS:", 6) == 0) {
            *rss_kb = strtoull(buf + 6, NULL, 10);
            have_rss = true;
        }
    }
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and ')': fields start after the last ')'.
     * Field 3 (state) is token 0, so utime (14) and stime (15) are tokens 11, 12. */
    char *p = strrchr(buf, ')');
    if (!p || !have_rss)
        return false;
    p++;
    uint64_t utime = 0, stime = 0;
    for (int tok = 0; tok <= 12; tok++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return false;
        char *end;
        uint64_t v = strtoull(p, &end, 10);
        if (tok == 11)
            utime = v;
        if (tok == 12)
            stime = v;
        p = end;
        while (*p && *p != ' ')
            p++;
    }
    *ticks = utime + stime;
    return true;
}

/* Sums RSS and CPU ticks over every --server-pid. */
struct srv_sample srv_sample(void)
{
    struct srv_sample s = { .ok = g.opt.npids > 0 };
    for (uint32_t i = 0; i < g.opt.npids; i++) {
        uint64_t rss = 0, ticks = 0;
        if (!proc_read(g.opt.pids[i], &rss, &ticks)) {
            note("cannot read /proc/%d (server gone?)", g.opt.pids[i]);
            s.ok = false;
            continue;
        }
        s.rss_kb += rss;
        s.cpu_ticks += ticks;
    }
    return s;
}

double ticks_to_s(uint64_t ticks)
{
    long hz = sysconf(_SC_CLK_TCK);
    return (double)ticks / (double)(hz > 0 ? hz : 100);
}
