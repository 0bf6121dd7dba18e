/* fields.h: validation of account fields, shared by account creation and PATCH /v1/me.
 * Each field_* checks a JSON value and copies it into out; it returns NULL when the value is
 * good, else the sentence to answer with. */
#ifndef PL_FIELDS_H
#define PL_FIELDS_H

#include <jansson.h>

#include "server/api/api.h"

const char *field_username(json_t *v, char out[33]);
const char *field_password(json_t *v);
const char *field_display_name(json_t *v, char out[257]);
const char *field_email(json_t *v, char out[255]);
const char *field_phone(json_t *v, char out[33]);
const char *field_avatar(json_t *v, char out[ID_MAX]);
const char *field_settings(json_t *v, char out[1025]);
const char *field_device_name(json_t *v, char out[65]);
/* Answers 409 username_taken, email_taken or phone_taken. */
void field_conflict(api_req *r, const char *field);
json_t *devices_json(store_t *st, const char *user, const char *current);

#endif
