/* errors.c: error codes, their sentences, and the mapping from the server's error codes. */
#include <stdio.h>
#include <string.h>

#include "client/internal.h"

const char *pl_strerror(int err)
{
    if (err >= 0) return "success";
    switch (err) {
#define PL_ERR_STR_(name, val, text)                                                               \
    case (val):                                                                                    \
        return text;
        PL_ERRNO_MAP(PL_ERR_STR_)
#undef PL_ERR_STR_
    }
    return "unknown error";
}

const char *pl_err_name(int err)
{
    if (err >= 0) return "PL_OK";
    switch (err) {
#define PL_ERR_NAME_(name, val, text)                                                              \
    case (val):                                                                                    \
        return "PL_" #name;
        PL_ERRNO_MAP(PL_ERR_NAME_)
#undef PL_ERR_NAME_
    }
    return "PL_EUNKNOWN";
}

int pl__fail(pl_client *c, int err, const char *msg)
{
    if (c) snprintf(c->errmsg, sizeof c->errmsg, "%s", msg && *msg ? msg : pl_strerror(err));
    return err;
}

/* The server's codes are listed in docs/protocol.md; anything new falls back on the status. */
int pl__map_error(long status, const char *code)
{
    static const struct {
        const char *code;
        int err;
    } map[] = {
        {"invalid_credentials", PL_EAUTH}, {"unauthenticated", PL_ETOKEN},
        {"invalid_token", PL_ETOKEN},      {"token_expired", PL_ETOKEN},
        {"device_revoked", PL_ETOKEN},     {"username_taken", PL_ETAKEN},
        {"email_taken", PL_ETAKEN},        {"phone_taken", PL_ETAKEN},
        {"too_many_devices", PL_EDEVICES}, {"not_found", PL_ENOTFOUND},
        {"no_such_user", PL_ENOTFOUND},    {"rate_limited", PL_ERATE},
        {"text_too_long", PL_ETOOBIG},     {"body_too_large", PL_ETOOBIG},
        {"invalid_request", PL_EINVAL},    {"invalid_json", PL_EINVAL},
        {"internal", PL_ESERVER},          {"unavailable", PL_ESERVER},
    };
    if (code)
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (strcmp(map[i].code, code) == 0) return map[i].err;
    if (status == 401) return PL_ETOKEN;
    if (status == 404) return PL_ENOTFOUND;
    if (status == 413) return PL_ETOOBIG;
    if (status == 429) return PL_ERATE;
    if (status >= 500) return PL_ESERVER;
    return PL_EREFUSED;
}
