/* auth.h: tokens, passwords and log-in throttling.
 *
 * Tokens are JWTs signed with HS256 (libjwt) under a 32-byte key kept in the data folder. Checks
 * are deliberately narrow: the header must say HS256 and carry our kid, the signature must
 * verify, exp is compared by hand, and the device must still exist in the store. Password hashing
 * (Argon2id) is slow on purpose: call it only from worker threads. Thread-safe. */
#ifndef PL_AUTH_H
#define PL_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "server/server.h"
#include "server/store/store.h"

/* Loads the signing key (cfg.jwt_key_file, or DATA/jwt.key, made with mode 0600 if missing). */
int auth_init(server_t *s);
void auth_free(void);

/* A new token for (user, dev); heap string; *exp_ms gets its expiry. */
char *token_issue(server_t *s, const char *user, const char *dev, int64_t *exp_ms);
/* 0 when the token is good (user and dev filled), else -1 with an error code and sentence. */
int token_check(server_t *s, store_t *st, const char *token, char user[ID_MAX], char dev[ID_MAX],
                const char **code, const char **msg);

int pw_hash(server_t *s, const char *password, char out[128]);
bool pw_verify(const char *hash, const char *password);
/* Runs the same work as a verify, for unknown logins, so timing does not tell them apart. */
void pw_dummy_verify(const char *password);

/* Log-in throttling: 5 failures per login and 20 per address in 5 minutes. */
/* 0 when allowed, else the seconds to wait. */
int login_throttled(const char *login, const char *ip);
void login_failed(const char *login, const char *ip);
void login_succeeded(const char *login);

#endif
